"""Network backends of the latency harness that the runtime cannot ship: torch eager (the fp32 reference) and TensorRT.

Both implement `umask.runtime.engines.backends.NetworkBackend`, so the harness runs the runtime's
own `Session` on them (``Session.open(bundle, backend=TorchBackend(model, encoder))``) next to the
runtime's onnxruntime backend; the request path exists once, in runtime/families/umask/session.py.

* `TorchBackend`: the export wrappers (export/families/umask/networks.py, the computation the ONNX
  files hold) and the SBERT module, on ``cpu`` or ``cuda`` (a copy: the CPU reference keeps its weights).
* `TensorRTBackend`: the bundle's serialized TensorRT 10 engines with torch CUDA buffers; networks
  without an engine run on a ``fallback`` backend. `tensorrt_unavailable` says why it cannot run
  here (the harness turns that into one skip line). Never run on the CPU machine it was written on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.engines.backends import NetworkBackend

SBERT_INPUTS = ("input_ids", "attention_mask")


def _numpy(t: Any) -> np.ndarray:
    """A torch output as numpy: floating point as float32 (fp16 / bf16 on a GPU), integers as they are."""
    return (t.float() if t.is_floating_point() else t).cpu().numpy()


class TorchBackend(NetworkBackend):
    """Torch eager fp32 networks of a loaded UMask model (+ the SBERT encoder) on ``device``."""

    name = "torch"

    def __init__(self, model: Any, encoder: Any = None, device: str = "cpu") -> None:
        from umask.export.families.umask import networks as om

        self.device = device
        if device != "cpu":
            model = copy.deepcopy(model).to(device)
        self._mods: dict[str, Any] = dict(om.wrappers(model))
        self._inputs = {n: tuple(m.input_names) for n, m in self._mods.items()}
        if encoder is not None:
            self._mods["sbert"] = encoder.module if device == "cpu" else copy.deepcopy(encoder.module).to(device)
            self._inputs["sbert"] = SBERT_INPUTS

    def nets(self) -> tuple[str, ...]:
        return tuple(self._mods)

    def _call(self, net: str, tensors: list[Any]) -> list[Any]:
        import torch

        if net not in self._mods:
            raise self._unknown(net)
        with torch.inference_mode():
            out = self._mods[net](*tensors)
        return list(out) if isinstance(out, tuple) else [out]

    def _tensors(self, net: str, feeds: Mapping[str, np.ndarray]) -> list[Any]:
        import torch

        return [torch.from_numpy(np.ascontiguousarray(feeds[k])).to(self.device) for k in self._inputs[net]]

    def run(self, net: str, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if net not in self._mods:
            raise self._unknown(net)
        return [_numpy(o) for o in self._call(net, self._tensors(net, feeds))]

    def bind(self, net: str, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """Inputs placed on the device once; on a GPU the output stays there (sync in the harness)."""
        if net not in self._mods:
            raise self._unknown(net)
        tens = self._tensors(net, feeds)
        if self.device == "cpu":
            return lambda: _numpy(self._call(net, tens)[0])
        return lambda: self._call(net, tens)[0]

    def providers(self) -> dict[str, list[str]]:
        return {n: [f"torch:{self.device}"] for n in self._mods}

    def close(self) -> None:
        self._mods.clear()


def tensorrt_unavailable() -> str | None:
    """None when TensorRT engines can run here, else the one-line reason."""
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means no TensorRT rows
        return f"`import tensorrt` failed ({type(e).__name__}: {e})"
    try:
        import torch
    except ImportError:
        return "tensorrt imports but torch (the CUDA buffers) does not"
    if not torch.cuda.is_available():
        return "tensorrt imports but torch sees no CUDA device"
    return None


class _Engine:
    """One deserialized engine + execution context; buffers (torch CUDA tensors) bound per feed."""

    def __init__(self, path: Path) -> None:
        import tensorrt as trt

        self.trt, self.path = trt, Path(path)
        eng = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(self.path.read_bytes())
        if eng is None:
            raise RuntimeError(f"{path}: TensorRT could not deserialize the engine")
        self.eng, self.ctx = eng, eng.create_execution_context()
        self.names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        self.inputs = [n for n in self.names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if n not in self.inputs]

    def _dtype(self, n: str) -> np.dtype:
        return np.dtype(self.trt.nptype(self.eng.get_tensor_dtype(n)))

    def bind(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], None], dict[str, Any]]:
        """(execute, buffers): inputs copied to the GPU, outputs allocated, addresses set."""
        import torch

        bufs: dict[str, Any] = {}
        for n in self.inputs:
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(feeds[n]).astype(self._dtype(n)))).cuda()
            self.ctx.set_input_shape(n, tuple(t.shape))
            bufs[n] = t
        for n in self.outputs:
            dt = torch.from_numpy(np.zeros(0, self._dtype(n))).dtype
            bufs[n] = torch.empty(tuple(self.ctx.get_tensor_shape(n)), dtype=dt, device="cuda")
        for n, t in bufs.items():
            self.ctx.set_tensor_address(n, t.data_ptr())
        stream = torch.cuda.Stream()

        def execute() -> None:
            if not self.ctx.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"{self.path}: execute_async_v3 failed")
            stream.synchronize()

        return execute, bufs


class TensorRTBackend(NetworkBackend):
    """Serialized TensorRT engines (``engines[net] = path``); other networks run on ``fallback``.
    One context per engine: ``run`` is not thread-safe (the harness times one request at a time)."""

    name = "tensorrt"

    def __init__(self, engines: Mapping[str, str | Path], fallback: NetworkBackend | None = None) -> None:
        why = tensorrt_unavailable()
        if why is not None:
            raise RuntimeError(f"TensorRT: {why}")
        self._eng = {n: _Engine(Path(p)) for n, p in engines.items()}
        self.fallback = fallback

    def nets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self._eng, *(self.fallback.nets() if self.fallback else ())]))

    def run(self, net: str, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if net not in self._eng:
            if self.fallback is not None and self.fallback.has(net):
                return self.fallback.run(net, feeds)
            raise self._unknown(net)
        e = self._eng[net]
        execute, bufs = e.bind(feeds)
        execute()
        return [bufs[n].cpu().numpy() for n in e.outputs]

    def bind(self, net: str, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """execute_async_v3 + stream sync on inputs already on the GPU (host<->device copies excluded)."""
        if net not in self._eng:
            return super().bind(net, feeds)
        execute, _bufs = self._eng[net].bind(feeds)
        return execute

    def providers(self) -> dict[str, list[str]]:
        out = dict(self.fallback.providers()) if self.fallback else {}
        out.update({n: ["TensorRT (native)"] for n in self._eng})
        return out

    def close(self) -> None:
        self._eng.clear()
        if self.fallback is not None:
            self.fallback.close()


__all__ = ["TorchBackend", "TensorRTBackend", "tensorrt_unavailable"]
