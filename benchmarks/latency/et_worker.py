"""The ExecuTorch (XNNPACK) peer of the latency harness (issue 15): lowers the DiT step and runs the .pte.

Runs with the Python of the isolated ExecuTorch environment (scripts/peers_env_executorch.sh) and imports
NOTHING of this project (torch, numpy, executorch only). Two modes::

    # 1. lower: the torch.export program of the DiT step (written by umask.bench.latency.et_program with the
    #    project's torch, the same release as here) -> XNNPACK-delegated ExecuTorch program
    artifacts/peers/et/bin/python benchmarks/latency/et_worker.py lower --pt2 dit.pt2 --pte dit.pte \
        --feed feed.npz --names x_t,x_obs,... [--quant dynamic-int8]
    # 2. serve: the same JSON-line protocol as peer_worker.py
    artifacts/peers/et/bin/python benchmarks/latency/et_worker.py --pte dit.pte --feed feed.npz \
        --names x_t,x_obs,... --out out.npz --threads 1

``lower`` prints one JSON line: the delegation summary (nodes in XNNPACK, the ops left to the portable
kernels) and the wall time. ``serve`` prints {"ready": true, "engine", "version", "compile_s"} after loading
(compile_s = program load + method init; lowering is a separate, cached step) and writes the outputs on the
feed to ``--out``; each stdin line ``run N`` gets {"ms": [N latencies]} timed here; ``quit`` ends it.

``--quant dynamic-int8``: XNNPACK's dynamic quantization (int8 per-channel weights of the Linear / conv
layers, activations quantized per call), PT2E flow (XNNPACKQuantizer -> prepare_pt2e -> convert_pt2e) on
the same program, re-exported before lowering; the analogue of the bundle's onnx int8-dynamic file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _inputs(feed_path: str, names: str) -> tuple:
    import numpy as np
    import torch

    with np.load(feed_path, allow_pickle=False) as z:
        return tuple(torch.from_numpy(np.ascontiguousarray(z[n])) for n in names.split(","))


def lower(ns: argparse.Namespace) -> int:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    args = _inputs(ns.feed, ns.names)
    ep = torch.export.load(ns.pt2)
    if ns.quant == "dynamic-int8":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer, get_symmetric_quantization_config)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
        m = prepare_pt2e(ep.module(), q)
        m(*args)                                                     # dynamic: no calibration statistics kept
        ep = torch.export.export(convert_pt2e(m), args)
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    gm = prog.exported_program().graph_module
    delegated, portable = 0, {}
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = str(node.target)
        if "executorch_call_delegate" in name:
            delegated += 1
        elif not name.startswith("<built-in") and "getitem" not in name:
            op = (name.split("::")[-1] if "::" in name else name).split("(")[0]
            portable[op] = portable.get(op, 0) + 1
    et = prog.to_executorch()
    with open(ns.pte, "wb") as f:
        f.write(et.buffer)
    print(json.dumps({"pte": ns.pte, "bytes": len(et.buffer), "quant": ns.quant, "delegate_calls": delegated,
                      "non_delegated_ops": portable, "lower_s": round(time.perf_counter() - t0, 2)}), flush=True)
    return 0


def _set_threads(n: int) -> None:
    """XNNPACK's threadpool size (the pybindings' own knob; absent in some builds: then the default pool)."""
    try:
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(n)
    except (ImportError, AttributeError):
        pass


def serve(ns: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from executorch import version
    from executorch.runtime import Runtime

    torch.set_num_threads(ns.threads)
    _set_threads(ns.threads)
    args = _inputs(ns.feed, ns.names)
    t0 = time.perf_counter()
    method = Runtime.get().load_program(ns.pte).load_method("forward")
    compile_s = time.perf_counter() - t0
    outs = method.execute(list(args))
    res = {f"out{i}": np.asarray(o) for i, o in enumerate(outs)}
    np.savez(ns.out, **res)
    print(json.dumps({"ready": True, "engine": "executorch", "version": version.__version__,
                      "compile_s": round(compile_s, 3), "outputs": {k: list(v.shape) for k, v in res.items()}}),
          flush=True)
    from worker_loop import serve     # next to this file (imports nothing of the project)

    return serve(lambda: method.execute(list(args)))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser()
    p.add_argument("--feed", required=True, help=".npz of the inputs (name -> array)")
    p.add_argument("--names", required=True, help="input names in the program's argument order, comma-separated")
    p.add_argument("--pte", required=True)
    if argv[:1] == ["lower"]:
        p.add_argument("--pt2", required=True, help="torch.export.save file of the DiT step")
        p.add_argument("--quant", choices=["none", "dynamic-int8"], default="none")
        return lower(p.parse_args(argv[1:]))
    p.add_argument("--out", required=True, help=".npz the outputs on the feed are written to")
    p.add_argument("--threads", type=int, default=1)
    return serve(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
