"""Frozen Sentence-BERT profile encoder, ProfileMLP (eq. 24) and the ONNX export, on real profile texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umask.runtime.core.catalog import load_llmapp_catalog
from umask.runtime.core.events import read_llmapp_sample
from umask.runtime.core.featurize import ProfileStats, featurize_population
from umask.runtime.families.umask.profile_text import build_prompt, template_profile
from umask.train.models.umask.profile_encoder import (
    DEFAULT_MODEL_NAME,
    SBERT_DIM,
    ProfileMLP,
    SbertConfig,
    SentenceEncoder,
    default_model_path,
    export_onnx,
    profile_embeddings,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "tsinghua_app_usage"

LONG_TEXT = " ".join([("Evening-heavy user who chats on social networks, listens to music and checks "
                       "navigation while moving across many areas of the city.")] * 8)   # > 128 tokens


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def stats() -> list[ProfileStats]:
    pop = featurize_population(read_llmapp_sample(DATA / "app_usage_trace_sample_llmapp.csv.gz"),
                               load_llmapp_catalog(DATA))
    return [pop[u].profile for u in sorted(pop)]


@pytest.fixture(scope="module")
def texts(stats: list[ProfileStats]) -> list[str]:
    return [template_profile(s) for s in stats]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder()


@pytest.fixture(scope="module")
def emb(encoder: SentenceEncoder, texts: list[str]) -> np.ndarray:
    return encoder.encode(texts)


# -----------------------------------------------------------------------------
# SentenceEncoder
# -----------------------------------------------------------------------------

def test_config_matches_sentence_transformers_folder() -> None:
    path = default_model_path()
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    cfg = SbertConfig.from_folder(path)
    assert (cfg.dim, cfg.pooling, cfg.normalize, cfg.max_seq_length) == (384, "mean", True, 256)


def test_embedding_shape_and_norm(encoder: SentenceEncoder, emb: np.ndarray, texts: list[str]) -> None:
    assert encoder.model_id.startswith(DEFAULT_MODEL_NAME + "@")
    assert emb.shape == (len(texts), SBERT_DIM) == (6, 384) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)
    # different users -> different embeddings
    sim = emb @ emb.T
    assert (sim[~np.eye(6, dtype=bool)] < 0.999).all()


def test_determinism(encoder: SentenceEncoder, emb: np.ndarray, texts: list[str]) -> None:
    again = encoder.encode(texts, batch_size=2)                 # other batches, other padding
    np.testing.assert_allclose(again, emb, atol=1e-5)
    dup = encoder.encode([texts[0], texts[1], texts[0]])
    np.testing.assert_array_equal(dup[0], dup[2])
    np.testing.assert_allclose(dup[0], emb[0], atol=1e-5)


def test_cache_hit(encoder: SentenceEncoder, texts: list[str], tmp_path: Path) -> None:
    enc = encoder.with_cache(tmp_path / "cache")
    first = enc.encode(texts[:3])
    assert enc.n_encoded == 3 and enc.n_model_calls >= 1
    calls = enc.n_model_calls
    second = enc.encode(texts[:3])
    assert enc.n_model_calls == calls and enc.n_encoded == 3       # the model did not run
    np.testing.assert_array_equal(second, first)
    mixed = enc.encode([texts[3], texts[0]])                       # one miss, one hit
    assert enc.n_encoded == 4
    np.testing.assert_array_equal(mixed[1], first[0])
    shards = sorted((tmp_path / "cache").glob("*.safetensors"))
    assert len(shards) == 2 and not list((tmp_path / "cache").glob("*.tmp*"))

    # a new process-like encoder on the same folder: served from disk, the model is never built
    fresh = SentenceEncoder(cache_dir=tmp_path / "cache")
    out = fresh.encode(texts[:4])
    assert fresh.n_model_calls == 0 and fresh._module is None
    np.testing.assert_array_equal(out[:3], first)
    fresh.cache.compact()
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    np.testing.assert_array_equal(SentenceEncoder(cache_dir=tmp_path / "cache").encode(texts[:4]), out)
    # another model id -> other keys -> a miss
    other = SentenceEncoder(cache_dir=tmp_path / "cache", model_id="another-model")
    assert other.key(texts[0]) != fresh.key(texts[0]) and other.cache.get(other.key(texts[0])) is None


def test_semantic_sanity(encoder: SentenceEncoder, emb: np.ndarray) -> None:
    a, b, c = encoder.encode([
        "Mostly chats on social networks and listens to music in the evening.",
        "Evening user of messaging apps and music streaming.",
        "Checks stock prices and banking apps in the morning at the office.",
    ])
    assert float(a @ b) > float(a @ c) + 0.1 and float(a @ b) > float(b @ c) + 0.1
    # real template profiles: users 4 and 6 (social + music, evening) vs user 5 (utilities, afternoon)
    assert float(emb[0] @ emb[2]) > float(emb[0] @ emb[1])


def test_cross_check_sentence_transformers(encoder: SentenceEncoder, texts: list[str]) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(default_model_path()), device="cpu")
    three = texts[:2] + [LONG_TEXT]                           # the last one is truncated at 256 tokens
    ref = model.encode(three, convert_to_numpy=True, batch_size=8)
    ours = encoder.encode(three)
    assert (_cos(ours, ref) >= 0.9999).all(), _cos(ours, ref)


# -----------------------------------------------------------------------------
# ProfileMLP and profile_embeddings
# -----------------------------------------------------------------------------

def test_profile_mlp_shapes_and_none_path(emb: np.ndarray) -> None:
    torch.manual_seed(0)
    mlp = ProfileMLP(out_dim=64)
    x = torch.from_numpy(emb)
    h = mlp(x)
    assert h.shape == (6, 64) and torch.isfinite(h).all()
    with torch.no_grad():
        mlp.none_embedding.normal_()
    present = torch.tensor([True, False, True, True, False, True])
    x_nan = x.clone()
    x_nan[~present] = float("nan")                            # absent rows are ignored entirely
    hp = mlp(x_nan, present)
    assert torch.isfinite(hp).all()
    torch.testing.assert_close(hp[present], h[present])
    torch.testing.assert_close(hp[~present], mlp.none_embedding.expand(2, -1))
    assert mlp(None, batch_size=3).shape == (3, 64)
    hp.sum().backward()
    assert mlp.none_embedding.grad is not None and mlp.none_embedding.grad.abs().sum() > 0
    assert mlp.net[1].weight.grad is not None
    assert ProfileMLP()(x).shape == (6, 384)
    with pytest.raises(ValueError):
        mlp(torch.zeros(2, 10))


def test_profile_embeddings_sources(stats: list[ProfileStats], encoder: SentenceEncoder, emb: np.ndarray) -> None:
    calls = encoder.n_model_calls
    e0, p0 = profile_embeddings(stats, "none", encoder=encoder)
    assert e0.shape == (6, 384) and not p0.any() and not e0.any()
    assert encoder.n_model_calls == calls                      # "none" never runs the model
    e1, p1 = profile_embeddings(stats, "template", encoder=encoder.with_cache(None))
    assert p1.all()
    np.testing.assert_allclose(e1, emb, atol=1e-5)
    given = ["Intent: social communication.", None, "Routine: night owl.", None, None, "Intent: gaming."]
    e2, p2 = profile_embeddings(stats, "text", encoder=encoder, texts=given)
    assert p2.tolist() == [t is not None for t in given] and not e2[~p2].any()
    np.testing.assert_allclose(e2[p2], encoder.encode([t for t in given if t]), atol=1e-5)
    e3, p3 = profile_embeddings(stats[:2], "llm", encoder=encoder, generator=lambda prompt: prompt.upper())
    assert p3.all()
    np.testing.assert_allclose(e3, encoder.encode([build_prompt(s).upper() for s in stats[:2]]), atol=1e-5)


# -----------------------------------------------------------------------------
# ONNX export: the artifact the torch-free runtime will run
# -----------------------------------------------------------------------------

def test_onnx_export_parity(encoder: SentenceEncoder, emb: np.ndarray, texts: list[str], stats, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from tokenizers import Tokenizer

    path = tmp_path / "profile_encoder.onnx"
    meta = export_onnx(path, max_len=128, opset=18, encoder=encoder)
    assert meta["dim"] == 384 and meta["pooling"] == "mean" and meta["normalize"]
    assert meta["parity"]["min_cosine"] >= 0.9999, meta
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]

    # numpy side, as the runtime will do it: tokenizer.json (truncation 128, fixed padding 128)
    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.enable_truncation(max_length=128)
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=128)
    prompts = [build_prompt(s) for s in stats[:2]]
    real = texts + prompts
    assert all(len(e.ids) <= 128 and e.attention_mask[-1] in (0, 1) for e in tok.encode_batch(real))
    untrunc = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    untrunc.no_truncation()
    untrunc.no_padding()
    assert max(len(untrunc.encode(t).ids) for t in texts) <= 128     # profiles fit the runtime's window

    def run(tk: Tokenizer, batch: list[str]) -> np.ndarray:
        enc = tk.encode_batch(batch)
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        return sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]

    got = run(tok, real)
    ref = np.concatenate([emb, encoder.encode(prompts)])
    assert got.shape == (8, 384)
    assert (_cos(got, ref) >= 0.99).all() and (_cos(got, ref) >= 0.9999).all(), _cos(got, ref)

    # dynamic axes: longest-padding batches of another size and a 256-token text match as well
    tok256 = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok256.enable_truncation(max_length=256)
    tok256.enable_padding(pad_id=0, pad_token="[PAD]")
    got2 = run(tok256, [texts[1], LONG_TEXT, "Night owl."])
    ref2 = encoder.encode([texts[1], LONG_TEXT, "Night owl."])
    assert (_cos(got2, ref2) >= 0.9999).all(), _cos(got2, ref2)
