"""Deployment facts on the device (issue 15): the golden-I/O self-test on every execution provider, and the
TensorRT engines' recorded version / compute capability against this device.

Run on a GPU machine or a Jetson: ``pytest device_tests/test_deployment_facts.py --bundle DIR``.
Each test skips with one line where the bundle, the provider or TensorRT is absent; the CPU suite
(tests/test_edge_golden.py) covers the same logic with TensorRT absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umask.runtime.core.bundle import verify_bundle


def _providers() -> list[str]:
    ort = pytest.importorskip("onnxruntime")
    return [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()]


@pytest.mark.parametrize("provider", ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_golden_self_test_on_each_provider(bundle_dir: Path, provider: str, device_out: Path) -> None:
    from umask.runtime.engines.ort import self_test

    if provider not in _providers():
        pytest.skip(f"{provider} is not available here")
    m = verify_bundle(bundle_dir)
    if not m.get("golden"):
        pytest.skip(f"{bundle_dir}: exported before golden I/O existed; re-export it")
    # every ONNX file with golden I/O, on this provider (CPU fallback for nodes it does not take)
    rep = self_test(bundle_dir, m, providers=[provider])
    assert rep and all(r["ok"] for r in rep.values())
    worst = {rel: max((o.get("rel_max", 0.0) for o in r["outputs"].values()), default=0.0) for rel, r in rep.items()}
    (device_out / f"self_test_{provider}.json").write_text(json.dumps({"provider": provider, "rel_max": worst,
                                                                        "report": rep}, indent=1, default=str))


def test_tensorrt_engines_match_this_device(bundle_dir: Path) -> None:
    from umask.runtime.engines import trt_facts

    m = verify_bundle(bundle_dir)
    sec = m.get("tensorrt") or {}
    if sec.get("status") != "built":
        pytest.skip(f"{bundle_dir}: no TensorRT engines ({sec.get('status')}: {sec.get('reason', '')[:80]})")
    if trt_facts.tensorrt_version() is None:
        pytest.skip("tensorrt is not importable here")
    facts = trt_facts.device_facts()
    same = sec.get("tensorrt_version") == facts["tensorrt_version"] and \
        sec.get("compute_capability") == facts["compute_capability"]
    for key, e in (sec.get("engines") or {}).items():
        if e.get("status") != "built":
            continue
        if same:
            assert trt_facts.load_engine(bundle_dir, m, key) is not None
        else:        # built elsewhere: the typed refusal, naming both pairs
            with pytest.raises(trt_facts.EngineMismatchError, match="this device's"):
                trt_facts.load_engine(bundle_dir, m, key)


def test_tensorrt_builder_records_this_device(tmp_path: Path) -> None:
    trt = pytest.importorskip("tensorrt", reason="tensorrt not importable: no TensorRT on this machine")
    from umask.export.tensorrt import engine_facts
    from umask.runtime.engines import trt_facts

    f = engine_facts(trt)
    if f["compute_capability"] is None:
        pytest.skip("no CUDA device visible to the driver API")
    assert f["tensorrt_version"] == trt.__version__ == trt_facts.tensorrt_version()
    assert f["compute_capability"] == trt_facts.compute_capability()
