"""FatsMB mobile variant on the device: a tiny model trained a few steps on the REAL shipped 6-user
sample (items = the 20 LLMApp app categories, behaviors open / long / heavy), exported with the
generic FatsMB exporter (fp32 + int8 QDQ, with the repeat / co-occurrence prior), opened torch-free
with `Session.open`, and checked against torch on the real users' histories.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from test_fatsmb_mobile import catalog, events, inter, real_file  # noqa: F401  (the real sample's fixtures)

from umask.runtime.core.bundle import BundleError
from umask.runtime.core.errors import InputError
from umask.train.baselines import repeat_prior as rp
from umask.train.data import mobile_mb
from umask.train.models.fatsmb import prior as prior_fit
from umask.train.models.fatsmb import trainer
from umask.train.models.fatsmb.data import load_protocol_c
from umask.train.models.fatsmb.model import FatsMBConfig

torch.set_num_threads(1)
K = 5


@pytest.fixture(scope="module")
def data(real_file):
    return load_protocol_c(real_file)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    tc = trainer.TrainConfig(data=data.path, stage1_steps=20, stage2_steps=20, stage3_steps=2, eval_every=10,
                             batch_size=8, sample_steps=3, guidance_grid="1.5", steps_grid="3")
    model, info = trainer.train(FatsMBConfig(d=16, heads=2, layers=1, max_len=16, den_layers=1, diffusion_steps=20),
                                tc, data)
    out = trainer.save(model, tc, info, data, tmp_path_factory.mktemp("fatsmb_mobile") / "seed0")
    model, meta = trainer.load(out)
    fit = prior_fit.fit_prior(model, meta, data, mode="diffusion", cfg=rp.GainFitConfig(steps=10, eval_every=5),
                              scale_grid=(0.0, 1.0))
    fit["scale"] = [1.0] * data.n_behaviors                # keep the networks in the scores, so parity tests them
    (out / "prior_diffusion.json").write_text(__import__("json").dumps(fit))
    return out


@pytest.fixture(scope="module")
def bundle(run, tmp_path_factory):
    from umask.export.families import exporter

    out = tmp_path_factory.mktemp("bundle") / "fatsmb_mobile"
    manifest = exporter("fatsmb")(run, out, parity_queries=6, calibration_queries=6)
    assert manifest["family"] == "fatsmb" and set(manifest["artifacts"]) == {"fp32", "int8-qdq"}
    assert manifest["model"]["behaviors"] == list(mobile_mb.BEHAVIORS) and manifest["model"]["n_items"] == 20
    assert manifest["prior"]["file"] == "prior.npz" and "validation_ndcg@10" in manifest["prior"]   # the mobile metric
    assert manifest["checkpoint"]["validation_metric"] == "ndcg@10" and manifest["checkpoint"]["validation"] is not None
    return out


def _history(data, u):
    items, behs = data.test.prefixes[u]
    return [(int(data.item_ids[i]), data.behaviors[b]) for i, b in zip(items, behs)]


@pytest.mark.parametrize("precision", ["fp32", "int8-qdq"])
def test_recommend_returns_distinct_known_app_categories(bundle, data, catalog, precision):
    from umask.runtime.session import Session

    known = set(catalog.apps.category_ids.tolist())
    assert set(data.item_ids.tolist()) == known and len(known) == 20
    with Session.open(bundle, precision=precision, allow_unsigned=True) as s:
        for u in range(len(data.test)):
            for b in mobile_mb.BEHAVIORS:
                rec = s.recommend(_history(data, u), behavior=b, k=K)
                assert len(rec["items"]) == K == len(set(rec["items"])) and set(rec["items"]) <= known
                assert rec["scores"] == sorted(rec["scores"], reverse=True) and rec["behavior"] == b
                assert rec["skipped_unknown"] == 0
        rec = s.recommend(_history(data, 0) + [(999, "open")], behavior="long", k=20)   # 999: not a category id
        assert rec["skipped_unknown"] == 1 and sorted(rec["items"]) == sorted(known)
        for bad in (dict(behavior="pv"), dict(k=21), dict(history=[(999, "open")]), dict(history=[(3, "buy")])):
            kw = {"history": _history(data, 0), "behavior": "open", "k": K, **bad}
            with pytest.raises(InputError):
                s.recommend(kw.pop("history"), **kw)


def test_fp32_bundle_ranks_like_torch_on_real_histories(bundle, run, data):
    from umask.runtime.session import Session

    model, meta = trainer.load(run)
    fit = prior_fit.load_fit(run)
    tables = prior_fit.tables_for(data)
    q = data.test
    ref = prior_fit.score(model, meta, fit, tables, q.prefixes, q.behavior)             # torch + prior, (U, 20)
    plain = trainer.score(model, q.prefixes, q.behavior, steps=meta["sampling"]["steps"],
                          w=meta["sampling"]["guidance"], seed=0)
    assert not np.allclose(ref, plain)                                                   # the prior is in the scores
    with Session.open(bundle, precision="fp32", allow_unsigned=True) as s:
        got = np.stack([s.scores(p[0], p[1], int(b)) for p, b in zip(q.prefixes, q.behavior)])
        assert np.allclose(got, ref, atol=1e-3)
        for u in range(len(q)):
            top = [int(data.item_ids[j]) for j in np.argsort(-ref[u], kind="stable")[:K]]
            assert s.recommend(_history(data, u), int(q.behavior[u]), k=K)["items"] == top


def test_tampered_bundle_is_refused(bundle, tmp_path):
    from umask.runtime.session import Session

    for name in ("prior.npz", "items.npz", "int8-qdq/decoder.onnx"):
        bad = tmp_path / name.replace("/", "_")
        shutil.copytree(bundle, bad)
        raw = bytearray((bad / name).read_bytes())
        raw[len(raw) // 2] ^= 0xFF                                                       # one flipped byte
        (bad / name).write_bytes(bytes(raw))
        with pytest.raises(BundleError):
            Session.open(bad, precision="int8-qdq", allow_unsigned=True)
    with pytest.raises(BundleError):
        Session.open(bundle, precision="fp32")                                           # unsigned, not opted in
