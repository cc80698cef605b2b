"""U-SCOPE profiling LLM: prompt frame, consistency checker, DPO pairs, constrained synthesis decoder.

Real inputs: the 6-user LLMApp sample (data/tsinghua_app_usage) and a few simulated users."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from umask.runtime.engines.llama import IM_END, chat_prompt, chat_target
from umask.runtime.families.umask.profile_text import SECTIONS, build_prompt
from umask.train.models.umask.uscope.llm import (
    UserItem,
    consistency_checks,
    make_dpo_pairs,
    parse_sections,
    perturbed_profile,
    profile_consistency,
    real_users,
)
from umask.train.models.umask.uscope.synth import (
    EOS,
    CooccurrenceLogitsProcessor,
    SynthConfig,
    joint,
    make_lm,
    sample_days,
    user_days,
    violations,
)


@pytest.fixture(scope="module")
def real() -> list[UserItem]:
    return real_users()


def test_prompt_is_deterministic_and_framed(real: list[UserItem]) -> None:
    for it in real:
        assert build_prompt(it.stats) == it.prompt                      # deterministic
        framed = chat_prompt(it.prompt)
        assert framed.endswith("<|im_start|>assistant\n") and it.prompt in framed
        assert framed.count(IM_END) == 2                                 # system + user turns closed
        assert chat_target(it.target).endswith(IM_END)
    assert len({it.prompt for it in real}) == len(real)                  # users are told apart


def test_checker_accepts_the_template_and_catches_wrong_facts(real: list[UserItem]) -> None:
    rng = np.random.default_rng(0)
    for it in real:
        assert profile_consistency(it.target, it.stats) == 1.0
        assert set(parse_sections(it.target)) == set(SECTIONS)
        bad = perturbed_profile(it, rng)
        assert bad != it.target
        assert profile_consistency(bad, it.stats) < 1.0
    # another real user's profile contradicts at least one fact of this user's statistics
    for a, b in zip(real, real[1:] + real[:1]):
        assert profile_consistency(b.target, a.stats) < 1.0
    # missing sections and nonsense are caught
    it = real[0]
    assert consistency_checks("\n".join(it.target.splitlines()[:3]), it.stats)["sections"] is False
    assert profile_consistency("I like apps.", it.stats) < 0.3


def test_dpo_pairs(real: list[UserItem]) -> None:
    pairs = make_dpo_pairs(real, 12, seed=0)
    assert len(pairs) == 12
    assert {p["kind"] for p in pairs} == {"mismatched", "perturbed"}
    by_user = {it.user: it for it in real}
    for p in pairs:
        it = by_user[p["user"]]
        assert p["chosen"] == it.target and p["rejected"] != p["chosen"] and p["prompt"] == it.prompt
        assert profile_consistency(p["chosen"], it.stats) > profile_consistency(p["rejected"], it.stats)


def test_constrained_decoder_never_emits_forbidden_pairs() -> None:
    users, voc = user_days(4, seed=5, days=2)                           # SYNTHETIC users, real id spaces
    model = make_lm(voc, SynthConfig(hidden=32, layers=1, heads=2))     # untrained: no preference for valid pairs
    rng = np.random.default_rng(0)
    n = 24
    allowed = rng.random((n, voc.n_categories, voc.n_places)) < 0.15     # a sparse random allowed set per row
    allowed[:, 0, 0] = True
    modes = [users[i % len(users)].days[0][1] for i in range(n)]
    con = sample_days(model, voc, modes, allowed, seed=1, max_events=12)
    free = sample_days(model, voc, modes, None, seed=1, max_events=12)
    assert sum(len(voc.pairs(s)) for s in con) > 50                      # it does generate pairs
    assert violations(voc, con, allowed) == 0
    assert violations(voc, free, allowed) > 0                            # without the processor they occur
    assert joint(voc, con).sum() == pytest.approx(1.0)
    # the processor on adversarial scores: the forbidden places hold the largest logits
    proc = CooccurrenceLogitsProcessor(voc, allowed[:2])
    ids = torch.tensor([[1, 3, voc.hour0 + 8, voc.app0 + 0], [1, 3, voc.hour0 + 9, voc.app0 + 0]])
    scores = torch.zeros(2, voc.size)
    scores[:, voc.place0:] = torch.from_numpy(np.where(allowed[:2, 0], 0.0, 100.0)).float()
    out = proc(ids, scores)
    top = out.argmax(-1) - voc.place0
    assert all(allowed[i, 0, int(top[i])] for i in range(2))
    assert torch.isinf(out[:, :voc.place0]).all()                       # only a place may follow an app
    assert EOS < voc.hour0
