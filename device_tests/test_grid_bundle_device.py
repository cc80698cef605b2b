"""Device-only: the grid U-MASK bundle (`umask_grid`) on the CUDA execution provider against the CPU.

    UMASK_GRID_BUNDLE=artifacts/bundles/umask_grid_s0 pytest device_tests/test_grid_bundle_device.py

The bundle: ``UMASK_GRID_BUNDLE``, else ``artifacts/bundles/umask_grid_s0``, else one exported here from the
shipped ``checkpoints/umask_grid_s0`` (fp32 only, about a minute on one core). Skips with one line without
onnxruntime's CUDA provider. Checks, on REAL Milan test windows, that the GPU session's forecasts and
imputations equal the CPU session's (raw units, relative to the cells' scale) and writes the request latency
of both to ``$UMASK_DEVICE_OUT/grid_bundle_latency.json`` (default artifacts/device_tests).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ort = pytest.importorskip("onnxruntime")
needs_cuda = pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                                reason="no onnxruntime CUDA provider: grid bundle GPU parity skipped")


@pytest.fixture(scope="module")
def grid_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("UMASK_GRID_BUNDLE")
    for cand in ([Path(env)] if env else []) + [ROOT / "artifacts/bundles/umask_grid_s0"]:
        if (cand / "manifest.json").is_file():
            return cand
    from umask.export.families import exporter

    out = tmp_path_factory.mktemp("grid") / "bundle"
    exporter("umask_grid")(ROOT / "checkpoints/umask_grid_s0", out, precisions=("fp32",))
    return out


def _p50(fn, n: int = 20) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 50))


@needs_cuda
def test_grid_bundle_cuda_matches_cpu(grid_bundle: Path) -> None:
    from umask.runtime.session import Session
    from umask.train.data import splits
    from umask.train.data.grids import milan_grid

    g = milan_grid()
    fw = splits.forecast_windows(g.values, "test", splits=g.splits())
    iw = splits.imputation_windows(g.values, "test", splits=g.splits())
    idx = np.array([0, 100, 250])
    first = fw.starts[idx] - fw.x.shape[1]
    vals = np.where(iw.mask[:3], np.nan, iw.truth[:3])
    out: dict[str, dict[str, float]] = {}
    res = {}
    for name, providers in (("cpu", ["cpu"]), ("cuda", ["cuda"])):
        with Session.open(grid_bundle, precision="fp32", providers=providers, allow_unsigned=True) as s:
            if name == "cuda":
                assert s.providers[0] == "CUDAExecutionProvider", s.providers
            res[name] = (s.forecast(fw.x[idx], first_slot=first), s.impute(vals, iw.mask[:3], first_slot=iw.starts[:3]))
            out[name] = {"a1_p50_ms": _p50(lambda s=s: s.forecast(fw.x[0], first_slot=int(first[0]))),
                         "a2_p50_ms": _p50(lambda s=s: s.impute(vals[0], iw.mask[0], first_slot=int(iw.starts[0])))}
    scale = g.values[: g.splits()["train"][1]].std(axis=0)
    for a, b in zip(res["cpu"], res["cuda"]):
        assert float(np.max(np.abs(a - b) / scale)) <= 1e-3
    dst = Path(os.environ.get("UMASK_DEVICE_OUT", ROOT / "artifacts/device_tests"))
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "grid_bundle_latency.json").write_text(json.dumps({"bundle": str(grid_bundle), **out}, indent=1) + "\n")
