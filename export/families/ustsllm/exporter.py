"""U-STS-LLM checkpoint -> verified bundle (ONNX fp32 / fp16 / int8 QDQ, LoRA merged, parity-gated)::

    umask export --family ustsllm --ckpt artifacts/train/ustsllm --out artifacts/bundles/ustsllm
    python -m umask.export.families.ustsllm.exporter --ckpt artifacts/train/ustsllm --out artifacts/bundles/ustsllm

What it does:

1. loads the EMA weights, folds every LoRA adapter into its base weight (eq. 11, W = W0 + B A;
   ``model.merge_lora``) and checks the merged network against the unmerged one;
2. exports one graph per task, ``forecast.onnx`` (432 slots in, 144 out) and ``impute.onnx`` (288 in,
   288 out), with the batch and the cell axes dynamic (the network has no weight tied to the cell
   count), through ``torch.onnx.export(dynamo=False)`` as the U-MASK exporter does;
3. derives fp16 and int8 static QDQ (calibrated on Milan training windows) with export/precision.py;
4. **parity gate** on real Milan validation windows: fp32 vs torch max |diff| <= 1e-3 (standardized
   scale); fp16 and int8: the nMAE against the truth may differ from torch's by at most ``int8_rel_tol``
   (default 2 %) of it (fp16 max |diff| reaches ~0.1 through the pretrained blocks' large activations,
   while the validation nMAE moved by 0.3 % on Milan; the max |diff| is recorded); a miss raises ParityError and no bundle
   is written;
5. with ``--a2-gate lowrank|lowrank_profile`` (default auto: the row the network's imputation guidance starts from,
   ``guide_prior`` lowrank or lowrank_profile, else none): picks, per cell, the alpha of
   ``other + alpha (model - other)`` with the lowest masked MAE of the merged torch network on EVERY validation A2
   window (runtime/families/umask/grid_prior.choose_alphas; other = the lowrank_interpolation or the
   profile_lowrank_interpolation row, computed by the session from the bundle's statistics), and stores the alphas
   in the manifest's ``gate``; the session's ``impute`` applies them (the rows ``*_gated_*`` of
   benchmarks/accuracy/grid_residual_gate.py, now in the deployable artifact). The test days are never read;
6. writes the bundle through export/bundle.py (atomic, sha256 of every file, optional signature) with
   ``family: "ustsllm"``, the network config and the training grid's statistics (floored per-cell
   scaler, weekday / weekend slot-of-day profiles, first weekday, functional graph), which the runtime
   session uses to take and return raw units.
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
from umask.export.onnx_export import export_module
from umask.runtime.families.umask.grid_prior import choose_alphas, gate
from umask.runtime.families.ustsllm.stats import A2_GATE_OTHERS, GridStats, prior_channel
from umask.train.common.metrics import mae
from umask.train.data import splits
from umask.train.data.grids import open_grid, run_grid_args

log = logging.getLogger(__name__)

FAMILY = "ustsllm"
PRECISIONS = prec.PRECISIONS                     # fp32, fp16, int8-qdq, int8-dynamic
INPUTS = ("x", "mask", "prior", "tod", "dow", "graph")
OUTPUT = "y"
# int8 QDQ quantizes the backbone blocks (the bulk of the weights); these small side modules stay float:
# eq. 1's scale, the guidance branch and the heads (their outputs are added to the prediction directly),
# the embedding and the bias generator. Quantizing them cost 1.6 % validation nMAE on A1, keeping them
# float 0.01 % (measured on the Milan bundle).
INT8_FLOAT_SCOPES = ("/net/scaling/", "/net/forecast", "/net/impute", "/net/embed/", "/net/bias_gen/")
TOL = {"fp32": 1e-3}                 # max |onnx - torch| on the standardized scale; reduced precisions: nMAE gate


def _dynamic_axes() -> dict[str, dict[int, str]]:
    d: dict[str, dict[int, str]] = {n: {0: "batch", 2: "cells"} for n in ("x", "mask", "prior", OUTPUT)}
    d.update({"tod": {0: "batch"}, "dow": {0: "batch"}, "graph": {0: "cells", 1: "cells"}})
    return d


def export_task(net: torch.nn.Module, task: str, example: dict[str, np.ndarray], path: Path) -> None:
    """One task of the (merged) network as ONNX with dynamic batch and cell axes."""
    from umask.train.models.ustsllm.model import TaskNet

    module = TaskNet(net, task).eval()
    args = tuple(torch.as_tensor(example[k]) for k in INPUTS)
    export_module(module, args, path, input_names=INPUTS, output_names=(OUTPUT,), dynamic_axes=_dynamic_axes())


def _windows(grid_stats: GridStats, z: np.ndarray, periods: dict, cfg: Any, split: str, every: int
             ) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]]:
    """task -> (network inputs, truth, hidden mask or None) of every ``every``-th window of ``split``."""
    from umask.train.models.ustsllm.trainer import forecast_inputs, impute_inputs

    fw = splits.forecast_windows(z, split, history=cfg.history, horizon=cfg.horizon, splits=periods)
    iw = splits.imputation_windows(z, split, window=cfg.window, splits=periods)
    fi, ii = np.arange(0, len(fw.starts), every), np.arange(0, len(iw), every)
    return {"forecast": (forecast_inputs(fw.x[fi], fw.starts[fi] - cfg.history, grid_stats, cfg.horizon), fw.y[fi], None),
            "impute": (impute_inputs(iw.truth[ii], iw.mask[ii], iw.starts[ii], grid_stats, cfg.guide_prior), iw.truth[ii],
                       iw.mask[ii])}


def _scoped_nodes(path: Path, scopes: tuple[str, ...]) -> list[str]:
    """Names of the nodes of the ONNX file ``path`` under any of ``scopes`` (precision's ``keep_float``)."""
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node
            if any(sc in n.name for sc in scopes)]


