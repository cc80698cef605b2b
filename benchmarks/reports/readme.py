"""README result tables generated from the scoreboard (``benchmarks/results/scoreboard.json``).

    python -m umask.bench.reports.readme            # rewrite every marked table of README.md
    python -m umask.bench.reports.readme --check    # exit 1 (and name the table) when README.md is stale

A generated table sits between ``<!-- scoreboard:NAME -->`` and ``<!-- /scoreboard:NAME -->`` in
README.md; everything between the two markers is replaced by :func:`render` of :data:`TABLES`
[NAME]. The text around the markers (the readings) is written by hand. A table lists which rows it
shows; each cell is one or more scoreboard values (joined by `` / ``) looked up by the scoreboard key
(protocol, dataset, model, artifact, metric). The best value of each column among the lines that use
the column's own data set is bold (``better`` says which direction is best). A cell whose row is
missing prints ``-``; a table line with no value at all is an error (the spec went stale).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from umask.bench.reports.scoreboard import DEFAULT_PATH, ROOT, Row, load
from umask.runtime.core.errors import DataFormatError, InputError

README = ROOT / "README.md"
_BLOCK = re.compile(r"(<!-- scoreboard:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /scoreboard:(?P=name) -->)", re.S)


@dataclasses.dataclass(frozen=True)
class Col:
    """A table column: ``metrics`` of ``protocol`` on ``dataset``; model / artifact override the line's.
    ``same_as``: other data-set labels that name exactly the same windows (e.g. a result file that labels
    its B2 rows with its B1 subset note); a cell falls back to them when ``dataset`` has no row."""

    header: str
    protocol: str
    dataset: str
    metrics: tuple[str, ...]
    digits: int = 3
    model: str | None = None
    artifact: str | None = None
    same_as: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Line:
    """A table row: ``label`` for ``model`` as ``artifact``; ``datasets`` maps a column's data set to
    the one this model was scored on instead (a subset of the windows), as (column's, line's) pairs."""

    label: str
    model: str | None = None
    artifact: str | None = None
    datasets: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    caption: str
    columns: tuple[Col, ...]
    lines: tuple[Line, ...]
    first_header: str = "model"
    show_source: bool = False


@dataclasses.dataclass(frozen=True)
class AutoTable:
    """A table whose lines are every (model, artifact) the scoreboard holds for its columns' keys, for
    result files of a family that grow as the family does (no hand-kept line list to go stale). Lines
    come baselines first, then peers, the family's own model, its ablations; within a kind by model
    name. ``sources`` (result-file names) narrows the lines to those files' rows; empty = every row."""

    name: str
    caption: str
    columns: tuple[Col, ...]
    sources: tuple[str, ...] = ()
    first_header: str = "model"
    show_source: bool = False

    def resolve(self, rows: Sequence[Row]) -> Table:
        keys = {(c.protocol, d, m) for c in self.columns for d in (c.dataset, *c.same_as) for m in c.metrics}
        order = {"baseline": 0, "peer": 1, "ours": 2, "ablation": 3, "oracle": 4}
        seen: dict[tuple[str, str], Row] = {}
        for r in rows:
            # a table with sources takes their rows only; an oracle row (kind "oracle") needs its file named
            named = Path(r.source or "").name in self.sources
            if (r.protocol, r.dataset, r.metric) in keys and (named or (not self.sources and r.kind != "oracle")):
                seen.setdefault((r.model, r.artifact), r)
        found = sorted(seen.values(), key=lambda r: (order[r.kind], r.model, r.artifact))
        lines = tuple(Line(f"{r.model} ({r.artifact})" + ("" if r.kind == "baseline" else f", {r.kind}"),
                           r.model, r.artifact) for r in found)
        if not lines:
            raise InputError(f"README table {self.name!r}: no scoreboard row for its columns")
        return Table(self.name, self.caption, self.columns, lines, self.first_header, self.show_source)


# -- the tables of README.md -----------------------------------------------------------------------

MILAN = "milan 5x5 internet, test split"
B3V2 = "sim 50 users x 3 seeds, v2 B3 cut (20 source-domain slots -> next 24 h)"
SWEEP = "sim 30 users x seed 0, v2 B windows (device scoring), B1 every 8th target hour"
SWEEP_REAL = "tsinghua sample 6 users 1 day, in-day context (B1-real, device scoring)"
LAT_1T = "tsinghua sample request latency, 1 thread(s)"
MILAN_CSDI = "milan 5x5 internet, test split, CSDI window subset (A1 every 36th, A2 every 8th)"
SIM50_B1 = "sim seed0 50 users, v1 windows, B1 hours 2/8/14/20"
SIM50 = "sim seed0 50 users, v1 windows"
SIM10_B1 = "sim seed0 10 users, v1 windows, B1 hours 2/8/14/20"
SIM10 = "sim seed0 10 users, v1 windows"
SIM20_B1 = "sim seed0 20 users, v1 windows, B1 hours 2/8/14/20"
SIM20 = "sim seed0 20 users, v1 windows"
REAL6 = "tsinghua sample 6 users 1 day, in-day context (v1 B1-real)"
DEMO = "tsinghua sample 6 users 1 day, requests at 10/14/18 h (main job)"
TAL = ("active_mae/traffic", "active_mae/app", "active_mae/location")
TAL_RMSE = ("rmse_all/traffic", "rmse_all/app", "rmse_all/location")
TAL_MAE = ("mae_all/traffic", "mae_all/app", "mae_all/location")

