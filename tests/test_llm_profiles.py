"""U-MASK trained on LLM-written U-SCOPE profiles (issue #10): the ``llm:`` profile spec, the cached
per-user profile texts (train/models/umask/llm_profiles.py), their way into the ProfileTable and the
trainer (profiles.json, resume without the LLM). A fake generator stands in for llama.cpp; the real
GGUF test skips without llama-cpp-python or the GGUF. SYNTHETIC simulated users."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umask.runtime.core.errors import InputError
from umask.runtime.families.umask.profile_text import (ProfileSource, build_prompt, parse_profile_spec,
                                                       profile_generator, template_profile)
from umask.train.models.umask.data import build_profile_table, save_users, simulated_users
from umask.train.models.umask.llm_profiles import cache_file, generator_identity, llm_profile_texts

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "artifacts" / "uscope" / "gguf" / "uscope-q8_0.gguf"


class FakeLLM:
    """prompt -> a deterministic profile that depends on the prompt (and counts its calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompt: str) -> str:
        self.calls += 1
        return f"Intent: fake profile {hashlib.sha256(prompt.encode()).hexdigest()[:8]}.\nRoutine: {len(prompt)} chars."


class NoLLM:
    def __call__(self, prompt: str) -> str:
        raise AssertionError("the cache should have answered")


@pytest.fixture(scope="module")
def users():
    return simulated_users(3, seed=0)


def test_profile_spec_parsing() -> None:
    assert parse_profile_spec("template").source is ProfileSource.TEMPLATE
    assert parse_profile_spec("none") == (ProfileSource.NONE, None, None)
    assert parse_profile_spec("llm:a.gguf") == (ProfileSource.LLM, "a.gguf", None)
    assert parse_profile_spec("llm:dir/base.gguf+dir/lora.gguf") == (ProfileSource.LLM, "dir/base.gguf", "dir/lora.gguf")
    for bad in ("llm", "llm:", "gpt", "text"):
        with pytest.raises(InputError):
            parse_profile_spec(bad)
    assert profile_generator("template") is None
    with pytest.raises(InputError, match="no GGUF"):       # checked before llama_cpp is imported
        profile_generator("llm:/nonexistent/model.gguf")


def test_llm_texts_reach_the_table_and_the_cache_answers_twice(users, tmp_path: Path) -> None:
    fake = FakeLLM()
    kw = dict(cache_dir=tmp_path / "sbert", llm_cache=tmp_path / "llm", generator_id="fake-v1")
    table = build_profile_table(users, "llm", generator=fake, **kw)
    assert fake.calls == len(users)
    assert table.texts == [fake(build_prompt(u.profile)).strip() for u in users]
    assert table.present.all() and table.info["generated"] == len(users) and table.info["cache_hits"] == 0
    template = build_profile_table(users, "template", cache_dir=tmp_path / "sbert")
    assert template.texts is None
    assert not np.allclose(table.emb, template.emb)                 # the LLM text, not the template, was encoded
    assert all(t != template_profile(u.profile) for t, u in zip(table.texts, users))

    again = build_profile_table(users, "llm", generator=NoLLM(), **kw)   # second call: no generation at all
    assert again.texts == table.texts and again.info["cache_hits"] == len(users)
    np.testing.assert_array_equal(again.emb, table.emb)
    doc = json.loads(cache_file(tmp_path / "llm", "fake-v1").read_text())
    assert doc["generator"] == "fake-v1" and len(doc["texts"]) == len(users)

    # another generator id never reads these texts; changed statistics (another prompt) regenerate
    other = FakeLLM()
    build_profile_table(users[:1], "llm", generator=other, cache_dir=tmp_path / "sbert", llm_cache=tmp_path / "llm",
                        generator_id="fake-v2")
    assert other.calls == 1
    texts, info = llm_profile_texts([users[0].user], [users[1].profile], FakeLLM(), generator_id="fake-v1",
                                    cache_dir=tmp_path / "llm")
    assert info["generated"] == 1


