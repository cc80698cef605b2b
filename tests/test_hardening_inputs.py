"""Hostile inputs to the runtime's readers (runtime/core/events.py, history.py, catalog.py, limits.py):
every failure is a project error naming the file and line; limits apply while reading.

Run: ``.venv/bin/python -m pytest -q tests/test_hardening_inputs.py``.
"""

from __future__ import annotations

import dataclasses
import gzip
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from umask.runtime.core.catalog import load_llmapp_catalog
from umask.runtime.core.errors import (EXIT_CODES, BundleError, DataFormatError, InputError, LimitError,
                                       ManifestError, SignatureError, UmaskError)
from umask.runtime.core.events import read_llmapp_sample, read_official_trace
from umask.runtime.core.history import check_history, load_history, read_events_csv
from umask.runtime.core.limits import HISTORY_LIMITS, Limits

DATA = Path(__file__).resolve().parents[1] / "data" / "tsinghua_app_usage"
H = "time,app_id,base_id,bytes\n"
ROW = "20160420081502,362,1217,5012\n"


def _raises_at(exc, path: Path, line: int, fn, *a, **k):
    with pytest.raises(exc) as ei:
        fn(*a, **k)
    assert ei.value.path == str(path) and ei.value.line == line, str(ei.value)
    return ei.value


def test_exit_codes_are_distinct_and_documented() -> None:
    classes = (InputError, DataFormatError, LimitError, BundleError, ManifestError, SignatureError, UmaskError)
    assert len({c.exit_code for c in classes}) == len(classes) and 2 not in EXIT_CODES.values()
    import umask.runtime.core.errors as mod

    for c in classes:
        assert f"{c.__name__:<17}  {c.exit_code}" in mod.__doc__
    assert issubclass(LimitError, DataFormatError) and issubclass(LimitError, InputError)


@pytest.mark.parametrize("field", ["1_217", "+1217", "١٢١٧", "1217.0", "0x4c1", "", "1e3"])
def test_only_ascii_decimal_integers(tmp_path: Path, field: str) -> None:
    p = tmp_path / "e.csv"
    p.write_text(H + ROW + f"20160420081503,362,{field},5012\n", encoding="utf-8")
    err = _raises_at(DataFormatError, p, 3, read_events_csv, p)
    assert "non-integer field" in str(err)


