"""Tessellation and featurization, on the real 6-user sample first, then synthetic edge cases."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from umask.runtime.core.catalog import Catalog, load_llmapp_catalog, load_official_catalog
from umask.runtime.core.errors import DataFormatError, InputError
from umask.runtime.core.events import EventLog, parse_compact_time, read_llmapp_sample
from umask.runtime.core.featurize import (TRAFFIC, ChannelLayout, FeatureConfig, ProfileStats,
                                     SparseBehaviorTensor, UserFeatures, channel_names, decode_app_counts,
                                     decode_traffic, featurize_population, featurize_user, profile_statistics)
from umask.runtime.core.tessellation import (CityGrid, UserLayout, coverage, dominant_place_type, fit_layout,
                                        hilbert_index, layout_path, poi_embedding)

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[1] / "data" / "tsinghua_app_usage"
SAMPLE = DATA / "app_usage_trace_sample_llmapp.csv.gz"
DAY0 = int(parse_compact_time(np.array([20160420000000]))[0][0])   # local midnight of the sample's day
CFG = FeatureConfig()


@pytest.fixture(scope="module")
def events() -> EventLog:
    return read_llmapp_sample(SAMPLE)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_llmapp_catalog(DATA)


@pytest.fixture(scope="module")
def grid(catalog: Catalog) -> CityGrid:
    return CityGrid.from_stations(catalog.stations, CFG.cell_m)


@pytest.fixture(scope="module")
def pop(events: EventLog, catalog: Catalog) -> dict[int, UserFeatures]:
    return featurize_population(events, catalog, CFG)


# -----------------------------------------------------------------------------
# Grid and layout on the real users
# -----------------------------------------------------------------------------

def test_grid_is_deterministic_and_serializable(catalog: Catalog, grid: CityGrid) -> None:
    again = CityGrid.from_stations(catalog.stations, 500.0)
    assert again == grid
    assert CityGrid.from_dict(json.loads(json.dumps(grid.to_dict()))) == grid
    gy, gx = grid.cell_of(catalog.stations.lat, catalog.stations.lon)
    assert grid.contains(gy, gx).all()
    # 500 m cells: two stations ~1 km apart north-south are 2 rows apart
    dy = 1000.0 / (6_371_008.8 * math.pi / 180.0)
    a, _ = grid.cell_of(np.array([31.2]), np.array([121.4]))
    b, _ = grid.cell_of(np.array([31.2 + dy]), np.array([121.4]))
    assert int(b[0] - a[0]) == 2


def test_layout_coverage_real_users(events: EventLog, catalog: Catalog, grid: CityGrid) -> None:
    """In-sample: the sample has one day, so the layout is fitted on the day it covers."""
    cov = {}
    for u in events.users.tolist():
        ev = events.for_user(u)
        layout = fit_layout(ev, catalog, grid, 4, 4)
        cov[u] = coverage(ev, layout, catalog)
        assert layout.user == u and layout.counts.sum() == int((layout.locate(ev, catalog) >= 0).sum())
    log.info("4x4 layout coverage per real user: %s", {u: round(c, 4) for u, c in cov.items()})
    assert min(cov.values()) >= 0.9, cov


def test_hilbert_curve() -> None:
    for order in (1, 2, 3, 4):
        n = 1 << order
        path = layout_path(n, n)
        assert sorted(map(tuple, path.tolist())) == [(h, w) for h in range(n) for w in range(n)]
        assert (np.abs(np.diff(path, axis=0)).sum(axis=1) == 1).all()   # consecutive slots are neighbours
        np.testing.assert_array_equal(hilbert_index(path[:, 0], path[:, 1], order), np.arange(n * n))
    snake = layout_path(3, 5)
    assert (np.abs(np.diff(snake, axis=0)).sum(axis=1) == 1).all() and len(snake) == 15


def test_layout_hilbert_order_and_determinism(events: EventLog, catalog: Catalog, grid: CityGrid) -> None:
    ev = events.for_user(5)
    layout = fit_layout(ev, catalog, grid)
    # Same events in another order -> the identical layout.
    perm = np.random.default_rng(0).permutation(len(ev))
    shuffled = EventLog(ev.user[perm], ev.ts[perm], ev.bs[perm], ev.app[perm], ev.bytes[perm])
    other = fit_layout(shuffled, catalog, grid)
    np.testing.assert_array_equal(other.cells, layout.cells)
    np.testing.assert_array_equal(other.counts, layout.counts)
    # Along the layout path the cells' Hilbert indices increase.
    path = layout_path(4, 4)
    cells = layout.cells[path[:, 0], path[:, 1]]
    filled = (cells >= 0).all(axis=1)
    assert filled[: filled.sum()].all()                       # empty slots come last on the path
    hil = hilbert_index(cells[filled, 0], cells[filled, 1], grid.hilbert_order)
    assert (np.diff(hil) > 0).all()
    # JSON round trip.
    back = UserLayout.from_dict(json.loads(json.dumps(layout.to_dict())))
    np.testing.assert_array_equal(back.cells, layout.cells)
    np.testing.assert_array_equal(back.locate(ev, catalog), layout.locate(ev, catalog))
    assert back.grid == grid and back.fit_end_ts == layout.fit_end_ts


def test_layout_tie_break_and_empty_slots(catalog: Catalog, grid: CityGrid) -> None:
    # Three stations in three different cells with counts 2, 2, 1 -> 2x1 layout keeps both 2s,
    # and among equal counts the smaller (gy, gx) wins.
    st = catalog.stations
    gy, gx = grid.cell_of(st.lat, st.lon)
    _, first = np.unique(gy * 10_000 + gx, return_index=True)
    rows = first[:3]
    bs = np.repeat(st.ids[rows], [1, 2, 2])
    ev = EventLog.from_arrays(np.zeros(5, int), DAY0 + np.arange(5) * 60, bs, np.full(5, catalog.apps.app_ids[0]),
                              np.ones(5, int))
    lay = fit_layout(ev, catalog, grid, 2, 1)
    kept = {tuple(c) for c in lay.cells.reshape(-1, 2).tolist()}
    assert kept == {(int(gy[rows[1]]), int(gx[rows[1]])), (int(gy[rows[2]]), int(gx[rows[2]]))}
    big = fit_layout(ev, catalog, grid, 4, 4)
    assert big.filled.sum() == 3 and (big.cells[~big.filled] == -1).all()
    assert big.locate(ev, catalog).min() >= 0
    assert sorted(big.counts[big.filled].tolist()) == [1, 2, 2]


def test_poi_embedding(events: EventLog, catalog: Catalog, grid: CityGrid) -> None:
    P = len(catalog.stations.poi_names)
    st = catalog.stations
    gy, gx = grid.cell_of(st.lat, st.lon)
    for u in events.users.tolist():
        layout = fit_layout(events.for_user(u), catalog, grid)
        emb = poi_embedding(layout, catalog, grid)                       # (H, W, P+1)
        assert emb.shape == (4, 4, P + 1) and emb.dtype == np.float32
        shares, size = emb[..., :P], emb[..., P]
        has = size > 0
        np.testing.assert_allclose(shares[has].sum(axis=-1), 1.0, rtol=1e-5)
        assert (shares[~has] == 0).all()
        assert (emb[~layout.filled] == 0).all()
        names = dominant_place_type(layout, catalog, grid)
        assert len(names) == 16
        for h in range(4):
            for w in range(4):
                if not layout.filled[h, w]:
                    assert names[h * 4 + w] == "unknown"
                    continue
                inside = (gy == layout.cells[h, w, 0]) & (gx == layout.cells[h, w, 1])
                counts = st.poi[inside].sum(axis=0).astype(np.float64)     # independent recomputation
                assert np.isclose(size[h, w], np.log1p(counts.sum()) / 10.0, rtol=1e-5)
                if counts.sum() > 0:
                    np.testing.assert_allclose(shares[h, w], counts / counts.sum(), rtol=1e-5, atol=1e-7)
                    assert names[h * 4 + w] == st.poi_names[int(counts.argmax())]
    with pytest.raises(InputError):
        poi_embedding(layout, catalog, CityGrid.from_stations(st, 250.0))


# -----------------------------------------------------------------------------
# The behavior tensor on the real users
# -----------------------------------------------------------------------------

def test_channels(catalog: Catalog) -> None:
    names = channel_names(catalog)
    ch = ChannelLayout.for_catalog(catalog)
    assert len(names) == ch.n_channels == 22
    assert names[TRAFFIC][0] == "traffic" and names[ch.location][0] == "location"
    assert names[ch.apps][0] == "app:Utilities" and len(names[ch.apps]) == 20
    assert FeatureConfig.from_dict(json.loads(json.dumps(CFG.to_dict()))) == CFG
    with pytest.raises(InputError):
        FeatureConfig(slot_minutes=7)
    with pytest.raises(InputError):
        FeatureConfig.from_dict({"slot_minute": 15})


def test_tensor_totals_match_events(events: EventLog, catalog: Catalog, pop: dict[int, UserFeatures]) -> None:
    ch = ChannelLayout.for_catalog(catalog)
    assert sorted(pop) == [4, 5, 6, 7, 8, 9]
    for u, f in pop.items():
        ev = events.for_user(u)
        x = f.tensor
        assert x.shape == (22, 96, 4, 4) and x.start_ts == DAY0 and x.slot_seconds == 900
        d = x.dense()                                                        # (C, T, H, W)
        assert d.shape == (22, 96, 4, 4) and d.dtype == np.float32
        slot = f.layout.locate(ev, catalog)
        cov = slot >= 0
        t = (ev.ts - DAY0) // 900
        assert f.report.n_events == len(ev) and f.report.n_outside_time == 0
        assert f.report.n_used == int(cov.sum()) and f.report.n_outside_layout == int((~cov).sum())
        # apps: inverting the scaling gives back the record count of every (slot, cell)
        counts = decode_app_counts(d[ch.apps])                               # (K, T, H, W)
        np.testing.assert_allclose(counts, np.rint(counts), atol=1e-3)
        counts = np.rint(counts)
        assert counts.sum() == cov.sum()
        per_slot = np.bincount(t[cov], minlength=96)
        np.testing.assert_array_equal(counts.sum(axis=(0, 2, 3)), per_slot)
        cat = catalog.apps.category_index(ev.app[cov])
        np.testing.assert_array_equal(counts.sum(axis=(1, 2, 3)), np.bincount(cat, minlength=20))
        # location presence: exactly the (slot, cell) pairs that hold events
        loc = d[ch.location_index].reshape(96, 16)
        assert set(np.unique(loc).tolist()) <= {0.0, 1.0}
        pairs = set(zip(t[cov].tolist(), slot[cov].tolist()))
        assert set(zip(*np.nonzero(loc))) == pairs
        # traffic: bytes per (slot, cell) come back
        traffic = decode_traffic(d[TRAFFIC][0]).reshape(96, 16)
        expect = np.zeros((96, 16))
        np.add.at(expect, (t[cov], slot[cov]), ev.bytes[cov].astype(float))
        np.testing.assert_allclose(traffic, expect, rtol=1e-4, atol=1e-3)
        assert 0.0 < d[TRAFFIC].max() < 1.0
        assert x.nnz == int((d != 0).sum()) and x.nbytes == 8 * x.nnz
        # the sparse round trips
        np.testing.assert_array_equal(SparseBehaviorTensor.from_dense(d, x.start_ts, 900).dense(), d)
        np.testing.assert_array_equal(SparseBehaviorTensor.from_arrays(x.to_arrays()).dense(), d)
        np.testing.assert_array_equal(x.dense(30, 70), d[:, 30:70])
        np.testing.assert_array_equal(x.slice_time(30, 70).dense(), d[:, 30:70])
        np.testing.assert_array_equal(x.active_slots(), np.unique(t[cov]))


def test_slot_alignment(events: EventLog, catalog: Catalog, pop: dict[int, UserFeatures]) -> None:
    ev = events.for_user(4)
    first = ev.take(np.array([0]))
    assert (int(first.ts[0]) - DAY0) == 8 * 3600 + 9 * 60 + 33          # 08:09:33
    f = pop[4]
    s = int(f.layout.locate(first, catalog)[0])
    assert s >= 0
    loc = f.tensor.dense(32, 33)[ChannelLayout.for_catalog(catalog).location_index, 0]
    assert loc[s // 4, s % 4] == 1.0                                     # slot 32 = 08:00-08:15
    assert f.tensor.dense(0, 32)[:, :, s // 4, s % 4].sum() == 0          # nothing earlier that day there
    assert int(f.tensor.active_slots()[0]) == 32


def test_time_range_counted(events: EventLog, catalog: Catalog, grid: CityGrid) -> None:
    ev = events.for_user(8)
    layout = fit_layout(ev, catalog, grid)
    noon = DAY0 + 12 * 3600
    x, rep = featurize_user(ev, catalog, layout, CFG, DAY0, 48)          # only the morning
    assert rep.n_outside_time == int((ev.ts >= noon).sum())
    assert rep.n_used + rep.n_outside_time + rep.n_outside_layout == len(ev)
    assert x.shape[1] == 48
    with pytest.raises(InputError, match="midnight"):
        featurize_user(ev, catalog, layout, CFG, DAY0 + 3600, 96)
    with pytest.raises(InputError, match="4 x 4"):
        featurize_user(ev, catalog, layout, FeatureConfig(H=2, W=8), DAY0, 96)


# -----------------------------------------------------------------------------
# Profile statistics
# -----------------------------------------------------------------------------

def test_profile_statistics_real(events: EventLog, catalog: Catalog, pop: dict[int, UserFeatures]) -> None:
    for u, f in pop.items():
        ev = events.for_user(u)
        p = f.profile
        assert p.n_events == len(ev) and p.n_active_days == 1
        assert np.isclose(p.pi_time.sum(), 1.0) and np.isclose(p.pi_weekday.sum(), 1.0)
        hours = np.unique((ev.ts - DAY0) // 3600)
        assert (p.pi_hour[np.setdiff1d(np.arange(24), hours)] == 0).all()
        assert (p.pi_hour[hours] > 0).all()
        assert p.pi_weekday[2] == 1.0                                    # 2016-04-20 was a Wednesday
        covered = int((f.layout.locate(ev, catalog) >= 0).sum())
        assert p.C_u.shape == (20, 16) and p.C_u.sum() == covered == p.n_covered
        assert p.C_place.shape == (20, 14) and p.C_place.sum() + p.n_unknown_place == covered
        assert 0.0 <= p.regularity <= 1.0 and np.isclose(p.regularity + p.session_start_entropy, 1.0)
        assert p.n_sessions >= 1 and p.sessions_per_day == p.n_sessions
        assert p.mean_session_minutes >= 0
        assert math.isnan(p.day_similarity)                              # one day only
        text = json.dumps(p.to_dict(), allow_nan=False)
        back = ProfileStats.from_dict(json.loads(text))
        assert json.dumps(back.to_dict(), allow_nan=False) == text
        # deterministic
        again = profile_statistics(ev, catalog, f.layout, CFG)
        assert json.dumps(again.to_dict()) == text


def test_profile_sessions_and_days(catalog: Catalog, grid: CityGrid) -> None:
    bs = catalog.stations.ids[:1].repeat(6)
    # day 0: 09:00, 09:10 (one session, 10 min), 11:00; day 1: 09:05, 09:20; day 2: 09:00
    ts = DAY0 + np.array([9 * 3600, 9 * 3600 + 600, 11 * 3600, 86400 + 9 * 3600 + 300, 86400 + 9 * 3600 + 1200,
                          2 * 86400 + 9 * 3600])
    ev = EventLog.from_arrays(np.zeros(6, int), ts, bs, np.full(6, catalog.apps.app_ids[0]), np.ones(6, int))
    p = profile_statistics(ev, catalog, fit_layout(ev, catalog, grid), CFG)
    assert p.n_sessions == 4 and p.n_active_days == 3
    assert np.isclose(p.sessions_per_day, 4 / 3)
    assert np.isclose(p.mean_session_minutes, (10 + 0 + 15 + 0) / 4)
    expect_entropy = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(24)   # starts at 9, 11, 9, 9
    assert np.isclose(p.session_start_entropy, expect_entropy)
    # day profiles: [2 at 9h, 1 at 11h], [2 at 9h], [1 at 9h] -> cosines 2/sqrt5, 2/sqrt5, 1
    assert np.isclose(p.day_similarity, (2 / np.sqrt(5) * 2 + 1) / 3)


# -----------------------------------------------------------------------------
# Input validation
# -----------------------------------------------------------------------------

def test_single_user_required(events: EventLog, catalog: Catalog, grid: CityGrid) -> None:
    layout = fit_layout(events.for_user(4), catalog, grid)
    two = events.take(np.isin(events.user, [4, 5]))
    with pytest.raises(InputError, match="exactly one user"):
        featurize_user(two, catalog, layout, CFG, DAY0, 96)
    with pytest.raises(InputError, match="exactly one user"):
        fit_layout(two, catalog, grid)
    with pytest.raises(InputError, match="exactly one user"):
        profile_statistics(two, catalog, layout, CFG)
    with pytest.raises(InputError, match="empty history"):
        featurize_user(EventLog.empty(), catalog, layout, CFG, DAY0, 96)
    with pytest.raises(InputError, match="empty history"):
        fit_layout(EventLog.empty(), catalog, grid)
    with pytest.raises(InputError, match="empty history"):
        featurize_population(EventLog.empty(), catalog, CFG)


def test_unknown_ids_and_dtypes(events: EventLog, catalog: Catalog, grid: CityGrid) -> None:
    ev = events.for_user(4)
    layout = fit_layout(ev, catalog, grid)
    bad = EventLog(ev.user, ev.ts, ev.bs, ev.app.copy(), ev.bytes, ev.line, ev.source)
    bad.app[3] = 99_999
    with pytest.raises(DataFormatError, match="unknown app id 99999"):
        featurize_user(bad, catalog, layout, CFG, DAY0, 96)
    floats = EventLog(ev.user, ev.ts, ev.bs, ev.app, ev.bytes.astype(np.float64))
    with pytest.raises(InputError, match="integer"):
        featurize_user(floats, catalog, layout, CFG, DAY0, 96)
    neg = EventLog(ev.user, ev.ts, ev.bs, ev.app, ev.bytes - 10**9)
    with pytest.raises(InputError, match="negative"):
        featurize_user(neg, catalog, layout, CFG, DAY0, 96)


def test_official_without_coordinates() -> None:
    official = load_official_catalog(DATA)
    with pytest.raises(InputError, match="no coordinates"):
        CityGrid.from_stations(official.stations)
    some_grid = CityGrid(30.7, 120.87, 31.17, 500.0, 200, 200)
    ev = EventLog.from_arrays([1, 1], [DAY0, DAY0 + 60], [0, 1], [0, 1], [10, 20])
    with pytest.raises(InputError, match="without coordinates"):
        fit_layout(ev, official, some_grid)


def test_population_fit_period(events: EventLog, catalog: Catalog) -> None:
    """Layouts come from the history only; the tensor still spans the whole day."""
    cut = DAY0 + 15 * 3600
    pop = featurize_population(events, catalog, CFG, fit_end_ts=cut)
    for u, f in pop.items():
        hist = events.for_user(u).between(0, cut)
        assert f.layout.counts.sum() == int((f.layout.locate(hist, catalog) >= 0).sum())
        assert f.layout.fit_end_ts <= cut
        assert f.profile.n_events == len(hist)
        assert f.tensor.T == 96 and f.report.n_events == int((events.user == u).sum())
        log.info("user %d: layout fitted before 15:00 covers %.3f of the events after 15:00", u,
                 coverage(events.for_user(u).between(cut, DAY0 + 86400), f.layout, catalog))
    early = featurize_population(events, catalog, CFG, fit_end_ts=DAY0 + 8 * 3600)  # before most users start
    assert set(early) < set(pop)


# -----------------------------------------------------------------------------
# Memory: a population of week tensors
# -----------------------------------------------------------------------------

def _synthetic_week(catalog: Catalog, n_users: int, per_user: int, seed: int = 0) -> EventLog:
    """Numpy-made users: 12 favourite stations (Zipf visits), ~280 active slots in a week."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    fav = rng.choice(len(catalog.stations.ids), size=(n_users, 12))
    active = rng.integers(0, 7 * 96, size=(n_users, 280))
    slot = np.take_along_axis(active, rng.integers(0, 280, size=(n_users, per_user)), 1).ravel()
    ts = DAY0 + slot * 900 + rng.integers(0, 900, n_users * per_user)
    pick = rng.zipf(1.6, size=(n_users, per_user)).clip(1, 12) - 1
    bs = catalog.stations.ids[np.take_along_axis(fav, pick, 1).ravel()]
    app = catalog.apps.app_ids[rng.integers(0, 40, n_users * per_user)]
    nbytes = rng.lognormal(8, 2, n_users * per_user).astype(np.int64)
    return EventLog.from_arrays(users, ts, bs, app, nbytes)


