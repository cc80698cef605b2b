"""U-MASK on the Milan grid (docs/PROTOCOL.md A1 / A2), next to the baselines, in the project harness.

Adapters over a checkpoint of ``python -m umask.train.models.umask.grid`` (train/milan_umask.py):

- :func:`forecast_fn` -> a milan_eval ``ForecastFn``: the 288-slot history is the evidence in the
  day-aligned 576-slot frame of train/milan_umask.py (frame position = time of day), the 144
  slots after it are generated (task token ``long_term``);
- :func:`impute_fn` -> a milan_eval ``ImputeFn``: the 288-slot window sits in the same kind of
  frame, its observed entries are the available evidence (task token ``imputation``); observed
  entries are returned unchanged, so only hidden entries carry the model's values.

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
from umask.train.data.grids import GridData, open_grid
from umask.train.diffusion import make_sampler, model_denoise_fn
from umask.train.models.umask.grid import (
    FRAME,
    GRID,
    HISTORY,
    HORIZON,
    IMPUTE,
    LONG,
    PERIOD,
    MilanUMask,
    best_checkpoint,
    load_model,
)

log = logging.getLogger(__name__)

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
DEFAULT_OUT = "benchmarks/results/milan_umask.json"
REFERENCE_FILES = ("milan_arima.json", "milan_patchtst.json", "milan_csdi.json")


# ------------------------------------------------------------------------------------------------
# Frame geometry (Milan: T 576, 5 x 5, period 144, 288 -> 144, A2 288)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Sizes of the day-aligned frame a grid checkpoint works in and of the protocol windows."""

    frame: int = FRAME
    height: int = GRID[0]
    width: int = GRID[1]
    period: int = PERIOD
    history: int = HISTORY
    horizon: int = HORIZON
    window: int = splits.A2_WINDOW

    def __post_init__(self) -> None:
        need = self.period - 1 + max(self.history + self.horizon, self.window)
        if self.frame < need:
            raise InputError(f"the checkpoint's frame has {self.frame} slots; windows of {self.history} + "
                             f"{self.horizon} slots at any time of day (period {self.period}) need {need}")


def geometry(model: MilanUMask, grid: GridData | None = None) -> Geometry:
    """The frame of ``model`` and the windows of ``grid`` (None: Milan); refuses a mismatch."""
    dit = model.cfg.dit_config()
    period = int(model.cfg.maskgen_config().period)
    frame = int(model.cfg.window.T)
    if grid is None:
        return Geometry(frame=frame, height=int(dit.H), width=int(dit.W), period=period)
    if (int(dit.H), int(dit.W)) != (grid.height, grid.width):
        raise InputError(f"the checkpoint was trained on a {dit.H}x{dit.W} grid; {grid.source} is "
                         f"{grid.height}x{grid.width} (--grid)")
    if period != grid.slots_per_day:
        raise InputError(f"the checkpoint's day has {period} slots; {grid.source} has {grid.slots_per_day} "
                         f"({grid.slot_minutes}-minute slots, --slot-minutes)")
    history, horizon = grid.a1_lengths()
    return Geometry(frame=frame, height=grid.height, width=grid.width, period=period, history=history,
                    horizon=horizon, window=grid.a2_length())


def forecast_frame(history: np.ndarray, starts: np.ndarray, geo: Geometry = Geometry()) -> dict[str, np.ndarray]:
    """A1 frames (n, 1, T, H, W) from (n, L, cells) standardized histories and horizon starts (n,),
    written at offset = (first history slot) mod period; ``offset`` (n,) is returned with them."""
    history = np.asarray(history, np.float32)
    n, L = history.shape[:2]
    off = (np.asarray(starts, np.int64).reshape(-1) - L) % geo.period
    if off.shape != (n,):
        raise ValueError(f"{n} histories but {off.shape[0]} starts")
    x0 = np.zeros((n, 1, geo.frame, geo.height, geo.width), np.float32)
    avail = np.zeros_like(x0)
    target = np.zeros_like(x0)
    for i, o in enumerate(off):
        x0[i, 0, o:o + L] = history[i].reshape(L, geo.height, geo.width)
        avail[i, 0, o:o + L] = 1.0
        target[i, 0, o + L:o + L + geo.horizon] = 1.0
    return {"x0": x0, "avail": avail, "target": target, "offset": off}


