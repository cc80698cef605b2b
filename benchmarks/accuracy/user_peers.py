"""Per-user peer baselines (ARIMA, PatchTST, CSDI) in the PROTOCOL B harness (benchmarks/accuracy/user.py).

The per-user adapters of the three learned baselines (``umask.train.baselines.arima``, ``patchtst``,
``csdi``; their Milan runs: ``benchmarks/accuracy/grid_peers.py``) as harness predictors
``fn(TaskBatch) -> array``, reusing those modules' fit / forecast / impute functions unchanged. The
evaluated population, split and windows are exactly those of benchmarks/results/user_umask.md
(``umask_eval.subset_population`` + ``umask_eval.b1_hours``): the first ``--users`` of the
300-user simulator population (seed 0), test day 7, B1 target hours ``h % --b1-every == --b1-offset``,
B2/B3/B4 every window; plus the REAL 6-user one-day sample (short-term, zero-shot where a model is
trained). The simple baselines are re-scored in the same run so every row sits in one table.

Series view of a window: the per-user tensor (C = 22, T, H = 4, W = 4) on the featurized scale is
352 univariate series (c, h, w); ``x_context`` -> (n, Tc, 352) with NaN where the context coordinate
is not observed (B3's cut slots, the real sample's slots before the day, B4's hidden coordinates).
Every prediction is clipped to the featurized domain (traffic/app >= 0, location in [0, 1]), as the
U-MASK adapter does.

ARIMA (``arima``; statsmodels SARIMAX through :mod:`umask.train.baselines.arima`)
-------------------------------------------------------------------------
Simplifications for the budget (~3,600 series active in 50 users' training days; a per-series
order search costs ~0.1 s x 8 orders each):

* one FIXED order, AR(1) (``--arima-order``), no order search; per user and series, fitted by
  exact ML on the user's training days (slots 0..479) after subtracting that series' time-of-day
  profile over the same days (``arima.fit``, period 96: the Milan deseasonalization);
* fitted lazily, only for the series a window needs: a series that is zero in every observed slot
  of the window's context is predicted 0 (no Kalman filter run), as is a series that never was
  active in the training days (its profile is 0 and its residual constant);
* forecasting (B1, B2): ``arima.forecast`` (fixed parameters, Kalman filter over the window's
  192-slot history); completion (B4): ``arima.impute`` (Kalman smoother, the Milan A2 path);
* B3 (cold start) is NOT evaluated: the model is per user and per series, and a cold-start user has
  no history to fit it on (the historical-average baseline falls back to the visible context; a
  per-user ARIMA has no such analogue worth the name);
* REAL sample (one day, no training days): per window and series active in the in-day context, an
  AR(1) around the context mean (``ArimaConfig(period=1)``: the "profile" is the constant mean) is
  fitted on the observed in-day context and forecast 4 slots.

PatchTST (``patchtst``; ``transformers.PatchTSTForPrediction`` through :mod:`umask.train.baselines.patchtst`)
------------------------------------------------------------------------------------------------------
ONE channel-independent global model: every (user, c, h, w) series is a univariate sample. Trained
by ``patchtst.fit`` on the training days (slots 0..479) of the evaluated users' series: every
series with activity in those days plus a random ``--patchtst-inactive`` fraction (default 10 %)
of the all-zero ones; validation = the day-6 windows (horizon 480..575) of the same series, early
stopping on it. Context 192, prediction 96 (B1 uses the first 4 steps), patches 16 / stride 8,
d_model 64, 2 layers, 4 heads, ffn 128; instance scaling "std". Forecasting only: no B4 row.
B3: the cut context is passed with its ``past_observed_mask``. REAL sample: zero-shot (trained on
the simulated users only); slots before the day are unobserved.

CSDI (``csdi``; :mod:`umask.train.baselines.csdi`, compact)
-------------------------------------------------
Arrangement: K = the 22 channels of one (h, w) cell are the features, cells are samples; one
global model trained by ``csdi.fit`` on the training-day stack (S, 480, 22) of every (user, cell)
with any activity in those days (validation: the same cells' day 6, selection on the validation
loss). Features are standardized per channel with the training stack's mean / std (the paper's
per-feature normalization) and de-standardized after sampling. Deviations from the Milan run, for
the 1-core CPU (one denoiser call on a 128 x 22 x 72 batch took ~3 s on the loaded 2-core machine): 16 channels, 2 layers,
window 48 slots (forecasting: 24 known + 24 generated per chunk; B2/B3 generate 96 slots
autoregressively in 4 chunks, B1 one chunk trimmed to 4), 20 diffusion steps (quad schedule up to
beta 0.5), 2 samples (mean = point forecast), a few hundred optimizer steps. Cells whose observed
context is all zero are predicted 0 without sampling (B4: their hidden coordinates get 0). Because
sampling is still the bottleneck, CSDI is scored on a DECLARED subset: the first ``--csdi-users``
users (default 10) of the evaluated population, every task's windows as above, and every other
model is re-scored on that subset (rows ``name@csdi_subset``). The REAL sample: all 90 windows,
zero-shot.

Run (SYNTHETIC + REAL; 1068 s on one thread of the shared, heavily loaded 2-core CPU: PatchTST
training 127 s, CSDI training 241 s, all-user evaluation 253 s, CSDI subset 211 s, REAL sample 225 s)::

    python -m umask.bench.accuracy.user_peers --users 50 --seed 0 --b1-every 6 --b1-offset 2 --no-progress \\
        --out benchmarks/results/user_peers.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from umask.train.baselines import arima
from umask.train.baselines import csdi
from umask.train.baselines import patchtst
from umask.bench.accuracy import user_umask as uev
from umask.bench.accuracy import user as ue
from umask.bench.accuracy.user_baselines import batch_series, clip_domain, population_series, series_tensor

log = logging.getLogger(__name__)

DEFAULT_OUT = "benchmarks/results/user_peers.json"
PEERS = ("arima", "patchtst", "csdi")


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
def default_patchtst_config(**kw: Any) -> patchtst.PatchTSTBaselineConfig:
    """The per-user PatchTST (see the module docstring); ``kw`` overrides fields."""
    base = {"context_length": 192, "prediction_length": 96, "patch_length": 16, "patch_stride": 8, "d_model": 64, "num_layers": 2,
                "num_heads": 4, "ffn_dim": 128, "batch_size": 128, "steps_per_epoch": 50, "max_epochs": 12, "patience": 3,
                "max_minutes": 4.0, "warmup_steps": 30, "eval_batch": 2048, "val_stride": 1}
    base.update(kw)
    return patchtst.PatchTSTBaselineConfig(**base)


def default_csdi_config(n_features: int, period: int, **kw: Any) -> csdi.CSDIConfig:
    """The per-user CSDI (see the module docstring); ``kw`` overrides fields."""
    base = {"n_features": n_features, "period": period, "window": 48, "forecast_len": 24, "channels": 16, "layers": 2,
                "num_steps": 20, "nsample": 2, "batch_size": 16, "max_steps": 600, "max_minutes": 4.0, "val_every": 50,
                "n_val": 64, "sample_batch": 256}
    base.update(kw)
    return csdi.CSDIConfig(**base)


# ------------------------------------------------------------------------------------------------
# Series views of a TaskBatch
# ------------------------------------------------------------------------------------------------
def active_series(hist: np.ndarray) -> np.ndarray:
    """(L, S) with NaN -> (S,) bool: some observed value is non-zero."""
    return (np.nan_to_num(hist, nan=0.0) != 0).any(axis=0)


def _empty(batch: ue.TaskBatch) -> np.ndarray:
    return np.zeros((batch.n, batch.channels.n_channels, batch.horizon) + batch.x_context.shape[3:])


# ------------------------------------------------------------------------------------------------
# ARIMA
# ------------------------------------------------------------------------------------------------
class UserArima:
    """Per-user, per-series AR(1) around the training time-of-day profile (module docstring)."""

    def __init__(self, pop: ue.UserPopulation, order: tuple[int, int, int] = (1, 0, 0)) -> None:
        self.pop = pop
        self.order = tuple(order)
        self.cfg = arima.ArimaConfig(period=pop.slots_per_day, orders=(self.order,), first_slot=0)
        self._fitted: dict[int, dict[int, tuple[tuple[int, int, int], np.ndarray, np.ndarray, float]]] = {}
        self._train: dict[int, np.ndarray] = {}
        self.n_fitted = 0
        self.fit_seconds = 0.0

    def _train_series(self, user: int) -> np.ndarray:
        """(train_end, S) the user's training days as series."""
        z = self._train.get(user)
        if z is None:
            d = self.pop.features[user].tensor.dense(0, self.pop.train_end).astype(np.float64)  # (C, T, H, W)
            z = d.transpose(1, 0, 2, 3).reshape(d.shape[1], -1)
            self._train[user] = z
        return z

    def model(self, user: int, cols: np.ndarray) -> tuple[arima.ArimaModel | None, np.ndarray]:
        """The fitted sub-model of ``cols`` that were active in training, and those columns."""
        z = self._train_series(user)
        cols = cols[(z[:, cols] != 0).any(axis=0)]
        done = self._fitted.setdefault(user, {})
        new = [int(c) for c in cols if int(c) not in done]
        if new:
            t0 = time.perf_counter()
            m = arima.fit(z[:, new], self.cfg)
            for k, c in enumerate(new):
                done[c] = (m.orders[k], m.params[k], m.profile[:, k], m.scale(k))
            self.n_fitted += len(new)
            self.fit_seconds += time.perf_counter() - t0
        if len(cols) == 0:
            return None, cols
        fits = [done[int(c)] for c in cols]
        return arima.ArimaModel(cfg=self.cfg, orders=[f[0] for f in fits], params=[f[1] for f in fits],
                                profile=np.stack([f[2] for f in fits], axis=1), scales=[f[3] for f in fits]), cols

    def _real_forecast(self, hist: np.ndarray, start: int, horizon: int) -> np.ndarray:
        """One real-sample window: AR(1) around the context mean fitted on the observed context."""
        S = hist.shape[1]
        out = np.zeros((horizon, S))
        cols = np.flatnonzero(active_series(hist))
        obs = np.isfinite(hist).all(axis=1)
        if len(cols) == 0 or obs.sum() < 3:
            return out
        train = hist[obs][:, cols]
        cfg = dataclasses.replace(self.cfg, period=1)
        t0 = time.perf_counter()
        m = arima.fit(train, cfg)
        self.fit_seconds += time.perf_counter() - t0
        self.n_fitted += len(cols)
        out[:, cols] = arima.forecast(m, train[None], np.array([start]), horizon)[0]
        return out

    def __call__(self, batch: ue.TaskBatch) -> np.ndarray:
        if batch.task == "B3":
            raise NotImplementedError("per-user ARIMA needs the user's own history; a cold-start user has none")
        C, H, W = batch.channels.n_channels, *batch.x_context.shape[3:]
        hist = batch_series(batch)                                   # (n, Tc, S)
        S = hist.shape[2]
        real = not self.pop.synthetic
        if batch.target_offset == 0:                                 # B4: Kalman smoother over the window
            out = np.nan_to_num(hist, nan=0.0)
            for i in range(batch.n):
                m, cols = self.model(int(batch.users[i]), np.flatnonzero(active_series(hist[i])))
                if m is None:
                    continue
                obs = hist[i][None][:, :, cols]
                out[i][:, cols] = arima.impute(m, obs, np.isnan(obs), batch.context_starts[i:i + 1])[0]
        else:
            out = np.zeros((batch.n, batch.horizon, S))
            for i in range(batch.n):
                if real:
                    out[i] = self._real_forecast(hist[i], int(batch.starts[i]), batch.horizon)
                    continue
                m, cols = self.model(int(batch.users[i]), np.flatnonzero(active_series(hist[i])))
                if m is None:
                    continue
                out[i][:, cols] = arima.forecast(m, hist[i][None][:, :, cols], batch.starts[i:i + 1], batch.horizon)[0]
        return clip_domain(series_tensor(out, C, H, W), batch)

    def info(self) -> dict[str, Any]:
        return {"seeds": "n/a (deterministic MLE)", "fit": {
            "order": list(self.order), "series_fitted": self.n_fitted, "fit_seconds": round(self.fit_seconds, 1),
            "period": self.cfg.period, "deseasonalize": "training time-of-day profile (simulator); context mean "
                                                        "(real sample)"},
            "notes": ("statsmodels SARIMAX AR(1) per (user, c, h, w) series on the residual after the training-day "
                      "time-of-day profile, fitted on days 1-5 (lazily, only series active in a window's observed "
                      "context and in training; all others predict 0); Kalman filter forecast (B1/B2), Kalman "
                      "smoother imputation (B4); B3 not evaluated (no per-user history for a cold-start user); real "
                      "sample: AR(1) around the context mean fitted per window on the in-day context")}


