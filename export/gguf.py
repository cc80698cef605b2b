"""U-SCOPE on-device artifacts: HF checkpoint -> GGUF f16 -> Q8_0 / Q4_K_M, and a peft LoRA -> GGUF LoRA.

The converters are llama.cpp's own ``convert_hf_to_gguf.py`` / ``convert_lora_to_gguf.py`` with the
``gguf-py`` they were released with, taken from the llama-cpp-python sdist (``cache/sdist``, fetched
once with ``pip download --no-binary :all: --no-deps llama-cpp-python -d cache/sdist``) and unpacked
into ``cache/llama_convert``. K-quants come from ``llama_cpp.llama_model_quantize`` (the C API).
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from umask.runtime.core.errors import InputError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SDIST_DIR = ROOT / "cache" / "sdist"
CONVERT_DIR = ROOT / "cache" / "llama_convert"
QUANT_TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
               "f16": "LLAMA_FTYPE_MOSTLY_F16"}


def converter_dir(sdist_dir: str | Path = SDIST_DIR, out: str | Path = CONVERT_DIR) -> Path:
    """Unpack llama.cpp's converters (+ gguf-py) from the llama-cpp-python sdist once; return the folder."""
    out = Path(out)
    if (out / "convert_hf_to_gguf.py").is_file() and (out / "gguf-py").is_dir():
        return out
    sdists = sorted(Path(sdist_dir).glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        raise InputError(f"no llama-cpp-python sdist in {sdist_dir}; fetch it with: pip download "
                         f"--no-binary :all: --no-deps llama-cpp-python -d {sdist_dir}")
    sdist = sdists[-1]
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tf:
        members = []
        for m in tf.getmembers():
            parts = Path(m.name).parts
            if len(parts) > 3 and parts[1:3] == ("vendor", "llama.cpp") and (
                    parts[3].startswith("convert_") or parts[3] in ("conversion", "gguf-py")):
                m.name = str(Path(*parts[3:]))
                members.append(m)
        tf.extractall(out, members=members, filter="data")
    log.info("unpacked llama.cpp converters from %s into %s", sdist.name, out)
    return out


def _run(args: list[str], cdir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(cdir / "gguf-py"), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    res = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed ({res.returncode}):\n{res.stderr[-3000:]}")


def hf_to_gguf(model_dir: str | Path, out_file: str | Path, outtype: str = "f16") -> Path:
    """A HF causal-LM directory -> one GGUF file (f16/f32/q8_0 by llama.cpp's converter)."""
    cdir = converter_dir()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    _run([str(cdir / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", outtype, "--outfile", str(tmp)], cdir)
    tmp.replace(out_file)
    return out_file


def lora_to_gguf(adapter_dir: str | Path, base_dir: str | Path, out_file: str | Path) -> Path:
    """A peft LoRA adapter directory -> a GGUF LoRA adapter (f16) for the base model in ``base_dir``."""
    cdir = converter_dir()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    _run([str(cdir / "convert_lora_to_gguf.py"), str(adapter_dir), "--base", str(base_dir), "--outtype", "f16",
          "--outfile", str(tmp)], cdir)
    tmp.replace(out_file)
    return out_file


def quantize(src: str | Path, dst: str | Path, qtype: str, n_threads: int = 1) -> Path:
    """GGUF -> quantized GGUF with llama.cpp's quantizer (``llama_cpp.llama_model_quantize``)."""
    import llama_cpp

    if qtype not in QUANT_TYPES:
        raise InputError(f"unknown quant type {qtype!r}; use one of {sorted(QUANT_TYPES)}")
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[qtype])
    params.nthread = int(n_threads)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({qtype}) failed with {rc}")
    tmp.replace(dst)
    return dst
