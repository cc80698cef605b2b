"""The on-device session of a grid U-MASK bundle (numpy + onnxruntime, no torch)::

    from umask.runtime.session import Session
    with Session.open("artifacts/bundles/umask_grid", precision="int8-qdq") as s:
        day = s.forecast(history, first_slot=3600)        # (2D, cells) raw -> (D, cells) raw   (PROTOCOL A1)
        full = s.impute(values, mask, first_slot=3888)    # (<= 2D, cells) raw + mask (True = missing) -> raw (A2)

    umask run --bundle artifacts/bundles/umask_grid --values window.csv --task impute --first-slot 3888

What runs. The grid U-MASK (train/models/umask/grid.py) refines a deterministic prior with a DiT; its
point estimate is the DiT's x0 prediction at the sampler's first step (t = N-1, one network call per
noise draw; ``first_x0`` in benchmarks/accuracy/grid_umask.py), averaged over ``n_samples`` draws. Per
request the session

1. standardizes the raw values with the training grid's floored per-cell scaler (the bundle's
   ``stats``, the same object as U-STS-LLM's: runtime/families/ustsllm/stats.py);
2. writes the window into its day-aligned frame (grid_frames.py) and builds the frame's prior and
   calendar features (grid_prior.py: weekday / weekend profile, A1 level term, A2 interpolation or
   lowrank_interpolation);
3. runs the exported DiT step (``dit.onnx``: the network of the per-user U-MASK exporter's DiTStep) in
   the numpy DDIM sampler (runtime/engines/samplers.py) with one step: x_T = noised evidence / pure noise,
   x0 = DiT(x_T, t = N-1), evidence put back (eq. 35);
4. gates the result per cell, ``other + alpha_c (model - other)`` (grid_prior.gate), with the alphas the
   exporter chose on the training grid's validation windows; ``other`` is the task's prior (A1) or the
   manifest's choice for A2 (the ``lowrank_interpolation`` row in the shipped recipe, which is what made
   A2 beat every baseline: benchmarks/results/v2_grid_umask_gated_lowrank.json). ``gated=False`` returns
   the network alone;
5. returns raw units; observed entries of an imputation window come back exactly.

Noise: draw k of the window whose first slot is s uses ``default_rng(SeedSequence([seed, s, k]))``, so a
window's answer does not depend on the batch it came in. ``first_slot``: the slot index of the window's
first row counted from the grid's slot 0, a midnight of weekday ``stats.first_weekday`` (Milan: Friday
2013-11-01). A batch is given with a leading axis: (n, slots, cells), first_slot (n,).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core import gridimpute
from umask.runtime.core.bundle import (ARTIFACT, JSON, MAP, OBJ, BundleError, read_verified,
                                       register_manifest_schema)
from umask.runtime.core.errors import InputError
from umask.runtime.core.gridcli import missing_mask, standardized, window_batch
from umask.runtime.engines.backends import NetworkBackend, OrtBackend
from umask.runtime.engines.samplers import Schedule, make_sampler
from umask.runtime.families.umask import grid_frames
from umask.runtime.families.umask.grid_prior import A2_PRIORS, GridPrior, calendar, gate
from umask.runtime.families.ustsllm.stats import GridStats
from umask.runtime.session import FamilySession

FAMILY = "umask_grid"
TASKS = ("forecast", "impute")
FEEDS = ("x_t", "x_obs", "mask", "t", "h_u", "task", "prior")       # networks.DiTStep with the grid prior
GATE_OTHERS: dict[str, tuple[str, ...]] = {"forecast": ("prior",), "impute": ("prior", "lowrank")}
DEFAULT_SAMPLES = 16             # noise draws per window (the scorers' first_x0 setting)
MAX_SAMPLES = 256
BATCH = 32                       # windows per network call

register_manifest_schema(
    FAMILY,
    {"model": OBJ({"geometry": JSON, "task_ids": JSON, "x_scale": JSON, "prior": JSON, "point": JSON},
                  extra=JSON),
     "stats": JSON, "diffusion": JSON, "artifacts": MAP(MAP(ARTIFACT), max_items=16)},
    {"gate": JSON, "grid": JSON, "parity": JSON, "checkpoint": JSON, "tensorrt": JSON, "llm": JSON},
)

DitFn = Callable[[dict[str, np.ndarray]], np.ndarray]      # DiT feeds -> x0 (B, 1, T, H, W)


# ------------------------------------------------------------------------------------------------
# The prediction pipeline (shared with the exporter, which runs it with the torch network as reference)
# ------------------------------------------------------------------------------------------------
class GridPipeline:
    """Standardized windows -> first-x0 completions and gated predictions, for any DiT callable.

    ``spec``: the frame geometry; ``prior``: the grid prior; ``task_ids``: task -> the DiT's task token;
    ``schedule``: the diffusion schedule; ``x_scale``: the model-space scale of the one channel."""

    def __init__(self, spec: grid_frames.FrameSpec, prior: GridPrior, task_ids: Mapping[str, int], schedule: Schedule,
                 x_scale: float = 1.0) -> None:
        self.spec, self.prior, self.schedule = spec, prior, schedule
        self.task_ids = {t: int(task_ids[t]) for t in TASKS}
        self.x_scale = float(x_scale)
        self.sampler = make_sampler("ddim", schedule)

    # ---- frames ----
    def frames(self, task: str, z: np.ndarray, hidden: np.ndarray | None, first: np.ndarray) -> dict[str, np.ndarray]:
        """Frame, prior (n, 1, T, H, W) and calendar (n, 8) of standardized windows ``z`` (n, L, cells) that start at
        absolute slots ``first`` (n,); for "impute" ``hidden`` marks the missing entries (never read)."""
        sp = self.spec
        n = z.shape[0]
        if task == "forecast":
            starts = first + z.shape[1]                                                  # horizon starts
            fr = grid_frames.forecast_frame(z, starts, sp)
            pr = self.prior.forecast_frame(z, starts, fr["offset"], sp.frame, sp.horizon)
        else:
            ev = np.where(hidden, 0.0, z)
            fr = grid_frames.impute_frame(ev, hidden, first, sp)
            pr = self.prior.impute_frame(ev, hidden, first, fr["offset"], sp.frame)
        fr["prior"] = pr.reshape(n, 1, sp.frame, *sp.shape).astype(np.float32)
        fr["calendar"] = calendar(first - fr["offset"], sp.slots_per_day, self.prior.first_weekday)
        return fr

    def dit_feeds(self, task: str, fr: Mapping[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
        """The DiT's inputs (but x_t and t) for windows lo..hi-1 of ``fr``."""
        avail = fr["avail"][lo:hi].astype(np.float32)
        return {"x_obs": (fr["x0"][lo:hi] * self.x_scale * avail).astype(np.float32), "mask": avail,
                "h_u": fr["calendar"][lo:hi].astype(np.float32),
                "task": np.full(hi - lo, self.task_ids[task], np.int64),
                "prior": (fr["prior"][lo:hi] * self.x_scale).astype(np.float32)}

    def complete(self, dit: DitFn, task: str, fr: Mapping[str, np.ndarray], first: np.ndarray, *,
                 n_samples: int = DEFAULT_SAMPLES, seed: int = 0, batch: int = BATCH) -> np.ndarray:
        """(n, 1, T, H, W) mean over ``n_samples`` draws of the first-step x0 estimate, evidence exact."""
        n = len(first)
        out = np.empty(fr["x0"].shape, np.float64)
        for lo in range(0, n, batch):
            hi = min(n, lo + batch)
            feeds = self.dit_feeds(task, fr, lo, hi)

            def denoise(x: np.ndarray, t: int, feeds: dict[str, np.ndarray] = feeds) -> np.ndarray:
                return dit({"x_t": x, "t": np.full(x.shape[0], t, np.int64), **feeds})

            acc = np.zeros(feeds["x_obs"].shape, np.float64)
            for k in range(n_samples):
                noise = np.stack([np.random.default_rng(np.random.SeedSequence([int(seed), int(s), k]))
                                  .standard_normal(feeds["x_obs"].shape[1:], dtype=np.float32) for s in first[lo:hi]])
                # one DDIM step from t = N-1 to the clean level returns the DiT's x0 estimate at t = N-1, clamped
                acc += self.sampler.sample(denoise, feeds["x_obs"], feeds["mask"], 1, noise=noise)
            mean = acc / n_samples / self.x_scale
            out[lo:hi] = np.where(feeds["mask"] > 0.5, fr["x0"][lo:hi], mean)
        return out

    def predict(self, dit: DitFn, task: str, z: np.ndarray, hidden: np.ndarray | None, first: np.ndarray, *,
                n_samples: int = DEFAULT_SAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
        """{"model": the network's prediction, "prior": the task's prior, "lowrank" (impute only): the
        lowrank_interpolation row}, each (n, L_out, cells) on the standardized scale; impute: observed exact."""
        fr = self.frames(task, z, hidden, first)
        full = self.complete(dit, task, fr, first, n_samples=n_samples, seed=seed)
        if task == "forecast":
            model = grid_frames.read_frame(full, fr["offset"] + z.shape[1], self.spec.horizon)
            return {"model": model, "prior": self.prior.forecast(z, first + z.shape[1], self.spec.horizon)}
        ev = np.where(hidden, 0.0, z)
        model = np.where(hidden, grid_frames.read_frame(full, fr["offset"], z.shape[1]), z)
        prior = np.where(hidden, self.prior.impute(ev, hidden, first), z)
        lowrank = np.where(hidden, gridimpute.lowrank_interpolation_impute(ev, hidden), z)
        return {"model": model, "prior": prior, "lowrank": lowrank}


# ------------------------------------------------------------------------------------------------
# The session
# ------------------------------------------------------------------------------------------------
class Session(FamilySession):
    """See the module docstring; build with :meth:`open`."""

    family = FAMILY

    def __init__(self, root: Path, manifest: dict[str, Any], precision: str, providers: Sequence[str] | None,
                 threads: int, backend: NetworkBackend | None = None) -> None:
        self.root, self.manifest, self.precision = root, manifest, precision
        where = f"{root}/manifest.json"
        arts = manifest["artifacts"]
        if precision not in arts:
            raise InputError(f"precision {precision!r}: {root} holds {sorted(arts)}")
        m = manifest["model"]
        self.spec = grid_frames.FrameSpec.of(m["geometry"], f"{where} model.geometry")
        self.stats = GridStats.from_dict(manifest["stats"], f"{where} stats")
        if self.stats.n_cells != self.spec.n_cells or self.stats.slots_per_day != self.spec.slots_per_day:
            raise BundleError(f"{where}: stats ({self.stats.n_cells} cells, {self.stats.slots_per_day} slots a day) "
                              f"do not match model.geometry {self.spec}")
        pr = m["prior"]
        if pr.get("a2") not in A2_PRIORS:
            raise BundleError(f"{where}: model.prior.a2 {pr.get('a2')!r} is not one of {A2_PRIORS}")
        prior = GridPrior.of_profiles(self.stats.profile, self.stats.profile_weekend, self.stats.slots_per_day,
                                      self.stats.first_weekday, level_slots=int(pr["level_slots"]),
                                      level_weight=float(pr["level_weight"]), a2=str(pr["a2"]))
        diff = manifest["diffusion"]
        self.pipeline = GridPipeline(self.spec, prior, m["task_ids"], Schedule(np.asarray(diff["alphas_cumprod"])),
                                     float(m["x_scale"]))
        self.gates = self._read_gates(manifest.get("gate") or {}, where)
        self.default_samples = int(m["point"].get("n_samples", DEFAULT_SAMPLES))
        self.threads = int(threads)
        entry = arts[precision].get("dit")
        if not entry or not entry.get("file"):
            raise BundleError(f"{where}: artifacts.{precision}.dit has no file")
        self._file = entry["file"]
        if backend is None:
            backend = OrtBackend({"dit": read_verified(root, entry["file"], manifest)}, providers=providers,
                                 threads=self.threads, origins={"dit": f"{root}/{entry['file']}"})
        elif not isinstance(backend, NetworkBackend):
            raise InputError(f"backend must be a NetworkBackend, got {type(backend).__name__}")
        if not backend.has("dit"):
            raise InputError(f"the {backend.name} backend cannot run the dit network of {root}")
        if hasattr(backend, "io_signature"):
            names = [i["name"] for i in backend.io_signature("dit")["inputs"]]
            if sorted(names) != sorted(FEEDS):
                raise BundleError(f"{root}/{entry['file']}: inputs {names}, this runtime feeds {list(FEEDS)}")
        self.backend: NetworkBackend | None = backend
        self.providers = backend.providers().get("dit", [backend.name])    # what actually runs the network

    def _read_gates(self, g: Mapping[str, Any], where: str) -> dict[str, tuple[str, np.ndarray]]:
        out = {}
        for task, d in g.items():
            other, alphas = d.get("other"), np.asarray(d.get("alphas", []), np.float64)
            if task not in TASKS or other not in GATE_OTHERS[task] or alphas.shape != (self.spec.n_cells,) \
                    or not np.all((alphas >= 0) & (alphas <= 1)):
                raise BundleError(f"{where}: gate.{task} must name other in {GATE_OTHERS.get(task)} and give "
                                  f"{self.spec.n_cells} alphas in [0, 1]")
            out[task] = (str(other), alphas)
        return out

    @classmethod
    def open(cls, bundle: str | Path, *, precision: str = "fp32", providers: Sequence[str] | None = None,
             threads: int = 1, verify: bool = True, trusted_keys: Any = None, allow_unsigned: bool = False,
             backend: NetworkBackend | None = None, **_: Any) -> Session:
        """Verify ``bundle`` (signature by a trusted key unless ``allow_unsigned``; every file's sha256) and
        load the DiT of ``precision`` (fp32 | fp16 | int8-qdq | int8-dynamic) on ``providers``. ``backend``: a
        `NetworkBackend` that runs the network ``dit`` instead of onnxruntime (benchmarks: the checkpoint's torch
        network, benchmarks/latency/backends.TorchBackend)."""
        return cls.open_verified(bundle, precision=precision, providers=providers, threads=threads, verify=verify,
                                 trusted_keys=trusted_keys, allow_unsigned=allow_unsigned, backend=backend)

    def describe(self) -> dict[str, Any]:
        return {"family": FAMILY, "bundle": str(self.root), "precision": self.precision,
                "backend": self.backend.describe() if self.backend is not None else None, "providers": self.providers,
                "threads": self.threads, "cells": self.spec.n_cells, "grid": list(self.spec.shape),
                "slots_per_day": self.spec.slots_per_day, "history": self.spec.history, "horizon": self.spec.horizon,
                "window": self.spec.window, "n_samples": self.default_samples,
                "gate": {t: o for t, (o, _) in self.gates.items()}}

    def self_test_files(self) -> list[str]:
        return [self._file] if isinstance(self.backend, OrtBackend) else []

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.backend = None

    # ------------------------------------------------------------------ requests
    def _dit(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.backend is None:
            raise InputError("the session is closed")
        return self.backend.run("dit", {k: feeds[k] for k in FEEDS})[0]

    def _prepare(self, values: Any, name: str, lengths: tuple[int, int], first_slot: Any, n_samples: int | None,
                 seed: int) -> tuple[np.ndarray, bool, np.ndarray, int]:
        if self.backend is None:
            raise InputError("the session is closed")
        v, single, first = window_batch(values, name, self.spec.n_cells, lengths, first_slot)
        n = self.default_samples if n_samples is None else n_samples
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= MAX_SAMPLES:
            raise InputError(f"n_samples must be an int in 1..{MAX_SAMPLES}, got {n_samples!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise InputError(f"seed must be an int >= 0, got {seed!r}")
        return v, single, first, int(n)

    def _finish(self, task: str, preds: dict[str, np.ndarray], gated: bool) -> np.ndarray:
        if gated and task in self.gates:
            other, alphas = self.gates[task]
            return gate(preds["model"], preds[other], alphas)
        return preds["model"]

    def predict_standardized(self, task: str, z: np.ndarray, hidden: np.ndarray | None, first: np.ndarray, *,
                             n_samples: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """The pipeline's parts ("model", "prior", and for impute "lowrank") on the bundle's standardized scale,
        plus "gated": what :meth:`forecast` / :meth:`impute` return before unscaling (benchmarks score these)."""
        n = self.default_samples if n_samples is None else int(n_samples)
        preds = self.pipeline.predict(self._dit, task, np.asarray(z, np.float64), hidden, np.asarray(first, np.int64),
                                      n_samples=n, seed=seed)
        return {**preds, "gated": self._finish(task, preds, True)}

    def forecast(self, history: Any, *, first_slot: Any = 0, n_samples: int | None = None, seed: int = 0,
                 gated: bool = True) -> np.ndarray:
        """The next ``horizon`` slots after ``history`` (``history`` slots x cells, raw; first_slot = the slot of
        its first row), raw units. ``gated=False``: the network without the per-cell gate."""
        L = self.spec.history
        v, single, first, n = self._prepare(history, "history", (L, L), first_slot, n_samples, seed)
        if not np.all(np.isfinite(v)):
            raise InputError("history: every value must be finite (impute gaps first)")
        z = standardized(self.stats, v, "history")
        preds = self.pipeline.predict(self._dit, "forecast", z, None, first, n_samples=n, seed=seed)
        out = self.stats.inverse(self._finish("forecast", preds, gated))
        return out[0] if single else out

    def impute(self, values: Any, mask: Any, *, first_slot: Any = 0, n_samples: int | None = None, seed: int = 0,
               gated: bool = True) -> np.ndarray:
        """``values`` (slots <= window, cells) raw with ``mask`` True at the missing entries (never read) -> the
        completed window, raw units; observed entries exactly as given."""
        v, single, first, n = self._prepare(values, "values", (1, self.spec.window), first_slot, n_samples, seed)
        m = missing_mask(mask, values, v, single)
        z = standardized(self.stats, np.where(m, 0.0, v), "values", ~m)
        preds = self.pipeline.predict(self._dit, "impute", z, m, first, n_samples=n, seed=seed)
        out = np.where(m, self.stats.inverse(self._finish("impute", preds, gated)), v)
        return out[0] if single else out


def run_main(argv: Sequence[str] | None = None) -> int:
    """``umask run --bundle DIR --values FILE.csv [--task forecast|impute] [--first-slot N]`` (grid_cli)."""
    from umask.runtime.core.gridcli import grid_run_main

    return grid_run_main(argv, Session, "umask run (umask_grid bundle)")


__all__ = ["FAMILY", "GridPipeline", "Session", "run_main"]