# ------------------------------------------------------------------------------------------------
# PatchTST
# ------------------------------------------------------------------------------------------------
def fit_user_patchtst(pop: ue.UserPopulation, cfg: patchtst.PatchTSTBaselineConfig, inactive_fraction: float,
                      seed: int) -> tuple[patchtst.PatchTSTModel, dict[str, Any]]:
    """One channel-independent PatchTST on the population's training days (module docstring)."""
    tr = pop.train_end
    spd = pop.slots_per_day
    z = population_series(pop, 0, tr + spd)                                 # (576, U*S): days 1-6
    act = (z[:tr] != 0).any(axis=0)
    rng = np.random.default_rng(seed)
    keep = act | (rng.random(act.shape) < inactive_fraction)
    cols = np.flatnonzero(keep)
    model = patchtst.fit(z[:tr, cols], z[tr - cfg.context_length: tr + spd, cols], cfg)
    info = {"series_total": int(z.shape[1]), "series_active_in_training": int(act.sum()),
            "series_used": len(cols), "inactive_fraction": inactive_fraction}
    return model, info


class UserPatchTST:
    """``patchtst.forecast`` over all 352 series of each window (forecasting only)."""

    def __init__(self, model: patchtst.PatchTSTModel, info: dict[str, Any] | None = None) -> None:
        self.model = model
        self.train_info = dict(info or {})

    def __call__(self, batch: ue.TaskBatch) -> np.ndarray:
        if batch.target_offset == 0:
            raise NotImplementedError("PatchTST is a forecasting model (no completion)")
        C, H, W = batch.channels.n_channels, *batch.x_context.shape[3:]
        y = patchtst.forecast(self.model, batch_series(batch), batch.starts, batch.horizon)
        return clip_domain(series_tensor(y, C, H, W), batch)

    def info(self) -> dict[str, Any]:
        m, cfg = self.model, self.model.cfg
        return {"seeds": cfg.seed, "fit": {
            "n_params": m.n_params, "train_seconds": round(m.train_seconds, 1), "epochs_run": len(m.history),
            "optimizer_steps": len(m.history) * cfg.steps_per_epoch, "best_epoch": m.best_epoch,
            "best_val_mse": round(m.best_val_mse, 6), **self.train_info, "config": asdict(cfg),
            "history": [{k: round(v, 6) for k, v in h.items()} for h in m.history]},
            "notes": (f"transformers PatchTSTForPrediction, ONE channel-independent model over every (user, c, h, w) "
                      f"series; trained on days 1-5 of the evaluated users' series (all active + "
                      f"{self.train_info.get('inactive_fraction', '?')} of the all-zero ones), early stopping on "
                      f"day 6; context {cfg.context_length}, prediction {cfg.prediction_length}; no B4 (forecasting "
                      f"only); real sample zero-shot")}


