"""The calibrated simulator: determinism, file round trip, archetype heterogeneity, calibration checks.

Everything simulated here is SYNTHETIC; the real data is the 6-user LLMApp sample under data/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from umask.runtime.core.catalog import Catalog, load_llmapp_catalog
from umask.runtime.core.errors import InputError
from umask.runtime.core.events import EventLog, read_official_trace
from umask.train import simulator as sim

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_llmapp_catalog(DATA / "tsinghua_app_usage")


@pytest.fixture(scope="module")
def calibration(catalog: Catalog) -> sim.Calibration:
    return sim.fit_calibration(catalog, DATA)


@pytest.fixture(scope="module")
def real() -> EventLog:
    return sim.load_real_sample(DATA)


@pytest.fixture(scope="module")
def population(catalog, calibration) -> tuple[EventLog, list[dict]]:
    """80 users of the default mix, seed 0 (the calibration check population)."""
    return sim.simulate(sim.SimulatorConfig(n_users=80, seed=0), catalog, DATA, calibration=calibration,
                        progress=False)


def _same(a: EventLog, b: EventLog) -> bool:
    return all(np.array_equal(getattr(a, c), getattr(b, c)) for c in ("user", "ts", "bs", "app", "bytes"))


def test_config_roundtrip_and_validation() -> None:
    cfg = sim.SimulatorConfig(n_users=5, seed=3, archetype_mix={"night": 1.0, "sparse": 2.0})
    assert sim.SimulatorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.start_ts % 86400 == 0
    with pytest.raises(InputError):
        sim.SimulatorConfig(archetype_mix={"astronaut": 1.0})
    with pytest.raises(InputError):
        sim.SimulatorConfig(n_users=0)
    with pytest.raises(InputError):
        sim.SimulatorConfig(start_date="2016-13-01")


def test_every_archetype_is_documented() -> None:
    assert {"commuter", "explorer", "night", "homebody", "sparse"} <= set(sim.ARCHETYPES)
    for a in sim.ARCHETYPES.values():
        assert len(a.description) > 40
        d = a.to_dict()
        json.dumps(d)
        assert d["name"] == a.name


def test_deterministic_given_seed(catalog, calibration) -> None:
    cfg = sim.SimulatorConfig(n_users=6, seed=7)
    a, meta_a = sim.simulate(cfg, catalog, DATA, calibration=calibration, progress=False)
    b, meta_b = sim.simulate(cfg, catalog, DATA, calibration=calibration, progress=False)
    assert len(a) > 0 and _same(a, b)
    assert json.dumps(meta_a) == json.dumps(meta_b)
    c, _ = sim.simulate(sim.SimulatorConfig(n_users=6, seed=8), catalog, DATA, calibration=calibration,
                        progress=False)
    assert not (len(a) == len(c) and _same(a, c))


def test_ids_times_and_metadata(population, catalog) -> None:
    events, meta = population
    catalog.check_events(events)                       # every app and station id is known
    assert events.user.min() >= sim.USER_ID_BASE
    assert set(np.unique(events.user).tolist()) <= {m["user_id"] for m in meta}
    start = sim.SimulatorConfig().start_ts
    assert events.ts.min() >= start and events.ts.max() < start + 7 * 86400
    assert np.all(np.diff(events.user) >= 0)
    assert (events.bytes > 0).all()
    archs = {m["archetype"] for m in meta}
    assert {"commuter", "explorer", "night", "homebody", "sparse"} <= archs
    known = set(catalog.stations.ids.tolist())
    for m in meta:
        assert m["anchors"][0]["role"] == "home"
        assert all(a["bs"] in known for a in m["anchors"])
        if m["archetype"] == "commuter":
            work = [a for a in m["anchors"] if a["role"] == "work"]
            assert len(work) == 1 and 1.0 <= work[0]["km_from_home"] <= 30.0
    json.dumps(meta)


def test_files_round_trip_and_are_labeled_synthetic(tmp_path, catalog, calibration) -> None:
    cfg = sim.SimulatorConfig(n_users=5, seed=11)
    paths = sim.write_synthetic(tmp_path, cfg, catalog, DATA, progress=False)
    assert all("synthetic" in p.name.lower() or p.name == "SYNTHETIC.md" for p in paths.values())
    assert paths["trace"].name == "App_usage_trace.synthetic.txt.gz"
    back = read_official_trace(paths["trace"])
    events, meta = sim.simulate(cfg, catalog, DATA, calibration=calibration, progress=False)
    assert _same(back, events)
    catalog.check_events(back)
    doc = json.loads(paths["users"].read_text())
    assert doc["synthetic"] is True and doc["config"] == cfg.to_dict()
    assert doc["users"] == json.loads(json.dumps(meta))
    text = paths["readme"].read_text()
    assert "SYNTHETIC" in text and '"seed": 11' in text and "not real" in text
    assert "SYNTHETIC simulator" in text             # the validation table, labeled


def test_archetypes_differ_measurably(catalog, calibration) -> None:
    cfg = sim.SimulatorConfig(n_users=36, seed=2, archetype_mix={"commuter": 1, "night": 1, "homebody": 1})
    events, meta = sim.simulate(cfg, catalog, DATA, calibration=calibration, progress=False)
    arch = {m["user_id"]: m["archetype"] for m in meta}
    kind = np.array([arch[u] for u in events.user])
    hour = (events.ts % 86400) // 3600
    late = (hour >= 22) | (hour < 4)
    night_share = {a: late[kind == a].mean() for a in ("commuter", "night", "homebody")}
    assert night_share["night"] > 1.3 * night_share["commuter"]

    weekday = ((events.ts // 86400 + 3) % 7) < 5
    day_key = events.user * 100 + (events.ts // 86400) % 100

    def places_per_day(a: str) -> float:
        m = weekday & (kind == a)
        _, inv = np.unique(day_key[m], return_inverse=True)
        pairs = np.unique(np.stack([inv, events.bs[m]]), axis=1)
        return float(np.bincount(pairs[0]).mean())

    assert places_per_day("commuter") > 1.5 * places_per_day("homebody")
    commute = [m["commute_km"] for m in meta if m["archetype"] == "commuter"]
    assert min(commute) >= 1.0 and max(commute) <= 30.0 and np.median(commute) > 2.0


def test_traffic_within_real_bins(population, calibration, catalog) -> None:
    events, _ = population
    b = calibration.bins
    lo, hi = np.nanmin(b.left), np.nanmax(b.right)
    assert events.bytes.min() >= np.floor(lo) and events.bytes.max() <= hi
    cats = catalog.apps.category_index(events.app)
    assert b.has_bins[np.unique(cats)].all()            # only categories with real traffic bins
    k = int(np.argmax(np.bincount(cats)))               # the biggest category matches its real median
    med = float(np.median(events.bytes[cats == k]))
    assert 0.8 < med / b.quantile(k, 0.5) < 1.25


def test_calibration_targets_come_from_real_data() -> None:
    t = sim.calibration_targets(DATA)
    for key in ("category_shares_sample", "category_shares_full", "records_per_hour",
                "distinct_locations_per_user_day", "traffic_bytes_per_category", "records_per_user_day",
                "cooccurrence_category_x_place_type", "burst_structure"):
        assert key in t, key
    assert len(t["records_per_user_day"]) == 6                  # the 6 real users, one day
    assert sum(t["records_per_user_day"]) <= 3293
    assert abs(sum(t["category_shares_full"]) - 1) < 1e-9
    assert sum(t["records_per_hour"][:7]) <= 1                  # the sample starts ~07:00
    json.dumps(t)


def test_validation_table_and_calibration(population, real, catalog) -> None:
    events, _ = population
    rows = sim.validate(events, real, catalog, data_dir=DATA)
    sections = {r["section"] for r in rows}
    for s in ("app-category share of records", "records per hour (share of 07:00-23:30)",
              "distinct locations per user-day", "records per user-day (07:00-23:30)",
              "traffic bytes per record", "app-category x place-type co-occurrence"):
        assert s in sections, s
    stat = {r["statistic"]: r for r in rows}
    assert "TVD simulated vs real sample" in stat and "Pearson r simulated vs real" in stat
    assert any(s.endswith(": median") for s in stat) and any(s.endswith(": p90") for s in stat)
    assert any("KS" in s for s in stat)
    assert sum(1 for r in rows if r["rank"]) == 5
    # calibration checks
    assert stat["Pearson r of joint share matrices"]["simulated"] > 0.5
    assert stat["TVD simulated vs full trace (bins)"]["simulated"] < 0.1
    rec = next(r for r in rows if r["section"].startswith("records per user-day") and r["statistic"] == "mean")
    assert 0.6 < rec["simulated"] / rec["real"] < 1.6
    table = sim.format_validation(rows)
    assert table.count("SYNTHETIC") >= 1 and "REAL" in table and "largest divergences" in table
    assert "weekdays" in table


def test_cli(capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as e:
        sim.main(["--help"])
    assert e.value.code == 0
    assert sim.main(["validate", "--users", "12", "--seed", "1", "--no-progress", "--data-dir", str(DATA),
                     "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC simulator (12 users, seed 1" in out and "largest divergences" in out
    assert json.loads((tmp_path / "rows.json").read_text())["synthetic"] is True
    assert sim.main(["generate", "--users", "3", "--seed", "4", "--out", str(tmp_path / "g"), "--no-progress",
                     "--no-validation", "--data-dir", str(DATA)]) == 0
    assert (tmp_path / "g" / "App_usage_trace.synthetic.txt.gz").exists()