def impute_frame(values: np.ndarray, hidden: np.ndarray, starts: np.ndarray,
                 geo: Geometry = Geometry()) -> dict[str, np.ndarray]:
    """A2 frames: the window at [offset, offset + L), offset = first slot mod period; available =
    not hidden, target = hidden (NaN values allowed, read as 0)."""
    values = np.asarray(values, np.float64)
    hidden = np.asarray(hidden, bool)
    n, L, _ = values.shape
    off = np.asarray(starts, np.int64).reshape(-1) % geo.period
    if off.shape != (n,):
        raise ValueError(f"{n} windows but {off.shape[0]} starts")
    vals = np.nan_to_num(values, nan=0.0).reshape(n, L, geo.height, geo.width)
    hid = hidden.reshape(n, L, geo.height, geo.width)
    x0 = np.zeros((n, 1, geo.frame, geo.height, geo.width), np.float32)
    avail = np.zeros_like(x0)
    target = np.zeros_like(x0)
    for i, o in enumerate(off):
        x0[i, 0, o:o + L] = vals[i]
        avail[i, 0, o:o + L] = ~hid[i]
        target[i, 0, o:o + L] = hid[i]
    return {"x0": x0, "avail": avail, "target": target, "offset": off}


def cell_features(grid: GridData) -> np.ndarray:
    """E_pos (H, W, 4) of any grid, the formula of ``train/models/umask/grid.cell_features``: row,
    col scaled to [0, 1], weighted degree / max degree, standardized log1p of the training mean."""
    H, W = grid.height, grid.width
    rows, cols = np.divmod(np.arange(H * W), W)
    deg = grid.adj.sum(1)
    deg = deg / max(float(deg.max()), 1e-12)
    level = np.log1p(grid.values[: grid.splits()["train"][1]].mean(0))
    level = (level - level.mean()) / max(float(level.std()), 1e-12)
    feats = np.stack([rows / max(H - 1, 1), cols / max(W - 1, 1), deg, level], axis=1)
    return feats.reshape(H, W, 4).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------