_CSDI_USER = ((SIM50_B1, SIM10_B1), (SIM50, SIM10))
V2_SIM = "sim 50 users x 3 seeds, v2 B windows"
V2_REAL = "tsinghua sample 6 users 1 day, in-day context (B1-real)"
V2_PRIOR = "sim 50 users seed 0, v2 B windows (paired with umask_prior_blend)"
SMALL3 = "sim 50 users x 3 seeds, v2 B windows (B1: target hours 0,2,4,6,8,10,12,14,16,18,20,22 only)"
SMALL_ABL = "sim 50 users seed 0, v2 B windows (ablation)"
SMALL_ABL3 = "sim 50 users x 3 seeds, v2 B windows (ablation)"
V2B = "sim 50 users x 3 seeds, v2 B windows"     # v2_user_baselines.json: every B window (B2-B4 = SMALL3's)
DEV3 = "sim 50 users x 3 seeds, v2 B windows (device scoring), B1 every 4th target hour"
DEV_REAL = "tsinghua sample 6 users 1 day, in-day context (B1-real, device scoring)"
ZS_GRID = "milan_blocksum_4x4.csv 4x4, 10-min slots (real)"
TAOBAO = "taobao UserBehavior sample, 814 users, LOO test, full ranking over 55233 items"
TAOBAO_LAT = "taobao sample, one request = history -> top-10 of 55233 items"
USCOPE_B1 = "sim seed0 20 users, v1 windows, B1 hours 2/8/14/20"
USCOPE_B3 = "sim seed0 20 users, v1 windows"
MOBILE_SIM = ("mobile app-usage (simulator n_users=500 seed=0 days=7), items = 20 app categories, behaviors "
              "open/long/heavy, 498 users, LOO test, full ranking")
MOBILE_PLACES = ("mobile app-usage (simulator n_users=500 seed=0 days=7), items = 12576 places (base stations), "
                 "behaviors open/long/heavy, 499 users, LOO test, full ranking")
MOBILE_LAT = "mobile app-usage (simulator n_users=500 seed=0 days=7), one request = history -> top-10 of 20 app categories"
MOBILE_PLACES_LAT = ("mobile app-usage (simulator n_users=500 seed=0 days=7), one request = history -> top-10 of 12576 "
                     "places (base stations)")
GTS_SIM = "sim 50 users, v2 D windows (B split, test day, hourly)"
GTS_REAL = "tsinghua sample 6 users 1 day, hours 08-22 (in-day history)"
_V2_LINES = (
    Line("all-zero", "all_zero", "numpy"),
    Line("last value", "last_value", "numpy"),
    Line("seasonal naive (same slot yesterday)", "seasonal_naive", "numpy"),
    Line("historical average by slot of day", "historical_average", "numpy"),
    Line("blend 0.5 last value + 0.5 historical average", "blend", "numpy"),
    Line("linear interpolation (B4)", "linear_interpolation", "numpy"),
    Line("LightGBM global (lags + calendar)", "lightgbm", "lightgbm"),
    Line("in-day context mean (REAL sample only)", "context_mean", "numpy"),
)
_USER_LINES = (
    Line("all-zero", "all_zero", "numpy"),
    Line("last value", "last_value", "numpy"),
    Line("historical average", "historical_average", "numpy"),
    Line("linear interpolation", "linear_interpolation", "numpy"),
    Line("U-MASK (v2)", "umask", "torch"),
    Line("U-MASK without U-SCOPE (v2)", "umask_no_uscope", "torch"),
    Line("DiT, random mask, same budget (v2)", "dit_random_mask", "torch"),
    Line("DiT, no conditioning, all evidence (v2)", "dit_uncond", "torch"),
    Line("U-MASK v1 (session-1 recipe)", "umask_v1", "torch"),
    Line("ARIMA (AR(1) per series)", "arima", "statsmodels"),
    Line("PatchTST (one global model)", "patchtst", "torch"),
)