# ------------------------------------------------------------------------------------------------
# CSDI
# ------------------------------------------------------------------------------------------------
def cell_series(x: np.ndarray) -> np.ndarray:
    """(C, T, H, W) -> (H*W, T, C): the cells as samples, channels as features."""
    C, T, H, W = x.shape
    return x.reshape(C, T, H * W).transpose(2, 1, 0)


def fit_user_csdi(pop: ue.UserPopulation, cfg: csdi.CSDIConfig
                  ) -> tuple[csdi.CSDIModel, np.ndarray, np.ndarray, dict[str, Any]]:
    """CSDI on the (user, cell) stack of the training days; returns the model, the per-channel mean / std."""
    tr, spd = pop.train_end, pop.slots_per_day
    trains, vals = [], []
    for u in pop.users:
        d = cell_series(pop.features[u].tensor.dense(0, tr + spd).astype(np.float64))   # (HW, 576, C)
        act = (d[:, :tr] != 0).any(axis=(1, 2))
        trains.append(d[act, :tr])
        vals.append(d[act, tr:])
    train, val = np.concatenate(trains), np.concatenate(vals)                # (S, 480, C), (S, 96, C)
    mean = train.mean(axis=(0, 1))
    std = train.std(axis=(0, 1))
    std = np.where(std > 1e-8, std, 1.0)
    model = csdi.fit((train - mean) / std, (val - mean) / std, cfg, train_first_slot=0, val_first_slot=tr)
    H, W = pop.features[pop.users[0]].tensor.dense(0, 1).shape[2:]
    info = {"cells_trained": int(train.shape[0]), "cells_total": len(pop.users) * H * W}
    return model, mean, std, info