def _run_ort(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    from umask.runtime.engines.ort import inference_session

    return inference_session(path).run([OUTPUT], {k: inputs[k] for k in INPUTS})[0]


def a2_gate_alphas(model: torch.nn.Module, stats: GridStats, z: np.ndarray, periods: dict, cfg: Any, other: str
                   ) -> dict[str, Any]:
    """The manifest's ``gate.impute``: per-cell alphas of ``other + alpha (model - other)`` chosen on every validation
    A2 window (protocol masks) with the (merged) torch network, and the validation nMAE of each part."""
    val = _windows(stats, z, periods, cfg, "val", 1)["impute"]
    inp, truth, mask = val
    with torch.no_grad():
        pred = np.concatenate([model("impute", **{k: torch.as_tensor(v if k == "graph" else v[i:i + 16])
                                                  for k, v in inp.items()}).numpy()
                               for i in range(0, inp["x"].shape[0], 16)]).astype(np.float64)
    x = np.where(mask, 0.0, truth)
    first = np.asarray(splits.imputation_windows(z, "val", window=cfg.window, splits=periods).starts)
    row = prior_channel(stats, "impute", x, mask, first, other)
    alphas = choose_alphas(pred, row, truth, mask)
    part = {"model": pred, "other": row, "gated": gate(pred, row, alphas)}
    val_nmae = {k: round(mae(v, truth, mask), 5) for k, v in part.items()}
    log.info("A2 gate against %s: alphas %s; validation nMAE %s", other, alphas.tolist(), val_nmae)
    return {"other": other, "alphas": alphas.tolist(), "windows": int(len(truth)), "val_nmae": val_nmae,
            "chosen_on": "every validation A2 window (protocol masks), per cell, lowest masked MAE of the merged "
                         "torch network"}


def export_bundle(ckpt: str | Path, out: str | Path, *, precisions: Sequence[str] = PRECISIONS,
                  data: str | Path | None = None, int8_rel_tol: float = 0.02, a2_gate: str = "auto",
                  sign_key: Any = None, passphrase: bytes | None = None, **options: Any) -> dict[str, Any]:
    """Export ``ckpt`` to the bundle ``out``; returns the manifest. ``data``: the training grid (default: the CSV
    the run's config names, the Milan sample for runs on it) whose validation windows gate parity and whose training
    windows calibrate int8. ``a2_gate``: "none", the A2 row the per-cell gate blends with, or "auto" (module doc,
    step 5).
    ``options``: the U-MASK exporter's options that ``umask export`` passes to every family (gguf_dir,
    sbert, tensorrt, ...): they do not apply here and are ignored (logged)."""
    from umask.train.common.checkpoints import resolve_checkpoint
    from umask.train.models.ustsllm.model import TASKS, load_model, merge_lora

    t0 = time.perf_counter()
    if options:
        log.info("ustsllm export: ignoring options of other families: %s", sorted(options))
    precisions = prec.check_precisions(precisions, PRECISIONS)
    if a2_gate not in ("auto", "none", *A2_GATE_OTHERS):
        raise ExportError(f"a2_gate must be auto, none or one of {A2_GATE_OTHERS}, got {a2_gate!r}")
    torch.set_num_threads(1)
    ckpt_dir = resolve_checkpoint(ckpt)
    model, config = load_model(ckpt_dir)
    cfg = model.cfg
    if a2_gate == "auto":
        a2_gate = cfg.guide_prior if cfg.guide_prior in A2_GATE_OTHERS else "none"
    st, train = config["data"]["stats"], config.get("train", {})
    stats = GridStats.from_dict(st, f"{ckpt_dir}/config.json data.stats")
    args = run_grid_args(train)            # the run's own grid (its adjacency is unused here, eq. 8)
    grid = open_grid(data if data is not None else args["path"], grid=args["grid"], slot_minutes=args["slot_minutes"])
    if grid.n_cells != stats.n_cells:
        raise ExportError(f"--data has {grid.n_cells} cells, the checkpoint was trained on {stats.n_cells}")
    periods = grid.splits()
    z = stats.transform(grid.values)
    val = _windows(stats, z, periods, cfg, "val", 16)
    calib = _windows(stats, z, periods, cfg, "train", 200)

    with torch.no_grad():
        ref = {t: model(t, **{k: torch.as_tensor(v) for k, v in val[t][0].items()}).numpy() for t in TASKS}
        n_merged = merge_lora(model.blocks)
        merged = {t: model(t, **{k: torch.as_tensor(v) for k, v in val[t][0].items()}).numpy() for t in TASKS}
    merge_diff = max(float(np.abs(ref[t] - merged[t]).max()) for t in TASKS)
    if merge_diff > 1e-4:
        raise ParityError(f"LoRA merge changed the output by {merge_diff:.2e} (> 1e-4)")
    torch_nmae = {t: mae(merged[t], val[t][1], val[t][2]) for t in TASKS}
    gate_cfg = {} if a2_gate == "none" else {"impute": a2_gate_alphas(model, stats, z, periods, cfg, a2_gate)}

    def build(tmp: Path) -> dict[str, Any]:
        artifacts: dict[str, dict[str, Any]] = {p: {} for p in precisions}
        parity: dict[str, dict[str, Any]] = {p: {} for p in precisions}
        for task in TASKS:
            fp32 = tmp / f"fp32/{task}.onnx"
            fp32.parent.mkdir(exist_ok=True)
            export_task(model, task, {k: v[:2] for k, v in val[task][0].items()} | {"graph": val[task][0]["graph"]},
                        fp32)
            for p in precisions:
                path = tmp / p / f"{task}.onnx"
                path.parent.mkdir(exist_ok=True)
                conv: dict[str, Any] = {}
                if p == "fp16":
                    conv = prec.to_fp16(fp32, path)
                elif p == "int8-qdq":
                    inp = calib[task][0]
                    feeds = [{k: (v if k == "graph" else v[i:i + 2]) for k, v in inp.items()}
                             for i in range(0, inp["x"].shape[0], 2)]
                    # no quant_pre_process: its symbolic shape inference fails on these graphs (onnxruntime 1.32)
                    conv = prec.to_int8_qdq(fp32, path, feeds, pre_process=False,
                                            keep_float=_scoped_nodes(fp32, INT8_FLOAT_SCOPES))
                    conv["float_scopes"] = list(INT8_FLOAT_SCOPES)
                elif p == "int8-dynamic":
                    conv = prec.to_int8_dynamic(fp32, path)
                y = _run_ort(path, val[task][0])
                diff = float(np.abs(y - merged[task]).max())
                nm = mae(y, val[task][1], val[task][2])
                rel = abs(nm - torch_nmae[task]) / torch_nmae[task]
                parity[p][task] = {"max_abs_diff_vs_torch": diff, "nmae": nm, "torch_nmae": torch_nmae[task],
                                   "nmae_rel_diff": rel, "windows": int(val[task][0]["x"].shape[0])}
                if p in TOL and diff > TOL[p]:
                    raise ParityError(f"{p} {task}: max |onnx - torch| = {diff:.3e} > {TOL[p]:g}")
                if p != "fp32" and rel > int8_rel_tol:
                    raise ParityError(f"{p} {task}: validation nMAE {nm:.4f} vs torch {torch_nmae[task]:.4f} "
                                      f"({rel:.1%} > {int8_rel_tol:.0%})")
                sig = signature(path)
                artifacts[p][task] = {"status": "present", "file": f"{p}/{task}.onnx", "inputs": sig["inputs"],
                                      "outputs": sig["outputs"], "opset": sig["opset"], "conversion": conv,
                                      "parity": parity[p][task]}
                log.info("%s %s: max diff %.2e, val nMAE %.4f (torch %.4f)", p, task, diff, nm, torch_nmae[task])
        return {"model": {"net": cfg.to_dict(), "tasks": {t: {"length": cfg.length(t), "target": cfg.target(t)}
                                                          for t in TASKS},
                          "lora_merged": n_merged, "merge_max_abs_diff": merge_diff},
                "grid": {"source": config["data"]["source"], "data": config["data"]["data"],
                         "shape": config["data"]["grid"], "slot_minutes": config["data"]["slot_minutes"]},
                "stats": stats.to_dict(), "artifacts": artifacts, "gate": gate_cfg,
                "parity": {"windows": "every 16th validation window of the training grid (A1 and A2 shapes)",
                           "tolerance": {**TOL, "int8-qdq_nmae_rel": int8_rel_tol}},
                "checkpoint": {"path": str(ckpt_dir), "train": train.get("steps"),
                               # how the run fit its profiles: what a zero-shot caller passes to fit_grid_stats
                               "profile_decay": float(train.get("profile_decay", 1.0)),
                               "profile_statistic": str(train.get("profile_statistic", "mean"))},
                # sections `umask export` prints for every family
                "tensorrt": {"status": "skipped", "reason": "not built for this family (CPU onnxruntime bundle)"},
                "llm": {"status": "absent", "note": "the backbone blocks are inside the ONNX graphs"},
                # real Milan validation windows for the golden self-test files (export/bundle.py)
                "golden_inputs": {f"{p}/{t}.onnx": {k: v[:1] for k, v in val[t][0].items() if k != "graph"}
                                  | {"graph": val[t][0]["graph"]} for p in precisions for t in TASKS},
                "versions": tool_versions()}

    return write_bundle(out, build, family=FAMILY, started=t0, sign_key=sign_key, passphrase=passphrase)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.export.families.ustsllm.exporter", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--data", default=None, help="the training grid CSV (default: the Milan sample)")
    p.add_argument("--int8-rel-tol", type=float, default=0.02)
    p.add_argument("--a2-gate", default="auto", choices=("auto", "none", *A2_GATE_OTHERS),
                   help="A2 per-cell gate between the network and this baseline row, chosen on the validation windows "
                        "(auto: the row the network's imputation guidance starts from, else none)")
    p.add_argument("--sign-key", default=None)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    m = export_bundle(ns.ckpt, ns.out, precisions=ns.precisions.split(","), data=ns.data,
                      int8_rel_tol=ns.int8_rel_tol, a2_gate=ns.a2_gate, sign_key=ns.sign_key)
    print(f"{ns.out}: {sorted(m['artifacts'])} in {m['export_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["a2_gate_alphas", "export_bundle", "export_task", "PRECISIONS", "FAMILY"]