TABLES: dict[str, Table | AutoTable] = {t.name: t for t in (
    Table("main_job",
          "REAL Tsinghua sample (6 users, 16 requests at 10:00 / 14:00 / 18:00), the exported bundle through "
          "the runtime `Session`; the main job's default model (the shipped `checkpoints/umask_small_v9`, trained on "
          "SYNTHETIC users; the checkpoint is named in the rows' notes); zero-shot",
          columns=(Col("request p50 ms", "B1", DEMO, ("request_p50_ms",), digits=1),
                   Col("next-hour MAE", "B1", DEMO, ("mae_all",), digits=4),
                   Col("active MAE", "B1", DEMO, ("active_mae",), digits=4),
                   Col("last value MAE", "B1", DEMO, ("mae_all",), 4, "last_value", "numpy"),
                   Col("last value active MAE", "B1", DEMO, ("active_mae",), 4, "last_value", "numpy")),
          lines=(Line("fp32", "umask_main_job", "onnx-fp32"),
                 Line("fp16", "umask_main_job", "onnx-fp16"),
                 Line("int8 QDQ", "umask_main_job", "onnx-int8-qdq"),
                 Line("int8 dynamic", "umask_main_job", "onnx-int8-dynamic")),
          first_header="precision"),
    Table("milan",
          "REAL Milan grid, test split; normalized MAE / RMSE; torch checkpoints and numpy / statsmodels "
          "baselines (PROTOCOL v1 rows; the exported grid artifacts are scored in the PROTOCOL v2 grid table)",
          columns=(Col("A1 forecasting 48 h -> 24 h", "A1", MILAN, ("nmae", "nrmse")),
                   Col("A2 imputation 70-80 % missing", "A2", MILAN, ("nmae", "nrmse"))),
          lines=(Line("all-zero (training mean)", "all_zero", "numpy"),
                 Line("last value", "last_value", "numpy"),
                 Line("seasonal naive (A2: nearest observed)", "seasonal_naive", "numpy"),
                 Line("historical average by time of day", "historical_average", "numpy"),
                 Line("linear interpolation", "linear_interpolation", "numpy"),
                 Line("low-rank completion + interpolation (A2)", "lowrank_interpolation", "numpy"),
                 Line("the same + the completion of the deviation from the day-type profile (A2)",
                      "profile_lowrank_interpolation", "numpy"),
                 Line("ARIMA (deseasonalized ARMA, Kalman)", "arima", "statsmodels"),
                 Line("PatchTST (transformers, seed 0)", "patchtst", "torch"),
                 Line("CSDI (compact, ~700 steps; window subset)", "csdi", "torch",
                      ((MILAN, MILAN_CSDI),)),
                 Line("DiT, all evidence", "dit_all_evidence", "torch"),
                 Line("U-MASK (learned evidence mask)", "umask", "torch"),
                 Line("U-MASK weights, all evidence at test", "umask_all_evidence_at_test", "torch")),
          show_source=True),
    Table("user_active",
          "Active-entry MAE (a PROTOCOL v2 *diagnostic*), traffic / app / location, featurized scale; "
          "SYNTHETIC simulator users (50, seed 0; CSDI: the first 10) and the REAL 6-user sample; torch "
          "checkpoints",
          columns=(Col("B1 1 h", "B1", SIM50_B1, TAL), Col("B2 24 h", "B2", SIM50, TAL),
                   Col("B4 completion", "B4", SIM50, TAL),
                   Col("REAL 6 users, 1 h (zero-shot)", "B1", REAL6, TAL)),
          lines=_USER_LINES + (Line("CSDI (compact; first 10 users)", "csdi", "torch", _CSDI_USER),),
          show_source=True),
    Table("user_proper",
          "All-entry RMSE (traffic / app / location) and B3 cold-start NDCG@3 (apps / places); same users, "
          "windows and models as the table above",
          columns=(Col("B1 RMSE", "B1", SIM50_B1, TAL_RMSE, digits=4), Col("B2 RMSE", "B2", SIM50, TAL_RMSE, digits=4),
                   Col("B4 RMSE", "B4", SIM50, TAL_RMSE, digits=4),
                   Col("B3 NDCG@3", "B3", SIM50, ("ndcg@3/app", "ndcg@3/location"))),
          lines=_USER_LINES + (Line("CSDI (compact; first 10 users)", "csdi", "torch", _CSDI_USER),)),
    Table("user_v2",
          "PROTOCOL v2 B baselines: mean over 3 simulator seeds (50 SYNTHETIC users each; the std over seeds is "
          "`spread` in the scoreboard) and the REAL 6-user one-day sample; all-entry RMSE traffic / app / "
          "location, app Recall@3 / location Acc@1 per target slot, B3 NDCG@3 apps / places; deterministic "
          "forecasts (numpy / lightgbm)",
          columns=(Col("B1 RMSE", "B1", V2_SIM, TAL_RMSE, digits=4),
                   Col("B1 R@3 / Acc@1", "B1", V2_SIM, ("app_recall@3", "location_acc@1")),
                   Col("B2 RMSE", "B2", V2_SIM, TAL_RMSE, digits=4),
                   Col("B3 NDCG@3", "B3", V2_SIM, ("ndcg@3/app", "ndcg@3/location")),
                   Col("B4 RMSE", "B4", V2_SIM, TAL_RMSE, digits=4),
                   Col("REAL B1 RMSE", "B1", V2_REAL, TAL_RMSE, digits=4),
                   Col("REAL B1 R@3 / Acc@1", "B1", V2_REAL, ("app_recall@3", "location_acc@1"))),
          lines=_V2_LINES),
    Table("user_v2_prior",
          "U-MASK with the blend prior (`prior=\"blend\"`, small config, 700 steps, 1 seed) next to the v2 "
          "baselines on the SAME windows: 50 SYNTHETIC users of simulator seed 0, test day; columns as above; "
          "torch checkpoint (a prior model is not exportable yet)",
          columns=(Col("B1 RMSE", "B1", V2_PRIOR, TAL_RMSE, digits=4),
                   Col("B1 R@3 / Acc@1", "B1", V2_PRIOR, ("app_recall@3", "location_acc@1")),
                   Col("B2 RMSE", "B2", V2_PRIOR, TAL_RMSE, digits=4),
                   Col("B3 NDCG@3", "B3", V2_PRIOR, ("ndcg@3/app", "ndcg@3/location")),
                   Col("B4 RMSE", "B4", V2_PRIOR, TAL_RMSE, digits=4)),
          lines=_V2_LINES[:-1] + (
              Line("blend prior alone (the model's input, no network)", "prior_blend_only", "numpy"),
              Line("U-MASK + blend prior, x0 at the first step", "umask_prior_blend", "torch"),
              Line("U-MASK + blend prior, mean of 2 DDIM samples", "umask_prior_blend_sampled", "torch")),
          show_source=True),
    AutoTable("milan_v2",
              "REAL Milan grid, PROTOCOL A test windows (A1: 289 windows x 25 cells x 144 slots; A2: 145 windows, "
              "70-80 % hidden); normalized MAE / RMSE (per-cell training z-score). U-MASK grid and U-STS-LLM (with its "
              "guidance-only and prior-only rows): 3 training seeds (spread in the scoreboard); U-STS-LLM ablations "
              "(100 steps), its int8 bundle and the learned grid baselines: 1 seed, except SAITS (A2), TimesNet "
              "(A1, A2) and ConvLSTM (A1): 3 seeds; `ustsllm_patch` = U-STS-LLM with spatio-temporal patch tokens (`--st-patch 48`), 3 "
              "training seeds (best validation loss); `_a2val` = seed 0 at its best validation A2 step; `_gated` = the "
              "same weights with the residual over the grid prior kept per cell only as far as it helped on the "
              "validation days (`grid_residual_gate`), 3 seeds; `_gated_lowrank` = the same gate on A2 between the "
              "network and the `lowrank_interpolation` baseline row instead of its own prior (`--a2-prior lowrank`), "
              "3 seeds; `ustsllm_lowrank` = U-STS-LLM with patch tokens whose eq. 7 imputation guidance starts from "
              "that row (`--guide-prior lowrank`), 3 seeds; its onnx rows: the seed-0 bundle; `ustsllm_lowrank_ens3` = the "
              "mean of those 3 seeds' outputs (3 networks a window; `--ensemble`); `umask_grid_lowrank` = the "
              "U-MASK grid model trained with that row as its A2 prior (`--a2-prior lowrank`), 3 seeds, and "
              "`umask_grid_lowrank_gated` the same with the per-cell gate over its own prior; `umask_grid_bundle` = the "
              "gated grid model (A1 over its prior, A2 over the `lowrank_interpolation` row) as the deployable "
              "`umask_grid` bundle, scored through the torch-free session in raw units, 3 bundles (training seeds) per "
              "artifact, `torch` = the same pipeline with the checkpoint's network; `ustsllm_lowrank_gated` = "
              "`ustsllm_lowrank` with the same per-cell gate (A1 over its prior, A2 over the row), 3 seeds; `_recent` = "
              "trained over profiles weighted towards the latest training days (`--profile-decay 0.875`, the prior's "
              "validation choice): `umask_grid_recent*`, 3 seeds; `ustsllm_lowrank_l1` = `ustsllm_lowrank` trained with the "
              "absolute error in eqs. 15-16 (`--loss l1`, the MAE-optimal point), 3 seeds, its onnx rows the seed-0 bundle, "
              "`_ens3` the mean of the 3 seeds' outputs, `_gated` the per-cell A2 gate against the `lowrank_interpolation` "
              "row; `profile_level` / `profile_median_level` = the grid prior's A1 part (day-type mean profile + level "
              "term) and the same over per-slot medians; `ustsllm_patch_l1` = `ustsllm_patch` trained with `--loss l1` (seed 0), "
              "and `_gated_lowrank` its per-cell A2 gate against the `lowrank_interpolation` row (3 seeds); "
              "`profile_lowrank_interpolation` = that row blended with the day-type profile plus the same completion "
              "of the window's deviation from it (share chosen on validation); `_gated_profile` = the per-cell A2 gate "
              "against this row instead (`ustsllm_patch_l1`: 3 seeds; `umask_grid_gated_profile`: the shipped seed-0 "
              "U-MASK grid checkpoint, 1 seed); `ustsllm_lowrank_profile_l1` = U-STS-LLM whose imputation guidance "
              "starts from this row (`--guide-prior lowrank_profile --loss l1`), 3 seeds, `_gated` its per-cell A2 "
              "gate against the row, its onnx rows the seed-0 bundle that carries the gate, `_p24` the same with finer "
              "tokens (`--st-patch 24`)",
              columns=(Col("A1 nMAE / nRMSE", "A1", MILAN, ("nmae", "nrmse")),
                       Col("A2 nMAE / nRMSE", "A2", MILAN, ("nmae", "nrmse"))),
              sources=("v2_grid_umask.json", "v2_ustsllm.json", "milan_baselines.json", "milan_arima.json",
                       "milan_patchtst.json", "v2_grid_nets.json", "v2_ustsllm_patch.json", "v2_grid_umask_gated.json",
                       "v2_ustsllm_gated.json", "v2_grid_umask_gated_lowrank.json", "v2_ustsllm_gated_lowrank.json",
                       "v2_ustsllm_lowrank.json", "v2_grid_umask_lowrank.json", "v2_grid_umask_lowrank_gated.json",
                       "v2_grid_umask_bundle.json", "v2_ustsllm_lowrank_gated.json", "v2_grid_umask_recent.json",
                       "v2_grid_umask_recent_gated.json", "v2_grid_umask_recent_gated_lowrank.json",
                       "v2_ustsllm_lowrank_l1.json", "v2_ustsllm_lowrank_l1_gated.json",
                       "v2_ustsllm_patch_l1_gated.json", "v2_ustsllm_patch_l1_gated_profile.json",
                       "v2_grid_umask_gated_profile.json", "v2_ustsllm_lowrank_profile_l1.json",
                       "v2_ustsllm_lowrank_profile_l1_gated.json", "v2_ustsllm_lowrank_profile_l1_p24.json"),
              show_source=True),
    AutoTable("grid_zeroshot",
              "REAL, zero-shot: a Milan-trained U-STS-LLM applied unchanged to a 16-cell grid (each cell the sum of a "
              "2x2 block of Milan cells; the new grid's own training days fit only its scaler); nMAE / nRMSE",
              columns=(Col("A1-zeroshot", "A1-zeroshot", ZS_GRID, ("nmae", "nrmse")),
                       Col("A2-zeroshot", "A2-zeroshot", ZS_GRID, ("nmae", "nrmse")))),
    AutoTable("user_small",
              "PROTOCOL v2 B, SYNTHETIC: 50 users x simulator seeds 0, 1, 2 (seed 0 = the training users, scored on "
              "their unseen test day; seeds 1, 2 = users neither model saw), mean over seeds; the shipped "
              "`checkpoints/umask_small_v9` (the main job's default: v7's network over the kernel prior), `_v11` (v9 "
              "over a prior that interpolates imputation gaps), `_v7` "
              "(horizon-dependent prior), `_v8` / `_v10` (v7 / v9 trained on 14-day users), `_v6` (per-task prior), "
              "`_v4`, `_v5` (learned budget) and `checkpoints/umask_small` (v3, `umask_small`), "
              "torch, next to every v2 baseline on the same windows (B1: every 2nd target hour). RMSE traffic / app "
              "/ location; event metrics app Recall@3 / location Acc@1; B3 (v1 cut) NDCG@3 apps / places. Point "
              "estimator: x0 at the first sampler step (RMSE, events, rankings). `param_oracle` (kind oracle, never "
              "bold) is no model: it averages 128 re-simulations of each user with the simulator's own parameters, "
              "the error floor of a perfect forecaster on B2 (on B1 / B4 it ignores the context: not a floor)",
              columns=(Col("B1 RMSE", "B1", SMALL3, TAL_RMSE, digits=4),
                       Col("B1 R@3 / Acc@1", "B1", SMALL3, ("app_recall@3", "location_acc@1")),
                       Col("B2 RMSE", "B2", SMALL3, TAL_RMSE, digits=4, same_as=(V2B,)),
                       Col("B2 R@3 / Acc@1", "B2", SMALL3, ("app_recall@3", "location_acc@1"), same_as=(V2B,)),
                       Col("B3 NDCG@3", "B3", SMALL3, ("ndcg@3/app", "ndcg@3/location"), same_as=(V2B,)),
                       Col("B4 RMSE", "B4", SMALL3, TAL_RMSE, digits=4, same_as=(V2B,))),
              sources=("v2_user_umask_small.json", "v2_user_umask_small_v4.json", "v2_user_umask_small_v5.json",
                       "v2_user_umask_small_v6.json", "v2_user_umask_small_v7.json", "v2_user_umask_small_v8.json",
                       "v2_user_umask_small_v9.json", "v2_user_umask_small_v10.json", "v2_user_umask_small_v11.json",
                       "v2_user_oracle.json",
                       "v2_user_baselines.json")),
    AutoTable("user_small_mae",
              "All-entry MAE traffic / app / location, same runs and windows as above. `umask_small_v4` to `_v11` and the "
              "`<baseline>@mae` rows use the median-shaped rule (mean estimate set to 0 at or below a threshold, "
              "kept or set to an active level above; threshold and level per task and channel group chosen on the "
              "validation day of the same users; benchmarks/accuracy/user_mae_rule.py); `umask_small` (v3) used the "
              "median of 3 DDIM samples on B2 / B4 and the x0 mean on B1 / B3",
              columns=(Col("B1 MAE", "B1", SMALL3, TAL_MAE, digits=4),
                       Col("B2 MAE", "B2", SMALL3, TAL_MAE, digits=4, same_as=(V2B,)),
                       Col("B4 MAE", "B4", SMALL3, TAL_MAE, digits=4, same_as=(V2B,))),
              sources=("v2_user_umask_small.json", "v2_user_umask_small_v4.json", "v2_user_umask_small_v5.json",
                       "v2_user_umask_small_v6.json", "v2_user_umask_small_v7.json", "v2_user_umask_small_v8.json",
                       "v2_user_umask_small_v9.json", "v2_user_umask_small_v10.json", "v2_user_umask_small_v11.json",
                       "v2_user_baselines.json")),
    AutoTable("user_impute_mix",
              "B4 (imputation of 70-80 % hidden entries of a 2-day window), SYNTHETIC 50 users x simulator seeds 0-2, "
              "mean over seeds: `<row>+interp` = w_g x the row's mean + (1 - w_g) x linear interpolation of the window's "
              "evidence, w_g per channel group chosen on the validation day (benchmarks/accuracy/user_impute_mix.py); "
              "`@mae` rows add the validation-calibrated zero rule. The unmixed rows are the same windows' rows of the "
              "tables above. RMSE and all-entry MAE traffic / app / location",
              columns=(Col("B4 RMSE", "B4", SMALL3, TAL_RMSE, digits=4, same_as=(V2B,)),
                       Col("B4 MAE", "B4", SMALL3, TAL_MAE, digits=4, same_as=(V2B,))),
              sources=("v2_user_impute_mix.json", "v2_user_impute_mix_v11.json")),
    AutoTable("user_small_ablation",
              "Inference ablations of the shipped U-MASK small v4, v5 (learned budget), v7 and v9, SYNTHETIC, 50 users x "
              "simulator seeds 0-2 (mean over seeds; the unablated models on the same B2 / B4 windows are in the "
              "first table), RMSE traffic / app / location; `<model>:X` = the same weights with input X removed or "
              "replaced (`mask_learned` / `mask_none` / `mask_random` = the learned mask / every available coordinate "
              "/ a random subset of the configured base budget as evidence: the paper's Table 9; on B4 both shipped "
              "models use every available coordinate, see below)",
              columns=(Col("B2 RMSE", "B2", SMALL_ABL3, TAL_RMSE, digits=4),
                       Col("B4 RMSE", "B4", SMALL_ABL3, TAL_RMSE, digits=4)),
              sources=("v2_user_umask_small_v4.json", "v2_user_umask_small_v5.json", "v2_user_umask_small_v7.json",
                       "v2_user_umask_small_v9.json")),
    AutoTable("user_device",
              "The shipped U-MASK small exported and served by the torch-free runtime `Session`, per precision, next "
              "to torch on the SAME windows and noise (SYNTHETIC 50 users x seeds 0-2, B1 every 4th target hour; "
              "REAL 6-user sample for B1-real); RMSE traffic / app / location and event metrics",
              columns=(Col("B1 RMSE", "B1", DEV3, TAL_RMSE, digits=4),
                       Col("B1 R@3 / Acc@1", "B1", DEV3, ("app_recall@3", "location_acc@1")),
                       Col("B2 RMSE", "B2", DEV3, TAL_RMSE, digits=4),
                       Col("B4 RMSE", "B4", DEV3, TAL_RMSE, digits=4),
                       Col("REAL B1 RMSE", "B1", DEV_REAL, TAL_RMSE, digits=4)),
              sources=("v2_user_umask_device.json", "v2_user_umask_device_v4.json", "v2_user_umask_device_v5.json",
                       "v2_user_umask_device_v7.json", "v2_user_umask_device_v8.json", "v2_user_umask_device_v9.json",
                       "v2_user_umask_device_v10.json", "v2_user_umask_device_v11.json"),
              first_header="model (artifact)"),
    AutoTable("user_b3_v2",
              "PROTOCOL v2 B3 cold start, SYNTHETIC 50 users x simulator seeds 0-2 (mean over seeds): the history is the "
              "20 slots before the test day of ONE domain, the target the other domain's items over the next 24 h "
              "(apps = places -> apps, places = apps -> places); `historical_average_warm` sees the user's full history "
              "and is a reference, not a cold-start model",
              columns=(Col("NDCG@3 apps / places", "B3", B3V2, ("ndcg@3/app", "ndcg@3/location")),
                       Col("Recall@3 apps / places", "B3", B3V2, ("recall@3/app", "recall@3/location")),
                       Col("MRR@3 apps / places", "B3", B3V2, ("mrr@3/app", "mrr@3/location"))),
              sources=("v2_user_b3.json", "v2_user_b3_v4.json", "v2_user_b3_v6.json", "v2_user_b3_v7.json",
                       "v2_user_b3_v9.json")),
    AutoTable("request_sweep",
              "Network evaluations per request vs PROTOCOL v2 headline accuracy: the shipped U-MASK small through the "
              "runtime `Session` (onnx fp32), SYNTHETIC seed 0 (30 users; B1 every 8th target hour) and the REAL sample "
              "(B1-real); `@ddimSxN` = DDIM with S steps x N noise draws (S = 1: the x0 estimate at t = N-1); the "
              "same windows and per-window noise for every configuration",
              columns=(Col("B1 RMSE", "B1", SWEEP, TAL_RMSE, digits=4),
                       Col("B1 R@3 / Acc@1", "B1", SWEEP, ("app_recall@3", "location_acc@1")),
                       Col("B2 RMSE", "B2", SWEEP, TAL_RMSE, digits=4),
                       Col("B4 RMSE", "B4", SWEEP, TAL_RMSE, digits=4),
                       Col("REAL B1 RMSE", "B1", SWEEP_REAL, TAL_RMSE, digits=4)),
              sources=("v2_request_sweep.json",)),
    AutoTable("umask_latency",
              "The full on-device U-MASK request (REAL sample user 0 at 18:00, short term; profile text and its "
              "embedding cached), one thread of this CPU: p50 / p99 ms per engine and precision; the torch rows are "
              "eager PyTorch at the same configuration and at the 50-step sampler (`@ddim50x2`)",
              columns=(Col("request p50 / p99 ms", "B1", LAT_1T, ("request_p50_ms", "request_p99_ms"), digits=1),),
              sources=("v2_umask_latency.json",), first_header="model (artifact)"),
    AutoTable("fatsmb_c",
              "PROTOCOL C, REAL Taobao UserBehavior sample (814 users, leave-one-out test, full ranking over all 55,233 "
              "items, target behavior given); item-level Recall / NDCG at 10 and 20, category-level at 10. `fatsmb` = "
              "FatsMB + the repeat / co-occurrence prior, `fatsmb_noprior` = the paper's model alone, `blend` = the "
              "prior without a network; FatsMB, its ablations with and without the prior, SASRec and BERT4Rec: mean "
              "over 3 training seeds (std in the scoreboard); the other rows seed 0 (the ONNX rows: the seed-0 model)",
              columns=(Col("item R@10 / N@10", "C", TAOBAO, ("item_recall@10", "item_ndcg@10")),
                       Col("item R@20 / N@20", "C", TAOBAO, ("item_recall@20", "item_ndcg@20")),
                       Col("category R@10 / N@10", "C", TAOBAO, ("cat_recall@10", "cat_ndcg@10"))),
              sources=("v2_fatsmb.json",)),
    AutoTable("uscope_llm_trained",
              "U-MASK fine-tuned on LLM-written profiles vs a template-trained control: two 300-step fine-tunes of the "
              "shipped run per training seed (0, 1), identical but for the profile text (template vs the merged "
              "SFT+DPO f16 GGUF); `umask_ft_llm` = fed its own LLM profiles, `_infer_template` / `_infer_none` = the "
              "same weights with template / no profiles, `umask_ft_template` = the control; SYNTHETIC, first 20 users "
              "of seed 0, v1 windows; all-entry MAE (x0 mean estimate), mean over the 2 seeds",
              columns=(Col("B1 MAE", "B1", USCOPE_B1, ("mae_all/traffic", "mae_all/app", "mae_all/location"),
                           digits=4),
                       Col("B3 MAE", "B3", USCOPE_B3, ("mae_all/traffic", "mae_all/app", "mae_all/location"),
                           digits=4),
                       Col("B3 NDCG@3 apps / places", "B3", USCOPE_B3, ("ndcg@3/app", "ndcg@3/location"))),
              sources=("uscope_llm_trained_seeds.json",)),
    AutoTable("fatsmb_mobile",
              "FatsMB's task on phones (issue 13 mobile variant): SYNTHETIC 500 simulator users (seed 0), items = the 20 "
              "app categories, behaviors open / long / heavy, leave-one-out test, full ranking; FatsMB, SASRec and "
              "BERT4Rec: mean over 3 training seeds, the others deterministic. @10 of 20 items is near 1 for everyone, "
              "so @1 / @3 lead. Places as items (`mobile_mb --items place`, 12,576 base stations, the same users): "
              "one training seed. The onnx rows are the seed-0 bundles through the torch-free runtime",
              columns=(Col("apps R@1 / R@3", "C", MOBILE_SIM, ("item_recall@1", "item_recall@3")),
                       Col("apps R@5 / N@10", "C", MOBILE_SIM, ("item_recall@5", "item_ndcg@10")),
                       Col("places R@1 / R@3", "C", MOBILE_PLACES, ("item_recall@1", "item_recall@3")),
                       Col("places R@10 / N@10", "C", MOBILE_PLACES, ("item_recall@10", "item_ndcg@10"))),
              sources=("v2_fatsmb_mobile.json", "v2_fatsmb_mobile_places.json")),
    AutoTable("fatsmb_mobile_latency",
              "FatsMB mobile bundles (seed 0), one request = a user's history -> top-10, one thread of the shared "
              "2-core CPU (load average about 2.4: provisional); torch eager vs the torch-free runtime per precision",
              columns=(Col("apps p50 / p99 ms", "C", MOBILE_LAT, ("request_p50_ms", "request_p99_ms"), digits=1),
                       Col("places p50 / p99 ms", "C", MOBILE_PLACES_LAT, ("request_p50_ms", "request_p99_ms"),
                           digits=1)),
              sources=("v2_fatsmb_mobile_latency.json", "v2_fatsmb_mobile_places_latency.json"),
              first_header="model (artifact)"),
    AutoTable("gtslum_d",
              "PROTOCOL D, next-hour app categories: SYNTHETIC 50 users x simulator seeds 0-2 (B split, test day, "
              "hourly windows; mean over seeds) and the REAL 6-user sample (zero-shot, 45 windows)",
              columns=(Col("SYNTHETIC R@5 / R@10 / N@5", "D", GTS_SIM, ("recall@5", "recall@10", "ndcg@5")),
                       Col("REAL R@5 / R@10 / N@5", "D", GTS_REAL, ("recall@5", "recall@10", "ndcg@5"))),
              sources=("v2_gtslum.json",)),
    AutoTable("gtslum_ablations",
              "GTS-LUM ablations, SYNTHETIC. The seed's mechanisms (timestamps, target placement, modalities) and the "
              "head's frequency prior: seed 0, one short run each, `gtslum_full_short` = the full model at the same "
              "length (these runs predate the two rows below: raw same-hour shares, no score gate). This project's "
              "two additions, full length, mean over the 3 seeds: `gtslum_rawhist` = neither (the headline runs "
              "before 2026-12-07), `gtslum_nogate` = the kernel target-hour shares without the score gate",
              columns=(Col("R@5 / R@10 / N@5", "D", GTS_SIM, ("recall@5", "recall@10", "ndcg@5")),),
              sources=("v2_gtslum_ablations.json",)),
    AutoTable("family_latency",
              "Per-request latency of the grid models and the three new families, one thread of the shared 2-core CPU "
              "while other jobs ran (U-STS-LLM with one token per cell and FatsMB: load average 6-12; GTS-LUM, "
              "re-measured 2026-12-07: 1.5; the U-MASK grid bundle, 2026-12-07: 1.2-1.5; `ustsllm_lowrank`, the headline "
              "U-STS-LLM network (patch tokens: 150-225 tokens where `ustsllm` has 25), the shipped seed-0 folder, "
              "2026-12-07: 0.4-0.9; each file records its load. Provisional: compare within a "
              "column only); torch eager vs the torch-free runtime per precision. Milan: one window (25 cells) in raw "
              "units (U-STS-LLM: A1 and A2, and windows/s at batch 32; `umask_grid_bundle`: A1 forecast and A2 impute, 16 "
              "noise draws = 16 DiT calls); FatsMB: history -> top-10 of 55,233 items; GTS-LUM: one `next_apps` "
              "request on the REAL sample",
              columns=(Col("Milan A1 p50 ms / p99 ms / windows/s b32", "A1", MILAN,
                           ("latency_p50_ms", "latency_p99_ms", "windows_per_s@b32"), digits=1),
                       Col("Milan A2 p50 / p99 ms", "A2", MILAN, ("latency_p50_ms", "latency_p99_ms"), digits=1),
                       Col("FatsMB p50 / p99 ms", "C", TAOBAO_LAT, ("request_p50_ms", "request_p99_ms"), digits=1),
                       Col("GTS-LUM p50 / p90 ms", "D", GTS_REAL, ("latency_p50_ms", "latency_p90_ms"), digits=1)),
              sources=("v2_ustsllm.json", "v2_ustsllm_lowrank.json", "v2_grid_umask_bundle.json",
                       "v2_fatsmb_latency.json", "v2_gtslum_latency.json")),
    Table("uscope_downstream",
          "SYNTHETIC, first 20 users, one U-MASK checkpoint (`umask_small_v2` step 500, trained on TEMPLATE "
          "profiles), torch; all-entry MAE",
          columns=(Col("B1 location MAE", "B1", SIM20_B1, ("mae_all/location",), digits=4),
                   Col("B1 traffic MAE", "B1", SIM20_B1, ("mae_all/traffic",), digits=4),
                   Col("B3 location MAE", "B3", SIM20, ("mae_all/location",), digits=4),
                   Col("B3 traffic MAE", "B3", SIM20, ("mae_all/traffic",), digits=4),
                   Col("B3 NDCG@3 apps / places", "B3", SIM20, ("ndcg@3/app", "ndcg@3/location"))),
          lines=(Line("(a) no profile", "umask_s500_profile_none", "torch"),
                 Line("(b) template profile", "umask_s500_profile_template", "torch"),
                 Line("(c) LoRA SFT LLM profile", "umask_s500_profile_lora", "torch"),
                 Line("(d) LoRA SFT + DPO LLM profile", "umask_s500_profile_lora_dpo", "torch")),
          first_header="profile source"),
)}


