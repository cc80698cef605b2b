"""Grid U-MASK run -> verified bundle (ONNX fp32 / fp16 / int8, per-cell gate, parity-gated)::

    umask export --family umask_grid --ckpt artifacts/train/grid_umask_s0 --out artifacts/bundles/umask_grid
    python -m umask.export.families.umask.grid_exporter --ckpt artifacts/train/grid_umask_s0 \
        --out artifacts/bundles/umask_grid [--a2-gate lowrank|prior|none] [--precisions fp32,fp16,int8-qdq]

What it does (issue 10: the grid model's deployable form; the runtime is runtime/families/umask/grid_session.py):

1. loads the run's best checkpoint (EMA weights; a checkpoint directory is taken as given) and the grid it
   was trained on (its config.json names it; ``--data`` overrides); fits the grid statistics (floored per-cell
   scaler, weekday / weekend profiles: runtime/families/ustsllm/stats.py) and refuses a checkpoint whose saved
   scaler differs from them;
2. exports the DiT step (export/families/umask/networks.py DiTStep: x_t, x_obs, mask, t, h_u, task, prior ->
   x0) with a dynamic batch axis, and derives fp16 / int8 QDQ (calibrated on DiT inputs of training windows)
   / int8 dynamic with export/precision.py;
3. **gate**: runs the session's own pipeline (grid_session.GridPipeline: frames, prior, first-step x0 over
   ``samples`` noise draws) with the TORCH network on every validation window of A1 and A2 of the training
   grid and picks, per cell, the alpha of ``other + alpha (model - other)`` with the lowest validation MAE
   (grid_prior.choose_alphas; A1: other = the grid prior; A2: ``--a2-gate``, default the lowrank_interpolation
   row, the combination that beat every A2 baseline: v2_grid_umask_gated_lowrank.json). The test days are
   never read;
4. **parity gate** on those validation windows: fp32 vs torch max |diff| of the network's prediction <= 1e-3
   (standardized scale); every other precision: the gated validation nMAE within ``rel_tol`` (default 1 %, the
   issue's bound) of torch's, per task; a miss writes no file for that precision (fp32: no bundle);
5. writes the bundle through export/bundle.py (atomic, sha256 of every file, optional signature) with
   ``family: "umask_grid"``, the frame geometry, task tokens, the prior's settings, the schedule, the gate and
   the statistics, and golden inputs (a real validation window's DiT feeds) for the self-test.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umask.export import precision as prec
from umask.export.bundle import signature, tool_versions, write_bundle
from umask.export.errors import ExportError, ParityError
from umask.export.families.umask.networks import DiTStep, dit_extra_names, example_inputs
from umask.export.onnx_export import export_module
from umask.runtime.core.errors import InputError
from umask.runtime.engines.samplers import Schedule
from umask.runtime.families.umask import grid_frames
from umask.runtime.engines.backends import OrtBackend
from umask.runtime.families.umask.grid_prior import GridPrior, choose_alphas, gate
from umask.runtime.families.umask.grid_session import FEEDS, TASKS, GridPipeline
from umask.runtime.families.ustsllm.stats import fit_grid_stats
from umask.train.common.metrics import mae

log = logging.getLogger(__name__)

FAMILY = "umask_grid"
PRECISIONS = prec.PRECISIONS                     # fp32, fp16, int8-qdq, int8-dynamic
A2_GATES = ("lowrank", "prior", "none")
FP32_TOL = 1e-3              # max |onnx - torch| of the network's prediction, standardized scale
SCALER_ATOL = 1e-6           # config.json keeps the training scaler to 6 decimals
CALIB_EVERY = 100            # every 100th training window of each task calibrates int8 (Milan: 31 + 32)


def _load(ckpt: str | Path) -> tuple[Any, dict[str, Any], Path]:
    from umask.train.common.checkpoints import best_checkpoint, resolve_checkpoint
    from umask.train.models.umask.grid import load_model

    p = Path(ckpt)
    ckpt_dir = best_checkpoint(p) if (p / "ckpt").is_dir() else resolve_checkpoint(p)
    model, config = load_model(ckpt_dir)
    if model.cfg.prior == "none" or config.get("train", {}).get("prior", "none") == "none":
        raise ExportError(f"{ckpt_dir}: not a grid-prior checkpoint (train --prior grid); only those have a bundle")
    if model.cfg.mask_mode != "none":
        raise ExportError(f"{ckpt_dir}: mask_mode {model.cfg.mask_mode!r}; the grid bundle runs the all-evidence "
                          "model (mask_mode none)")
    if dit_extra_names(model) != ("prior",):
        raise ExportError(f"{ckpt_dir}: the DiT takes {dit_extra_names(model)}; the grid bundle feeds the prior only")
    return model, config, ckpt_dir


def _grid_of(config: dict[str, Any], data: str | Path | None) -> Any:
    from umask.train.data.grids import open_grid, run_grid_args

    args = run_grid_args(config.get("train", {}))
    return open_grid(data if data is not None else args["path"], grid=args["grid"], slot_minutes=args["slot_minutes"],
                     adjacency=args["adjacency"])


def torch_dit(model: Any) -> Any:
    """The checkpoint's DiT step as a feeds -> x0 callable (the reference every ONNX file is held to)."""
    step = DiTStep(model).eval()

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return step(*(torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in FEEDS)).numpy()
    return run


