"""The ExecuTorch program of the bundle's DiT step: torch.export here, XNNPACK lowering in the isolated env.

The network is the SAME module the ONNX exporter writes (export/families/umask/networks.py `DiTStep` of
the checkpoint's EMA weights, `trainer.load_model`), traced by ``torch.export`` with the project's torch on
the harness's feed (batch fixed to the request's ``n_samples``) and saved with ``torch.export.save``; the
ExecuTorch environment (same torch release, scripts/peers_env_executorch.sh) then lowers that file to a
.pte (benchmarks/latency/et_worker.py ``lower``), so nothing of this project is imported there.

The traced module is the same function in an XNNPACK-friendly form (`xnnpack_form`), because the form
the ONNX file takes does not run there (ExecuTorch 1.5.1, measured on checkpoints/umask_small):
- the patch embedding is a strided Conv3d (`DiT.embed_patches`); XNNPACK has no 3-D convolution, so the
  partitioner leaves it to ExecuTorch's portable (reference) kernel. Here it is `patchify` + the same
  Linear (the mathematically equal form dit.py names for runtimes without Conv3d);
- `patchify` / `unpatchify` permute 8-D tensors; XNNPACK takes at most 6 dims and the delegated 8-D
  permute fails at load ("XNNCompiler.cpp:664 Failed to define tensor 10 with code:
  xnn_status_unsupported_parameter ... Init failed for backend XnnpackBackend"). Here each is two
  permutes of <= 6 dims (same element order);
- attention runs as matmul + softmax (the config's "math" path, the same numbers) instead of
  ``F.scaled_dot_product_attention``, whose decomposition leaves where / any / logical_not ops outside
  XNNPACK.
The weights are the checkpoint's; the harness's parity against onnxruntime on the bundle's ONNX shows
the function is the same.

The .pte is cached under ``artifacts/peers/pte/`` (or ``$UMASK_ET_CACHE``) keyed by the checkpoint's
files, the feed's shapes and the variant, so the lowering (tens of seconds) runs once per checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from umask.bench.latency.machine import REPO_ROOT

log = logging.getLogger(__name__)

DEFAULT_ET_PYTHON = REPO_ROOT / "artifacts" / "peers" / "et" / "bin" / "python"
ET_WORKER = Path(__file__).with_name("et_worker.py")
CACHE = REPO_ROOT / "artifacts" / "peers" / "pte"
# bundle precision -> ExecuTorch variant (et_worker --quant); precisions absent here get no ExecuTorch row
VARIANTS = {"fp32": "none", "int8-dynamic": "dynamic-int8"}


def et_python() -> Path | None:
    p = Path(os.environ.get("UMASK_ET_PYTHON") or DEFAULT_ET_PYTHON)
    return p if p.is_file() else None


def patchify6(x, patch: tuple[int, int, int]):  # noqa: ANN001, ANN201 - torch tensors
    """dit.patchify with permutes of <= 6 dims: (B, C, T, H, W) -> (B, L, C*t0*h0*w0), same token order."""
    t0, h0, w0 = patch
    B, C, T, H, W = x.shape
    gt, gh, gw = T // t0, H // h0, W // w0
    x = x.reshape(-1, gh, h0, gw, w0).permute(0, 1, 3, 2, 4)           # (B*C*T, H', W', h0, w0)
    x = x.reshape(B, C, gt, t0, gh * gw, h0 * w0).permute(0, 2, 4, 1, 3, 5)  # (B, T', H'W', C, t0, h0w0)
    return x.reshape(B, gt * gh * gw, C * t0 * h0 * w0)                # (B, L, P)


def unpatchify6(tokens, channels: int, grid: tuple[int, int, int], patch: tuple[int, int, int]):  # noqa: ANN001, ANN201
    """dit.unpatchify with permutes of <= 6 dims: (B, L, C*t0*h0*w0) -> (B, C, T, H, W)."""
    t0, h0, w0 = patch
    gt, gh, gw = grid
    x = tokens.reshape(-1, gt, gh * gw, channels, t0, h0 * w0).permute(0, 3, 1, 4, 2, 5)  # (B, C, T', t0, H'W', h0w0)
    x = x.reshape(-1, gh, gw, h0, w0).permute(0, 1, 3, 2, 4)           # (B*C*T, H', h0, W', w0)
    return x.reshape(-1, channels, gt * t0, gh * h0, gw * w0)          # (B, C, T, H, W)


@contextmanager
def xnnpack_form(step):  # noqa: ANN001, ANN201
    """Within the block, ``step.dit`` computes the same function in the form XNNPACK takes (module doc):
    patchify6 + the x_embedder Linear for the patch embedding, unpatchify6, "math" attention. Restored on exit."""
    from umask.train.models.umask import dit as dit_module

    dit = step.dit
    saved = dit_module.unpatchify, [b.attn.attn_impl for b in dit.blocks]
    dit_module.unpatchify = unpatchify6
    dit.embed_patches = lambda z: dit.x_embedder(patchify6(z, dit.cfg.patch))   # (B, L, D)
    for b in dit.blocks:
        b.attn.attn_impl = "math"
    try:
        yield step
    finally:
        dit_module.unpatchify = saved[0]
        del dit.embed_patches
        for b, impl in zip(dit.blocks, saved[1]):
            b.attn.attn_impl = impl


def dit_step(ckpt: Path):  # noqa: ANN201 - torch module
    """(DiTStep of the checkpoint's EMA weights in eval mode, its input names in argument order)."""
    import torch

    from umask.export.families.umask.networks import DiTStep
    from umask.train.common.checkpoints import resolve_checkpoint
    from umask.train.models.umask.trainer import load_model

    torch.set_num_threads(1)
    model, _ = load_model(resolve_checkpoint(ckpt), ema=True)
    step = DiTStep(model).eval()
    return step, tuple(step.input_names)


def _key(ckpt: Path, feed: dict[str, np.ndarray], quant: str) -> str:
    from umask.runtime.core.bundle import sha256_file
    from umask.train.common.checkpoints import resolve_checkpoint

    d = resolve_checkpoint(ckpt)
    h = hashlib.sha256()
    for f in sorted(p for p in d.iterdir() if p.suffix in (".json", ".safetensors")):
        h.update(f"{f.name}:{sha256_file(f)};".encode())
    h.update(json.dumps({k: [list(v.shape), str(v.dtype)] for k, v in sorted(feed.items())}).encode())
    h.update(quant.encode())
    return h.hexdigest()[:16]


def build_pte(ckpt: Path, feed: dict[str, np.ndarray], precision: str, python: Path,
              cache: Path | None = None) -> tuple[Path, tuple[str, ...], dict]:
    """The .pte of the checkpoint's DiT step for ``precision`` (VARIANTS) on the feed's shapes -> (path,
    input names, lowering summary). Raises RuntimeError with the lowering's last error line on failure."""
    import torch

    quant = VARIANTS[precision]
    step, names = dit_step(ckpt)
    if set(names) != set(feed):
        raise RuntimeError(f"the checkpoint's DiT takes {names}, the bundle's feed has {sorted(feed)}: "
                           "not the same network")
    key = _key(ckpt, feed, quant)
    cache = Path(os.environ.get("UMASK_ET_CACHE") or CACHE) if cache is None else cache
    cache.mkdir(parents=True, exist_ok=True)
    pte, info_path = cache / f"dit.{key}.{precision}.pte", cache / f"dit.{key}.{precision}.json"
    fpath = cache / f"feed.{key}.npz"
    np.savez(fpath, **feed)
    if pte.is_file() and info_path.is_file():
        return pte, names, json.loads(info_path.read_text())
    pt2 = cache / f"dit.{key}.pt2"
    if not pt2.is_file():
        args = tuple(torch.from_numpy(np.ascontiguousarray(feed[n])) for n in names)
        with torch.no_grad(), xnnpack_form(step):
            ep = torch.export.export(step, args)
        tmp_pt2 = cache / f"dit.{key}.tmp.pt2"                   # torch.export.save wants the .pt2 suffix
        torch.export.save(ep, str(tmp_pt2))
        os.replace(tmp_pt2, pt2)
    tmp = pte.with_suffix(".pte.tmp")
    proc = subprocess.run([str(python), str(ET_WORKER), "lower", "--pt2", str(pt2), "--pte", str(tmp),
                           "--feed", str(fpath), "--names", ",".join(names), "--quant", quant],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(f"lowering failed ({quant}): {err[-1] if err else f'exit code {proc.returncode}'}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    os.replace(tmp, pte)
    info["pte"] = str(pte)
    info_path.write_text(json.dumps(info, indent=1))
    log.info("ExecuTorch %s program %s: %s", precision, pte, info)
    return pte, names, info


__all__ = ["VARIANTS", "build_pte", "dit_step", "et_python", "patchify6", "unpatchify6", "xnnpack_form"]