# -- rendering -------------------------------------------------------------------------------------

def _fmt(v: float, digits: int) -> str:
    return f"{v:.{digits}f}"


def _short_command(cmd: str) -> str:
    tok = cmd.split()
    if "-m" in tok:
        i = tok.index("-m")
        sub = tok[i + 2:i + 3]                      # a sub-command (grid_peers arima) belongs to it
        return " ".join(["python -m", tok[i + 1]] + [t for t in sub if not t.startswith("-")])
    return tok[0]


def render(table: Table, rows: Sequence[Row]) -> str:
    """The markdown of ``table`` (caption line + table) from scoreboard ``rows``."""
    by_key = {r.key: r for r in rows}

    def cell_rows(line: Line, col: Col) -> list[Row | None]:
        ds = dict(line.datasets).get(col.dataset, col.dataset)
        model, art = col.model or line.model, col.artifact or line.artifact
        found = []
        for m in col.metrics:
            hits = (by_key.get((col.protocol, d, model, art, m)) for d in (ds, *col.same_as))
            found.append(next((r for r in hits if r is not None), None))
        return found

    cells = {(li, ci): cell_rows(line, col) for li, line in enumerate(table.lines) for ci, col in enumerate(table.columns)}
    best: dict[tuple[int, int], float] = {}
    for ci, col in enumerate(table.columns):
        for mi in range(len(col.metrics)):
            vals = [cells[li, ci][mi] for li, line in enumerate(table.lines)
                    if dict(line.datasets).get(col.dataset, col.dataset) == col.dataset]
            vals = [r for r in vals if r is not None and r.kind != "oracle"]   # an oracle is a floor, not the best
            if len({round(r.value, col.digits) for r in vals}) > 1:   # a column of equal values has no best
                pick = min if vals[0].better == "lower" else max
                best[ci, mi] = round(pick(r.value for r in vals), col.digits)

    head = [table.first_header] + [c.header for c in table.columns] + (["result file / command"] if table.show_source else [])
    align = ["---"] + ["---:" if len(c.metrics) == 1 else "---" for c in table.columns] + (["---"] if table.show_source else [])
    out = [f"_{table.caption}. Generated from `benchmarks/results/scoreboard.json` by "
           f"`python -m umask.bench.reports.readme`._", "",
           "| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    for li, line in enumerate(table.lines):
        parts, found = [line.label], []
        for ci, col in enumerate(table.columns):
            vs = []
            for mi, r in enumerate(cells[li, ci]):
                if r is None:
                    vs.append("-")
                    continue
                found.append(r)
                s = _fmt(r.value, col.digits)
                vs.append(f"**{s}**" if best.get((ci, mi)) == round(r.value, col.digits) else s)
            parts.append("-" if all(v == "-" for v in vs) else " / ".join(vs))
        if not found:
            raise InputError(f"README table {table.name!r}: line {line.label!r} has no scoreboard row")
        if table.show_source:
            srcs = []
            for r in found:
                s = f"`{Path(r.source).name}` / `{_short_command(r.command)}`" if r.source else f"`{_short_command(r.command)}`"
                if s not in srcs:
                    srcs.append(s)
            parts.append("; ".join(srcs))
        out.append("| " + " | ".join(parts) + " |")
    return "\n".join(out) + "\n"


def table_markdown(table: Table | AutoTable, rows: Sequence[Row]) -> str:
    """`render` of ``table``, an `AutoTable` first resolved against ``rows``."""
    return render(table.resolve(rows) if isinstance(table, AutoTable) else table, rows)


def blocks(text: str) -> dict[str, str]:
    """NAME -> the text between its markers, for every marked table of ``text``."""
    found: dict[str, str] = {}
    for m in _BLOCK.finditer(text):
        if m["name"] in found:
            raise DataFormatError(README, text[:m.start()].count("\n") + 1, f"table {m['name']!r} marked twice")
        found[m["name"]] = m["body"]
    return found


def rewrite(text: str, rows: Sequence[Row]) -> str:
    """``text`` with every marked table regenerated; an unknown NAME is an error."""
    def sub(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in TABLES:
            raise DataFormatError(README, text[:m.start()].count("\n") + 1, f"unknown scoreboard table {name!r}")
        return m.group(1) + table_markdown(TABLES[name], rows) + m.group(4)

    blocks(text)   # duplicate markers fail here
    return _BLOCK.sub(sub, text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umask.bench.reports.readme", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 when a table is stale")
    ap.add_argument("--readme", default=str(README))
    ap.add_argument("--scoreboard", default=str(DEFAULT_PATH))
    ns = ap.parse_args(argv)
    path = Path(ns.readme)
    text = path.read_text()
    new = rewrite(text, load(ns.scoreboard))
    if ns.check:
        old_b, new_b = blocks(text), blocks(new)
        stale = [n for n in new_b if old_b.get(n) != new_b[n]]
        for n in stale:
            print(f"{path}: table {n!r} is stale; run python -m umask.bench.reports.readme", file=sys.stderr)
        return 1 if stale else 0
    if new != text:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(new)
        tmp.replace(path)
    print(f"{path}: {len(blocks(new))} tables generated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
