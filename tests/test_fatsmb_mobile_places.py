"""FatsMB mobile variant with places as items (``mobile_mb.convert(items="place")``) on the REAL shipped
6-user sample: every interaction is a run of one user's records at ONE base station, the vocabulary is
the catalog's station table, and the protocol-C loader and scorer name the rows as places.
Expectations are recomputed from the raw records with plain loops.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_fatsmb_mobile import CFG, catalog, events  # noqa: F401  (the real sample's fixtures)

from umask.runtime.core.errors import InputError
from umask.train.data import mobile_mb


@pytest.fixture(scope="module")
def places(events, catalog):
    return mobile_mb.convert(events, catalog, CFG, meta={"data": "real", "source": "test"}, items="place")


def test_interactions_are_stays_at_one_station(events, places, catalog):
    assert places.meta["items"] == "place" and np.array_equal(places.item_ids, np.sort(catalog.stations.ids))
    groups: dict[int, list[int]] = {}
    for e, i in enumerate(places.event_interaction.tolist()):
        groups.setdefault(i, []).append(e)
    assert sorted(groups) == list(range(len(places)))
    for i, recs in groups.items():
        assert {int(events.bs[e]) for e in recs} == {int(places.item[i])}         # one station per interaction
        assert {int(events.user[e]) for e in recs} == {int(places.user[i])}
        ts = [int(events.ts[e]) for e in recs]
        assert all(0 <= b - a <= CFG.session_gap_s for a, b in zip(ts, ts[1:]))
        assert places.duration_s[i] == ts[-1] - ts[0] and places.n_records[i] == len(recs)
        assert places.bytes[i] == sum(int(events.bytes[e]) for e in recs)
        if places.duration_s[i] >= CFG.long_s:
            assert mobile_mb.BEHAVIORS[places.behavior[i]] == "long"
    for a, b in zip(range(len(places) - 1), range(1, len(places))):              # a new interaction opens only
        last, first = groups[a][-1], groups[b][0]                                  # on a new user, station or gap
        assert (events.user[last] != events.user[first] or events.bs[last] != events.bs[first]
                or events.ts[first] - events.ts[last] > CFG.session_gap_s)
    cats = mobile_mb.convert(events, catalog, CFG)
    assert cats.meta["items"] == "category" and len(cats.item_ids) == 20 and len(places) != len(cats)
    with pytest.raises(InputError):
        mobile_mb.convert(events, catalog, CFG, items="app")


def test_places_file_loads_and_scores_as_places(places, tmp_path, monkeypatch):
    from umask.bench.accuracy import fatsmb as scorer
    from umask.train.models.fatsmb.data import load_protocol_c

    path = mobile_mb.write(places, tmp_path / "real.places.mobile_mb.tsv.gz")
    data = load_protocol_c(path)
    assert data.item_kind == "place" and data.n_items == len(places.item_ids)
    used = np.unique(np.concatenate([t[0] for t in data.train]))
    assert np.isin(data.item_ids[used], places.item).all()
    monkeypatch.setattr(scorer, "CURVES", tmp_path / "curves")
    res = tmp_path / "v2.json"
    assert scorer.main(["--data", str(path), "--runs", str(tmp_path / "none"), "--baselines", "pop,recent,history_freq",
                        "--out", str(res)]) == 0
    rows = json.loads(res.read_text())["rows"]
    assert rows and all("places (base stations)" in r["dataset"] and r["data"] == "real" for r in rows)
    r = {(x["model"], x["metric"]): x["value"] for x in rows}
    for m in ("pop", "recent", "history_freq"):
        vals = [r[(m, f"item_recall@{k}")] for k in (1, 3, 5, 10, 20)]
        assert vals == sorted(vals) and 0.0 <= vals[0] and vals[-1] <= 1.0
    assert all(x["n_windows"] == 6 for x in rows if x["metric"].count("_") == 1)          # overall rows: 6 users
