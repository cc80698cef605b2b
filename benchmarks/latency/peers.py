"""Peer runtimes side by side: the bundle's exported DiT step in onnxruntime (the project's path) and in OpenVINO.

::

    bash scripts/peers_env.sh                      # isolated venv with openvino (artifacts/peers/venv)
    python -m umask.bench.latency.peers --bundle artifacts/bundles/edge_small \
        --out benchmarks/results/peers_cpu.json

Same ONNX file, same inputs, same run, one thread each: onnxruntime runs in this process (the runtime's
session options: 1 intra-op thread, spinning off); OpenVINO runs in a worker process started with the
peers environment's Python (benchmarks/latency/peer_worker.py; ``$UMASK_PEERS_PYTHON`` or
artifacts/peers/venv/bin/python), so its pins never touch the project's environment. The two are
timed in INTERLEAVED blocks (``--block`` calls of one, then of the other) so a load change on a shared
machine hits both alike; each engine times its own calls (no IPC in the figures). Every row carries
llama-bench-style repetitions, the CPU's int8 flags, the parity against onnxruntime's output on the
same feed and the ratio to the project's default path (onnxruntime fp32).

Inputs: the bundle's golden inputs of the DiT (runtime/core/golden.py) tiled to the request's batch
(``diffusion.defaults.n_samples``). ExecuTorch is not run: it takes a torch.export program, not the
ONNX file, and its package pins torch (see the notes of the result file).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.latency.machine import REPO_ROOT, git_commit, load_average, machine_info
from umask.bench.latency.rows import shapes_of, validate_row
from umask.bench.latency.timing import latency_summary, split_summary, write_json_md

log = logging.getLogger(__name__)

DEFAULT_PEERS_PYTHON = REPO_ROOT / "artifacts" / "peers" / "venv" / "bin" / "python"
WORKER = Path(__file__).with_name("peer_worker.py")


def peers_python() -> Path | None:
    p = Path(os.environ.get("UMASK_PEERS_PYTHON") or DEFAULT_PEERS_PYTHON)
    return p if p.is_file() else None


class Worker:
    """The OpenVINO worker process (see peer_worker.py for the protocol)."""

    def __init__(self, python: Path, onnx: Path, feed: dict[str, np.ndarray], work: Path, threads: int = 1) -> None:
        fpath, self.out = work / "feed.npz", work / f"out.{onnx.stem}.npz"
        np.savez(fpath, **feed)
        self.proc = subprocess.Popen([str(python), str(WORKER), "--onnx", str(onnx), "--feed", str(fpath),
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
    n = int(manifest["diffusion"]["defaults"].get("n_samples", 1))
    return {k: np.ascontiguousarray(np.repeat(v[:1], n, axis=0)) for k, v in ins.items()}


def run(bundle: Path, precisions: list[str], *, rounds: int = 40, block: int = 5, repetitions: int = 5,
        threads: int = 1) -> dict[str, Any]:
    import onnxruntime as ort

    from umask.runtime.core.bundle import read_verified, verify_bundle
    from umask.runtime.engines.ort import cpu_int8_caps, inference_session, session_options

    m = verify_bundle(bundle)
    py = peers_python()
    load_before = load_average()
    caps = cpu_int8_caps()
    skipped, rows = [], []
    work = Path(tempfile.mkdtemp(prefix="peers-"))
    times: dict[tuple[str, str], list[float]] = {}
    parity: dict[tuple[str, str], dict[str, float]] = {}
    versions: dict[str, str] = {"onnxruntime": ort.__version__}
    for p in precisions:
        e = m["artifacts"].get(p, {}).get("dit", {})
        if e.get("status") != "ok":
            skipped.append(f"{p}: no usable DiT artifact in the bundle")
            continue
        feed = dit_feed(bundle, m, p)
        sess = inference_session(read_verified(bundle, e["file"], m), session_options(threads=threads))
        ref = sess.run(None, feed)[0]
        worker = None
        if py is None:
            skipped.append("OpenVINO: no peers environment (bash scripts/peers_env.sh, or $UMASK_PEERS_PYTHON)")
        else:
            try:
                worker = Worker(py, bundle / e["file"], feed, work, threads)
                versions["openvino"] = worker.info["version"]
                got = next(iter(worker.outputs().values()))
                d = float(np.abs(got.astype(np.float64) - ref).max())
                parity[("openvino", p)] = {"max_abs_diff": d, "rel_max": d / max(1.0, float(np.abs(ref).max())),
                                           "reference": f"onnxruntime {p} on the same feed"}
            except (RuntimeError, OSError, ValueError) as ex:
                skipped.append(f"OpenVINO {p}: {ex}")
                worker = None
        for _ in range(3):
            sess.run(None, feed)
        if worker is not None:
            worker.run(3)
        times[("onnxruntime", p)], peer = [], []
        for _ in range(max(1, rounds // block)):
            for _ in range(block):
                a = time.perf_counter()
                sess.run(None, feed)
                times[("onnxruntime", p)].append((time.perf_counter() - a) * 1e3)
            if worker is not None:
                peer += worker.run(block)
        if worker is not None:
            times[("openvino", p)] = peer
            worker.close()
    base = times.get(("onnxruntime", "fp32"))
    base_p50 = latency_summary(base)["p50"] if base else None
    machine = machine_info()
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ratios: dict[str, dict[str, float | None]] = {}
    for (eng, p), v in times.items():
        st = split_summary(v, repetitions)
        own = times.get(("onnxruntime", p))
        feed = dit_feed(bundle, m, p)
        rel = m["artifacts"][p]["dit"]["file"]
        ratio = {"vs_project_fp32_p50": None if not base_p50 else round(st["latency_ms"]["p50"] / base_p50, 4),
                 "vs_onnxruntime_same_precision_p50": round(st["latency_ms"]["p50"] / latency_summary(own)["p50"], 4)
                 if own else None}
        name = f"denoiser_step/{eng}/{p}/cpu/t{threads}"
        ratios[name] = ratio
        row = {"name": name, "component": "denoiser_step", "engine": eng, "engine_version": versions.get(eng),
               "provider": "cpu", "provider_used": ["CPUExecutionProvider"] if eng == "onnxruntime" else ["CPU plugin"],
               "device": "cpu", "precision": p, "threads": threads, "spinning": False if eng == "onnxruntime" else None,
               "batch": int(next(iter(feed.values())).shape[0]), "shapes": shapes_of(feed), "warmup_s": 0.0,
               "warmup_iters": 3, **st, "peak_rss_mb": None,
               "peak_rss_method": "not measured (two processes; see the request rows of latency_cpu for memory)",
               "device_mem_mb": None, "artifact": [f"{bundle}/{rel}"], "artifact_bytes": m["files"][rel]["size"],
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
                     "notes": ["latency figures are PROVISIONAL on a shared, loaded 2-core machine (load average "
                               "in meta); blocks are interleaved so the ratios are fairer than the absolute ms",
                               "ExecuTorch (XNNPACK) not run: it lowers a torch.export program (not this ONNX file) "
                               "and its wheel pins its own torch; LiteRT not tried",
                               "OpenVINO: CPU plugin, INFERENCE_NUM_THREADS=1, PERFORMANCE_HINT=LATENCY, "
                               "INFERENCE_PRECISION_HINT=f32 (the int8 QDQ file runs its quantized ops as int8 "
                               "through OpenVINO's low-precision transformations)"]},
            "rows": rows, "skipped": skipped}


def markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    c = m["cpu_int8"]
    lines = ["# Peer runtimes: the bundle's DiT step, same ONNX file, same run", "",
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
    lines += ["", "Notes:"] + [f"- {s}" for s in m["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.bench.latency.peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--precisions", default="fp32,int8-qdq")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/peers_cpu.json"))
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    res = run(ns.bundle, [x.strip() for x in ns.precisions.split(",") if x.strip()], rounds=ns.rounds,
              block=ns.block, repetitions=ns.repetitions)
    write_json_md(ns.out, res, markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
