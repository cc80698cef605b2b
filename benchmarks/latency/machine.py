"""The machine a latency figure was measured on: load average, CPU, memory, GPU / Jetson, git commit, versions.

Used by the latency harness and the steps sweep for their result metadata (``meta.machine``);
``wait_for_quiet`` blocks until the load average is low enough (``--max-load``).
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REPO_ROOT: Path = Path(__file__).resolve().parents[2]


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def wait_for_quiet(max_load: float, timeout_s: float, poll_s: float = 30.0) -> list[float] | None:
    """Block until the 1-min load average is below ``max_load`` (or ``timeout_s`` passed); returns it."""
    t0 = time.monotonic()
    la = load_average()
    while la is not None and la[0] >= max_load and time.monotonic() - t0 < timeout_s:
        log.info("load average %s >= %.2f: waiting (%.0f s so far)", la, max_load, time.monotonic() - t0)
        time.sleep(poll_s)
        la = load_average()
    return la


def git_commit(root: Path = REPO_ROOT) -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for ln in fh:
                if ln.lower().startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, the GPU when torch sees one, the Jetson model when present."""
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    info: dict[str, Any] = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "memory_gb": mem,
                            "os": f"{platform.system()} {platform.release()}", "arch": platform.machine(),
                            "python": platform.python_version(), "hostname_hash": None, "gpu": None,
                            "jetson": None}
    jet = Path("/etc/nv_tegra_release")
    if jet.exists():
        try:
            info["jetson"] = jet.read_text().splitlines()[0][:120]
        except OSError:
            info["jetson"] = "present"
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - torch absent on a device install is fine
        pass
    return info


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"numpy": np.__version__}
    for mod in ("torch", "onnxruntime", "onnx", "tensorrt", "llama_cpp", "tokenizers"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except Exception:  # noqa: BLE001
            out[mod] = None
    return out


__all__ = ["REPO_ROOT", "load_average", "wait_for_quiet", "git_commit", "cpu_model", "machine_info", "versions"]
