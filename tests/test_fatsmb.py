"""FatsMB family: model pieces (BaRoPE, MCGLN, CFG), training stages, export parity, runtime, scorer rows.

Real data: the first users of the shipped Taobao sample, a tiny config (d=32) trained a few steps.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from umask.runtime.core.bundle import BundleError
from umask.runtime.core.errors import InputError
from umask.train.models.fatsmb import trainer
from umask.train.models.fatsmb.data import load_protocol_c
from umask.train.models.fatsmb.model import FatsMB, FatsMBConfig, rotate, rope_tables

torch.set_num_threads(1)
TINY = dict(d=32, heads=2, layers=1, max_len=16, den_layers=1, diffusion_steps=50)


@pytest.fixture(scope="module")
def data():
    return load_protocol_c(max_users=40)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    tc = trainer.TrainConfig(max_users=40, stage1_steps=40, stage2_steps=40, stage3_steps=4, eval_every=20,
                             batch_size=16, n_negatives=128, sample_steps=4, guidance_grid="1,2", steps_grid="4")
    model, info = trainer.train(FatsMBConfig(**TINY), tc, data)
    out = trainer.save(model, tc, info, data, tmp_path_factory.mktemp("fatsmb") / "seed0")
    return out, info


def test_barope_is_relative_and_behavior_scaled():
    """eq. 30: <h(a) f(q, m), h(b) f(k, n)> depends on positions only through m - n."""
    torch.manual_seed(0)
    cos, sin = rope_tables(12, 8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    ga, gb = torch.rand(4).repeat_interleave(2) + 0.5, torch.rand(4).repeat_interleave(2) + 0.5   # one gain per pair
    def score(m, n):
        return float((rotate(q, cos[m:m + 1], sin[m:m + 1]) * ga * rotate(k, cos[n:n + 1], sin[n:n + 1]) * gb).sum())
    assert score(3, 1) == pytest.approx(score(9, 7), rel=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), rel=1e-3)
    plain = float((rotate(q, cos[3:4], sin[3:4]) * rotate(k, cos[1:2], sin[1:2])).sum())
    assert score(3, 1) != pytest.approx(plain, rel=1e-3)                  # the behavior gain changes the score


def test_mcgln_adaln_zero_moe_routing_and_guidance():
    torch.manual_seed(0)
    m = FatsMB(FatsMBConfig(**TINY), n_items=50, n_behaviors=4)
    blk = m.denoiser.blocks[0]
    z, zn, cond = torch.randn(5, 32), torch.randn(5, 32), torch.randn(5, 32)
    b = torch.tensor([0, 1, 2, 3, 4])
    assert torch.equal(blk(z, zn, cond, b), z)                            # adaLN-Zero: identity at init
    moe = blk.moe
    x = torch.randn(5, 32)
    before = moe(x, b)
    with torch.no_grad():                                                  # perturb behavior 1's private expert
        moe.private.w2[1 * moe.mp: 2 * moe.mp] += 1.0
    after = moe(x, b)
    changed = (after - before).abs().amax(1) > 1e-6
    assert changed.tolist() == [False, True, False, False, False]         # hard routing; ∅ (4) uses shared only
    t = torch.full((5,), 10)
    bb = torch.tensor([0, 1, 2, 3, 0])
    cond_out, uncond_out = m.denoiser(z, t, zn, bb), m.denoiser(z, t, zn, torch.full_like(bb, 4))
    assert torch.allclose(m.guided(z, t, zn, bb, 1.0), cond_out)
    assert torch.allclose(m.guided(z, t, zn, bb, 2.0), uncond_out + 2 * (cond_out - uncond_out))


def test_stages_train_and_losses_drop(run):
    _, info = run
    curve = info["curve"]
    for stage in ("stage1", "stage2"):
        losses = [r["loss"] for r in curve if r.get("stage") == stage and "loss" in r]
        assert len(losses) >= 2 and losses[-1] < losses[0], (stage, losses)
    assert info["guidance"] in (1.0, 2.0) and info["sample_steps"] == 4  # chosen on validation


def test_export_runtime_matches_torch_and_rejects_bad_input(run, tmp_path, data):
    from umask.export.families import exporter
    from umask.runtime.session import Session

    out, _ = run
    manifest = exporter("fatsmb")(out, tmp_path / "bundle", parity_queries=6, calibration_queries=8)
    assert manifest["family"] == "fatsmb" and set(manifest["artifacts"]) == {"fp32", "int8-qdq"}
    assert manifest["parity"]["fp32"]["request"]["top10_overlap"] == 1.0
    model, meta = trainer.load(out)
    q = data.test
    ref = trainer.score(model, q.prefixes[:5], q.behavior[:5], steps=meta["sampling"]["steps"],
                        w=meta["sampling"]["guidance"], seed=0)
    with Session.open(tmp_path / "bundle", allow_unsigned=True) as s:
        got = np.stack([s.scores(p[0], p[1], int(b)) for p, b in zip(q.prefixes[:5], q.behavior[:5])])
        assert np.allclose(got, ref, atol=1e-3)
        assert all(list(np.argsort(-a)[:10]) == list(np.argsort(-b)[:10]) for a, b in zip(got, ref))
        hist = [(int(data.item_ids[i]), data.behaviors[b]) for i, b in zip(*q.prefixes[0])]
        rec = s.recommend(hist + [(123456789, "pv")], "buy", k=7)
        assert len(rec["items"]) == 7 and rec["skipped_unknown"] == 1
        assert rec["items"][0] == int(data.item_ids[int(np.argmax(got[0] if q.behavior[0] == 3 else s.scores(*q.prefixes[0], 3)))])
        for bad in (dict(behavior="like"), dict(k=0), dict(history=[]), dict(history=[(1, "pv")]),
                    dict(history=[("x", "pv")]), dict(history=[(int(data.item_ids[0]), "zzz")])):
            kw = {"history": hist, "behavior": "pv", "k": 5, **bad}
            with pytest.raises(InputError):
                s.recommend(kw.pop("history"), **kw)
    with pytest.raises(InputError):
        Session.open(tmp_path / "bundle", allow_unsigned=True, precision="fp16")
    tampered = tmp_path / "tampered"
    shutil.copytree(tmp_path / "bundle", tampered)
    with open(tampered / "items.npz", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError):
        Session.open(tampered, allow_unsigned=True)


def test_scorer_rows_validate(run, tmp_path, monkeypatch):
    from umask.bench.accuracy import fatsmb as scorer
    from umask.bench.reports import scoreboard

    monkeypatch.setattr(scorer, "CURVES", tmp_path / "curves")            # not the committed learning curves
    out, _ = run
    res = tmp_path / "v2_fatsmb.json"
    assert scorer.main(["--protocol", "C", "--ckpt", str(out), "--baselines", "pop,recent", "--max-users", "40",
                        "--out", str(res)]) == 0
    doc = json.loads(res.read_text())
    rows = list(scoreboard._v2_rows(res, doc, "abc1234", "2026-12-06"))
    models = {r.model for r in rows}
    assert {"fatsmb", "fatsmb_ae", "pop", "recent"} <= models
    assert all(re.fullmatch(r"[a-z][a-z0-9_@.\-]*", r.metric) for r in rows)
    by = {(r.model, r.metric): r.value for r in rows}
    assert 0.0 <= by[("fatsmb", "item_recall@10")] <= by[("fatsmb", "item_recall@20")] <= 1.0
    assert by[("recent", "item_recall@10")] > by[("pop", "item_recall@10")]   # repeat items dominate this data