def test_population_memory(catalog: Catalog) -> None:
    ev = _synthetic_week(catalog, 1000, 1500)
    pop = featurize_population(ev, catalog, CFG)
    assert len(pop) == 1000
    total = sum(f.tensor.nbytes for f in pop.values())
    dense_one = 22 * 7 * 96 * 16 * 4
    log.info("1000 synthetic user-weeks: %.1f MB sparse (dense would be %.1f MB); mean nnz %.0f",
             total / 1e6, 1000 * dense_one / 1e6, np.mean([f.tensor.nnz for f in pop.values()]))
    assert all(f.tensor.shape == (22, 672, 4, 4) for f in pop.values())
    assert total < 100e6
    assert sum(f.report.n_events for f in pop.values()) == len(ev)


# -----------------------------------------------------------------------------
# Absent channels: the real sample without its base stations (an app-only log)
# -----------------------------------------------------------------------------

def _app_only(events: EventLog, *, keep_bytes: bool) -> EventLog:
    """The real events with every base station replaced by usage_log.ABSENT_BS (-1), as read_usage_log gives."""
    from umask.runtime.core.usage_log import ABSENT_BS

    nbytes = events.bytes if keep_bytes else np.zeros_like(events.bytes)
    return EventLog.from_arrays(events.user, events.ts, np.full(len(events), ABSENT_BS), events.app, nbytes)


