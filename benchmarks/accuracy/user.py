"""Per-user behavior-tensor evaluation harness, docs/PROTOCOL.md section B (numpy only, model-agnostic).

Data
----
* **simulator (synthetic)** -- the main benchmark. ``simulate(SimulatorConfig(n_users, seed=seed))``
  (7 days from Wed 2016-04-20), featurized with the runtime's one featurization
  ``featurize_population(events, catalog, FeatureConfig(), fit_end_ts=start + 5 days)``: every
  user's layout (tessellation), ``e_pos`` and U-SCOPE ``ProfileStats`` come from the 5 training days
  only. A user with no event in the training days gets no layout and is left out (counted in every
  row). Splits per user (``train/user_windows.py``): train = days 1-5 (slots 0..479), validation =
  day 6 (480..575), test = day 7 (576..671).
* **real 6-user one-day sample** (LLMApp's Tsinghua sample, Wed 2016-04-20) -- a short-term-only
  sanity check. It holds ONE day, so PROTOCOL B's 2-day context, the day splits and every baseline
  that needs an earlier day (historical average, seasonal naive) are impossible there. Windows:
  target = the 4 slots (1 h) starting at s = 32, 36, ..., 88 (08:00, 09:00, ..., 22:00; the sample
  records 07:00-23:30, so every target hour lies inside the recorded part of the day), 15 windows per
  user; context = everything before the target hour in that day, [0, s), delivered in the same
  192-slot frame as B1 ([s - 192, s); slots before the day are unobserved: zero in ``x_context``,
  ``avail`` False). The layout, ``e_pos`` are fitted on the whole (only) day; the ``ProfileStats``
  of each window are recomputed from the events before its target start (None when there are none).

Tasks (simulator; windows from ``train/user_windows.py``, split = test by default)
-------------------------------------------------------------------------------
* B1 short-term: context 192 slots (2 days) -> target 4 slots (1 h); target starts every 4 slots of
  the split day (24 windows per user).
* B2 long-term: context 192 slots -> target the whole split day (96 slots); 1 window per user.
* B3 cold-start: the 192-slot context before the split day, cut to its most recent <= 20 *active*
  slots (``avail`` marks them; everything else is zero and unobserved) -> the split day (96 slots).
  The ``ProfileStats`` handed to models are recomputed from the events in those visible slots only
  (None when there are none), so a conditioning model sees no more history than the cut; the
  layout / ``e_pos`` stay those of the training days (the featurization is fixed per user).
  Error metrics over the 96-slot target plus ranking metrics (below).
* B4 completion: 192-slot windows ending at the split day's end (1 per user); (t, h, w) coordinates
  hidden with the PROTOCOL A2 recipe (``default_rng(1000 + window index)``; the window index is the
  position in the user's split list, so every user's test window uses seed 1000). ``x_context`` =
  the window with every hidden coordinate zeroed in all channels, ``avail`` = not hidden,
  ``eval_mask`` = hidden; Tc = Th = 192 and the target is the window itself.

Metrics
-------
All on the **featurized scale** of ``runtime/featurize.py`` (fixed, defined once; no per-user
standardization): traffic = log1p(bytes per slot-cell) / 20, app k = log1p(records) / log1p(60),
location = 0/1. Per task and channel group -- traffic (channel 0), app (channels 1..K), location
(channel K+1) -- MAE and RMSE pooled over every evaluated entry of every window ("all": the entries
inside ``eval_mask``; "active": those with ground truth != 0). Raw scale where a unit exists:
traffic in bytes per slot-cell (``decode_traffic``), apps in records per slot-cell
(``decode_app_counts``); predictions are clipped to [0, 10] before decoding.

B3 ranking: per user, engagement in the target day = for app category k the records
(sum over slots and cells of ``decode_app_counts(clip(x_k, 0, 10))``), for layout location (h, w) the
active slots (sum over slots of ``clip(x_loc, 0, ...)``), both rounded to 1e-3; the same function
scores the ground truth and the prediction (the ground-truth app ranking equals
``user_windows.top_k_categories``; locations are ranked by dwell, i.e. active 15-min slots, which is
what the location channel encodes). Ranked lists keep positive scores only, ties -> smaller index.
Relevance: for Recall@k and NDCG@k the relevant set is the user's true top-k items
(min(k, number of engaged items)), so a perfect ranking scores 1 at every k; MRR@k is the
reciprocal rank of the user's single most-engaged true item within the predicted top k. k = 1, 3, 5
for locations and 1, 3, 5, 10 for apps. Users without any target-day activity are skipped and
counted. Averages are over ranked users.

Models
------
A :data:`Predictor` is ``fn(batch: TaskBatch) -> np.ndarray`` of shape (n, C, Th, H, W) on the
featurized scale. It receives a read-only view of the batch without ``truth``. Raising
``NotImplementedError`` skips that model for that task. Stochastic models pass
``model_info={"name": {"seeds": ..., "samples": ..., "steps": ...}}`` (merged into their rows).

An adapter for a trained model, e.g.::

    def predictor(batch: TaskBatch) -> np.ndarray:      # batch.truth is None here
        x, m = batch.x_context, batch.avail               # (n, C, Tc, H, W), (n, 1, Tc, H, W)
        tod = batch.time_of_day(batch.context_slots())    # (n, Tc); batch.e_pos, batch.profiles
        ...                                                # condition on the user
        return y                                           # (n, C, batch.horizon, H, W)

    rows = evaluate({"umask": predictor}, n_users=300, seed=0,
                    model_info={"umask": {"seeds": [0], "samples": 8, "steps": 50}})
    rows += evaluate_real_sample({"umask": predictor})

Batches hold <= ``batch_size`` windows (default 32: ~0.4 GB peak for the baselines at 300 users).

Baseline rows: all_zero, last_value, historical_average, seasonal_naive, linear_interpolation (B4),
and the PROTOCOL v2 B rows blend (0.5 x last value + 0.5 x historical average) and lightgbm (the
global gradient-boosted model of ``umask.train.baselines.lightgbm_global``, forecasting only);
the real sample: all_zero, last_value, context_mean.

Modules: ``user_tasks`` (populations, windows, `TaskBatch`), ``user_baselines`` (the baseline rows
and the series views of a batch), ``user_scoring`` (metrics, ranking, markdown report) and this one
(evaluation and the CLI); every public name is importable from here.

Run the baselines::

    python -m umask.bench.accuracy.user --users 300 --seed 0 --out benchmarks/results/user_baselines.json
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any
from umask.train.data import user_windows as uw

from umask.bench.accuracy.user_baselines import (
    BASELINE_NOTES,
    Blend,
    HistoricalAverage,
    LightGBMRow,
    SeasonalNaive,
    baseline_models,
    batch_series,
    clip_domain,
    last_observed,
    predict_all_zero,
    predict_context_mean,
    predict_last_value,
    predict_linear_interpolation,
    population_series,
    real_baseline_models,
    series_tensor,
    v2_baseline_models,
)
from umask.bench.accuracy.user_scoring import (
    _Acc,
    _check_prediction,
    app_engagement,
    error_sums,
    location_engagement,
    markdown_table,
    rank_items,
    ranking_scores,
)
from umask.bench.accuracy.user_tasks import (
    APP_KS,
    ChannelLayout,
    DEFAULT_OUT,
    GROUPS,
    LOC_KS,
    Predictor,
    RAW_CLIP,
    REAL_DATASET,
    REAL_TARGET_STARTS,
    REAL_TASK_NAME,
    REPO_ROOT,
    SCALE_NOTE,
    SCORE_DECIMALS,
    SYNTHETIC_DATASET,
    TASKS,
    TASK_NAMES,
    TRAIN_DAYS,
    TaskBatch,
    UserPopulation,
    iter_batches,
    real_population,
    simulated_population,
)

# the harness's public names (importers use umask.bench.accuracy.user; the parts are implementation)
__all__ = [
    "APP_KS", "BASELINE_NOTES", "Blend", "ChannelLayout", "DEFAULT_OUT", "GROUPS", "HistoricalAverage", "LOC_KS",
    "LightGBMRow", "batch_series", "clip_domain", "population_series", "series_tensor",
    "Predictor", "RAW_CLIP", "REAL_DATASET", "REAL_TARGET_STARTS", "REAL_TASK_NAME", "REPO_ROOT",
    "SCALE_NOTE", "SCORE_DECIMALS", "SYNTHETIC_DATASET", "SeasonalNaive", "TASKS", "TASK_NAMES",
    "TRAIN_DAYS", "TaskBatch", "UserPopulation", "app_engagement", "baseline_models", "error_sums",
    "evaluate", "evaluate_population", "evaluate_real_sample", "iter_batches", "last_observed",
    "location_engagement", "main", "markdown_table", "predict_all_zero", "predict_context_mean",
    "predict_last_value", "predict_linear_interpolation", "rank_items", "ranking_scores",
    "real_baseline_models", "real_population", "simulated_population", "v2_baseline_models",
]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------
def _window_text(pop: UserPopulation, task: str, split: str) -> dict[str, Any]:
    if task == "B1-real":
        return {"context": "[0, s): every slot of the day before the target (delivered as [s-192, s), slots < 0 "
                           "unobserved)", "horizon": 4,
                "target_starts": f"s = {REAL_TARGET_STARTS[0]}..{REAL_TARGET_STARTS[-1]} step 4 "
                                 f"(08:00..22:00 local), {len(REAL_TARGET_STARTS)} per user",
                "why_not_protocol": "the real sample has 1 day: PROTOCOL B's 2-day context and day splits are impossible"}
    sp = uw.user_splits(pop.T, pop.slots_per_day)[split]
    base = {"split_slots": f"{sp.t0}..{sp.t1 - 1}", "slot_minutes": pop.cfg.slot_minutes}
    if task == "B1":
        return {**base, "context": uw.CONTEXT_SLOTS, "horizon": uw.SHORT_HORIZON, "stride": 4,
                "target_starts": f"{sp.t0}..{sp.t1 - uw.SHORT_HORIZON} step 4"}
    if task == "B2":
        return {**base, "context": uw.CONTEXT_SLOTS, "horizon": pop.slots_per_day, "target": f"{sp.t0}..{sp.t1 - 1}"}
    if task == "B3":
        return {**base, "context": f"{sp.t0 - uw.CONTEXT_SLOTS}..{sp.t0 - 1} cut to the most recent <= "
                                   f"{uw.MAX_ACTIVE_SLOTS} active slots", "horizon": pop.slots_per_day,
                "ranking_ks": {"app": list(APP_KS), "location": list(LOC_KS)},
                "relevance": "Recall/NDCG@k: the true top-k items by target-day engagement (apps: records, "
                             "locations: active slots); MRR@k: the true top-1 item"}
    return {**base, "length": uw.CONTEXT_SLOTS, "span": f"{sp.t1 - uw.CONTEXT_SLOTS}..{sp.t1 - 1}",
            "p_missing": "Uniform(0.70, 0.80) per window over (t, h, w)",
            "evaluated": "hidden coordinates only (all channels)"}


def _resolve_models(models: Any, pop: UserPopulation, default: Callable[[UserPopulation], Mapping[str, Predictor]]
                    ) -> Mapping[str, Predictor]:
    if models is None:
        return default(pop)
    if callable(models) and not isinstance(models, Mapping):
        return models(pop)
    return models


def evaluate_population(pop: UserPopulation, models: Mapping[str, Predictor], *, split: str = "test",
                        tasks: Sequence[str] = TASKS, batch_size: int = 32,
                        model_info: Mapping[str, Mapping[str, Any]] | None = None,
                        command: str | None = None,
                        windows: Mapping[str, Collection[int]] | None = None) -> list[dict[str, Any]]:
    """Score ``models`` on ``tasks`` of a population; one row per (task, model).

    ``windows``: optional per-task window subset, as in :func:`iter_batches` (every model alike)."""
    rows: list[dict[str, Any]] = []
    for task in tasks:
        t0 = time.perf_counter()
        accs = {name: _Acc(ranking=task == "B3", events=task in ("B1", "B2", "B1-real")) for name in models}
        skipped: set[str] = set()
        mask_seeds: set[int] = set()
        for batch in iter_batches(pop, task, split, batch_size, windows=windows):
            if task == "B4":
                mask_seeds.update((uw.MASK_SEED_BASE + batch.window_index).tolist())
            view = batch.model_view()
            for name, fn in models.items():
                if name in skipped:
                    continue
                t1 = time.perf_counter()
                try:
                    pred = fn(view)
                except NotImplementedError as e:
                    log.info("model %s skipped on %s: %s", name, task, e)
                    skipped.add(name)
                    continue
                accs[name].add(batch, _check_prediction(name, pred, batch))
                accs[name].seconds += time.perf_counter() - t1
        log.info("%s: %.1f s", task, time.perf_counter() - t0)
        seeds: dict[str, Any] = {"model": "n/a"}
        if pop.synthetic:
            seeds["simulator"] = pop.info["simulator"]["seed"]
        seeds["masks"] = (f"{uw.MASK_SEED_BASE} + window index ({', '.join(map(str, sorted(mask_seeds)))})"
                          if task == "B4" else "n/a")
        for name in models:
            if name in skipped or accs[name].n_windows == 0:
                continue
            metrics, entries = accs[name].result()
            row: dict[str, Any] = {
                "dataset": pop.dataset,
                "synthetic": pop.synthetic,
                "protocol": "docs/PROTOCOL.md B",
                "task": REAL_TASK_NAME if task == "B1-real" else TASK_NAMES[task],
                "task_id": "B1" if task == "B1-real" else task,
                "split": split,
                "model": name,
                "window": _window_text(pop, task, split),
                "n_windows": accs[name].n_windows,
                "n_users": len(accs[name].users),
                "n_entries": entries,
                "seeds": dict(seeds),
                "metrics": metrics,
                "scale": SCALE_NOTE,
                "command": command or "library call: umask.bench.accuracy.user.evaluate(...)",
                "predict_seconds": round(accs[name].seconds, 3),
            }
            if pop.synthetic:
                row["simulator"] = {**pop.info["simulator"], "n_users_evaluated": pop.info["n_users_evaluated"],
                                    "left_out_no_training_events": pop.info["left_out_no_training_events"]}
                row["featurize"] = pop.info["featurize"]
            else:
                row["real_sample"] = {k: v for k, v in pop.info.items()}
            if name in BASELINE_NOTES:
                row["notes"] = BASELINE_NOTES[name]
            extra = dict((model_info or {}).get(name, {}))
            if "seeds" in extra:
                row["seeds"] = {**row["seeds"], "model": extra.pop("seeds")}
            row.update(extra)
            rows.append(row)
    return rows


def evaluate(models: Mapping[str, Predictor] | Callable[[UserPopulation], Mapping[str, Predictor]] | None = None,
             *, n_users: int = 300, seed: int = 0, split: str = "test", tasks: Sequence[str] = TASKS,
             batch_size: int = 32, model_info: Mapping[str, Mapping[str, Any]] | None = None,
             command: str | None = None, population: UserPopulation | None = None,
             data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """PROTOCOL B on the SYNTHETIC simulator population (``n_users``, ``seed``); one row per (task, model).

    ``models``: name -> :data:`Predictor`, or a callable population -> such a dict (baselines that
    need the training days, e.g. :func:`baseline_models`), or None for the baselines (incl. the v2 rows).
    ``population``: a prebuilt :func:`simulated_population` (then n_users/seed are not used).
    """
    if split not in ("val", "test"):
        raise ValueError("split must be 'val' or 'test' (the profiles and layouts are fit on the train days)")
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown tasks {bad}; known: {TASKS}")
    pop = population if population is not None else simulated_population(n_users, seed, data_dir=data_dir)
    return evaluate_population(pop, _resolve_models(models, pop, v2_baseline_models), split=split, tasks=tasks,
                               batch_size=batch_size, model_info=model_info, command=command)


def evaluate_real_sample(models: Mapping[str, Predictor] | Callable[[UserPopulation], Mapping[str, Predictor]]
                         | None = None, *, batch_size: int = 32,
                         model_info: Mapping[str, Mapping[str, Any]] | None = None, command: str | None = None,
                         population: UserPopulation | None = None,
                         data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Short-term sanity check on the REAL 6-user one-day sample (see the module docstring)."""
    pop = population if population is not None else real_population(data_dir=data_dir)
    rows = evaluate_population(pop, _resolve_models(models, pop, real_baseline_models), split="day",
                               tasks=("B1-real",), batch_size=batch_size, model_info=model_info, command=command)
    for r in rows:
        r["split"] = f"the sample's only day ({pop.info['day']}), no train/val/test split"
    return rows