def window_noise(shape: tuple[int, ...], seed: int, start: int, k: int) -> torch.Tensor:
    """Start noise of sample ``k`` of the window starting at ``start`` (independent of batching)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(start) * 16 + int(k))
    return torch.randn(shape, generator=g, dtype=torch.float32)


@torch.no_grad()
def complete(model: MilanUMask, frames: Mapping[str, np.ndarray], task: int, starts: np.ndarray, *,
             sampler: str = "ddim", steps: int = 10, n_samples: int = 4, seed: int = 0, batch_size: int = 32,
             all_evidence: bool = False, stats: dict[str, Any] | None = None) -> np.ndarray:
    """Mean of ``n_samples`` clamped completions of (n, 1, 576, 5, 5) frames -> (n, 1, 576, 5, 5) float64.

    As :meth:`UMask.complete` (h_u, deterministic evidence mask, clamped sampler, mean, exact
    evidence), with per-window start noise (:func:`window_noise`). ``stats`` (a dict) receives the
    evidence fraction of the available coordinates per window under ``"evidence_ratio"``.
    """
    model.eval()
    if all_evidence and model.cfg.mask_mode != "none":
        model = _all_evidence_view(model)
    smp = make_sampler(sampler, model.schedule)
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
        h_u = model.user_repr(batch)
        _, hard, _ = model.evidence(batch, h_u, None, deterministic=True)
        x_obs = model._scale(batch["x0"]) * hard
        fn = model_denoise_fn(model.dit, x_obs, hard, h_u, batch["task"])
        acc = torch.zeros_like(x_obs)
        for k in range(n_samples):
            noise = torch.stack([window_noise(tuple(x_obs.shape[1:]), seed, int(s), k) for s in starts[lo:hi]])
            acc += smp.sample(fn, x_obs, hard, steps, noise=noise)
        mean = acc / n_samples / model.x_scale.reshape(1, -1, 1, 1, 1)
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
    if config is not None and "e_pos" in config.get("data", {}):
        return np.asarray(config["data"]["e_pos"], np.float32)
    if grid is None:
        from umask.train.data.grids import milan_grid

        grid = milan_grid()
    return cell_features(grid)


def forecast_fn(model: MilanUMask, e_pos: np.ndarray, *, sampler: str = "ddim", steps: int = 10, n_samples: int = 4,
                seed: int = 0, batch_size: int = 32, all_evidence: bool = False,
                stats: dict[str, Any] | None = None, geo: Geometry | None = None) -> milan_eval.ForecastFn:
    """A1 ``ForecastFn``: (n, history, cells) standardized history -> (n, horizon, cells) (Milan 288 -> 144).
    ``geo``: the frame and windows (default: :func:`geometry` of the model on Milan)."""
    geo = (Geometry() if model is None else geometry(model)) if geo is None else geo  # None: Milan

    def fn(history: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
        if horizon != geo.horizon or history.shape[1] != geo.history:
            raise ValueError(f"the U-MASK frame is {geo.history} + {geo.horizon} slots, got {history.shape[1]} + {horizon}")
        fr = {**forecast_frame(history, starts, geo), "e_pos": e_pos}
        full = complete(model, fr, LONG, np.asarray(starts), sampler=sampler, steps=steps, n_samples=n_samples,
                        seed=seed, batch_size=batch_size, all_evidence=all_evidence, stats=stats)
        idx = (fr["offset"] + geo.history)[:, None] + np.arange(geo.horizon)[None, :]  # (n, horizon) frame positions
        return np.take_along_axis(full[:, 0], idx[:, :, None, None], axis=1).reshape(len(history), geo.horizon, -1)

    return fn


def impute_fn(model: MilanUMask, e_pos: np.ndarray, *, sampler: str = "ddim", steps: int = 10, n_samples: int = 4,
              seed: int = 0, batch_size: int = 32, all_evidence: bool = False,
              stats: dict[str, Any] | None = None, geo: Geometry | None = None) -> milan_eval.ImputeFn:
    """A2 ``ImputeFn``: observed (n, L, cells) with NaN at hidden, mask True = hidden -> completed
    (n, L, cells); observed entries are returned exactly."""
    geo = (Geometry() if model is None else geometry(model)) if geo is None else geo  # None: Milan

    def fn(observed: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
        observed = np.asarray(observed, np.float64)
        mask = np.asarray(mask, bool)
        n, L, cells = observed.shape
        if L > geo.window:
            raise ValueError(f"imputation windows longer than {geo.window} slots are not supported")
        # the model never reads hidden entries: impute_frame zeroes NaNs and avail = ~mask
        fr = {**impute_frame(np.where(mask, 0.0, observed), mask, starts, geo), "e_pos": e_pos}
        full = complete(model, fr, IMPUTE, np.asarray(starts), sampler=sampler, steps=steps, n_samples=n_samples,
                        seed=seed, batch_size=batch_size, all_evidence=all_evidence, stats=stats)
        idx = fr["offset"][:, None] + np.arange(L)[None, :]
        pred = np.take_along_axis(full[:, 0], idx[:, :, None, None], axis=1).reshape(n, L, cells)
        return np.where(mask, pred, observed)

    return fn


# ------------------------------------------------------------------------------------------------
# Scoring on (a stride subset of) the protocol windows
# ------------------------------------------------------------------------------------------------
def score_rows(matrix: np.ndarray | GridData, task: str, models: Mapping[str, Any], *, stride: int = 1,
               split: str = "test", model_info: Mapping[str, Mapping[str, Any]] | None = None,
               command: str) -> list[dict[str, Any]]:
    """milan_eval rows on every ``stride``-th protocol window (stride 1 = milan_eval.evaluate_a1/a2).
    ``matrix``: Milan's raw matrix or any :class:`GridData` (its own periods and window lengths)."""
    model_info = dict(model_info or {})
    if stride == 1:
        fn = milan_eval.evaluate_a1 if task == "a1" else milan_eval.evaluate_a2
        return fn(matrix, models, split=split, model_info=model_info, command=command)  # type: ignore[arg-type]
    spec = milan_eval.GridSpec(matrix)
    warnings = milan_eval.grid_warnings(spec.values, spec.splits, split)
    scaler = splits.fit_scaler(spec.values, splits=spec.splits)
    z = scaler.transform(spec.values)
    rows = []
    subset = f"every {stride}th protocol window (indices 0, {stride}, ...)"
    if task == "a1":
        win = splits.forecast_windows(z, split, history=spec.history, horizon=spec.horizon,  # type: ignore[arg-type]
                                      splits=spec.splits)
        if not len(win):
            raise milan_eval._no_windows("A1", spec, split, spec.horizon)
        idx = np.arange(0, len(win), stride)
        x, y, st = win.x[idx], win.y[idx], win.starts[idx]
        window = {"history": spec.history, "horizon": spec.horizon, "stride": stride,
                  "horizon_starts": f"{st[0]}..{st[-1]} step {stride}", "subset": subset}
        for name, fn in models.items():
            pred = milan_eval._check_prediction(name, fn(x.copy(), st.copy(), y.shape[1]), y.shape)
            rows.append(milan_eval._row(task="A1 forecasting (48h -> 24h)", split=split, model=name, window=window,
                                        n_windows=len(idx), n_entries=y.size, seeds={"model": "n/a", "masks": "n/a"},
                                        result=milan_eval.score(pred, y, scaler), command=command,
                                        extra=model_info.get(name), spec=spec, warnings=warnings))
    else:
        win = splits.imputation_windows(z, split, window=spec.window, splits=spec.splits)  # type: ignore[arg-type]
        if not len(win):
            raise milan_eval._no_windows("A2", spec, split, spec.window)
        idx = np.arange(0, len(win), stride)
        truth, mask, st = win.truth[idx], win.mask[idx], win.starts[idx]
        observed = np.where(mask, np.nan, truth)
        window = {"length": spec.window, "stride": stride, "starts": f"{st[0]}..{st[-1]} step {stride}",
                  "p_missing": "Uniform(0.70, 0.80) per window", "mean_hidden_fraction": float(mask.mean()),
                  "subset": subset}
        rng = f"{splits.A2_SEED_BASE}..{splits.A2_SEED_BASE + int(idx[-1])} step {stride}"
        seeds = {"model": "n/a", "masks": f"{splits.A2_SEED_BASE} + protocol window index i, i in {rng}",
                 "mask_seed_range": rng}
        for name, fn in models.items():
            pred = milan_eval._check_prediction(name, fn(observed.copy(), mask.copy(), st.copy()), truth.shape)
            rows.append(milan_eval._row(task="A2 imputation (70-80% missing)", split=split, model=name, window=window,
                                        n_windows=len(idx), n_entries=int(mask.sum()), seeds=seeds,
                                        result=milan_eval.score(pred, truth, scaler, mask), command=command,
                                        extra=model_info.get(name), spec=spec, warnings=warnings))
    return rows


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
    p.add_argument("--samples", type=int, default=4, help="samples averaged per window")
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
    z = splits.fit_scaler(grid.values, splits=periods).transform(grid.values)
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
                    f"evidence clamp; point forecast = mean of {args.samples} samples")
    loaded = {}
    for name, ckpt, all_ev, note in variants:
        model, config = load_model(ckpt)
        loaded[name] = (model, config, ckpt, all_ev, note)
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
            models[name] = mk(model, _e_pos(config, grid), sampler=args.sampler, steps=args.steps,
                              n_samples=args.samples, seed=args.seed, batch_size=args.batch_size, all_evidence=all_ev,
                              stats=stats[name], geo=geometry(model, grid))
            info[name] = {"seeds": {"train": config["train"]["seed"], "sampler": args.seed},
                          "samples": args.samples, "sampler": sampler_text, "notes": note,
                          "fit": _fit_info(ckpt, config)}
        mkbase = milan_eval.baseline_forecasters if task == "a1" else milan_eval.baseline_imputers
        base = mkbase(z, period=grid.slots_per_day, train_end=periods["train"][1])
        notes = milan_eval.GridSpec(grid).notes()
        suffix = "@subset" if stride > 1 else ""
        for name, fn in base.items():
            models[name + suffix] = fn
            info[name + suffix] = {"notes": notes[name] + ("; same windows" if suffix else "")}
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    md = [milan_eval.markdown_table(rows).rstrip("\n"), ""]
    md.append(f"U-MASK sampling: {sampler_text}; sampler seed {args.seed} (per-window start noise), "
              "training seed 0; weights = EMA at the best validation loss.")
    if grid.source != "milan":
        geo = geometry(next(iter(loaded.values()))[0], grid) if loaded else None
        md.append(f"Setup: {grid.describe()}; periods {periods}; one channel (per-cell z-score with the training "
                  f"scaler)" + (f"; day-aligned {geo.frame}-slot frame holding the {geo.history} + {geo.horizon} A1 "
                                f"window or the {geo.window}-slot A2 window" if geo else "") + ".")
    else:
        md.append("Setup (train/milan_umask.py): one channel (internet, per-cell z-score with the training scaler), "
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
    table = "\n".join(md) + "\n"
    out.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
