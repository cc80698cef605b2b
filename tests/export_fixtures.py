"""A tiny U-MASK checkpoint (trainer's save_checkpoint) exported once per test process (tests of issue 5).

Not collected (no ``test_`` prefix); imported by tests/test_export.py, tests/test_session.py and
tests/test_runtime_privacy.py. The tiny model has random weights perturbed away from the adaLN-Zero
identity and a filled mask-generator bank, so every network path carries signal.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "tsinghua_app_usage"
SAMPLE = DATA / "app_usage_trace_sample_llmapp.csv.gz"


def tiny_checkpoint(root: Path) -> Path:
    import torch

    from umask.train.models.umask.trainer import save_checkpoint
    from umask.train.models.umask.model import UMask, umask_config

    torch.manual_seed(0)
    cfg = umask_config("tiny").with_data(22, 4, 4, 15)      # LLMApp catalog: K = 20, 14 POI types + 1
    m = UMask(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
        m.x_scale.fill_(10.0)
        x, av, hu, task, ep = m.maskgen.example_inputs(8, p_avail=0.5)
        m.maskgen.update_bank(m.maskgen(x, av, hu, task, ep, use_bank=False).features)
    opt = torch.optim.AdamW(m.parameters())
    cfgd = {"format": 1, "model": cfg.to_dict(), "train": {}, "data": {"source": "tests (random weights)"}}
    return save_checkpoint(root, 1, m, m, opt, cfgd, {}, keep_last=1)


@functools.lru_cache(maxsize=1)
def tiny_bundle() -> tuple[Path, Path]:
    """(checkpoint dir, bundle dir) in a per-process temp folder; exported once."""
    from umask.export.families.umask.exporter import export_bundle

    base = Path(tempfile.mkdtemp(prefix="umask-tiny-"))
    ckpt = tiny_checkpoint(base / "ckpt")
    export_bundle(ckpt, base / "bundle", gguf_dir=None, max_windows=8)
    return ckpt, base / "bundle"


def real_user(user: int = 5):
    from umask.runtime.core.events import read_llmapp_sample

    return read_llmapp_sample(SAMPLE).for_user(user)


def sample_noise(shape: tuple[int, ...], seed: int, i: int) -> np.ndarray:
    """The noise Session.complete draws for sample i (see runtime/session.py)."""
    return np.random.default_rng(np.random.SeedSequence([seed, i])).standard_normal(shape, dtype=np.float32)
