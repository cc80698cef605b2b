"""Peer runtimes side by side: the bundle's DiT step in onnxruntime (the project's path), OpenVINO and ExecuTorch.

::

    bash scripts/peers_env.sh                      # isolated venv with openvino (artifacts/peers/venv)
    bash scripts/peers_env_executorch.sh           # isolated venv with executorch (artifacts/peers/et)
    python -m umask.bench.latency.peers --bundle artifacts/bundles/edge_small \
        [--ckpt checkpoints/umask_small] --out benchmarks/results/peers_cpu.json

Same network, same inputs, same run, one thread each: onnxruntime runs in this process (the runtime's
session options: 1 intra-op thread, spinning off); OpenVINO runs the same ONNX file in a worker process
of the peers environment (benchmarks/latency/peer_worker.py; ``$UMASK_PEERS_PYTHON`` or
artifacts/peers/venv/bin/python); ExecuTorch runs the same DiT step module of the bundle's checkpoint,
torch.export-ed and lowered to an XNNPACK-delegated .pte (benchmarks/latency/et_program.py), in a worker
of its own environment (et_worker.py; ``$UMASK_ET_PYTHON`` or artifacts/peers/et/bin/python), so no
peer's pins touch the project's environment. The engines are timed in INTERLEAVED blocks (``--block``
calls of one, then of the next) so a load change on a shared machine hits all alike; each engine times
its own calls (no IPC in the figures). Every row carries llama-bench-style repetitions, the CPU's int8
flags, the parity against onnxruntime's output on the same feed and the ratio to the project's default
path (onnxruntime fp32).

Inputs: the bundle's golden inputs of the DiT (runtime/core/golden.py) tiled to the request's batch
(``diffusion.defaults``: the short-term request's n_samples). A peer that cannot run is one line in ``skipped``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.latency import et_program
from umask.bench.latency.machine import REPO_ROOT, git_commit, load_average, machine_info
from umask.bench.latency.rows import shapes_of, validate_row
from umask.bench.latency.timing import latency_summary, split_summary, write_json_md

log = logging.getLogger(__name__)

DEFAULT_PEERS_PYTHON = REPO_ROOT / "artifacts" / "peers" / "venv" / "bin" / "python"
WORKER = Path(__file__).with_name("peer_worker.py")
PROVIDER_USED = {"onnxruntime": "CPUExecutionProvider", "openvino": "CPU plugin", "executorch": "XnnpackBackend"}


def peers_python() -> Path | None:
    p = Path(os.environ.get("UMASK_PEERS_PYTHON") or DEFAULT_PEERS_PYTHON)
    return p if p.is_file() else None


class Worker:
    """A peer runtime's worker process: OpenVINO (peer_worker.py) or ExecuTorch (et_worker.py), one JSON line
    per reply (see peer_worker.py for the protocol). ``args``: the script's own arguments besides the feed,
    the output file and the thread count."""

    def __init__(self, python: Path, script: Path, args: list[str], feed: dict[str, np.ndarray], work: Path,
                 threads: int = 1, tag: str = "peer") -> None:
        fpath, self.out = work / f"feed.{tag}.npz", work / f"out.{tag}.npz"
        np.savez(fpath, **feed)
        self.proc = subprocess.Popen([str(python), str(script), *args, "--feed", str(fpath),
                                      "--out", str(self.out), "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        self.info = self._reply()
        if not self.info.get("ready"):
            raise RuntimeError(f"peer worker did not start: {self.info}")

    def _reply(self) -> dict[str, Any]:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise RuntimeError(f"peer worker exited (code {self.proc.poll()})")
        return json.loads(line)

    def run(self, n: int) -> list[float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {n}\n")
        self.proc.stdin.flush()
        return list(self._reply()["ms"])

    def outputs(self) -> dict[str, np.ndarray]:
        with np.load(self.out, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def dit_feed(root: Path, manifest: dict[str, Any], precision: str) -> dict[str, np.ndarray]:
    from umask.runtime.core import golden as gd
    from umask.runtime.core.bundle import read_verified

    rel = manifest["artifacts"][precision]["dit"]["file"]
    g = (manifest.get("golden") or {}).get(rel)
    if g and g.get("status") == "ok":
        ins, _ = gd.unpack(read_verified(root, g["file"], manifest), g["file"])
    else:
        ins = gd.derive_inputs(manifest["artifacts"][precision]["dit"]["inputs"], rel)
    from umask.runtime.families.umask.checks import task_defaults

    n = int(task_defaults(manifest["diffusion"]["defaults"], "short_term").get("n_samples", 1))   # the request's draws
    return {k: np.ascontiguousarray(np.repeat(v[:1], n, axis=0)) for k, v in ins.items()}


def default_ckpt(manifest: dict[str, Any]) -> Path | None:
    """The checkpoint the bundle was exported from (manifest ``checkpoint.path``) when it is on this machine."""
    src = (manifest.get("checkpoint") or {}).get("path")
    return Path(src) if src and Path(src).exists() else None


def start_peers(bundle: Path, m: dict[str, Any], p: str, feed: dict[str, np.ndarray], work: Path, threads: int,
                ckpt: Path | None, skipped: list[str], versions: dict[str, str],
                artifacts: dict[tuple[str, str], tuple[str, int]], lowering: dict[str, Any]) -> dict[str, Worker]:
    """The peer workers for precision ``p``: OpenVINO on the bundle's ONNX file, ExecuTorch on the .pte of the
    same DiT step (et_program.py). A peer that cannot start is one line in ``skipped``."""
    workers: dict[str, Worker] = {}
    e = m["artifacts"][p]["dit"]
    py = peers_python()
    if py is None:
        skipped.append("OpenVINO: no peers environment (bash scripts/peers_env.sh, or $UMASK_PEERS_PYTHON)")
    else:
        try:
            workers["openvino"] = Worker(py, WORKER, ["--onnx", str(bundle / e["file"])], feed, work, threads,
                                         tag=f"openvino.{p}")
            artifacts[("openvino", p)] = (f"{bundle}/{e['file']}", m["files"][e["file"]]["size"])
        except (RuntimeError, OSError, ValueError) as ex:
            skipped.append(f"OpenVINO {p}: {ex}")
    et_py = et_program.et_python()
    if et_py is None:
        skipped.append("ExecuTorch: no ExecuTorch environment (bash scripts/peers_env_executorch.sh, "
                       "or $UMASK_ET_PYTHON)")
    elif p not in et_program.VARIANTS:
        skipped.append(f"ExecuTorch {p}: no ExecuTorch program for this precision "
                       f"(runs {', '.join(et_program.VARIANTS)}; int8-dynamic = XNNPACK dynamic int8)")
    elif ckpt is None:
        skipped.append(f"ExecuTorch {p}: no checkpoint to torch.export (--ckpt; the bundle's source "
                       f"{(m.get('checkpoint') or {}).get('path')} is not on this machine)")
    else:
        try:
            pte, names, info = et_program.build_pte(ckpt, feed, p, et_py)
            lowering[p] = info
            workers["executorch"] = Worker(et_py, et_program.ET_WORKER, ["--pte", str(pte), "--names", ",".join(names)],
                                           feed, work, threads, tag=f"executorch.{p}")
            artifacts[("executorch", p)] = (str(pte), pte.stat().st_size)
        except (RuntimeError, OSError, ValueError) as ex:
            skipped.append(f"ExecuTorch {p}: {ex}")
    for eng, w in workers.items():
        versions[eng] = w.info["version"]
    return workers


def run(bundle: Path, precisions: list[str], *, rounds: int = 40, block: int = 5, repetitions: int = 5,
        threads: int = 1, ckpt: Path | None = None) -> dict[str, Any]:
    """``ckpt``: the checkpoint the bundle was exported from, for the ExecuTorch program (default: the
    manifest's ``checkpoint.path`` when present)."""
    import onnxruntime as ort

    from umask.runtime.core.bundle import read_verified, verify_bundle
    from umask.runtime.engines.ort import cpu_int8_caps, inference_session, session_options

    m = verify_bundle(bundle)
    ckpt = ckpt if ckpt is not None else default_ckpt(m)
    load_before = load_average()
    caps = cpu_int8_caps()
    skipped, rows = [], []
    work = Path(tempfile.mkdtemp(prefix="peers-"))
    times: dict[tuple[str, str], list[float]] = {}
    parity: dict[tuple[str, str], dict[str, float]] = {}
    versions: dict[str, str] = {"onnxruntime": ort.__version__}
    artifacts: dict[tuple[str, str], tuple[str, int]] = {}
    lowering: dict[str, Any] = {}
    for p in precisions:
        e = m["artifacts"].get(p, {}).get("dit", {})
        if e.get("status") != "ok":
            skipped.append(f"{p}: no usable DiT artifact in the bundle")
            continue
        feed = dit_feed(bundle, m, p)
        sess = inference_session(read_verified(bundle, e["file"], m), session_options(threads=threads))
        artifacts[("onnxruntime", p)] = (f"{bundle}/{e['file']}", m["files"][e["file"]]["size"])
        ref = sess.run(None, feed)[0]
        workers = start_peers(bundle, m, p, feed, work, threads, ckpt, skipped, versions,
                              artifacts, lowering)
        for eng, w in workers.items():
            d = float(np.abs(next(iter(w.outputs().values())).astype(np.float64) - ref).max())
            parity[(eng, p)] = {"max_abs_diff": d, "rel_max": d / max(1.0, float(np.abs(ref).max())),
                                "reference": f"onnxruntime {p} on the same feed"}
        for _ in range(3):
            sess.run(None, feed)
        for w in workers.values():
            w.run(3)
        times[("onnxruntime", p)] = []
        for eng in workers:
            times[(eng, p)] = []
        for _ in range(max(1, rounds // block)):
            for _ in range(block):
                a = time.perf_counter()
                sess.run(None, feed)
                times[("onnxruntime", p)].append((time.perf_counter() - a) * 1e3)
            for eng, w in workers.items():
                times[(eng, p)] += w.run(block)
        for w in workers.values():
            w.close()
    shutil.rmtree(work, ignore_errors=True)          # the workers' feed / output files only
    base = times.get(("onnxruntime", "fp32"))
    base_p50 = latency_summary(base)["p50"] if base else None
    machine = machine_info()
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ratios: dict[str, dict[str, float | None]] = {}
    for (eng, p), v in times.items():
        st = split_summary(v, repetitions)
        own = times.get(("onnxruntime", p))
        feed = dit_feed(bundle, m, p)
        art, nbytes = artifacts[(eng, p)]
        ratio = {"vs_project_fp32_p50": None if not base_p50 else round(st["latency_ms"]["p50"] / base_p50, 4),
                 "vs_onnxruntime_same_precision_p50": round(st["latency_ms"]["p50"] / latency_summary(own)["p50"], 4)
                 if own else None}
        name = f"denoiser_step/{eng}/{p}/cpu/t{threads}"
        ratios[name] = ratio
        row = {"name": name, "component": "denoiser_step", "engine": eng, "engine_version": versions.get(eng),
               "provider": "cpu", "provider_used": [PROVIDER_USED[eng]],
               "device": "cpu", "precision": p, "threads": threads, "spinning": False if eng == "onnxruntime" else None,
               "batch": int(next(iter(feed.values())).shape[0]), "shapes": shapes_of(feed), "warmup_s": 0.0,
               "warmup_iters": 3, **st, "peak_rss_mb": None,
               "peak_rss_method": "not measured (two processes; see the request rows of latency_cpu for memory)",
               "device_mem_mb": None, "artifact": [art], "artifact_bytes": nbytes,
               "parity": parity.get((eng, p)), "llm": None, "request": None, "cpu_int8": caps, "date": date,
               "git_commit": git_commit(), "machine": f"{machine['cpu']} x{machine['logical_cores']}",
               "notes": f"ratio vs onnxruntime fp32 {ratio['vs_project_fp32_p50']}, vs onnxruntime {p} "
                        f"{ratio['vs_onnxruntime_same_precision_p50']} (p50, same run, interleaved blocks)"}
        validate_row(row)
        rows.append(row)
    return {"meta": {"command": " ".join(["python", "-m", "umask.bench.latency.peers", *sys.argv[1:]]),
                     "commit": git_commit(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "bundle": str(bundle), "bundle_created": m.get("created_utc"), "versions": versions,
                     "machine": machine, "cpu_int8": caps, "load_before": load_before, "ratios": ratios,
                     "load_after": load_average(), "rounds": rounds, "block": block, "repetitions": repetitions,
                     "checkpoint": None if ckpt is None else str(ckpt), "executorch_lowering": lowering,
                     "notes": ["latency figures are PROVISIONAL on a shared, loaded 2-core machine (load average "
                               "in meta); blocks are interleaved so the ratios are fairer than the absolute ms",
                               "ExecuTorch (XNNPACK delegate, isolated env scripts/peers_env_executorch.sh): the "
                               "same DiTStep module the ONNX exporter writes, from the bundle's checkpoint (EMA "
                               "weights), torch.export at the feed's batch, lowered with XnnpackPartitioner; "
                               "int8-dynamic = XNNPACK dynamic int8 (per-channel weights, PT2E); the ops XNNPACK "
                               "does not take run in ExecuTorch's portable kernels (meta.executorch_lowering); "
                               "LiteRT not tried",
                               "OpenVINO: CPU plugin, INFERENCE_NUM_THREADS=1, PERFORMANCE_HINT=LATENCY, "
                               "INFERENCE_PRECISION_HINT=f32 (the int8 QDQ file runs its quantized ops as int8 "
                               "through OpenVINO's low-precision transformations)"]},
            "rows": rows, "skipped": list(dict.fromkeys(skipped))}


def markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    c = m["cpu_int8"]
    lines = ["# Peer runtimes: the bundle's DiT step, same network, same run", "",
             f"Bundle {m['bundle']} (created {m['bundle_created']}); {m['machine'].get('cpu')}, int8 flags "
             f"{', '.join(c['vnni_flags']) or 'none'}; 1 thread; load average before / after {m['load_before']} / "
             f"{m['load_after']}. Versions: {m['versions']}.", f"Command: `{m['command']}` (commit {m['commit']})", "",
             "| engine | precision | batch | p50 ms | p99 ms | mean ± std of reps ms | vs onnxruntime fp32 | "
             "vs onnxruntime same precision | parity (rel max vs onnxruntime) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["rows"]:
        rp, par, ra = r["repetitions"], r["parity"], m["ratios"][r["name"]]
        lines.append(f"| {r['engine']} {str(r['engine_version']).split('-')[0]} | {r['precision']} | {r['batch']} | "
                     f"{r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} | {rp['mean']:.2f} ± {rp['std']:.2f} | "
                     f"{ra['vs_project_fp32_p50']} | {ra['vs_onnxruntime_same_precision_p50']} | "
                     f"{'-' if not par else format(par['rel_max'], '.2e')} |")
    if res["skipped"]:
        lines += ["", "Skipped:"] + [f"- {s}" for s in res["skipped"]]
    if m.get("executorch_lowering"):
        lines += ["", "ExecuTorch programs:"] + [
            f"- {p}: {i['delegate_calls']} XNNPACK delegate call(s), ops outside XNNPACK "
            f"{i['non_delegated_ops'] or 'none'}, {i['bytes']} bytes" for p, i in m["executorch_lowering"].items()]
    lines += ["", "Notes:"] + [f"- {s}" for s in m["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.bench.latency.peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--precisions", default="fp32,int8-qdq,int8-dynamic")
    p.add_argument("--ckpt", type=Path, default=None,
                   help="checkpoint the bundle was exported from, for ExecuTorch (default: manifest checkpoint.path)")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/peers_cpu.json"))
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    res = run(ns.bundle, [x.strip() for x in ns.precisions.split(",") if x.strip()], rounds=ns.rounds,
              block=ns.block, repetitions=ns.repetitions, ckpt=ns.ckpt)
    write_json_md(ns.out, res, markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
