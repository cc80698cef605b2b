"""Which execution providers and TensorRT this device has, and whether each one really runs a model."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: no execution providers to detect")
onnx = pytest.importorskip("onnx", reason="onnx not installed: cannot build the probe model")

SKIP_EPS = ("AzureExecutionProvider",)     # a remote-inference EP, not a device


def probe_model(path) -> None:  # noqa: ANN001
    """y = x @ W + b with a fixed W, b (float32, dynamic batch)."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    b = np.array([0.5, -1.0, 2.0], np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
                          "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
                          [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def device_eps() -> list[str]:
    return [p for p in ort.get_available_providers() if p not in SKIP_EPS]


def tensorrt_status() -> str:
    try:
        import tensorrt as trt

        return f"tensorrt {trt.__version__}"
    except Exception as e:  # noqa: BLE001
        return f"absent ({type(e).__name__}: {e})"


def test_detect_and_every_provider_runs_the_probe(tmp_path, device_out) -> None:  # noqa: ANN001
    path = tmp_path / "probe.onnx"
    probe_model(path)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    ref = x @ (np.arange(12, dtype=np.float32).reshape(4, 3) / 10) + np.array([0.5, -1.0, 2.0], np.float32)
    ran = {}
    for ep in device_eps():
        sess = ort.InferenceSession(str(path), providers=[ep] + (["CPUExecutionProvider"] if ep != "CPUExecutionProvider" else []))
        y = sess.run(None, {"x": x})[0]
        ran[ep] = sess.get_providers()
        assert sess.get_providers()[0] == ep, f"{ep} is listed but the session fell back to {sess.get_providers()}"
        np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-3)
    assert "CPUExecutionProvider" in ran
    cuda = None
    try:
        import torch

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        pass
    info = {"machine": platform.platform(), "onnxruntime": ort.__version__, "providers": ran,
            "tensorrt": tensorrt_status(), "torch_cuda": cuda}
    (device_out / "providers.json").write_text(json.dumps(info, indent=2) + "\n")


def test_tensorrt_builds_an_engine_from_onnx(tmp_path) -> None:  # noqa: ANN001
    trt = pytest.importorskip("tensorrt", reason="tensorrt not importable: no TensorRT on this machine")
    path = tmp_path / "probe.onnx"
    probe_model(path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(path.read_bytes()), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    prof = builder.create_optimization_profile()
    prof.set_shape("x", (1, 4), (4, 4), (8, 4))
    config.add_optimization_profile(prof)
    engine = builder.build_serialized_network(network, config)
    assert engine is not None and engine.nbytes > 0