@pytest.mark.parametrize("keep_bytes", [False, True])
def test_absent_location_puts_every_event_in_cell_00(events: EventLog, catalog: Catalog, keep_bytes: bool) -> None:
    ev = _app_only(events, keep_bytes=keep_bytes)
    absent = frozenset({"location"} if keep_bytes else {"location", "traffic"})
    with pytest.raises(DataFormatError, match="unknown base station id -1"):
        featurize_population(ev, catalog, CFG)           # the default path still refuses a station -1
    pop = featurize_population(ev, catalog, CFG, absent=absent)
    assert sorted(pop) == sorted(events.users.tolist())
    K = catalog.apps.n_categories
    for u, f in pop.items():
        one = ev.for_user(u)
        x = f.tensor.dense()                                                  # (C, T, H, W)
        assert f.tensor.absent == absent and f.tensor.channels.absent == absent
        assert f.report.n_used == len(one) and f.report.coverage == 1.0       # no event lost to a layout
        assert not x[:, :, 1:].any() and not x[:, :, :, 1:].any()             # only cell (0, 0) holds values
        assert not x[f.tensor.channels.location].any()                        # absent: nothing stored
        # app counts per (slot, category) in cell (0, 0) are the events' own counts
        t = (one.ts - f.tensor.start_ts) // CFG.slot_seconds
        expected = np.zeros((K, f.tensor.T))
        np.add.at(expected, (catalog.apps.category_index(one.app), t), 1)
        np.testing.assert_array_equal(np.round(decode_app_counts(x[1:1 + K, :, 0, 0])), expected)
        # traffic: the bytes per slot when the log has them, else absent (nothing stored)
        per_slot = np.bincount(t, weights=one.bytes.astype(np.float64), minlength=f.tensor.T)
        if keep_bytes:
            np.testing.assert_allclose(decode_traffic(x[0, :, 0, 0]), per_slot, rtol=1e-4)
        else:
            assert not x[0].any()
        assert f.tensor.channels.present.tolist() == [float(keep_bytes)] + [1.0] * K + [0.0]
        # active slots come from the app channels when the location is absent
        np.testing.assert_array_equal(f.tensor.active_slots(), np.unique(t))
        # placeless layout and profile: no city cell, no place, no POI
        assert not f.layout.filled.any() and f.layout.counts[0, 0] == len(one) and f.layout.counts.sum() == len(one)
        assert not f.e_pos.any() and f.e_pos.shape == (CFG.H, CFG.W, len(catalog.stations.poi_names) + 1)
        assert f.profile.C_u[:, 1:].sum() == 0 and f.profile.C_u.sum() == len(one)
        assert f.profile.C_place.sum() == 0 and set(f.profile.slot_place) == {"unknown"}


