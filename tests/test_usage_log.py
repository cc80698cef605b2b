"""Tests of the app-only usage-log reader (runtime/core/usage_log.py) on logs cut from the REAL
Tsinghua LLMApp sample (its time and app columns, the location and traffic dropped)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from umask.runtime.core.errors import DataFormatError
from umask.runtime.core.events import format_compact_time, read_llmapp_sample
from umask.runtime.core.usage_log import ABSENT_BS, looks_like_usage_log, main, read_usage_log

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "tsinghua_app_usage" / "app_usage_trace_sample_llmapp.csv.gz"


@pytest.fixture(scope="module")
def trace():
    return read_llmapp_sample(SAMPLE)


def write_log(path: Path, trace, *, header: str = "time,app", users: bool = False, nbytes: bool = False) -> Path:
    stamps = format_compact_time(trace.ts)
    lines = [header] if header else []
    for i in range(len(trace)):
        f = [str(int(stamps[i])), str(int(trace.app[i]))]
        if users:
            f.insert(0, str(int(trace.user[i])))
        if nbytes:
            f.append(str(int(trace.bytes[i])))
        lines.append(",".join(f))
    text = "\n".join(lines) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return path


def test_same_events_as_the_tsinghua_reader_without_location(tmp_path: Path, trace) -> None:
    path = write_log(tmp_path / "usage.csv.gz", trace, header="user_id,time,app_id", users=True)
    assert looks_like_usage_log(path) and not looks_like_usage_log(SAMPLE)
    ul = read_usage_log(path)
    ev = ul.events
    np.testing.assert_array_equal(ev.user, trace.user)
    np.testing.assert_array_equal(ev.ts, trace.ts)
    np.testing.assert_array_equal(ev.app, trace.app)
    assert np.all(ev.bs == ABSENT_BS) and np.all(ev.bytes == 0)
    assert ul.absent == frozenset({"location", "traffic"})
    assert any(line.startswith("location:") and "place recommendations" in line for line in ul.cannot_predict)


def test_one_user_headerless_with_iso_times_and_bytes(tmp_path: Path, trace) -> None:
    one = trace.for_user(int(trace.users[0]))
    path = write_log(tmp_path / "one.csv", one, header="")
    assert looks_like_usage_log(path)
    ul = read_usage_log(path, default_user=7)
    assert np.all(ul.events.user == 7) and len(ul.events) == len(one)
    np.testing.assert_array_equal(ul.events.ts, one.ts)
    with_bytes = read_usage_log(write_log(tmp_path / "b.csv", one, header="time,app,bytes", nbytes=True))
    assert with_bytes.absent == frozenset({"location"})
    np.testing.assert_array_equal(with_bytes.events.bytes, one.bytes)
    iso = tmp_path / "iso.csv"
    iso.write_text("time,app\n2016-04-20 08:09:33,2\n2016-04-20T08:00,5\n")
    ev = read_usage_log(iso).events
    assert ev.app.tolist() == [5, 2] and int(ev.ts[1] - ev.ts[0]) == 9 * 60 + 33  # sorted by time


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("20160431080000,2", r"bad.csv:3: bad time: '20160431080000'"),
        ("20160420080000,wechat", r"bad.csv:3: bad app id: 'wechat'"),
        ("20160420080000,2,9", r"bad.csv:3: ragged row: expected 2 fields, found 3"),
        ("", r"bad.csv:3: empty line"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"time,app\n20160420080000,2\n{row}\n20160420090000,3\n")
    with pytest.raises(DataFormatError, match=message):
        read_usage_log(path)
    ul = read_usage_log(path, on_error="skip")
    assert len(ul.events) == 2 and sum(ul.events.report.values()) == 1


def test_a_log_with_locations_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "loc.csv"
    path.write_text("time,app,location\n20160420080000,2,4093\n")
    with pytest.raises(DataFormatError, match="loc.csv:1: column 'location' carries a location"):
        read_usage_log(path)
    assert main([str(path)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loc.csv:1" in err
