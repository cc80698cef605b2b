"""Property test: ``events.csv`` parsing (runtime/core/history.py, events.py) on generated hostile files.

Every generated file either loads into exactly the events an independent oracle reads from it, or
raises one of the project's error types (`UmaskError`); anything else (a crash, a wrong event) fails.

CI size: 200 examples. Full size (the figures in the hardening report)::

    UMASK_PROPERTY_EXAMPLES=2000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_property_history.py
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from umask.runtime.core.errors import UmaskError
from umask.runtime.core.events import format_compact_time, parse_compact_time
from umask.runtime.core.history import read_events_csv

EXAMPLES = int(os.environ.get("UMASK_PROPERTY_EXAMPLES", "200"))
H = "time,app_id,base_id,bytes"
DIGITS = re.compile(r"[0-9]+")

good_time = st.integers(0, 2 * 86400 * 365).map(lambda s: str(int(format_compact_time(np.int64(1451606400 + s)))))
weird = st.sampled_from(["", " ", "-1", "1_000", "+5", "١٢", "²", "1e3", "0x10", "nan", str(2**63), str(2**63 - 1),
                         "9" * 30, "20161301000000", "20160230120000", "\ufeff1", "\x00", "é", "20160420250000"])
field = st.one_of(st.integers(0, 10**6).map(str), weird, st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=',"\r\n'),
                                                                   max_size=6))
row = st.one_of(st.tuples(good_time, st.integers(0, 400).map(str), st.integers(0, 13000).map(str),
                          st.integers(0, 10**9).map(str)).map(list),
                st.lists(field, min_size=4, max_size=4), st.lists(field, min_size=0, max_size=6),
                st.tuples(st.one_of(good_time, field), field, field, field).map(list))


def oracle(lines: list[list[str]]) -> list[tuple[int, int, int, int]] | None:
    """(ts, app, bs, bytes) the file must load to; None when some line must be refused."""
    out = []
    for fields in lines:
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != 4:
            return None
        vals = []
        for f in fields:
            f = f.strip()
            if not (f.isascii() and DIGITS.fullmatch(f)) or int(f) >= 2**63:
                return None
            vals.append(int(f))
        t, app, bs, nb = vals
        ts, ok = parse_compact_time(np.array([t], np.int64))
        if not ok[0]:
            return None
        out.append((int(ts[0]), app, bs, nb))
    if out and max(o[0] for o in out) - min(o[0] for o in out) > 366 * 86400:
        return None
    return sorted(out, key=lambda o: o[0])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(row, max_size=12), gz=st.booleans(), bom=st.booleans(), crlf=st.booleans(),
       cut=st.one_of(st.none(), st.integers(0, 400)))
def test_history_parsing_never_crashes_nor_lies(rows, gz: bool, bom: bool, crlf: bool, cut) -> None:
    nl = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + H + nl + "".join(",".join(r) + nl for r in rows)
    data = text.encode("utf-8")
    if gz:
        data = gzip.compress(data)
    if cut is not None:
        data = data[:cut]                                      # truncated files, partial lines, cut gzip
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ("events.csv.gz" if gz else "events.csv")
        p.write_bytes(data)
        try:
            ev = read_events_csv(p)
        except UmaskError as e:
            event(f"refused: {type(e).__name__}")
            return                                             # refused with a project error: fine
        event("accepted")
        # accepted: must be exactly what an independent reading gives
        if cut is None:
            want = oracle(rows)
            assert want is not None, f"accepted a file the oracle refuses: {rows!r}"
            got = sorted(zip(ev.ts.tolist(), ev.app.tolist(), ev.bs.tolist(), ev.bytes.tolist()), key=lambda o: o[0])
            assert sorted(got) == sorted(want)
        assert (ev.bytes >= 0).all() and (np.diff(ev.ts) >= 0).all() and ev.ts.dtype == np.int64
        assert ev.line is not None and (ev.line >= 2).all()
