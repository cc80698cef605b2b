"""FatsMB's repeat / co-occurrence prior: history-only features, no leakage, torch = bundle = runtime.

Real data: the first users of the shipped Taobao sample; a tiny FatsMB (d=16) trained a few steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from umask.runtime.families.fatsmb.prior import PriorTables, apply, query_features
from umask.train.baselines import repeat_prior as rp
from umask.train.baselines import seqrec
from umask.train.models.fatsmb import prior as prior_fit
from umask.train.models.fatsmb import trainer
from umask.train.models.fatsmb.data import load_protocol_c
from umask.train.models.fatsmb.model import FatsMBConfig

torch.set_num_threads(1)
NB = 4                                                   # pv fav cart buy: the repeat columns are 0..3


@pytest.fixture(scope="module")
def data():
    return load_protocol_c(max_users=60)


@pytest.fixture(scope="module")
def tables(data):
    return prior_fit.tables_for(data)


def test_repeat_credit_only_for_history_items(data, tables):
    """An item gets repeat credit iff it is in the query's history, under the behavior it had there."""
    seen_target_outside = 0
    for (items, behs), target in zip(data.test.prefixes, data.test.item):
        idx, x = query_features(tables, items, behs)
        in_hist = np.isin(idx, items)
        assert np.all(x[~in_hist, : NB + 1] == 0)          # no repeat credit outside the history
        recent = np.isin(idx, items[-50:])                  # (older ones may underflow to 0 by the decay)
        assert np.all(x[recent, NB] > 0)
        for b in range(NB):                                # repeat_<b> > 0 only for items seen with behavior b
            assert set(idx[x[:, b] > 0]) <= set(np.asarray(items)[np.asarray(behs) == b])
            assert set(np.asarray(items[-50:])[np.asarray(behs[-50:]) == b]) <= set(idx[x[:, b] > 0])
        if target not in items:
            seen_target_outside += 1
            k = np.searchsorted(idx, target)
            assert k == len(idx) or idx[k] != target or np.all(x[k, : NB + 1] == 0)
    assert seen_target_outside > 0                        # the case was exercised on real queries


def test_tables_count_the_training_split_only(data, tables):
    """Changing every validation and test target changes nothing in the tables."""
    rng = np.random.default_rng(0)
    moved = dataclasses.replace(data, val=dataclasses.replace(data.val, item=rng.integers(0, data.n_items, len(data.val))),
                                test=dataclasses.replace(data.test, item=rng.integers(0, data.n_items, len(data.test))))
    other = prior_fit.tables_for(moved)
    for k, v in tables.arrays().items():
        assert np.array_equal(v, other.arrays()[k]), k
    assert tables.counts.sum() == sum(len(s[0]) for s in data.train)
    # a test target that no training sequence holds has no count and no co-occurrence
    unseen = [t for t in data.test.item if t not in np.concatenate([s[0] for s in data.train])]
    assert unseen and all(tables.counts[t] == 0 and not np.isin(t, tables.indices) for t in unseen)