def test_absent_channels_survive_npz_and_are_checked(tmp_path: Path, events: EventLog, catalog: Catalog) -> None:
    ev = _app_only(events.for_user(int(events.users[0])), keep_bytes=False)
    start, n_slots = int(ev.ts.min()) // 86400 * 86400, 96
    tensor, report = featurize_user(ev, catalog, None, CFG, start, n_slots, absent={"location", "traffic"})
    np.savez(tmp_path / "x.npz", **tensor.to_arrays())
    with np.load(tmp_path / "x.npz", allow_pickle=False) as z:
        back = SparseBehaviorTensor.from_arrays(z)
    assert back.absent == frozenset({"location", "traffic"})
    np.testing.assert_array_equal(back.dense(), tensor.dense())
    assert back.slice_time(0, 48).absent == back.absent
    # complete tensors save exactly the arrays they saved before (no "absent" entry)
    located, _ = featurize_user(events.for_user(int(events.users[0])), catalog,
                                fit_layout(events.for_user(int(events.users[0])), catalog,
                                           CityGrid.from_stations(catalog.stations, CFG.cell_m)), CFG, start, n_slots)
    assert "absent" not in located.to_arrays() and located.absent == frozenset()
    # a tensor cannot claim a channel absent and store values in it; names are checked
    with pytest.raises(InputError, match="absent channels"):
        SparseBehaviorTensor(located.shape, located.start_ts, located.slot_seconds, located.key, located.values,
                             frozenset({"location"}))
    with pytest.raises(InputError, match="absent channels must be among"):
        ChannelLayout(20, frozenset({"apps"}))
    with pytest.raises(InputError, match="needs a layout"):
        featurize_user(events.for_user(int(events.users[0])), catalog, None, CFG, start, n_slots)
