"""U-MASK on the Milan grid (docs/PROTOCOL.md A1 / A2), next to the baselines, in the project harness.

Adapters over a checkpoint of ``python -m umask.train.models.umask.grid`` (train/models/umask/grid.py,
whose frames, geometry, cell features and scaler they use):

- :func:`forecast_fn` -> a milan_eval ``ForecastFn``: the 288-slot history is the evidence in the
  day-aligned 576-slot frame of ``grid.forecast_frame`` (frame position = time of day), the 144
  slots after it are generated (task token ``long_term``);
- :func:`impute_fn` -> a milan_eval ``ImputeFn``: the 288-slot window sits in the same kind of
  frame (``grid.impute_frame``), its observed entries are the available evidence (task token
  ``imputation``); observed entries are returned unchanged, so only hidden entries carry the
  model's values.

Scale: the harness hands every model its own z-scores (per-cell training mean / std, no floor);
the checkpoint was trained on ``grid.grid_scaler``'s (the same with the std floored), so the
adapters move the inputs onto the checkpoint's scale and the completions back (:class:`Rescale`,
:func:`checkpoint_inputs`). A (near-)constant training cell then gets the z-scores it had in
training; on Milan the floor does not bind and nothing changes.

With ``mask_mode="learned"`` (U-MASK) the mask generator picks the evidence among the available
coordinates (deterministic hard top-k with its learned budget and bank statistics, no Gumbel
noise); with ``"none"`` every available coordinate is evidence ("DiT, all evidence").
``all_evidence=True`` evaluates a learned-mask checkpoint with every available coordinate revealed
(the mask generator is bypassed at test time only).

Sampling: DDIM (eta = 0) or DPM-Solver++(2M) with the evidence clamp (train/diffusion.py),
``steps`` network evaluations, ``n_samples`` samples averaged (the point forecast, PROTOCOL).
Default DDIM, 10 steps, 4 samples: chosen on VALIDATION windows (every 12th A1 / 8th A2 window of
days 25-27) with the "DiT, all evidence" checkpoint among DDIM / DPM-Solver++(2M) x {10, 20}
steps x {2, 4} samples (A1 / A2 normalized MAE 0.444 / 0.333 for DDIM 10 x 4; DPM++ 10 x 4 0.448 /
0.337; DDIM 20 x 4 0.445 / 0.339; 2 samples ~0.46 / 0.34). Each
window's start noise comes from its own generator, ``torch.Generator().manual_seed(seed * 1_000_003
+ start * 16 + k)`` for sample k, so a window's result does not depend on the batching.

Any grid: the adapters take their sizes from the checkpoint (frame T, grid H x W, day period of
the mask generator) and the :class:`~umask.train.data.grids.GridData` being scored (A1 2 days ->
1 day, A2 2-day windows, its own 8:1:1 periods); a checkpoint trained on another grid shape or
slot length is refused with an ``InputError`` naming both. ``--data my.csv --grid 3x4
--slot-minutes 60`` scores such a grid (the Milan defaults reproduce the committed rows).

Run (after training both variants)::

    python -m umask.bench.accuracy.grid_umask --umask artifacts/train/milan_umask \\
        --dit-all artifacts/train/milan_dit_all --out benchmarks/results/milan_umask.json

Writes JSON rows (milan_eval's row format) and a markdown table with the U-MASK rows next to the
baselines of :func:`milan_eval.baseline_forecasters` / :func:`milan_eval.baseline_imputers`
recomputed on exactly the same windows (``@subset`` names when a stride > 1 is used), plus the
ARIMA / PatchTST / CSDI rows read from their result files for reference.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from umask.bench.accuracy import grid as milan_eval
from umask.runtime.core.errors import InputError
from umask.train.data import splits
from umask.train.data.grids import GridData, milan_grid, open_grid
from umask.train.diffusion import make_sampler, model_denoise_fn
from umask.train.models.umask.grid import (
    IMPUTE,
    LONG,
    MILAN,
    STD_FLOOR_ABS,
    GridGeometry,
    MilanUMask,
    best_checkpoint,
    forecast_frame,
    frame_calendar,
    grid_scaler,
    impute_frame,
    load_grid,
    load_model,
    prior_of,
)
from umask.train.models.umask.grid_prior import GridPrior

log = logging.getLogger(__name__)

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
DEFAULT_OUT = "benchmarks/results/milan_umask.json"
REFERENCE_FILES = ("milan_arima.json", "milan_patchtst.json", "milan_csdi.json")


# ------------------------------------------------------------------------------------------------
# The checkpoint's frame, cell features and scale on the grid being scored
# ------------------------------------------------------------------------------------------------
def geometry(model: MilanUMask | None, grid: GridData | None = None) -> GridGeometry:
    """The frame geometry of ``model`` on ``grid`` (None: the model's own grid; no model: Milan);
    refuses a checkpoint trained on another grid shape, slot length or frame length."""
    if model is None:
        return MILAN
    dit = model.cfg.dit_config()
    period = int(model.cfg.maskgen_config().period)
    frame = int(model.cfg.window.T)
    if grid is not None and (int(dit.H), int(dit.W)) != (grid.height, grid.width):
        raise InputError(f"the checkpoint was trained on a {dit.H}x{dit.W} grid; {grid.source} is "
                         f"{grid.height}x{grid.width} (--grid)")
    if grid is not None and period != grid.slots_per_day:
        raise InputError(f"the checkpoint's day has {period} slots; {grid.source} has {grid.slots_per_day} "
                         f"({grid.slot_minutes}-minute slots, --slot-minutes)")
    geom = GridGeometry(int(dit.H), int(dit.W), period)
    if frame != geom.frame:
        raise InputError(f"the checkpoint's frame has {frame} slots; a grid of {period} slots a day needs the "
                         f"day-aligned {geom.frame}-slot frame of umask.train.models.umask.grid")
    return geom


@dataclass(frozen=True)
class Rescale:
    """The harness's z-scores (``GridSpec.scaler``: ``splits.fit_scaler``, no floor) <-> the
    checkpoint's (``grid.grid_scaler``: the same with a floored std, what training used).

    They differ only for a (near-)constant training cell, which the floor keeps at moderate z-scores
    in training; without this the model would see that cell's huge harness z-scores. Identity when
    the two scalers are equal (Milan: the floor does not bind), so those results are unchanged to the bit."""

    harness: splits.Scaler
    model: splits.Scaler

    @property
    def identity(self) -> bool:
        return bool(np.array_equal(self.harness.mean, self.model.mean)
                    and np.array_equal(self.harness.std, self.model.std))

    def to_model(self, z: np.ndarray) -> np.ndarray:
        """(..., cells) harness z-scores -> the checkpoint's z-scores (NaN stays NaN)."""
        return z if self.identity else self.model.transform(self.harness.inverse_transform(z))

    def to_harness(self, z: np.ndarray) -> np.ndarray:
        """(..., cells) the checkpoint's z-scores -> harness z-scores."""
        return z if self.identity else self.harness.transform(self.model.inverse_transform(z))


SAVED_SCALER_ATOL: float = 1e-6   # config.json keeps the training scaler rounded to 6 decimals


def checkpoint_scaler(config: Mapping[str, Any] | None, grid: GridData, fresh: splits.Scaler | None = None
                      ) -> splits.Scaler:
    """The scaler the checkpoint standardized its training data with, for scoring ``grid``.

    ``grid_scaler`` of ``grid``'s training period (``fresh`` when given) when the checkpoint's
    config.json saved none (in-memory training) or saved this one (it keeps 6 decimals: the
    recomputed full-precision one is used); otherwise (a checkpoint trained on other data) the
    saved one, with a warning."""
    if fresh is None:
        fresh = grid_scaler(grid.values, grid.splits()["train"][1])
    saved = (config or {}).get("data", {}).get("scaler")
    if saved is None:
        return fresh
    mean, std = np.asarray(saved["mean"], np.float64), np.asarray(saved["std"], np.float64)
    if mean.shape != fresh.mean.shape or std.shape != fresh.std.shape:
        raise InputError(f"the checkpoint's saved scaler has {mean.size} cells; {grid.source} has {grid.n_cells}")
    if (np.allclose(mean, fresh.mean, rtol=0.0, atol=SAVED_SCALER_ATOL)
            and np.allclose(std, fresh.std, rtol=0.0, atol=SAVED_SCALER_ATOL)):
        return fresh
    log.warning("the checkpoint was trained with another scaler than %s's training period gives (trained on %s): "
                "standardizing its inputs with the saved one", grid.source,
                (config or {}).get("data", {}).get("source", "other data"))
    return splits.Scaler(mean=mean, std=np.maximum(std, STD_FLOOR_ABS))


def checkpoint_inputs(config: Mapping[str, Any] | None, grid: GridData | None = None) -> tuple[np.ndarray, Rescale]:
    """(E_pos (H, W, 4), :class:`Rescale`) of a checkpoint on ``grid`` (None: Milan): the E_pos
    stored in its config.json (else ``grid.load_grid``'s, as training computed it) and the bridge
    from the harness's scale to :func:`checkpoint_scaler`."""
    grid = milan_grid() if grid is None else grid
    _, e_pos, fresh = load_grid(grid)
    if config is not None and "e_pos" in config.get("data", {}):
        e_pos = np.asarray(config["data"]["e_pos"], np.float32)
    return e_pos, Rescale(harness=milan_eval.GridSpec(grid).scaler, model=checkpoint_scaler(config, grid, fresh))


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------
def window_noise(shape: tuple[int, ...], seed: int, start: int, k: int) -> torch.Tensor:
    """Start noise of sample ``k`` of the window starting at ``start`` (independent of batching)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(start) * 16 + int(k))
    return torch.randn(shape, generator=g, dtype=torch.float32)


POINTS = ("mean", "median", "first_x0")
POINT_TEXT = {
    "mean": "mean of the samples (the RMSE-optimal point of the sampled distribution)",
    "median": "per-entry median of the samples (the MAE-optimal point of the sampled distribution)",
    "first_x0": "the DiT's x0 prediction at the sampler's first step (t = N-1, from pure noise), averaged over "
                "the noise draws: the network's own conditional-mean estimate (RMSE-optimal if trained to convergence)",
}


@torch.no_grad()
def complete(model: MilanUMask, frames: Mapping[str, np.ndarray], task: int, starts: np.ndarray, *,
             sampler: str = "ddim", steps: int = 10, n_samples: int = 4, seed: int = 0, batch_size: int = 32,
             all_evidence: bool = False, stats: dict[str, Any] | None = None,
             point: str = "mean") -> np.ndarray:
    """Point completion of ``n_samples`` clamped draws of (n, 1, T, H, W) frames -> (n, 1, T, H, W) float64.

    As :meth:`UMask.complete` (h_u, deterministic evidence mask, clamped sampler, exact evidence),
    with per-window start noise (:func:`window_noise`). ``point`` (:data:`POINT_TEXT`): "mean" or
    "median" of the samples, or "first_x0" (one network call per draw; ``steps`` ignored). A
    grid-prior model reads ``frames["prior"]`` (n, 1, T, H, W) and ``frames["calendar"]`` (n, 8).
    ``stats`` (a dict) receives the evidence fraction of the available coordinates per window under
    ``"evidence_ratio"``.
    """
    if point not in POINTS:
        raise InputError(f"point must be one of {POINTS}, got {point!r}")
    use_prior = model.cfg.prior != "none"
    if use_prior and ("prior" not in frames or "calendar" not in frames):
        raise InputError("a grid-prior checkpoint needs frames['prior'] and frames['calendar'] (grid_prior.GridPrior)")
    model.eval()
    if all_evidence and model.cfg.mask_mode != "none":
        model = _all_evidence_view(model)
    smp = make_sampler("ddim" if point == "first_x0" else sampler, model.schedule)  # 1 DDIM step -> x0_hat(N-1)
    n = len(starts)
    out = np.empty(np.shape(frames["x0"]), np.float64)                                   # (n, 1, T, H, W)
    ratios = []
    e_pos = torch.from_numpy(np.asarray(frames["e_pos"], np.float32))
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        B = hi - lo
        batch = {k: torch.from_numpy(np.ascontiguousarray(frames[k][lo:hi], np.float32))
                 for k in ("x0", "avail", "target")}
        batch["x0"] = batch["x0"] * batch["avail"]  # nothing outside the evidence is ever read
        batch["task"] = torch.full((B,), int(task), dtype=torch.long)
        batch["e_pos"] = e_pos.expand(B, *e_pos.shape).contiguous()
        batch["user"] = torch.zeros(B, dtype=torch.long)
        if use_prior:
            batch["prior"] = torch.from_numpy(np.ascontiguousarray(frames["prior"][lo:hi], np.float32)).reshape(
                batch["x0"].shape)
            batch["calendar"] = torch.from_numpy(np.ascontiguousarray(frames["calendar"][lo:hi], np.float32))
        h_u = model.user_repr(batch)
        _, hard, _ = model.evidence(batch, h_u, None, deterministic=True)
        x_obs = model._scale(batch["x0"]) * hard
        prior = model.prior_input(batch)
        dit = model.dit if prior is None else (lambda *a, _p=prior: model.dit(*a, _p))
        fn = model_denoise_fn(dit, x_obs, hard, h_u, batch["task"])
        draws = []
        for k in range(n_samples):
            noise = torch.stack([window_noise(tuple(x_obs.shape[1:]), seed, int(s), k) for s in starts[lo:hi]])
            draws.append(smp.sample(fn, x_obs, hard, 1 if point == "first_x0" else steps, noise=noise))
        stack = torch.stack(draws)                                                      # (S, B, 1, T, H, W)
        est = torch.quantile(stack, 0.5, dim=0) if point == "median" else stack.mean(0)
        mean = est / model.x_scale.reshape(1, -1, 1, 1, 1)
        mean = torch.where(hard.expand_as(mean) > 0.5, batch["x0"], mean)
        out[lo:hi] = mean.double().numpy()
        av = batch["avail"].flatten(1).sum(1).clamp_min(1.0)
        ratios.append((hard.flatten(1).sum(1) / av).numpy())
    if stats is not None:
        stats["evidence_ratio"] = np.concatenate(ratios) if ratios else np.zeros(0)
    return out


def _all_evidence_view(model: MilanUMask) -> MilanUMask:
    """The same weights with mask_mode "none" (every available coordinate is evidence)."""
    view = MilanUMask(replace(model.cfg, mask_mode="none"))
    view.load_state_dict(model.state_dict())
    return view.eval()


def _e_pos(config: Mapping[str, Any] | None, grid: GridData | None = None) -> np.ndarray:
    """E_pos of the checkpoint's config when stored there, else computed from ``grid`` (None: Milan)."""
    return checkpoint_inputs(config, grid)[0]


def forecast_fn(model: MilanUMask | None, e_pos: np.ndarray, *, sampler: str = "ddim", steps: int = 10,
                n_samples: int = 4, seed: int = 0, batch_size: int = 32, all_evidence: bool = False,
                stats: dict[str, Any] | None = None, geo: GridGeometry | None = None,
                rescale: Rescale | None = None, prior: GridPrior | None = None,
                point: str = "mean") -> milan_eval.ForecastFn:
    """A1 ``ForecastFn``: (n, history, cells) harness-standardized history -> (n, horizon, cells) (Milan 288 -> 144).

    ``geo``: the frame and windows (default: :func:`geometry` of the model on its own grid).
    ``rescale``: harness z-scores -> the checkpoint's and back (:func:`checkpoint_inputs`); None =
    the two are the same (Milan). ``prior``: the grid prior of a grid-prior checkpoint
    (:func:`checkpoint_prior`), on the checkpoint's scale. ``point``: :data:`POINTS`."""
    geo = geometry(model) if geo is None else geo

    def fn(history: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
        if horizon != geo.horizon or history.shape[1] != geo.history:
            raise ValueError(f"the U-MASK frame is {geo.history} + {geo.horizon} slots, got {history.shape[1]} + {horizon}")
        if rescale is not None:
            history = rescale.to_model(history)
        fr = {**forecast_frame(history, starts, geom=geo), "e_pos": e_pos}
        if prior is not None:
            fr["prior"] = prior.forecast_frame(history, starts, fr["offset"], geo.frame, geo.horizon)
            fr["calendar"] = frame_calendar(prior, fr, starts, LONG, geo)
        full = complete(model, fr, LONG, np.asarray(starts), sampler=sampler, steps=steps, n_samples=n_samples,
                        seed=seed, batch_size=batch_size, all_evidence=all_evidence, stats=stats, point=point)
        idx = (fr["offset"] + geo.history)[:, None] + np.arange(geo.horizon)[None, :]  # (n, horizon) frame positions
        pred = np.take_along_axis(full[:, 0], idx[:, :, None, None], axis=1).reshape(len(history), geo.horizon, -1)
        return pred if rescale is None else rescale.to_harness(pred)

    return fn


def impute_fn(model: MilanUMask | None, e_pos: np.ndarray, *, sampler: str = "ddim", steps: int = 10,
              n_samples: int = 4, seed: int = 0, batch_size: int = 32, all_evidence: bool = False,
              stats: dict[str, Any] | None = None, geo: GridGeometry | None = None,
              rescale: Rescale | None = None, prior: GridPrior | None = None,
              point: str = "mean") -> milan_eval.ImputeFn:
    """A2 ``ImputeFn``: observed (n, L, cells) harness z-scores with NaN at hidden, mask True =
    hidden -> completed (n, L, cells); observed entries are returned exactly. ``geo`` / ``rescale``
    / ``prior`` / ``point`` as :func:`forecast_fn`."""
    geo = geometry(model) if geo is None else geo

    def fn(observed: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
        observed = np.asarray(observed, np.float64)
        mask = np.asarray(mask, bool)
        n, L, cells = observed.shape
        if L > geo.window:
            raise ValueError(f"imputation windows longer than {geo.window} slots are not supported")
        # the model never reads hidden entries: they are 0 in x0 and avail = ~mask
        evidence = np.where(mask, 0.0, observed if rescale is None else rescale.to_model(observed))
        fr = {**impute_frame(evidence, mask, starts, geom=geo), "e_pos": e_pos}
        if prior is not None:
            fr["prior"] = prior.impute_frame(evidence, mask, starts, fr["offset"], geo.frame)
            fr["calendar"] = frame_calendar(prior, fr, starts, IMPUTE, geo)
        full = complete(model, fr, IMPUTE, np.asarray(starts), sampler=sampler, steps=steps, n_samples=n_samples,
                        seed=seed, batch_size=batch_size, all_evidence=all_evidence, stats=stats, point=point)
        idx = fr["offset"][:, None] + np.arange(L)[None, :]
        pred = np.take_along_axis(full[:, 0], idx[:, :, None, None], axis=1).reshape(n, L, cells)
        return np.where(mask, pred if rescale is None else rescale.to_harness(pred), observed)

    return fn


def checkpoint_prior(model: MilanUMask, config: Mapping[str, Any] | None, grid: GridData,
                     rescale: Rescale) -> GridPrior | None:
    """The :class:`GridPrior` of a grid-prior checkpoint on ``grid``: fit on ``grid``'s training
    period on the checkpoint's scale (as training did); None for a checkpoint without the prior."""
    if model is None or model.cfg.prior == "none":
        return None
    geo = geometry(model, grid)
    return prior_of((config or {}).get("train", {"prior": "grid"}), rescale.model.transform(grid.values),
                    grid.splits()["train"][1], geo.slots_per_day, grid.source)


def prior_forecast_fn(prior: GridPrior, rescale: Rescale | None = None) -> milan_eval.ForecastFn:
    """The A1 prior alone as a ``ForecastFn`` (what an untrained grid-prior model returns)."""
    def fn(history: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
        h = history if rescale is None else rescale.to_model(history)
        out = prior.forecast(h, starts, horizon)
        return out if rescale is None else rescale.to_harness(out)
    return fn


def prior_impute_fn(prior: GridPrior, rescale: Rescale | None = None) -> milan_eval.ImputeFn:
    """The A2 prior alone as an ``ImputeFn`` (observed entries returned exactly)."""
    def fn(observed: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
        o = np.where(mask, 0.0, observed if rescale is None else rescale.to_model(observed))
        out = prior.impute(o, mask, starts)
        return np.where(mask, out if rescale is None else rescale.to_harness(out), observed)
    return fn


# ------------------------------------------------------------------------------------------------
# Scoring on (a stride subset of) the protocol windows
# ------------------------------------------------------------------------------------------------
def score_rows(matrix: np.ndarray | GridData, task: str, models: Mapping[str, Any], *, stride: int = 1,
               split: str = "test", model_info: Mapping[str, Mapping[str, Any]] | None = None,
               command: str) -> list[dict[str, Any]]:
    """milan_eval rows on every ``stride``-th protocol window (``milan_eval.evaluate`` with its
    ``stride``). ``matrix``: Milan's raw matrix or any :class:`GridData` (its own periods and window lengths)."""
    return milan_eval.evaluate(task, matrix, models, split=split, model_info=model_info, command=command,
                               stride=stride)


def reference_rows(results_dir: Path, split: str) -> list[dict[str, Any]]:
    """ARIMA / PatchTST / CSDI model rows from their result files (not recomputed here)."""
    rows = []
    for name in REFERENCE_FILES:
        path = results_dir / name
        if not path.exists():
            continue
        for r in json.loads(path.read_text()):
            if r.get("split") == split and "@subset" not in r["model"] and r["model"] not in milan_eval.BASELINE_NOTES:
                rows.append({**r, "model": f"{r['model']} (from {name})"})
    return rows


def _table_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = milan_eval.markdown_table(rows).splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| task"))
    return lines[start:]


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def _fit_info(ckpt: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    state = json.loads((ckpt / "state.json").read_text())
    run = ckpt.parent.parent
    n_steps, train_s = state["step"], state.get("train_seconds")
    last = None
    mpath = run / "metrics.jsonl"
    if mpath.exists():
        recs = [json.loads(ln) for ln in mpath.read_text().splitlines() if ln.strip()]
        tr = [r for r in recs if "loss" in r]
        if tr:
            last = tr[-1]
    return {"checkpoint": str(ckpt), "weights": "EMA", "best_step": int(state["step"]),
            "best_val_loss": state.get("best", {}).get("val"),
            "train_steps_run": last["step"] if last else n_steps,
            "train_seconds": last.get("train_seconds") if last else train_s,
            "batch_size": config["train"]["batch_size"], "lr": config["train"]["lr"],
            "model": config["model"], "threads": config["train"].get("num_threads", 1)}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.grid_umask", description=__doc__.splitlines()[0])
    p.add_argument("--umask", default="artifacts/train/milan_umask", help="U-MASK run dir or checkpoint ('' = skip)")
    p.add_argument("--dit-all", default="artifacts/train/milan_dit_all",
                   help="'DiT, all evidence' run dir or checkpoint ('' = skip)")
    p.add_argument("--umask-all-evidence", action="store_true",
                   help="also evaluate the U-MASK weights with all evidence revealed at test time")
    p.add_argument("--data", default=str(milan_eval.DEFAULT_DATA), help="slots x cells CSV (default: Milan 5x5)")
    p.add_argument("--grid", default=None, help="HxW of the cells (needed when the cell count is not a square)")
    p.add_argument("--slot-minutes", type=int, default=10, help="minutes per row (divides 1440)")
    p.add_argument("--adjacency", default=None, help="cells x cells 0/1 matrix or a,b edge-list CSV")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--tasks", default="a1,a2")
    p.add_argument("--sampler", default="ddim", choices=("ddim", "dpmpp_2m"))
    p.add_argument("--steps", type=int, default=10, help="sampler steps (network evaluations)")
    p.add_argument("--samples", type=int, default=4, help="samples (draws) per window")
    p.add_argument("--point", default="auto", choices=("auto", *POINTS),
                   help="point estimate of the draws: mean / median of the samples, or first_x0 (the x0 prediction at "
                        "t = N-1); auto = first_x0 for a grid-prior checkpoint, mean otherwise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--a1-stride", type=int, default=1)
    p.add_argument("--a2-stride", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-reference", action="store_true", help="no ARIMA / PatchTST / CSDI reference rows")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "-m", "umask.bench.accuracy.grid_umask", *argv])
    tasks = [t.strip().lower() for t in args.tasks.split(",") if t.strip()]
    if not tasks or not set(tasks) <= {"a1", "a2"}:
        p.error(f"--tasks must be a subset of a1,a2, got {args.tasks!r}")

    grid = open_grid(args.data, grid=args.grid, slot_minutes=args.slot_minutes, adjacency=args.adjacency)
    periods = grid.splits()
    spec = milan_eval.GridSpec(grid)
    variants: list[tuple[str, Path, bool, str]] = []
    if args.umask:
        variants.append(("umask", best_checkpoint(args.umask), False,
                         "U-MASK: learned evidence mask (deterministic hard top-k, learned budget) + DiT"))
        if args.umask_all_evidence:
            variants.append(("umask_all_evidence_at_test", best_checkpoint(args.umask), True,
                             "U-MASK weights, mask generator bypassed at test time: every available coordinate is evidence"))
    if args.dit_all:
        variants.append(("dit_all_evidence", best_checkpoint(args.dit_all), False,
                         "DiT trained and evaluated with every available coordinate as evidence (mask_mode none)"))
    sampler_text = (f"{'DDIM (eta 0)' if args.sampler == 'ddim' else 'DPM-Solver++(2M)'}, {args.steps} steps, "
                    f"evidence clamp; {args.samples} draws per window (point forecast: see point_forecast)")
    loaded = {}
    inputs: dict[str, tuple[np.ndarray, Rescale]] = {}   # E_pos and scale bridge of each variant
    for name, ckpt, all_ev, note in variants:
        model, config = load_model(ckpt)
        if name == "umask" and (model.cfg.mask_mode != "learned" or model.cfg.prior != "none"):
            note = (f"U-MASK grid model: evidence mask_mode {model.cfg.mask_mode!r}"
                    + (" (every available coordinate)" if model.cfg.mask_mode == "none" else "")
                    + ("; DiT = grid prior + zero-init residual, day-type calendar (grid_prior.py)"
                       if model.cfg.prior != "none" else ""))
        loaded[name] = (model, config, ckpt, all_ev, note)
        inputs[name] = checkpoint_inputs(config, grid)
        log.info("%s: %s (%s, %.3f M params)", name, ckpt, model.cfg.mask_mode, model.num_params() / 1e6)

    rows: list[dict[str, Any]] = []
    for task in tasks:
        stride = args.a1_stride if task == "a1" else args.a2_stride
        models: dict[str, Any] = {}
        info: dict[str, dict[str, Any]] = {}
        stats: dict[str, dict[str, Any]] = {}
        for name, (model, config, ckpt, all_ev, note) in loaded.items():
            stats[name] = {}
            mk = forecast_fn if task == "a1" else impute_fn
            e_pos, rescale = inputs[name]
            prior = checkpoint_prior(model, config, grid, rescale)
            point = args.point if args.point != "auto" else ("first_x0" if prior is not None else "mean")
            models[name] = mk(model, e_pos, sampler=args.sampler, steps=args.steps,
                              n_samples=args.samples, seed=args.seed, batch_size=args.batch_size, all_evidence=all_ev,
                              stats=stats[name], geo=geometry(model, grid), rescale=rescale, prior=prior, point=point)
            info[name] = {"seeds": {"train": config["train"]["seed"], "sampler": args.seed},
                          "samples": args.samples, "sampler": sampler_text, "notes": note,
                          "point_forecast": POINT_TEXT[point], "fit": _fit_info(ckpt, config)}
            if prior is not None:
                info[name]["prior"] = prior.describe()
        base, base_info = milan_eval.baseline_models(task, spec, suffix="@subset" if stride > 1 else "",
                                                     note="; same windows" if stride > 1 else "")
        models.update(base)
        info.update(base_info)
        t0 = time.perf_counter()
        timed: dict[str, float] = {}

        def _timed(name: str, fn: Any, timed: dict[str, float] = timed) -> Any:
            def wrapped(*a: Any) -> Any:
                t = time.perf_counter()
                r = fn(*a)
                timed[name] = time.perf_counter() - t
                return r
            return wrapped

        models = {k: _timed(k, f) for k, f in models.items()}
        task_rows = score_rows(grid, task, models, stride=stride, split=args.split, model_info=info,
                               command=command)
        for r in task_rows:
            r["eval_seconds"] = round(timed.get(r["model"], 0.0), 1)
            st = stats.get(r["model"], {}).get("evidence_ratio")
            if st is not None and len(st):
                r["evidence_ratio_of_available"] = {"mean": round(float(np.mean(st)), 4),
                                                    "min": round(float(np.min(st)), 4),
                                                    "max": round(float(np.max(st)), 4)}
            r["data"] = ("data/milan_telecom/" + Path(args.data).name) if grid.source == "milan" else grid.source
        log.info("%s done in %.0f s", task.upper(), time.perf_counter() - t0)
        rows += task_rows

    out = Path(args.out)
    md = [milan_eval.markdown_table(rows).rstrip("\n"), ""]
    md.append(f"U-MASK sampling: {sampler_text}; sampler seed {args.seed} (per-window start noise), "
              "training seed 0; weights = EMA at the best validation loss.")
    if grid.source != "milan":
        geo = geometry(next(iter(loaded.values()))[0], grid) if loaded else None
        md.append(f"Setup: {grid.describe()}; periods {periods}; one channel (per-cell z-score with the training "
                  f"scaler; U-MASK's inputs on the floored scaler it was trained with)" + (f"; day-aligned {geo.frame}-slot frame holding the {geo.history} + {geo.horizon} A1 "
                                f"window or the {geo.window}-slot A2 window" if geo else "") + ".")
    else:
        md.append("Setup (train/models/umask/grid.py): one channel (internet, per-cell z-score with the training scaler), "
                  "5x5 grid = H x W, a day-aligned 576-slot frame (frame position = time of day) holding the 288 + 144 "
                  "A1 window or the 288-slot A2 window, DiT patch (4, 5, 5) = 144 tokens, d 96, depth 4; no user "
                  "profile (h_u = the learned 'no profile' embedding, no InfoNCE, e_u = 0); E_pos = row, col, "
                  "adjacency degree, training mean level per cell; task tokens long_term (A1) and imputation (A2); "
                  "one model per variant trained on both tasks from training windows only (slots 0..3455; A2 hiding "
                  "masks from a training RNG, not the protocol seeds), best step by the validation loss (days 25-27). "
                  "U-MASK evidence budget: base ratio 0.5 of the history (A1) and 0.75 of the observed entries (A2), "
                  "learned per window around it.")
    for name, (model, config, ckpt, all_ev, note) in loaded.items():
        fi = _fit_info(ckpt, config)
        ev = [r.get("evidence_ratio_of_available", {}).get("mean") for r in rows if r["model"] == name]
        md.append(f"- `{name}`: {note}. Checkpoint `{ckpt}` (step {fi['best_step']} of {fi['train_steps_run']} "
                  f"run, {fi['train_seconds']} s training on {fi['threads']} thread(s), batch {fi['batch_size']}); "
                  f"{model.num_params() / 1e6:.3f} M parameters; mean evidence fraction of the available "
                  f"coordinates (A1, A2 order of the rows): {ev}.")
    if not args.no_reference:
        ref = reference_rows(out.parent, args.split)
        if ref:
            md += ["", ("Reference rows read from the other result files (not recomputed here; ARIMA and PatchTST "
                        "use all protocol windows, CSDI a stride subset, see its file):"), ""]
            md += _table_lines(ref)
    milan_eval.write_rows(rows, out, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