def test_training_queries_see_time_respecting_counts(data, tables):
    """A training query cut at e with ``future`` = the rest equals the tables built with that sequence cut at e."""
    u = int(np.argmax([len(s[0]) for s in data.train]))
    items, behs = data.train[u]
    for e in (len(items) - 1, len(items) // 2):
        got_idx, got = query_features(tables, items[:e], behs[:e], future=items[e:])
        cut = list(data.train)
        cut[u] = (items[:e], behs[:e])
        ref_t = PriorTables.build(cut, data.n_items, data.n_behaviors)
        ref_idx, ref = query_features(ref_t, items[:e], behs[:e])
        dense = lambda idx, x, col: np.bincount(idx, x[:, col], minlength=data.n_items)   # noqa: E731
        for col in range(x_cols := got.shape[1] - 1):
            assert np.allclose(dense(got_idx, got, col), dense(ref_idx, ref, col), atol=1e-5), col
        pop = tables.logpop.copy()
        pop[got_idx] += got[:, x_cols]                      # the pop column is a correction to logpop
        assert np.allclose(pop, ref_t.logpop, atol=1e-5)


def test_blend_fits_and_ranks_repeats_first(data):
    m = seqrec.make("blend").fit(data.train, data.n_items, data.n_behaviors, steps=20,
                                 val=(data.val.prefixes, data.val.item, data.val.behavior))
    g = np.asarray(m.fit_info["gains"])
    assert g.shape == (NB, NB + 4) and np.all(g >= 0)
    s = m.score(data.test.prefixes[:5], data.test.behavior[:5])
    for row, (items, _) in zip(s, data.test.prefixes[:5]):
        assert row[items[-1]] > np.median(row)            # the last history item is ranked high


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    tc = trainer.TrainConfig(max_users=60, stage1_steps=20, stage2_steps=20, stage3_steps=0, eval_every=20,
                             batch_size=8, sample_steps=3, guidance_grid="1.5", steps_grid="3")
    cfg = FatsMBConfig(d=16, heads=2, layers=1, max_len=12, den_layers=1, diffusion_steps=30)
    model, info = trainer.train(cfg, tc, data)
    out = trainer.save(model, tc, info, data, tmp_path_factory.mktemp("fatsmb_prior") / "seed0")
    model, meta = trainer.load(out)
    fit = prior_fit.fit_prior(model, meta, data, mode="diffusion", cfg=rp.GainFitConfig(steps=10, eval_every=5),
                              scale_grid=(0.0, 1.0))
    fit["scale"] = [1.0] * NB                              # force the neural part in, so parity tests it
    (out / "prior_diffusion.json").write_text(__import__("json").dumps(fit))
    return out


def test_bundle_and_runtime_rank_like_torch(run, data, tables, tmp_path):
    from umask.export.families import exporter
    from umask.runtime.session import Session

    manifest = exporter("fatsmb")(run, tmp_path / "bundle", parity_queries=4, calibration_queries=8)
    assert manifest["prior"]["file"] == "prior.npz" and manifest["parity"]["fp32"]["request"]["top10_overlap"] == 1.0
    model, meta = trainer.load(run)
    fit = prior_fit.load_fit(run)
    q = data.test
    ref = prior_fit.score(model, meta, fit, tables, q.prefixes[:6], q.behavior[:6])
    plain = trainer.score(model, q.prefixes[:6], q.behavior[:6], steps=meta["sampling"]["steps"],
                          w=meta["sampling"]["guidance"], seed=0)
    assert not np.allclose(ref, plain)                     # the prior changes the scores
    with Session.open(tmp_path / "bundle", allow_unsigned=True) as s:
        got = np.stack([s.scores(p[0], p[1], int(b)) for p, b in zip(q.prefixes[:6], q.behavior[:6])])
        assert np.allclose(got, ref, atol=1e-3)
        assert all(list(np.argsort(-a)[:10]) == list(np.argsort(-b)[:10]) for a, b in zip(got, ref))
        # the numpy prior of the runtime = the torch head on the same decoder scores
        z = apply(plain[0], tables, *q.prefixes[0], int(q.behavior[0]), np.asarray(fit["gains"], np.float32),
                  np.asarray(fit["scale"], np.float32))
        assert np.allclose(z, ref[0], atol=1e-4)
    with Session.open(tmp_path / "bundle", allow_unsigned=True, precision="int8-qdq") as s:
        got8 = np.stack([s.scores(p[0], p[1], int(b)) for p, b in zip(q.prefixes[:6], q.behavior[:6])])
    overlap = np.mean([len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10 for a, b in zip(got8, ref)])
    assert overlap >= 0.8


def test_scorer_reports_prior_and_blend_rows(run, tmp_path, monkeypatch):
    import json

    from umask.bench.accuracy import fatsmb as scorer
    from umask.bench.reports import scoreboard

    monkeypatch.setattr(scorer, "CURVES", tmp_path / "curves")            # not the committed learning curves
    res = tmp_path / "v2_fatsmb.json"
    assert scorer.main(["--protocol", "C", "--ckpt", str(run), "--baselines", "recent,blend", "--max-users", "60",
                        "--out", str(res)]) == 0
    doc = json.loads(res.read_text())
    rows = list(scoreboard._v2_rows(res, doc, "abc1234", "2026-12-06"))
    kinds = {(r.model, r.kind) for r in rows}
    assert {("fatsmb", "ours"), ("fatsmb_noprior", "ablation"), ("blend", "baseline")} <= kinds
    assert "fatsmb - blend (item_recall@10)" in doc["meta"]["paired_bootstrap_over_users"]
