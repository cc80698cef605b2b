"""FatsMB mobile variant (protocol C-mobile): the app-usage -> (item, behavior) converter on the REAL
shipped 6-user sample, its file layout, the protocol-C split of it, and a tiny end-to-end run.

Every expectation is recomputed here from the raw records with plain loops (not with the module's
vectorized code), so a wrong merge, label or order fails.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter

import numpy as np
import pytest
import torch

from umask.runtime.core.catalog import load_llmapp_catalog
from umask.runtime.core.errors import DataFormatError
from umask.train.data import mobile_mb
from umask.train.simulator import DEFAULT_DATA_DIR, TSINGHUA_DIR
from umask.train.simulator.calibration import load_real_sample

torch.set_num_threads(1)
CFG = mobile_mb.MobileMBConfig()


@pytest.fixture(scope="module")
def catalog():
    return load_llmapp_catalog(DEFAULT_DATA_DIR / TSINGHUA_DIR)


@pytest.fixture(scope="module")
def events():
    return load_real_sample().sorted()


@pytest.fixture(scope="module")
def inter(events, catalog):
    return mobile_mb.convert(events, catalog, CFG, meta={"data": "real", "source": "test"})


@pytest.fixture(scope="module")
def real_file(inter, tmp_path_factory):
    return mobile_mb.write(inter, tmp_path_factory.mktemp("mobile") / "real.mobile_mb.tsv.gz")


def _records_of(inter):
    """interaction index -> list of event indices (of the sorted EventLog)."""
    out: dict[int, list[int]] = {}
    for e, i in enumerate(inter.event_interaction.tolist()):
        out.setdefault(i, []).append(e)
    return out


def test_every_event_lands_in_exactly_one_interaction(events, inter):
    n = len(events)
    assert inter.event_interaction.shape == (n,)
    assert inter.meta["n_events"] == n and inter.meta["n_interactions"] == len(inter)
    assert inter.meta["merged"] == n - len(inter) > 0
    groups = _records_of(inter)
    assert sorted(groups) == list(range(len(inter)))                      # no empty interaction
    assert sum(len(g) for g in groups.values()) == n == int(inter.n_records.sum())
    assert [len(groups[i]) for i in range(len(inter))] == inter.n_records.tolist()
    assert int(inter.bytes.sum()) == int(events.bytes.sum())              # no traffic lost
    for i, g in groups.items():                                           # one run of consecutive records
        assert g == list(range(g[0], g[-1] + 1))


def test_sessions_merge_same_category_within_the_gap(events, catalog, inter):
    cat = catalog.apps.category_ids[catalog.apps.category_index(events.app)]
    groups = _records_of(inter)
    for i, g in groups.items():
        assert len({int(events.user[e]) for e in g}) == 1 and {int(cat[e]) for e in g} == {int(inter.item[i])}
        assert all(events.ts[b] - events.ts[a] <= CFG.session_gap_s for a, b in zip(g, g[1:]))
        assert inter.timestamp[i] == events.ts[g[0]] and inter.duration_s[i] == events.ts[g[-1]] - events.ts[g[0]]
    for i in range(len(inter) - 1):                                       # a boundary always has a reason
        a, b = groups[i][-1], groups[i + 1][0]
        assert (events.user[a] != events.user[b] or cat[a] != cat[b]
                or events.ts[b] - events.ts[a] > CFG.session_gap_s)
    # merging removed the runs: far fewer back-to-back repeats of the same category than in the records
    same = lambda u, x: np.mean([x[k] == x[k + 1] for k in range(len(x) - 1) if u[k] == u[k + 1]])  # noqa: E731
    assert same(inter.user, inter.item) < same(events.user, cat) - 0.3


def test_time_order_kept(inter):
    for k in range(len(inter) - 1):
        assert (inter.user[k], inter.timestamp[k]) <= (inter.user[k + 1], inter.timestamp[k + 1])


def test_behaviors_as_documented(inter):
    expected = []
    for u in np.unique(inter.user):
        idx = np.flatnonzero(inter.user == u)
        thr = np.quantile(inter.bytes[idx[:-CFG.holdout]], CFG.heavy_quantile)   # held-out ones left out
        for i in idx:
            if inter.duration_s[i] >= CFG.long_s:
                expected.append("long")
            elif inter.bytes[i] > thr:
                expected.append("heavy")
            else:
                expected.append("open")
    got = [mobile_mb.BEHAVIORS[b] for b in inter.behavior]
    assert got == expected
    counts = Counter(got)
    assert counts["open"] > counts["long"] > 0 and counts["heavy"] > 0


def test_heavy_threshold_ignores_the_held_out_interactions(events, catalog, inter):
    """Making the last 2 interactions of every user 1000x heavier must not relabel any earlier one."""
    last = np.zeros(len(inter), bool)
    for u in np.unique(inter.user):
        last[np.flatnonzero(inter.user == u)[-CFG.holdout:]] = True
    ev = events.take(np.arange(len(events)))
    ev.bytes = np.where(last[inter.event_interaction], ev.bytes * 1000 + 1, ev.bytes)
    other = mobile_mb.convert(ev, catalog, CFG)
    assert np.array_equal(other.behavior[~last], inter.behavior[~last])
    assert np.array_equal(other.item, inter.item) and np.array_equal(other.timestamp, inter.timestamp)


def test_file_round_trip_and_bad_lines(inter, real_file, tmp_path):
    back = mobile_mb.read(real_file)
    for name in ("user", "item", "behavior", "timestamp", "n_records", "duration_s", "bytes", "item_ids"):
        assert np.array_equal(getattr(back, name), getattr(inter, name)), name
    assert back.meta["data"] == "real" and back.meta["config"] == json.loads(json.dumps(inter.meta["config"]))
    assert len(back.item_ids) == 20 and len(np.unique(back.item)) < 20   # vocabulary = the whole catalog
    lines = gzip.decompress(real_file.read_bytes()).decode().splitlines()
    hdr = next(k for k, ln in enumerate(lines) if not ln.startswith("#"))
    lines[hdr + 3] = lines[hdr + 3].replace("\topen\t", "\tbrowse\t").replace("\tlong\t", "\tbrowse\t").replace(
        "\theavy\t", "\tbrowse\t")
    bad = tmp_path / "bad.mobile_mb.tsv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=f"bad.mobile_mb.tsv:{hdr + 4}: behavior 'browse'"):
        mobile_mb.read(bad)


def test_protocol_c_split_of_the_mobile_file(inter, real_file):
    from umask.train.models.fatsmb.data import load_protocol_c

    d = load_protocol_c(real_file)
    assert (d.kind, d.data, d.behaviors, d.n_items, d.n_behaviors) == ("mobile", "real", mobile_mb.BEHAVIORS, 20, 3)
    assert not d.has_categories and d.val_metric == "ndcg@10"
    for k, u in enumerate(d.users):
        idx = np.flatnonzero(inter.user == u)                              # time order = file order
        dense = np.searchsorted(inter.item_ids, inter.item[idx])
        assert np.array_equal(d.train[k][0], dense[:-2]) and np.array_equal(d.train[k][1], inter.behavior[idx[:-2]])
        assert d.val.item[k] == dense[-2] and d.test.item[k] == dense[-1]
        assert d.test.behavior[k] == inter.behavior[idx[-1]] and len(d.test.prefixes[k][0]) == len(idx) - 1


def test_tiny_end_to_end_train_and_score(real_file, tmp_path, monkeypatch):
    from umask.bench.accuracy import fatsmb as scorer
    from umask.bench.reports import scoreboard
    from umask.train.models.fatsmb import trainer
    from umask.train.models.fatsmb.data import load_protocol_c
    from umask.train.models.fatsmb.model import FatsMBConfig

    data = load_protocol_c(real_file)
    tc = trainer.TrainConfig(data=str(real_file), stage1_steps=20, stage2_steps=20, stage3_steps=2, eval_every=10,
                             batch_size=8, sample_steps=4, guidance_grid="1", steps_grid="4")
    model, info = trainer.train(FatsMBConfig(d=16, heads=2, layers=1, max_len=16, den_layers=1, diffusion_steps=20),
                                tc, data)
    assert "val_ndcg@10" in info and 0.0 < info["val_ndcg@10"] <= 1.0
    run = trainer.save(model, tc, info, data, tmp_path / "runs" / "seed0")
    monkeypatch.setattr(scorer, "CURVES", tmp_path / "curves")
    res = tmp_path / "v2_fatsmb_mobile.json"
    assert scorer.main(["--data", str(real_file), "--ckpt", str(run), "--baselines", "pop,recent",
                        "--max-users", "4", "--out", str(res)]) == 0
    assert scorer.main(["--data", str(real_file), "--ckpt", str(run), "--baselines", "history_freq",
                        "--blend-repeat-decays", "0.9,0.99", "--max-users", "4", "--out", str(res), "--append"]) == 0
    assert scorer.main(["--data", str(real_file), "--ckpt", str(run), "--baselines", "pop,recent",
                        "--out", str(res), "--append", "--note", "check"]) == 0       # a second data set joins
    doc = json.loads(res.read_text())
    assert len(doc["meta"]["parts"]) == 3 and len({r["dataset"] for r in doc["rows"]}) == 2
    four = {r["model"] for r in doc["rows"] if "4 users" in r["dataset"]}      # the models added later joined
    assert {"pop", "recent", "history_freq", "blend_longmem", "fatsmb"} <= four
    rows = list(scoreboard._v2_rows(res, doc, "abc1234", "2026-12-06"))
    assert {r.protocol for r in rows} == {scorer.PRESETS["mobile"]["protocol"]} and {r.data for r in rows} == {"real"}
    assert all(r.dataset.startswith("mobile app-usage") for r in rows)
    by = {(r.model, r.metric, r.n_windows): r.value for r in rows}
    for m in ("fatsmb", "pop", "recent"):
        vals = [by[(m, f"item_recall@{k}", 6)] for k in (1, 3, 5, 10, 20)]
        assert vals == sorted(vals) and 0.0 <= vals[0] and vals[-1] == pytest.approx(1.0)   # 20 items: @20 is all
    assert all("check" in (r.notes or "") for r in rows if r.n_windows == 6)
    assert (tmp_path / "curves" / "fatsmb_mobile_real_seed0.jsonl").exists()      # trained on this very file


def test_history_frequency_ranks_the_users_own_profile(real_file):
    from umask.train.baselines import seqrec
    from umask.train.models.fatsmb.data import load_protocol_c

    d = load_protocol_c(real_file)
    m = seqrec.make("history_freq").fit(d.train, d.n_items, d.n_behaviors)
    s = m.score(d.test.prefixes, d.test.behavior)
    pop = np.bincount(np.concatenate([t[0] for t in d.train]), minlength=d.n_items)
    for row, (items, _) in zip(s, d.test.prefixes):
        n = np.bincount(items, minlength=d.n_items)
        seen = np.flatnonzero(n)
        expected = seen[np.lexsort((-pop[seen], -n[seen]))]            # by own count, ties by popularity
        assert np.array_equal(np.argsort(-row, kind="stable")[:len(seen)], expected)   # seen items first
