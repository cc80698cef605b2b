"""GTS-LUM (issue 14): inputs, model, training steps, export parity and the runtime session, on the REAL
6-user sample (data/tsinghua_app_usage) with a tiny model (random frozen decoder of 1 small block;
the SmolLM2 parity test runs when its float32 copy is cached)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from umask.runtime.core.errors import InputError  # noqa: E402
from umask.runtime.families.gtslum import sequence as sq  # noqa: E402
from umask.train.models.gtslum import data as gd  # noqa: E402
from umask.train.models.gtslum import trainer as gt  # noqa: E402
from umask.train.models.gtslum.encoders import app_place_graph, node2vec, semantic_ids  # noqa: E402
from umask.train.models.gtslum.model import GTSLUMConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "cache" / "uscope" / "base"
TINY = dict(llm_dim=36, llm_heads=3, llm_kv_heads=1, llm_ffn=48, llm_blocks=1, d_q=16, q_heads=2, q_layers=1,
            head_dim=16, max_intervals=4, per_interval=2)


@pytest.fixture(scope="module")
def real() -> gd.Users:
    return gd.real_users()


def tiny_model(users: gd.Users, **over):
    cfg = GTSLUMConfig(n_categories=users.n_categories, n_places=users.n_places, **{**TINY, **over})
    rng = np.random.default_rng(0)
    n_beh = users.n_categories * (users.n_places + 1)
    emb = rng.normal(size=(n_beh, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sid = semantic_ids(emb, branch=4, depth=2)
    cfg = dataclasses.replace(cfg, sid_sizes=(4, 4, int(sid[:, -1].max()) + 1))
    graph = app_place_graph(np.concatenate([b.category for b in users.behaviors.values()]),
                            np.concatenate([b.place for b in users.behaviors.values()]), users.n_categories,
                            users.n_places)
    enc = {"sid_table": sid, "node_emb": node2vec(graph, dim=cfg.node_dim, n_walks=2, epochs=1),
           "desc_text": rng.normal(0, 0.1, (sq.N_DESCRIPTORS, cfg.llm_dim)).astype(np.float32)}
    torch.manual_seed(0)
    return gt.build_model(cfg, enc, None), enc


def test_timestamp_descriptors_and_time_ids(real):
    texts = sq.descriptor_texts()
    assert len(texts) == sq.N_DESCRIPTORS == len(set(texts))
    wed_8am = 1461110400 + 8 * 3600                     # the sample's day, 2016-04-20, a Wednesday
    assert texts[int(sq.descriptor_id(wed_8am))] == "Wednesday, a weekday, morning rush hour"
    assert "weekend" in texts[int(sq.descriptor_id(wed_8am + 3 * 86400))]   # Saturday
    b = next(iter(real.behaviors.values()))
    t = int(b.interval[-1]) * sq.INTERVAL_SECONDS + 3600
    s = sq.layout(b.before(t), t, max_intervals=5, per_interval=3, timestamps="full", target="front")
    real_tok = s.types != sq.PAD
    assert s.types[real_tok][0] == sq.TGT                # the target at the start
    assert s.types[-1] != sq.PAD                          # left padding: the last position is a real token
    beh = s.types == sq.BEH
    for k in np.flatnonzero(s.types == sq.TDS):          # every behavior shares its interval's tds time ID
        nxt = k + 1
        while nxt < len(s.types) and s.types[nxt] == sq.BEH:
            assert s.time_id[nxt] == s.time_id[k]
            nxt += 1
    assert beh.sum() == s.beh_valid.sum() > 0
    end = sq.layout(b.before(t), t, max_intervals=5, per_interval=3, timestamps="none", target="end")
    assert end.types[-1] == sq.TGT and sq.TDS not in end.types
    none = sq.layout(b.before(t), t, max_intervals=5, per_interval=3, timestamps="positional", target="none")
    assert sq.TGT not in none.types
    with pytest.raises(InputError):
        sq.layout(b, t, max_intervals=5, per_interval=3, timestamps="sometimes")


def test_semantic_id_tree_is_a_unique_path():
    from umask.train.models.gtslum.encoders import embed_texts

    real = gd.real_users()
    texts = sq.behavior_texts(real.category_names, real.poi_names)
    used = sorted({int(c) * (real.n_places + 1) + int(p) for b in real.behaviors.values()
                   for c, p in zip(b.category, b.place)})
    emb = embed_texts([texts[i] for i in used])
    ids = semantic_ids(emb, branch=3, depth=2)
    assert ids.shape == (len(used), 3)
    assert len({tuple(r) for r in ids}) == len(used)                 # every behavior its own ID
    assert ids[:, 0].max() < 3 and ids[:, 1].max() < 3
    # behaviors that share the first level are closer (cosine) than behaviors that do not
    same = ids[:, :1] == ids[:, :1].T
    sim = emb @ emb.T
    off = ~np.eye(len(used), dtype=bool)
    assert sim[same & off].mean() > sim[~same].mean()


def test_training_steps_reduce_the_loss(real):
    model, enc = tiny_model(real)
    x = gd.build_inputs(real, gd.windows(real, "test"), enc["node_emb"], max_intervals=4, per_interval=2)
    b = gt.to_batch(x)
    frozen = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(25):
        loss = model.loss(b) + sum(model.pretrain_losses(b, torch.Generator().manual_seed(0)).values()) * 0.1
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert float(model.loss(b)) < first
    assert all(torch.equal(v, model.decoder.state_dict()[k]) for k, v in frozen.items())  # decoder frozen


def test_run_export_and_runtime_match_torch(real, tmp_path):
    from umask.export.families.gtslum.exporter import export_bundle
    from umask.runtime.session import Session

    model, _ = tiny_model(real, target_hist_hours=4.0)
    with torch.no_grad():
        model.score_scale.fill_(0.7)  # a trained-like gate: the contrastive scores must survive the export too
    run = gt.save_run(tmp_path / "run", model.trainable_state(), {
        "model": model.cfg.to_dict(), "train": {"base": None},
        "data": {"category_names": real.category_names, "poi_names": real.poi_names}})
    loaded, _ = gt.load(run)          # no base: the same seeded random decoder every time (build_model)
    assert float(loaded.score_scale) == pytest.approx(0.7) and loaded.cfg.target_hist_hours == 4.0
    x = gd.build_inputs(real, gd.windows(real, "test"), loaded.node_emb.numpy(), **gd.input_kw(loaded.cfg))
    ref = gt.predict(loaded, x)
    man = export_bundle(run, tmp_path / "bundle")
    assert man["family"] == "gtslum" and man["parity"]["fp32"]["status"] == "ok"
    assert man["parity"]["fp32"]["max_abs_score"] < 1e-3
    with Session.open(tmp_path / "bundle", allow_unsigned=True) as s:
        assert s.family == "gtslum"
        for i in range(0, len(x), 9):
            ev = real.events[int(x.users[i])]
            got = s.scores(ev.take(ev.ts < int(x.target_ts[i])), int(x.target_ts[i]))
            np.testing.assert_allclose(got, ref[i], atol=1e-3)
        assert man["parity"]["fp32"]["n_windows"] == len(x)
        top = s.next_apps(real.events[int(x.users[0])].take(real.events[int(x.users[0])].ts < int(x.target_ts[0])),
                          k=3, now_ts=int(x.target_ts[0]))
        assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
        assert {t["category"] for t in top} <= set(real.category_names)
        ev = real.events[int(x.users[0])]
        with pytest.raises(InputError, match="k must be"):
            s.next_apps(ev.take(ev.ts < int(x.target_ts[0])), k=0, now_ts=int(x.target_ts[0]))
        with pytest.raises(InputError, match="at or after now_ts"):
            s.next_apps(ev, k=3, now_ts=int(ev.ts.min()))
        bad = ev.take(np.arange(len(ev)))
        bad.app = bad.app.copy()
        bad.app[0] = 10**9
        with pytest.raises(InputError, match="absent from the bundle"):
            s.next_apps(bad, k=3)                     # now_ts default: the 15-minute boundary after the last event
        with pytest.raises(InputError, match="history must be"):
            s.scores([1, 2, 3], 0)
    with pytest.raises(InputError, match="precision"):
        Session.open(tmp_path / "bundle", allow_unsigned=True, precision="fp8")


def test_target_shares_kernel_and_the_score_gate_start_at_the_prior(real):
    """target_hist_hours > 0: the target token's shares are the kernel time-of-day row's smoothed counts,
    normalized; score_gate: an untrained head scores exactly the frequency prior (the contrastive term is
    multiplied by a zero-initialized scale), so training only adds the network where it helps."""
    from umask.bench.accuracy import gtslum as G

    x0 = gd.build_inputs(real, gd.windows(real, "test"), np.zeros((real.n_categories + real.n_places + 1, 4),
                         np.float32), max_intervals=4, per_interval=2)
    x4 = gd.build_inputs(real, gd.windows(real, "test"), np.zeros((real.n_categories + real.n_places + 1, 4),
                         np.float32), max_intervals=4, per_interval=2, target_hist_hours=4.0)
    kern = G.time_of_day_kernel_scores(x4.hour_hist, x4.target_ts, np.zeros_like(x4.target_hist), 4.0)
    tot = kern.sum(1, keepdims=True)
    np.testing.assert_allclose(x4.target_hist, kern / np.maximum(tot, 1.0), atol=1e-3)
    assert not np.allclose(x4.target_hist, x0.target_hist)
    hour = sq.hour_of(x0.target_ts)
    raw = x0.hour_hist[np.arange(len(x0)), hour]
    np.testing.assert_allclose(x0.target_hist, raw / np.maximum(raw.sum(1, keepdims=True), 1.0), rtol=1e-6)
    model, enc = tiny_model(real, target_hist_hours=4.0)
    x = gd.build_inputs(real, gd.windows(real, "test"), enc["node_emb"], **gd.input_kw(model.cfg))
    b = gt.to_batch(x)
    K = real.n_categories
    with torch.no_grad():
        prior = 0.5 * torch.log(b["target_hist"] + 0.01) + 0.5 * torch.log(b["table"][:, :K] + 0.01)
        np.testing.assert_allclose(model(b).numpy(), prior.numpy(), atol=1e-6)
    plain, _ = tiny_model(real, score_gate=False)
    assert not hasattr(plain, "score_scale")
    with pytest.raises(ValueError, match="target_hist_hours"):
        tiny_model(real, target_hist_hours=-1.0)


def test_frozen_decoder_matches_smollm2():
    from umask.train.models.gtslum.model import FrozenDecoder
    from umask.train.models.umask.uscope.llm import load_causal_lm, prepare_base

    prepare_base(BASE)         # the float32 copy of the shipped GGUF, made once (~20 s) and cached under cache/

    dec = FrozenDecoder(GTSLUMConfig(llm_blocks=1))
    dec.load_base(BASE)
    hf, _ = load_causal_lm(BASE)
    hf.model.layers = hf.model.layers[:1]
    x = torch.randn(2, 7, 576) * 0.1
    mask = torch.ones(2, 7)
    mask[1, :3] = 0                                                  # left padding
    with torch.no_grad():
        ref = hf.model(inputs_embeds=x, attention_mask=mask.long()).last_hidden_state[:, -1]
        got = dec(x, mask)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_kernel_time_of_day_row_is_the_smoothed_count_and_its_width_the_validation_choice() -> None:
    """time_of_day_kernel_scores: a narrow kernel ranks by the same-hour count (the time_of_day_frequency row), a
    wide one by the user's overall count (user_frequency); neighbouring hours count. The frozen width is what the
    committed file's validation grid chose (`python -m umask.bench.accuracy.gtslum --only kernel`)."""
    import json
    from pathlib import Path

    import numpy as np

    from umask.bench.accuracy import gtslum as G

    K = 4
    hh = np.zeros((1, 24, K), np.float32)
    hh[0, 9, 0] = 3.0            # category 0: three times at 09 h
    hh[0, 10, 1] = 2.0           # category 1: twice at 10 h (the target's neighbour) ...
    hh[0, 11, 1] = 2.0           # ... and twice at 11 h
    hh[0, 21, 2] = 9.0           # category 2: the most used overall, but in the evening
    ts = np.array([9 * 3600 + 600], np.int64)      # a 09:10 target (day 0)
    pop = np.array([[0.1, 0.2, 0.3, 0.4]])
    narrow = G.time_of_day_kernel_scores(hh, ts, pop, 0.3)
    assert list(np.argsort(-narrow[0])[:2]) == [0, 1]            # same hour first
    assert list(np.argsort(-G.time_of_day_kernel_scores(hh, ts, pop, 3.0)[0])[:1]) == [1]   # 10-11 h outweigh 09 h
    assert int(np.argmax(G.time_of_day_kernel_scores(hh, ts, pop, 1e6)[0])) == 2            # overall frequency
    from umask.runtime.families.umask.prior import tod_kernel       # the kernel the row convolves with

    assert np.allclose(tod_kernel(24, 3.0).sum(1), 1.0) and tod_kernel(24, 3.0)[0, 23] == tod_kernel(24, 3.0)[0, 1]
    meta = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/v2_gtslum.json").read_text())["meta"]
    k = meta["kernel"]
    assert k["grid_hours"] == list(G.KERNEL_GRID) and k["chosen_hours"] == G.TOD_KERNEL_HOURS and k["agree"]
    table = {float(h): v for h, v in k["validation_ndcg@5"].items()}
    assert max(table, key=lambda h: (table[h], -h)) == G.TOD_KERNEL_HOURS
