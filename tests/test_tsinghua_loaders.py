"""Loaders and catalogs on the real shipped Tsinghua data (data/tsinghua_app_usage)."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from umask.runtime.core.catalog import load_llmapp_catalog, load_official_catalog
from umask.runtime.core.errors import DataFormatError
from umask.runtime.core.events import (EventLog, format_compact_time, read_llmapp_sample, read_official_trace,
                                  read_trace, write_official_trace)

DATA = Path(__file__).resolve().parents[1] / "data" / "tsinghua_app_usage"
SAMPLE = DATA / "app_usage_trace_sample_llmapp.csv.gz"


@pytest.fixture(scope="module")
def events() -> EventLog:
    return read_llmapp_sample(SAMPLE)


@pytest.fixture(scope="module")
def llmapp():
    return load_llmapp_catalog(DATA)


@pytest.fixture(scope="module")
def official():
    return load_official_catalog(DATA)


# -----------------------------------------------------------------------------
# The real sample
# -----------------------------------------------------------------------------

def test_sample_counts(events: EventLog) -> None:
    assert len(events) == 3293
    assert events.users.tolist() == [4, 5, 6, 7, 8, 9]
    per_user = [int((events.user == u).sum()) for u in range(4, 10)]
    assert per_user == [260, 629, 386, 155, 1376, 487]
    assert int(format_compact_time(events.ts.min())) == 20160420065902
    assert int(format_compact_time(events.ts.max())) == 20160420233242
    assert len(np.unique(events.bs)) == 90
    assert len(np.unique(events.app)) == 22
    assert not events.report  # nothing skipped
    assert (np.diff(events.user) >= 0).all()


def test_read_trace_detects_csv(events: EventLog) -> None:
    again = read_trace(SAMPLE)
    for col in ("user", "ts", "bs", "app", "bytes"):
        np.testing.assert_array_equal(getattr(again, col), getattr(events, col))


def test_sample_ids_known_and_categories_agree(events: EventLog, llmapp) -> None:
    llmapp.check_events(events)  # every app and station is in the llmapp catalog
    # Parse both CSVs independently of the loaders.
    with open(DATA / "llmapp_app.csv", newline="", encoding="utf-8") as fh:
        app_cat = {int(r["app_id"]): int(r["app_cate_id"]) for r in csv.DictReader(fh)}
    with gzip.open(SAMPLE, "rt", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3293
    mismatches = [r for r in rows if app_cat[int(r["app_id"])] != int(r["app_cate_id"])]
    assert mismatches == []
    # ... and the catalog's dense category maps back to the same file id for every record.
    dense = llmapp.apps.category_index(np.array([int(r["app_id"]) for r in rows]))
    file_ids = llmapp.apps.category_ids[dense]
    np.testing.assert_array_equal(file_ids, [int(r["app_cate_id"]) for r in rows])


def test_llmapp_catalog_shape(llmapp) -> None:
    assert len(llmapp.apps.app_ids) == 305
    assert llmapp.apps.n_categories == 20
    assert len(llmapp.stations.ids) == 12576
    assert len(llmapp.stations.poi_names) == 14
    assert llmapp.stations.has_coordinates
    assert np.isfinite(llmapp.stations.lat).all()
    assert 30.5 < np.nanmin(llmapp.stations.lat) and np.nanmax(llmapp.stations.lat) < 32.0  # Shanghai


# -----------------------------------------------------------------------------
# Official metadata
# -----------------------------------------------------------------------------

def test_official_catalog(official) -> None:
    assert len(official.apps.app_ids) == 1696
    assert official.apps.app_ids.tolist() == list(range(1696))
    assert official.apps.n_categories == 20
    assert official.apps.category_ids.tolist() == list(range(20))
    assert "Weath1er" in official.apps.category_names  # the original typo is kept
    assert not any("wechat" in n or "meituan" in n for n in official.apps.category_names)  # stray lines ignored
    assert len(official.stations.ids) == 9851
    assert official.stations.poi.shape == (9851, 17)
    assert not official.stations.has_coordinates


# -----------------------------------------------------------------------------
# Official-format round trip
# -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["trace.txt", "trace.txt.gz"])
def test_official_round_trip(events: EventLog, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_official_trace(events, path)
    back = read_official_trace(path)
    assert len(back) == len(events)
    for col in ("user", "ts", "bs", "app", "bytes"):
        np.testing.assert_array_equal(getattr(back, col), getattr(events, col))
    assert not back.report
    assert read_trace(path).ts.tolist() == events.ts.tolist()


# -----------------------------------------------------------------------------
# Malformed inputs
# -----------------------------------------------------------------------------

GOOD = "4 20160420080933 4093 2 7674"


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _raises_at(path: Path, line: int, fn, *args, **kw) -> DataFormatError:
    with pytest.raises(DataFormatError) as ei:
        fn(*args, **kw)
    err = ei.value
    assert err.path == str(path) and err.line == line
    assert f"{path}:{line}" in str(err)
    return err


def test_missing_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "s.csv", ["user_id,time,location,app_id", "4,20160420080933,4093,2"])
    err = _raises_at(p, 1, read_llmapp_sample, p)
    assert "traffic" in str(err)


def test_bad_time(tmp_path: Path) -> None:
    p = _write(tmp_path, "t.txt", [GOOD, "4 20160431120000 4093 2 10", GOOD])
    err = _raises_at(p, 2, read_official_trace, p)
    assert "20160431120000" in str(err)


def test_negative_bytes(tmp_path: Path) -> None:
    p = _write(tmp_path, "t.txt", [GOOD, GOOD, "4 20160420080935 4093 2 -5"])
    err = _raises_at(p, 3, read_official_trace, p)
    assert "negative bytes" in str(err)


def test_wrong_field_count(tmp_path: Path) -> None:
    p = _write(tmp_path, "t.txt", [GOOD, "4 20160420080935 4093 2"])
    _raises_at(p, 2, read_official_trace, p)
    q = _write(tmp_path, "s.csv", ["user_id,time,location,app_id,traffic", "4,20160420080933,4093,2,5", "4,1,2"])
    _raises_at(q, 3, read_llmapp_sample, q)


def test_unknown_app_via_catalog(tmp_path: Path, llmapp) -> None:
    p = _write(tmp_path, "t.txt", [GOOD, "4 20160420080940 4093 99999 10"])
    ev = read_official_trace(p)
    err = _raises_at(p, 2, llmapp.check_events, ev)
    assert "unknown app id 99999" in str(err)
    assert "llmapp_app.csv" in str(err) and "App2Category.txt" in str(err)   # which numbering the tools read
    q = _write(tmp_path, "u.txt", [GOOD, GOOD, "4 20160420080940 999999999 2 10"])
    err = _raises_at(q, 3, llmapp.check_events, read_official_trace(q))
    assert "unknown base station" in str(err)


def test_skip_counts_per_reason(tmp_path: Path) -> None:
    p = _write(tmp_path, "t.txt", [
        GOOD,
        "4 20160431120000 4093 2 10",       # unparseable time
        "4 20160420080935 4093 2 -5",       # negative bytes
        "4 20160420080935 4093 2",          # wrong field count
        "4 20160420080936 4093 x 10",       # non-integer field
        "",                                 # blank: not a record
        "5 20160420090000 4093 3 11",
        "4 20160420250000 4093 2 10",       # unparseable time (hour 25)
    ])
    ev = read_official_trace(p, on_error="skip")
    assert len(ev) == 2
    assert ev.user.tolist() == [4, 5] and ev.line.tolist() == [1, 7]
    assert ev.report == Counter({"unparseable time": 2, "negative bytes": 1, "wrong field count": 1,
                                 "non-integer field": 1})


def test_skip_csv(tmp_path: Path) -> None:
    p = _write(tmp_path, "s.csv", ["user_id,time,location,app_id,traffic",
                                   "4,20160420080933,4093,2,5", "4,1,2", "4,20160420080934,4093,2,-1"])
    ev = read_llmapp_sample(p, on_error="skip")
    assert len(ev) == 1
    assert ev.report == Counter({"wrong field count": 1, "negative bytes": 1})
