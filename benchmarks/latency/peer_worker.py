"""A peer runtime's worker process for the latency harness (issue 15): runs one ONNX network in OpenVINO.

Started by `umask.bench.latency.peers` with the Python of the isolated peers environment
(scripts/peers_env.sh), so it imports NOTHING of this project (numpy + openvino only)::

    artifacts/peers/venv/bin/python benchmarks/latency/peer_worker.py --onnx dit.onnx --feed feed.npz \
        --out out.npz --threads 1

Protocol (one JSON line per reply on stdout): after loading it prints {"ready": true, "engine", "version",
"compile_s"} and writes the network's outputs on the feed to ``--out`` (for parity); then each stdin line
``run N`` gets {"ms": [N latencies]} (timed inside the worker: no IPC in the figures); ``quit`` ends it.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--onnx", required=True)
    p.add_argument("--feed", required=True, help=".npz of the inputs (name -> array)")
    p.add_argument("--out", required=True, help=".npz the outputs on the feed are written to")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision-hint", default="f32", help="OpenVINO INFERENCE_PRECISION_HINT (default f32)")
    ns = p.parse_args()
    import numpy as np
    import openvino as ov

    feed = dict(np.load(ns.feed, allow_pickle=False))
    t0 = time.perf_counter()
    core = ov.Core()
    model = core.read_model(ns.onnx)
    cfg = {"INFERENCE_NUM_THREADS": ns.threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
           "INFERENCE_PRECISION_HINT": ns.precision_hint}
    compiled = core.compile_model(model, "CPU", cfg)
    req = compiled.create_infer_request()
    compile_s = time.perf_counter() - t0
    names = [o.get_any_name() for o in compiled.outputs]
    res = req.infer(feed)
    outs = {n: np.asarray(res[o]) for n, o in zip(names, compiled.outputs)}
    np.savez(ns.out, **outs)
    print(json.dumps({"ready": True, "engine": "openvino", "version": ov.__version__, "compile_s": round(compile_s, 3),
                      "outputs": {k: list(v.shape) for k, v in outs.items()}}), flush=True)
    from worker_loop import serve     # next to this file (imports nothing of the project)

    return serve(lambda: req.infer(feed))

if __name__ == "__main__":
    raise SystemExit(main())