def test_missing_gguf_is_an_input_error(users, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no GGUF"):
        build_profile_table(users, f"llm:{tmp_path / 'missing.gguf'}", cache_dir=tmp_path / "sbert",
                            llm_cache=tmp_path / "llm")


def test_trainer_llm_source_writes_profiles_and_resumes_from_the_cache(users, tmp_path: Path) -> None:
    """A GGUF spec whose texts are all cached: the trainer never loads llama.cpp, writes the texts it
    trained on to <out>/profiles.json, and a resume with the same spec continues (a different spec is refused)."""
    from umask.train.models.umask.trainer import TrainConfig, train

    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    spec = f"llm:{gguf}"
    texts, _ = llm_profile_texts([u.user for u in users], [u.profile for u in users], FakeLLM(),
                                 generator_id=generator_identity(parse_profile_spec(spec)), cache_dir=tmp_path / "llm")
    npz = save_users(tmp_path / "users.npz", users, {"n_users": len(users), "sim_seed": 0})
    base = dict(model="tiny", data=str(npz), sbert_cache=str(tmp_path / "sbert"), llm_profile_cache=str(tmp_path / "llm"),
                out=str(tmp_path / "run"), progress=False, log_every=1, warmup=1, batch_size=4, ckpt_every=2,
                profile_source=spec)
    train(TrainConfig(steps=2, **base))
    prof = json.loads((tmp_path / "run" / "profiles.json").read_text())
    assert prof["source"] == spec and prof["cache_hits"] == len(users) and prof["generated"] == 0
    assert list(prof["profiles"].values()) == texts
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["profile_source"] == spec
    train(TrainConfig(steps=3, **base))                            # resume: same spec, texts from the cache
    with pytest.raises(InputError):
        train(TrainConfig(steps=4, **{**base, "profile_source": "template"}))


@pytest.mark.skipif(not GGUF.is_file(), reason=f"no GGUF at {GGUF}")
def test_real_gguf_profiles(users, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    spec = f"llm:{GGUF}"
    table = build_profile_table(users[:1], spec, cache_dir=tmp_path / "sbert", llm_cache=tmp_path / "llm")
    assert table.info["generated"] == 1 and table.texts[0].strip()
    again = build_profile_table(users[:1], spec, cache_dir=tmp_path / "sbert", llm_cache=tmp_path / "llm")
    assert again.texts == table.texts and again.info["cache_hits"] == 1


def test_trained_on_llm_rows_and_v2_file(tmp_path: Path) -> None:
    """uscope_downstream --trained-on-llm: four harness models per (template, LLM) checkpoint pair, each
    with its profile spec; the harness rows of two training seeds become v2 rows (mean, population std)
    that the scoreboard accepts, with kind and training / inference notes. Input: the committed harness
    result of the four-source table, its models renamed (the second "seed": app MAE scaled by 1.1)."""
    from umask.bench.accuracy import uscope_downstream as ud
    from umask.bench.reports import scoreboard

    rows = ud.llm_trained_rows([(Path("A"), Path("B"))], Path("m.gguf"))
    pair = (Path("A"), Path("B"))
    argv = ud.harness_argv({n: (pair[w], s, note) for n, (w, s, _, note) in rows.items()}, 20, str(tmp_path / "h.json"))
    assert argv.count("--ckpt") == 4 and f"umask_ft_llm=llm:{Path('m.gguf')}" in argv
    assert "umask_ft_llm_infer_none=none" in argv and "umask_ft_template=template" in argv
    assert argv[argv.index("umask_ft_llm_infer_none") - 2] == "B" and argv[argv.index("umask_ft_template") - 2] == "A"
    src = json.loads((ROOT / "benchmarks" / "results" / "uscope_downstream.json").read_text())
    rename = dict(zip(("a_no_profile", "b_template", "c_lora", "d_lora_dpo"), rows))
    for r in src["rows"]:
        r["model"] = rename[r["model"]]
    (tmp_path / "h.json").write_text(json.dumps(src))
    for r in src["rows"]:
        r["metrics"]["app"]["mae"] *= 1.1
    (tmp_path / "h_1.json").write_text(json.dumps(src))
    n = ud.write_v2([tmp_path / "h.json", tmp_path / "h_1.json"], tmp_path / "v2_x.json", rows, "cmd", [0, 1])
    doc = json.loads((tmp_path / "v2_x.json").read_text())
    assert n == len(doc["rows"]) > 0
    assert len(list(scoreboard._v2_rows(tmp_path / "v2_x.json", doc, "abc1234", "2026-12-06"))) == n
    assert {r["kind"] for r in doc["rows"] if r["model"] == "umask_ft_llm"} == {"ours"}
    assert all("profiles at training" in r["notes"] and r["data"] == "synthetic" and r["seeds"] == [0, 1]
               for r in doc["rows"])
    app = [r for r in doc["rows"] if r["metric"] == "mae_all/app"]
    assert app and all(r["spread"] > 0 for r in app)
    assert all(r["spread"] == 0 for r in doc["rows"] if r["metric"] == "mae_all/traffic")