def test_int64_overflow_is_a_format_error(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text(H + f"20160420081502,362,1217,{2**63}\n")
    assert "integer out of range" in str(_raises_at(DataFormatError, p, 2, read_events_csv, p))
    q = tmp_path / "t.txt"
    q.write_text(f"4 20160420080933 4093 2 7674\n4 20160420080933 {2**64} 2 7674\n")
    _raises_at(DataFormatError, q, 2, read_official_trace, q)


def test_long_field_and_csv_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text(H + ROW + "20160420081502,362,1217," + "9" * 200_000 + "\n")
    _raises_at(LimitError, p, 3, read_events_csv, p)
    big = dataclasses.replace(HISTORY_LIMITS, max_line_bytes=1 << 20)
    _raises_at(DataFormatError, p, 3, read_events_csv, p, limits=big)  # csv's own 128 KiB field limit
    q = tmp_path / "q.csv"
    q.write_text(H + ROW + '20160420081502,"362"x,1217,5\n')
    assert "malformed CSV" in str(_raises_at(DataFormatError, q, 3, read_events_csv, q))


def test_gzip_damage_and_bad_utf8(tmp_path: Path) -> None:
    raw = gzip.compress((H + ROW * 5000).encode())
    p = tmp_path / "t.csv.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match=r"t.csv.gz:\d+: corrupt or truncated gzip"):
        read_events_csv(p)
    p.write_bytes(b"\x1f\x8b" + b"junk" * 20)
    with pytest.raises(DataFormatError, match=r"t.csv.gz:1: corrupt or truncated gzip"):
        load_history(p)
    q = tmp_path / "u.csv"
    q.write_bytes((H + ROW + ROW).encode() + b"20160420081502,362,12\xff7,5\n")
    assert "not UTF-8" in str(_raises_at(DataFormatError, q, 4, read_events_csv, q))


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(H + ROW)
    b.write_bytes(b"\xef\xbb\xbf" + (H + ROW).encode())
    assert load_history(b).ts.tolist() == load_history(a).ts.tolist()


def test_one_long_gzipped_line_is_cut_at_the_limit(tmp_path: Path) -> None:
    p = tmp_path / "long.csv.gz"
    with gzip.open(p, "wb") as fh:                     # 64 MB of one line, about 64 KB on disk
        fh.write(H.encode())
        chunk = b"9" * (1 << 20)
        for _ in range(64):
            fh.write(chunk)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        _raises_at(LimitError, p, 2, load_history, p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak                      # bounded by the line limit, not the line
    assert time.perf_counter() - t0 < 10


def test_gzip_of_blank_lines_stops_at_max_lines(tmp_path: Path) -> None:
    p = tmp_path / "blank.csv.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(H.encode())
        for _ in range(40):
            fh.write(b"\n" * (1 << 20))                # 40 M blank lines
    lim = dataclasses.replace(HISTORY_LIMITS, max_lines=200_000)
    t0 = time.perf_counter()
    err = _raises_at(LimitError, p, 200_001, load_history, p, limits=lim)
    assert "Limits.max_lines" in str(err) and time.perf_counter() - t0 < 20


def test_limits_apply_while_reading(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text(H + ROW * 20)
    _raises_at(LimitError, p, 12, read_events_csv, p, limits=Limits(max_events=10))
    with pytest.raises(LimitError, match="max_decompressed_bytes"):
        read_events_csv(p, limits=Limits(max_decompressed_bytes=100))
    q = tmp_path / "span.csv"
    q.write_text(H + ROW + "20170601081502,362,1217,5012\n" + ROW)
    assert "max_span_days" in str(_raises_at(LimitError, q, 3, read_events_csv, q))
    with pytest.raises(ValueError, match="positive int"):
        Limits(max_events=0)


def test_parsed_history_is_compact(tmp_path: Path) -> None:
    """numpy columns, not Python tuples: peak memory within 8x the file (the Python tuples took ~18x: 47 MB -> 875 MB)."""
    rng = np.random.default_rng(0)
    n = 60_000
    ts = np.sort(20160420000000 + rng.integers(0, 23, n) * 10000 + rng.integers(0, 59, n) * 100)
    p = tmp_path / "big.csv"
    p.write_text(H + "".join(f"{t},{a},{b},{c}\n" for t, a, b, c in
                             zip(ts, rng.integers(0, 300, n), rng.integers(0, 12000, n), rng.integers(0, 10**6, n))))
    tracemalloc.start()
    try:
        ev = read_events_csv(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ev) == n and ev.ts.dtype == np.int64
    assert peak < 8 * p.stat().st_size, (peak, p.stat().st_size)


def test_duplicates_are_kept(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text(H + ROW + ROW)
    ev = read_events_csv(p)
    assert len(ev) == 2 and not ev.report


@pytest.mark.parametrize("now", [float("inf"), float("nan"), 1.5, True, "now", 10**30, -5])
def test_now_ts_is_validated(now) -> None:
    cat = load_llmapp_catalog(DATA)
    ev = read_llmapp_sample(DATA / "app_usage_trace_sample_llmapp.csv.gz").for_user(5)
    with pytest.raises(InputError, match="now_ts"):
        check_history(ev, cat, now_ts=now)


def test_catalog_numbers_are_strict(tmp_path: Path) -> None:
    import shutil

    for name in ("llmapp_app.csv", "llmapp_category.csv"):
        shutil.copy(DATA / name, tmp_path / name)
    with gzip.open(DATA / "llmapp_location.csv.gz", "rt") as fh:
        lines = fh.read().splitlines()[:30]
    for bad in ("nan", "inf", "1_0", "١"):
        fields = lines[5].split(",")
        fields[-1] = bad
        (tmp_path / "llmapp_location.csv").write_text("\n".join(lines[:5] + [",".join(fields)] + lines[6:]) + "\n")
        _raises_at(DataFormatError, tmp_path / "llmapp_location.csv", 6, load_llmapp_catalog, tmp_path)
    (tmp_path / "llmapp_app.csv").write_bytes(b"app_id,app_cate_id\n1,\xff\n")
    _raises_at(DataFormatError, tmp_path / "llmapp_app.csv", 2, load_llmapp_catalog, tmp_path)
