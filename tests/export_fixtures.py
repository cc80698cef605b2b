"""A tiny U-MASK checkpoint (trainer's save_checkpoint) exported once per test process (tests of issue 5).

Not collected (no ``test_`` prefix); imported by tests/test_export.py, tests/test_session.py and
tests/test_runtime_privacy.py. The tiny model has random weights perturbed away from the adaLN-Zero
identity and a filled mask-generator bank, so every network path carries signal.

The tiny bundle is signed with a test key generated once per process (`signing_test_key`); `tiny_bundle`
adds its public key to ``$UMASK_TRUSTED_KEYS`` of this process (and of the subprocesses the tests
start with ``os.environ``), so ``Session.open(bundle)`` verifies the signature as a device would.
A bundle a test exports itself is opened with ``trusted_keys=`` (signed with ``sign_key=signing_test_key()[0]``)
or with the explicit ``allow_unsigned=True``.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "tsinghua_app_usage"
SAMPLE = DATA / "app_usage_trace_sample_llmapp.csv.gz"


@functools.lru_cache(maxsize=1)
def _scratch_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="umask-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def scratch_dir(prefix: str) -> Path:
    """A fresh folder for process-wide fixtures (bundles exported once per process). Every one lives under
    one per-process root that is removed when the process exits: a bundle carries ~110 MB of Sentence-BERT
    ONNX, and folders left behind by each run filled the CI machine's disk."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_scratch_root()))


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
def signing_test_key() -> tuple[Path, Path]:
    """(private key file, public key file) of an ed25519 test key generated once per process."""
    from umask.export.signing import generate_keypair

    return generate_keypair(scratch_dir("testkey-"), "tests")


def trust_test_key(env: dict[str, str] | None = None) -> dict[str, str]:
    """Add the test public key to ``UMASK_TRUSTED_KEYS`` of ``env`` (default: this process's environment)."""
    from umask.runtime.core.signing import ENV_TRUSTED_KEYS

    env = os.environ if env is None else env
    pub = str(signing_test_key()[1])
    have = [p for p in env.get(ENV_TRUSTED_KEYS, "").split(os.pathsep) if p]
    if pub not in have:
        env[ENV_TRUSTED_KEYS] = os.pathsep.join(have + [pub])
    return env  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _tiny_bundle() -> tuple[Path, Path]:
    from umask.export.families.umask.exporter import export_bundle

    base = scratch_dir("tiny-")
    ckpt = tiny_checkpoint(base / "ckpt")
    export_bundle(ckpt, base / "bundle", gguf_dir=None, max_windows=8, sign_key=signing_test_key()[0])
    return ckpt, base / "bundle"


def tiny_bundle() -> tuple[Path, Path]:
    """(checkpoint dir, bundle dir) in a per-process temp folder; exported (and signed) once; the test key
    is trusted in this process's environment."""
    trust_test_key()
    return _tiny_bundle()


def real_user(user: int = 5):
    from umask.runtime.core.events import read_llmapp_sample

    return read_llmapp_sample(SAMPLE).for_user(user)


def sample_noise(shape: tuple[int, ...], seed: int, i: int) -> np.ndarray:
    """The noise Session.complete draws for sample i (see runtime/session.py)."""
    return np.random.default_rng(np.random.SeedSequence([seed, i])).standard_normal(shape, dtype=np.float32)


def edited_bundle(dst: Path, *, manifest_edit=None, add_files: dict[str, bytes] | None = None,
                  sign: bool = True) -> Path:
    """A copy of the tiny bundle at ``dst`` with ``add_files`` (bundle path -> bytes) added and listed,
    ``manifest_edit(manifest)`` applied (in place), then re-signed with the test key (``sign=False``:
    no manifest.sig), so a test can build exactly the bundle an attacker or a buggy exporter would."""
    import hashlib
    import json
    import shutil

    from umask.export.signing import sign_bundle

    shutil.copytree(tiny_bundle()[1], dst)
    (dst / "manifest.sig").unlink(missing_ok=True)
    m = json.loads((dst / "manifest.json").read_text())
    for rel, data in (add_files or {}).items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(data)
        m["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if manifest_edit is not None:
        manifest_edit(m)
    (dst / "manifest.json").write_text(json.dumps(m, indent=1))
    if sign:
        sign_bundle(dst, signing_test_key()[0])
    return dst
