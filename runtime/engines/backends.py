"""Network backends: what runs a family session's networks (numpy in, numpy out).

A family session (e.g. `umask.runtime.families.umask.session.Session`) never calls an inference
engine itself: it calls ``backend.run(net_name, feeds)`` and gets the network's outputs in the
order of its graph. The runtime ships `OrtBackend` (onnxruntime, one ONNX file per network, any
precision / execution provider); the latency harness plugs in a torch reference and a TensorRT
backend (benchmarks/latency/backends.py; the runtime never imports torch)::

    be = OrtBackend({"dit": root / "onnx/fp32/dit.onnx"}, providers=["cpu"], threads=1)
    x0, = be.run("dit", {"x_t": x, "x_obs": x_obs, "mask": m, "t": t, "h_u": h_u, "task": task})
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from umask.runtime.core.errors import BundleError, InputError, UmaskError
from umask.runtime.engines import ort as ort_engine

ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


class NetworkBackend(ABC):
    """Runs named networks: ``run(net, feeds) -> [outputs]`` (graph order). Thread-safe ``run``
    where the engine is (onnxruntime is)."""

    name: str = "backend"

    @abstractmethod
    def nets(self) -> tuple[str, ...]:
        """The network names this backend can run."""

    @abstractmethod
    def run(self, net: str, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs of ``net`` on ``feeds`` (input name -> array), as numpy arrays in graph order."""

    def has(self, net: str) -> bool:
        return net in self.nets()

    def bind(self, net: str, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """A call of ``net`` on fixed ``feeds`` (what a latency row times); backends with device memory
        keep the inputs there and leave the output on the device."""
        fixed = dict(feeds)
        return lambda: self.run(net, fixed)

    def providers(self) -> dict[str, list[str]]:
        """Per network: the engine / execution providers that actually run it."""
        return {n: [self.name] for n in self.nets()}

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "providers": self.providers()}

    def close(self) -> None:
        """Release the engines; ``run`` fails afterwards."""

    def _unknown(self, net: str) -> InputError:
        return InputError(f"{self.name} backend: no network {net!r} (has {list(self.nets())})")


def _engine_error(e: BaseException) -> bool:
    """True for onnxruntime's own exception classes (they derive from Exception, not RuntimeError)."""
    return type(e).__module__.startswith("onnxruntime") or isinstance(e, (RuntimeError, ValueError, TypeError))


class OrtBackend(NetworkBackend):
    """onnxruntime: one InferenceSession per network (a file path, or the file's verified bytes), options
    and providers from `umask.runtime.engines.ort`; feeds are cast to each input's declared element type.
    onnxruntime's own exceptions never leave it: a model that does not load, or a run that fails, raises
    `BundleError` naming the network (and ``origins[net]``, the bundle file it came from)."""

    name = "onnxruntime"

    def __init__(self, files: Mapping[str, str | Path | bytes], *, providers: Sequence[str] | None = None,
                 threads: int = 1, inter_op_threads: int = 1, allow_spinning: bool = False,
                 origins: Mapping[str, str] | None = None) -> None:
        for what, v in (("threads", threads), ("inter_op_threads", inter_op_threads)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{what} must be an integer >= 1, got {v!r}")
        self.files = {n: p if isinstance(p, bytes) else Path(p) for n, p in files.items()}
        self.origins = {n: str((origins or {}).get(n, p if not isinstance(p, bytes) else n))
                        for n, p in self.files.items()}
        self.providers_requested = list(providers or [ort_engine.CPU])
        self.providers_used, self.providers_missing = ort_engine.resolve_providers(providers)
        so = ort_engine.session_options(int(threads), int(inter_op_threads), allow_spinning)
        self._sess = {}
        for n, p in self.files.items():
            try:
                self._sess[n] = ort_engine.inference_session(p, so, self.providers_used)
            except Exception as e:  # noqa: BLE001 - onnxruntime's classes are not RuntimeErrors
                if isinstance(e, UmaskError) or not _engine_error(e):
                    raise
                raise BundleError(f"{self.origins[n]}: onnxruntime cannot load the {n} network "
                                  f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from None
        self._types = {n: {i.name: ORT_DTYPES.get(i.type) for i in s.get_inputs()} for n, s in self._sess.items()}
        self._closed = False

    def io_signature(self, net: str) -> dict[str, list[dict[str, Any]]]:
        """{"inputs", "outputs": [{name, shape (None / dim name for dynamic axes), dtype}]} as onnxruntime loaded it."""
        sess = self.session(net)

        def io(vs: Any) -> list[dict[str, Any]]:
            return [{"name": v.name, "shape": list(v.shape) if v.shape is not None else None,
                     "dtype": np.dtype(ORT_DTYPES[v.type]).name if v.type in ORT_DTYPES else v.type} for v in vs]

        return {"inputs": io(sess.get_inputs()), "outputs": io(sess.get_outputs())}

    def nets(self) -> tuple[str, ...]:
        return tuple(self.files)

    def session(self, net: str) -> Any:
        """The onnxruntime InferenceSession of ``net``."""
        if self._closed:
            raise BundleError(f"{self.name} backend: closed (networks {sorted(self.files)}); open the bundle again")
        if net not in self._sess:
            raise self._unknown(net)
        return self._sess[net]

    def run(self, net: str, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        sess = self.session(net)
        types = self._types[net]
        cast = {}
        for k, v in feeds.items():
            a = np.asarray(v)
            dt = types.get(k)
            cast[k] = a if dt is None or a.dtype == dt else a.astype(dt)
        try:
            return sess.run(None, cast)
        except Exception as e:  # noqa: BLE001 - onnxruntime's classes are not RuntimeErrors
            if isinstance(e, UmaskError) or not _engine_error(e):
                raise
            raise BundleError(f"{self.origins[net]}: the {net} network failed on this input "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from None

    def providers(self) -> dict[str, list[str]]:
        return {n: s.get_providers() for n, s in self._sess.items()}

    def close(self) -> None:
        self._sess.clear()
        self._closed = True


__all__ = ["NetworkBackend", "OrtBackend", "ORT_DTYPES"]
