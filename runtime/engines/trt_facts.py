"""TensorRT engine facts: the TensorRT version and GPU compute capability an engine was built for, and the refusal.

A serialized TensorRT engine runs only under the TensorRT version that built it (unless built
version-compatible, which this project does not do) and on GPUs of the compute capability it was
built for (unless built hardware-compatible, which needs Ampere+ and costs speed). Deserializing it
anywhere else fails deep inside TensorRT or, worse, runs the wrong kernels. So the builder
(export/tensorrt.py) records both facts in the manifest (``tensorrt.tensorrt_version``,
``tensorrt.compute_capability`` and per engine) and `check_engine_facts` refuses a mismatch with
a typed `EngineMismatchError` before anything is deserialized::

    entry = manifest["tensorrt"]["engines"]["fp16/dit"]
    check_engine_facts(entry, where=f"{root}/{entry['file']}")     # raises on another TensorRT or GPU
    engine = load_engine(root, manifest, "fp16/dit")                # check + verified bytes + deserialize

The two facts of THIS machine come from `tensorrt_version()` (``import tensorrt``) and
`compute_capability()` (the CUDA driver API through ctypes: ``cuDeviceGetAttribute``; no torch, no
CUDA toolkit). Both are module-level functions so tests replace them where TensorRT is absent.
Version rule: the full version string must be equal (TensorRT's own rule for engines that are
not version-compatible); capability rule: "major.minor" must be equal.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from pathlib import Path
from typing import Any

from umask.runtime.core.errors import BundleError

log = logging.getLogger(__name__)

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


class EngineMismatchError(BundleError):
    """A TensorRT engine built for another TensorRT version or GPU compute capability than this device's
    (or whose facts are unknown on either side); the message names the engine and both pairs."""


def tensorrt_version() -> str | None:
    """The TensorRT version importable here (``tensorrt.__version__``), None without TensorRT."""
    try:
        import tensorrt as trt
    except Exception:  # noqa: BLE001 - ImportError, or a broken install raising OSError / RuntimeError
        return None
    return str(getattr(trt, "__version__", None) or "") or None


def compute_capability(device: int = 0) -> str | None:
    """"major.minor" of CUDA device ``device`` from the driver API (libcuda via ctypes); None without a
    driver or device."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        cu = ctypes.CDLL(name)
    except OSError:
        return None
    try:
        if cu.cuInit(0) != 0:
            return None
        dev = ctypes.c_int()
        if cu.cuDeviceGet(ctypes.byref(dev), int(device)) != 0:
            return None
        major, minor = ctypes.c_int(), ctypes.c_int()
        if cu.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev) != 0 or \
                cu.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev) != 0:
            return None
        return f"{major.value}.{minor.value}"
    except AttributeError:
        return None


def gpu_name(device: int = 0) -> str | None:
    """The CUDA device's name from the driver API, None without one."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        cu = ctypes.CDLL(name)
        if cu.cuInit(0) != 0:
            return None
        dev = ctypes.c_int()
        if cu.cuDeviceGet(ctypes.byref(dev), int(device)) != 0:
            return None
        buf = ctypes.create_string_buffer(256)
        if cu.cuDeviceGetName(buf, 256, dev) != 0:
            return None
        return buf.value.decode(errors="replace") or None
    except (OSError, AttributeError):
        return None


def device_facts() -> dict[str, str | None]:
    """{tensorrt_version, compute_capability, gpu_name} of this machine (through the replaceable providers)."""
    return {"tensorrt_version": tensorrt_version(), "compute_capability": compute_capability(), "gpu_name": gpu_name()}


def check_engine_facts(entry: dict[str, Any], *, where: str, section: dict[str, Any] | None = None) -> dict[str, str]:
    """Refuse (`EngineMismatchError`) an engine whose recorded TensorRT version / compute capability (the
    engine entry's own, else the ``section``'s: the manifest's ``tensorrt``) differ from this device's, or
    are unknown on either side. Returns the matching facts."""
    sec = section or {}
    built_v = entry.get("tensorrt_version") or sec.get("tensorrt_version")
    built_cc = entry.get("compute_capability") or sec.get("compute_capability")
    have_v, have_cc = tensorrt_version(), compute_capability()
    if not built_v or not built_cc:
        raise EngineMismatchError(f"{where}: the manifest does not record the TensorRT version and GPU compute "
                                  f"capability this engine was built for (tensorrt_version={built_v!r}, "
                                  f"compute_capability={built_cc!r}); rebuild it with this exporter")
    if have_v is None:
        raise EngineMismatchError(f"{where}: built with TensorRT {built_v} for compute capability {built_cc}; "
                                  "TensorRT is not importable here (use the ONNX files of the bundle instead)")
    if have_cc is None:
        raise EngineMismatchError(f"{where}: built for compute capability {built_cc}; no CUDA device is visible here")
    bad = []
    if have_v != built_v:
        bad.append(f"TensorRT {built_v} != this device's {have_v}")
    if have_cc != built_cc:
        bad.append(f"compute capability {built_cc} != this device's {have_cc}")
    if bad:
        raise EngineMismatchError(f"{where}: refusing a TensorRT engine built for another device: " + "; ".join(bad)
                                  + " (rebuild the engines on this device: umask export ... with TensorRT, or use "
                                    "the bundle's ONNX files)")
    return {"tensorrt_version": have_v, "compute_capability": have_cc}


def load_engine(root: str | Path, manifest: dict[str, Any], key: str) -> Any:
    """The deserialized ``tensorrt.ICudaEngine`` of ``manifest['tensorrt']['engines'][key]`` ("fp16/dit"):
    facts checked first (`check_engine_facts`), then the verified bytes of the file (`read_verified`)."""
    from umask.runtime.core.bundle import read_verified

    root = Path(root)
    sec = manifest.get("tensorrt") or {}
    entry = (sec.get("engines") or {}).get(key)
    if not entry or entry.get("status") != "built" or not entry.get("file"):
        raise BundleError(f"{root}: no built TensorRT engine {key!r} (have {sorted(sec.get('engines') or {})})")
    check_engine_facts(entry, where=f"{root}/{entry['file']}", section=sec)
    blob = read_verified(root, entry["file"], manifest)
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(blob)
    if engine is None:
        raise BundleError(f"{root}/{entry['file']}: TensorRT could not deserialize the engine")
    return engine


__all__ = ["EngineMismatchError", "tensorrt_version", "compute_capability", "gpu_name", "device_facts",
           "check_engine_facts", "load_engine"]