def ort_dit(path: Path) -> Any:
    """The ONNX file's DiT step as a feeds -> x0 callable (the runtime's backend)."""
    backend = OrtBackend({"dit": path})
    return lambda feeds: backend.run("dit", {k: feeds[k] for k in FEEDS})[0]


def protocol_windows(z: np.ndarray, periods: dict, spec: grid_frames.FrameSpec, split: str
                     ) -> dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]]:
    """task -> (inputs (n, L, cells), hidden or None, first slots (n,), truth) of every protocol window of ``split``."""
    from umask.train.data import splits

    fw = splits.forecast_windows(z, split, history=spec.history, horizon=spec.horizon, splits=periods)
    iw = splits.imputation_windows(z, split, window=spec.window, splits=periods)
    return {"forecast": (fw.x, None, fw.starts - spec.history, fw.y),
            "impute": (np.where(iw.mask, 0.0, iw.truth), iw.mask, iw.starts, iw.truth)}


def first_step_feeds(pipe: GridPipeline, task: str, fr: dict[str, np.ndarray], lo: int, hi: int,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every DiT input of windows lo..hi-1 of ``fr`` at the sampler's first step t = N-1: x_t is the evidence noised
    to that level and pure noise elsewhere (the start of runtime/engines/samplers.py ``sample``). int8 calibration
    and the golden self-test inputs."""
    d = pipe.dit_feeds(task, fr, lo, hi)
    t = pipe.schedule.num_train_steps - 1
    a, s = pipe.schedule.alpha_sigma(t)
    noise = rng.standard_normal(d["x_obs"].shape, dtype=np.float32)
    d["x_t"] = np.where(d["mask"] > 0.5, a * d["x_obs"] + s * noise, noise).astype(np.float32)
    d["t"] = np.full(hi - lo, t, np.int64)
    return d


def _gated(preds: dict[str, np.ndarray], gate_cfg: dict[str, Any], task: str) -> np.ndarray:
    g = gate_cfg.get(task)
    return preds["model"] if g is None else gate(preds["model"], preds[g["other"]], np.asarray(g["alphas"]))


def export_bundle(ckpt: str | Path, out: str | Path, *, precisions: Sequence[str] = PRECISIONS,
                  data: str | Path | None = None, a2_gate: str = "lowrank", samples: int = 16,
                  rel_tol: float = 0.01, sign_key: Any = None, passphrase: bytes | None = None,
                  **options: Any) -> dict[str, Any]:
    """Export the grid run ``ckpt`` to the bundle ``out``; returns the manifest. ``options``: the U-MASK
    exporter's options that ``umask export`` passes to every family (they do not apply here; logged)."""
    from umask.train.models.umask.grid import GridGeometry, IMPUTE, LONG
    from umask.train.models.umask.grid_prior import first_weekday_of_run, profile_decay_of_run

    t0 = time.perf_counter()
    if options:
        log.info("umask_grid export: ignoring options of other families: %s", sorted(options))
    precisions = prec.check_precisions(precisions, PRECISIONS)
    if a2_gate not in A2_GATES:
        raise InputError(f"a2_gate must be one of {A2_GATES}, got {a2_gate!r}")
    if not 1 <= int(samples) <= 256:
        raise InputError(f"samples must be in 1..256, got {samples}")
    torch.set_num_threads(1)
    model, config, ckpt_dir = _load(ckpt)
    grid = _grid_of(config, data)
    geo = GridGeometry.of(grid)
    if (int(model.cfg.dit_config().H), int(model.cfg.dit_config().W)) != geo.shape or model.cfg.window.T != geo.frame:
        raise ExportError(f"{ckpt_dir}: trained on another grid shape or day length than {grid.source}")
    spec = geo.frame_spec()
    periods = grid.splits()
    train_end = periods["train"][1]
    tr = config.get("train", {})
    decay = profile_decay_of_run(tr)
    stats = fit_grid_stats(grid.values, train_end, geo.slots_per_day, first_weekday_of_run(tr, grid.source), decay)
    saved = config.get("data", {}).get("scaler")
    if saved is not None and not (np.allclose(saved["mean"], stats.mean, rtol=0, atol=SCALER_ATOL)
                                  and np.allclose(saved["std"], stats.std, rtol=0, atol=SCALER_ATOL)):
        raise ExportError(f"{ckpt_dir}: the checkpoint was standardized with another scaler than {grid.source}'s "
                          "training period gives (trained on other data? pass --data)")
    z = stats.transform(grid.values)
    prior = GridPrior.of_profiles(stats.profile, stats.profile_weekend, geo.slots_per_day, stats.first_weekday,
                                  a2=str(tr.get("a2_prior", "interpolation")))      # the profiles the bundle stores
    sched = model.schedule
    alphas_cumprod = np.asarray(sched.alphas_cumprod, np.float32)
    pipe = GridPipeline(spec, prior, {"forecast": LONG, "impute": IMPUTE}, Schedule(alphas_cumprod),
                        float(model.x_scale.reshape(-1)[0]))
    val = protocol_windows(z, periods, spec, "val")
    ref = torch_dit(model)

    # --- the gate, on the torch network's validation predictions ---
    torch_val = {t: pipe.predict(ref, t, x, h, f, n_samples=samples) for t, (x, h, f, _) in val.items()}
    others = {"forecast": "prior", "impute": None if a2_gate == "none" else a2_gate}
    gate_cfg: dict[str, Any] = {}
    for t in TASKS:
        if others[t] is None:
            continue
        x, h, f, y = val[t]
        mask = np.ones_like(y, bool) if h is None else h
        alphas = choose_alphas(torch_val[t]["model"], torch_val[t][others[t]], y, mask)
        gate_cfg[t] = {"other": others[t], "alphas": alphas.tolist(), "windows": int(len(f)),
                       "chosen_on": "every validation window of the training grid, lowest MAE per cell"}
        log.info("gate %s: other %s, alphas %s", t, others[t], alphas.tolist())
    torch_nmae = {t: mae(_gated(torch_val[t], gate_cfg, t), val[t][3], val[t][1]) for t in TASKS}
    for t in TASKS:
        x, h, f, y = val[t]
        parts = {k: round(mae(v, y, h), 5) for k, v in torch_val[t].items()}
        log.info("validation nMAE %s: gated %.4f, parts %s", t, torch_nmae[t], parts)

    # --- int8 calibration: DiT feeds of training windows (one noise draw at t = N-1) ---
    def calib_feeds() -> list[dict[str, np.ndarray]]:
        tw = protocol_windows(z, periods, spec, "train")
        feeds = []
        for t, (x, h, f, _) in tw.items():
            idx = np.arange(0, len(f), CALIB_EVERY)
            fr = pipe.frames(t, x[idx], None if h is None else h[idx], f[idx])
            feeds += [first_step_feeds(pipe, t, fr, lo, min(len(idx), lo + 4), np.random.default_rng(lo))
                      for lo in range(0, len(idx), 4)]
        return feeds

    def build(tmp: Path) -> dict[str, Any]:
        artifacts: dict[str, dict[str, Any]] = {}
        fp32 = tmp / "onnx" / "fp32" / "dit.onnx"
        export_module(DiTStep(model).eval(), example_inputs(model)["dit"], fp32)
        calib = calib_feeds() if any(p.startswith("int8-qdq") for p in precisions) else []
        golden = None
        for p in precisions:
            path = tmp / "onnx" / p / "dit.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            conv: dict[str, Any] = {}
            if p == "fp16":
                conv = prec.to_fp16(fp32, path)
            elif p == "int8-qdq":
                conv = prec.to_int8_qdq(fp32, path, calib)
            elif p == "int8-dynamic":
                conv = prec.to_int8_dynamic(fp32, path)
            fn = ort_dit(path)
            preds = {t: pipe.predict(fn, t, x, h, f, n_samples=samples) for t, (x, h, f, _) in val.items()}
            par: dict[str, Any] = {}
            for t in TASKS:
                diff = float(np.abs(preds[t]["model"] - torch_val[t]["model"]).max())
                nm = mae(_gated(preds[t], gate_cfg, t), val[t][3], val[t][1])
                par[t] = {"max_abs_diff_vs_torch": diff, "nmae": nm, "torch_nmae": torch_nmae[t],
                          "nmae_rel_diff": abs(nm - torch_nmae[t]) / torch_nmae[t], "windows": int(len(val[t][2]))}
                log.info("%s %s: max diff %.2e, gated val nMAE %.4f (torch %.4f)", p, t, diff, nm, torch_nmae[t])
            entry = {"file": f"onnx/{p}/dit.onnx", "conversion": conv, "parity": par,
                     "tolerance": {"max_abs_diff": FP32_TOL} if p == "fp32" else {"nmae_rel": rel_tol}}
            bad = ([f"{t}: max |onnx - torch| {par[t]['max_abs_diff_vs_torch']:.2e} > {FP32_TOL:g}" for t in TASKS
                    if par[t]["max_abs_diff_vs_torch"] > FP32_TOL] if p == "fp32" else
                   [f"{t}: validation nMAE {par[t]['nmae']:.4f} vs torch {par[t]['torch_nmae']:.4f}" for t in TASKS
                    if par[t]["nmae_rel_diff"] > rel_tol])
            if bad and p == "fp32":
                raise ParityError(f"fp32 dit: {'; '.join(bad)}")
            if bad:
                log.error("%s dit rejected (%s) -- artifact NOT written", p, "; ".join(bad))
                path.unlink()
                path.parent.rmdir()
                artifacts[p] = {"dit": {**entry, "file": None, "status": "rejected", "reason": "; ".join(bad)}}
                continue
            artifacts[p] = {"dit": {**entry, "status": "ok", **signature(path)}}
            if golden is None:
                fr = pipe.frames("impute", val["impute"][0][:1], val["impute"][1][:1], val["impute"][2][:1])
                golden = first_step_feeds(pipe, "impute", fr, 0, 1, np.random.default_rng(0))
        ok = [p for p in precisions if artifacts[p]["dit"]["status"] == "ok"]
        return {"model": {"geometry": spec.to_dict(), "task_ids": {"forecast": LONG, "impute": IMPUTE},
                          "x_scale": float(pipe.x_scale), "umask": model.cfg.to_dict(),
                          "prior": {"level_slots": prior.level_slots, "level_weight": prior.level_weight,
                                    "a2": prior.a2, "profile_decay": decay, "describe": prior.describe()["kind"]},
                          "point": {"kind": "first_x0", "n_samples": int(samples),
                                    "note": "the DiT's x0 estimate at t = N-1 (one DDIM step), mean over the draws"}},
                "stats": stats.to_dict(),
                "diffusion": {"num_train_steps": int(sched.num_train_steps), "schedule": sched.schedule,
                              "alphas_cumprod": [float(v) for v in alphas_cumprod.tolist()], "prediction": "x0"},
                "gate": gate_cfg,
                "grid": {"source": grid.source, "dataset": grid.describe(),
                         "shape": list(geo.shape), "slot_minutes": int(grid.slot_minutes),
                         "splits": {k: list(v) for k, v in periods.items()}},
                "parity": {"windows": "every validation window of the training grid (A1 and A2)",
                           "samples": int(samples), "torch_val_nmae": torch_nmae,
                           "tolerance": {"fp32_max_abs_diff": FP32_TOL, "nmae_rel": rel_tol}},
                "checkpoint": {"path": str(ckpt_dir), "steps": tr.get("steps"), "seed": tr.get("seed")},
                "artifacts": artifacts,
                "tensorrt": {"status": "skipped", "reason": "not built for this family (CPU onnxruntime bundle)"},
                "llm": {"status": "absent", "note": "the grid model has no profiling LLM"},
                "golden_inputs": {f"onnx/{p}/dit.onnx": golden for p in ok},
                "versions": tool_versions()}

    return write_bundle(out, build, family=FAMILY, started=t0, sign_key=sign_key, passphrase=passphrase)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.export.families.umask.grid_exporter",
                                description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="a grid run directory (its best checkpoint) or a checkpoint directory")
    p.add_argument("--out", required=True)
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--data", default=None, help="the training grid CSV (default: the one the run's config names)")
    p.add_argument("--a2-gate", default="lowrank", choices=A2_GATES,
                   help="A2's other end of the per-cell gate: the lowrank_interpolation row, the model's own prior, or none")
    p.add_argument("--samples", type=int, default=16, help="noise draws per window (first-step x0)")
    p.add_argument("--rel-tol", type=float, default=0.01, help="reduced precisions: gated validation nMAE within this "
                                                               "fraction of torch's")
    p.add_argument("--sign-key", default=None)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    m = export_bundle(ns.ckpt, ns.out, precisions=ns.precisions.split(","), data=ns.data, a2_gate=ns.a2_gate,
                      samples=ns.samples, rel_tol=ns.rel_tol, sign_key=ns.sign_key)
    print(f"{ns.out}: {sorted(m['artifacts'])} in {m['export_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["A2_GATES", "FAMILY", "PRECISIONS", "export_bundle", "first_step_feeds", "ort_dit", "protocol_windows",
           "torch_dit"]