def main(argv: Sequence[str] | None = None) -> int:
    """CLI: baselines on the SYNTHETIC simulator (B1-B4) and the REAL one-day sample (short-term)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="simulated users (SYNTHETIC)")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--tasks", default="B1,B2,B3,B4", help="comma-separated subset of B1,B2,B3,B4")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    parser.add_argument("--no-real", action="store_true", help="skip the real one-day sample check")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON rows; the markdown goes next to it (.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = shlex.join(["python", "-m", "umask.bench.accuracy.user", *argv])
    tasks = tuple(t.strip().upper() for t in args.tasks.split(",") if t.strip())
    if not tasks or not set(tasks) <= set(TASKS):
        parser.error(f"--tasks must be a subset of {','.join(TASKS)}, got {args.tasks!r}")

    t0 = time.perf_counter()
    rows = evaluate(n_users=args.users, seed=args.seed, split=args.split, tasks=tasks, batch_size=args.batch_size,
                    command=command, data_dir=args.data_dir)
    if not args.no_real:
        rows += evaluate_real_sample(batch_size=args.batch_size, command=command, data_dir=args.data_dir)
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    table = (f"# Per-user baselines (PROTOCOL B)\n\nSYNTHETIC main benchmark (calibrated simulator) + REAL one-day "
             f"sample sanity check. Wall time {elapsed:.1f} s.\n\n" + markdown_table(rows))
    out.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"\nwrote {out} and {out.with_suffix('.md')} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