class UserCSDI:
    """``csdi.forecast`` / ``csdi.impute`` on the active cells of each window (module docstring)."""

    def __init__(self, model: csdi.CSDIModel, mean: np.ndarray, std: np.ndarray,
                 info: dict[str, Any] | None = None) -> None:
        self.model, self.mean, self.std = model, np.asarray(mean), np.asarray(std)
        self.train_info = dict(info or {})
        self.n_cells_sampled = 0
        self.sample_seconds = 0.0
        self._calls = 0

    def __call__(self, batch: ue.TaskBatch) -> np.ndarray:
        C, H, W = batch.channels.n_channels, *batch.x_context.shape[3:]
        x = np.asarray(batch.x_context, np.float64)                           # (n, C, Tc, H, W)
        av = np.broadcast_to(batch.avail, x.shape)
        xs = x.reshape(batch.n, C, batch.Tc, H * W).transpose(0, 3, 2, 1)      # (n, HW, Tc, C)
        avs = av.reshape(batch.n, C, batch.Tc, H * W).transpose(0, 3, 2, 1)
        active = ((xs != 0) & avs).any(axis=(2, 3))                          # (n, HW)
        wi, ci = np.nonzero(active)
        out = np.zeros((batch.n, H * W, batch.horizon, C))
        if batch.target_offset == 0:
            out = np.where(avs, xs, 0.0)
        if len(wi):
            t0 = time.perf_counter()
            z = np.where(avs[wi, ci], (xs[wi, ci] - self.mean) / self.std, np.nan)   # (m, Tc, C)
            seed = self.model.cfg.seed + 1000 * self._calls
            self._calls += 1
            if batch.target_offset == 0:
                y = csdi.impute(self.model, z, ~avs[wi, ci], batch.context_starts[wi], seed=seed)
            else:
                y = csdi.forecast(self.model, z, batch.starts[wi], batch.horizon, seed=seed)
            out[wi, ci] = y * self.std + self.mean
            if batch.target_offset == 0:
                out = np.where(avs, xs, out)
            self.n_cells_sampled += len(wi)
            self.sample_seconds += time.perf_counter() - t0
        pred = out.transpose(0, 3, 2, 1).reshape(batch.n, C, batch.horizon, H, W)
        return clip_domain(pred, batch)

    def info(self) -> dict[str, Any]:
        m, cfg = self.model, self.model.cfg
        return {"seeds": {"train": cfg.seed, "sampler": f"{cfg.seed} + 1000 x batch call"}, "samples": cfg.nsample,
                "steps": cfg.num_steps,
                "sampler": f"DDPM ancestral, {cfg.num_steps} steps, mean of {cfg.nsample} samples",
                "fit": {"n_params": m.n_params, "train_seconds": round(m.train_seconds, 1), "steps_run": m.steps_run,
                        "best_step": m.best_step, "best_val_loss": round(m.best_val, 5), **self.train_info,
                        "cells_sampled": self.n_cells_sampled, "sample_seconds": round(self.sample_seconds, 1),
                        "config": asdict(cfg),
                        "history": [{k: round(v, 5) for k, v in h.items()} for h in m.history]},
                "notes": (f"compact CSDI: features = the {cfg.n_features} channels of one (h, w) cell, cells as "
                          f"samples, per-channel standardization from the training stack; {cfg.channels} channels, "
                          f"{cfg.layers} layers, window {cfg.window} (forecast chunks {cfg.forecast_len}), "
                          f"{cfg.num_steps} diffusion steps, {cfg.nsample} samples, {m.steps_run} optimizer steps; "
                          "cells with an all-zero observed context predicted 0 without sampling; real sample "
                          "zero-shot")}


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def _tag_rows(rows: list[dict[str, Any]], hours: list[int], args: argparse.Namespace, note: str | None = None
              ) -> list[dict[str, Any]]:
    for r in rows:
        if r["task_id"] == "B1" and r.get("synthetic") and args.b1_every > 1:
            r["window"] = {**r["window"], "subset": f"target hours {hours} of the {args.split} day "
                                                    f"(--b1-every {args.b1_every} --b1-offset {args.b1_offset})"}
        if note and r.get("synthetic"):
            r["window"] = {**r["window"], "users": note}
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user_peers", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--users", type=int, default=50, help="evaluate the first N featurized users")
    p.add_argument("--population-users", type=int, default=300, help="simulated population size")
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--tasks", default="B1,B2,B3,B4")
    p.add_argument("--b1-every", type=int, default=6)
    p.add_argument("--b1-offset", type=int, default=2)
    p.add_argument("--models", default=",".join(PEERS), help="subset of arima,patchtst,csdi")
    p.add_argument("--csdi-users", type=int, default=10, help="CSDI: score the first N evaluated users only")
    p.add_argument("--patchtst-inactive", type=float, default=0.1,
                   help="PatchTST: fraction of the all-zero training series kept")
    p.add_argument("--patchtst-minutes", type=float, default=4.0)
    p.add_argument("--csdi-minutes", type=float, default=4.0)
    p.add_argument("--csdi-steps", type=int, default=600, help="CSDI optimizer steps (cap)")
    p.add_argument("--model-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("umask.train.baselines.arima").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    command = shlex.join(["python", "-m", "umask.bench.accuracy.user_peers", *argv])
    tasks = tuple(t.strip().upper() for t in args.tasks.split(",") if t.strip())
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not tasks or not set(tasks) <= set(ue.TASKS) or not set(models) <= set(PEERS):
        p.error("bad --tasks or --models")
    t_start = time.perf_counter()

    full = ue.simulated_population(args.population_users, args.seed, data_dir=args.data_dir)
    pop = uev.subset_population(full, args.users)
    real = None if args.no_real else ue.real_population(data_dir=args.data_dir)
    hours = uev.b1_hours(args.b1_every, args.b1_offset)
    windows = {"B1": set(hours)} if args.b1_every > 1 else None
    progress = not args.no_progress
    timings: dict[str, float] = {}

    preds: dict[str, Any] = {}
    if "arima" in models:
        preds["arima"] = UserArima(pop, (1, 0, 0))
    if "patchtst" in models:
        t0 = time.perf_counter()
        pcfg = default_patchtst_config(seed=args.model_seed, max_minutes=args.patchtst_minutes, progress=progress)
        m, info = fit_user_patchtst(pop, pcfg, args.patchtst_inactive, args.model_seed)
        preds["patchtst"] = UserPatchTST(m, info)
        timings["patchtst_train"] = time.perf_counter() - t0
    csdi_pred = None
    if "csdi" in models:
        t0 = time.perf_counter()
        ccfg = default_csdi_config(pop.channels.n_channels, pop.slots_per_day, seed=args.model_seed,
                                   max_minutes=args.csdi_minutes, max_steps=args.csdi_steps, progress=progress)
        m, mean, std, info = fit_user_csdi(pop, ccfg)
        csdi_pred = UserCSDI(m, mean, std, info)
        timings["csdi_train"] = time.perf_counter() - t0

    # 1) every evaluated user: simple baselines + ARIMA + PatchTST
    main_models: dict[str, ue.Predictor] = dict(ue.baseline_models(pop))
    main_models.update({k: v for k, v in preds.items()})
    t0 = time.perf_counter()
    rows = ue.evaluate_population(pop, main_models, split=args.split, tasks=tasks, batch_size=args.batch_size,
                                  command=command, windows=windows,
                                  model_info={k: v.info() for k, v in preds.items()})
    timings["eval_all_users"] = time.perf_counter() - t0
    # infos are finalized after evaluation (fit counters); refresh them in the rows
    for r in rows:
        if r["model"] in preds:
            r.update({k: v for k, v in preds[r["model"]].info().items() if k != "seeds"})
    rows = _tag_rows(rows, hours, args, pop.info.get("evaluated_subset"))

    # 2) CSDI on its declared subset, with every other model re-scored there
    if csdi_pred is not None:
        sub = uev.subset_population(full, min(args.csdi_users, args.users))
        note = f"CSDI subset: first {len(sub.users)} of the evaluated users (sorted ids)"
        sub_models: dict[str, ue.Predictor] = {f"{k}@csdi_subset": v for k, v in main_models.items()
                                               if k not in preds}
        sub_models.update({f"{k}@csdi_subset": v for k, v in preds.items()})
        sub_models["csdi"] = csdi_pred
        t0 = time.perf_counter()
        sub_rows = ue.evaluate_population(sub, sub_models, split=args.split, tasks=tasks, batch_size=args.batch_size,
                                          command=command, windows=windows)
        timings["eval_csdi_subset"] = time.perf_counter() - t0
        for r in sub_rows:
            base = r["model"].split("@")[0]
            if r["model"] == "csdi":
                r.update(csdi_pred.info())
            elif base in ue.BASELINE_NOTES:
                r["notes"] = ue.BASELINE_NOTES[base] + "; same windows as csdi"
            elif base in preds:
                r["notes"] = preds[base].info()["notes"] + "; same windows as csdi"
        rows += _tag_rows(sub_rows, hours, args, note)

    # 3) the REAL one-day sample (short-term)
    if real is not None:
        real_models: dict[str, ue.Predictor] = dict(ue.real_baseline_models())
        if "arima" in models:
            preds["arima_real"] = UserArima(real, (1, 0, 0))
            real_models["arima"] = preds["arima_real"]
        if "patchtst" in preds:
            real_models["patchtst"] = preds["patchtst"]
        if csdi_pred is not None:
            real_models["csdi"] = csdi_pred
        t0 = time.perf_counter()
        real_rows = ue.evaluate_real_sample(real_models, batch_size=args.batch_size, command=command, population=real)
        timings["eval_real"] = time.perf_counter() - t0
        for r in real_rows:
            key = "arima_real" if r["model"] == "arima" else r["model"]
            if key in preds:
                r.update(preds[key].info())
            elif key == "csdi" and csdi_pred is not None:
                r.update(csdi_pred.info())
        rows += real_rows

    elapsed = time.perf_counter() - t_start
    settings = [
        (f"Population: simulator seed {args.seed}, {args.population_users} users simulated ({len(full.users)} "
         f"featurized), evaluated: {pop.info.get('evaluated_subset', 'all')} = {len(pop.users)} users; split "
         f"{args.split} (the population of benchmarks/results/user_umask.md)."),
        (f"B1 windows: target hours {hours} (every {args.b1_every}th hour, offset {args.b1_offset}) for every model; "
         "B2/B3/B4 all windows; the REAL sample: all 90 windows (6 users x 15 target hours)."),
        (f"CSDI is scored on the first {min(args.csdi_users, args.users)} evaluated users only (sampling cost); "
         "rows `name@csdi_subset` re-score every other model on exactly those windows."),
        "ARIMA: no B3 row (per-user model, no history for a cold-start user). PatchTST: no B4 row (forecasting only).",
        "Predictions clipped to the featurized domain (traffic/app >= 0, location in [0, 1]); 1 torch thread.",
        "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + f"; total {elapsed:.0f}.",
    ]
    meta = {"command": command, "wall_seconds": elapsed, "settings": settings, "timings": timings,
            "machine": "2-core shared CPU, 1 thread", "models": {
                k: {kk: vv for kk, vv in v.info().items()} for k, v in
                {**{k: v for k, v in preds.items() if k != "arima_real"},
                 **({"csdi": csdi_pred} if csdi_pred is not None else {})}.items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str) + "\n")
    tmp.replace(out)
    md = report(rows, meta)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(md)
    tmp.replace(out.with_suffix(".md"))
    print(md, end="")
    print(f"\nwrote {out} and {out.with_suffix('.md')} in {elapsed:.1f} s")
    return 0


def report(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Markdown: header, settings, per-model training facts, compact summaries, full tables."""
    out = ["# Per-user peer baselines: ARIMA, PatchTST, CSDI (PROTOCOL B)", "",
           ("SYNTHETIC main benchmark (calibrated simulator, test day 7) + REAL one-day 6-user sample (PatchTST and "
            "CSDI zero-shot: trained on simulated users only). Same users, split and windows as "
            "[user_umask.md](user_umask.md)."), "",
           f"Command: `{meta['command']}` (wall time {meta['wall_seconds']:.0f} s, {meta['machine']}).", "",
           "## Settings", ""]
    out += [f"- {s}" for s in meta["settings"]]
    out += ["", "## Models", ""]
    for name, m in meta["models"].items():
        fit = m.get("fit", {})
        facts = {k: v for k, v in fit.items() if k not in ("config", "history")}
        out.append(f"- **{name}**: {m.get('notes', '')}. Fit: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    out += ["", "## Summary (featurized scale; best per column in bold)", "", uev.summary_tables(rows), "",
            "## Full tables (user_eval format, with raw-unit errors and B3 ranking)", "", ue.markdown_table(rows)]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
