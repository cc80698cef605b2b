"""App-only usage logs: ``time,app`` rows with no base station and no places (numpy only).

Many phones can export which app was used when, but not where. This reader turns such a log into
the same `EventLog` as the Tsinghua readers (`umask.runtime.core.events`), and says which channels
the log cannot carry, so that nothing downstream mistakes "no location recorded" for "was nowhere":

* the location channel is ABSENT, not zero: every event gets the base station :data:`ABSENT_BS`
  (-1, never a catalog id, so `Catalog.check_events` refuses to place it at a real station);
* the traffic channel is absent too unless the log has a ``bytes`` (or ``traffic``) column; then
  ``bytes`` is 0 for every event and ``"traffic"`` is in :attr:`UsageLog.absent`.

Layout (CSV, optional header; without a header the two columns are ``time,app``)::

    time,app                 <- or time,app_id[,user][,bytes]; column order free when named
    20160420080933,2         <- time: local YYYYMMDDhhmmss, or YYYY-MM-DD hh:mm[:ss] (also with a T)
    2016-04-20 08:12,361     <- app: an app id of the catalog's id space (LLMApp / Tsinghua)

Every bad row raises `DataFormatError` naming the file and the 1-based line (``on_error="skip"``
skips and counts it per reason in ``EventLog.report`` instead). Rows need not be sorted.

Read one::

    python -m umask.runtime.core.usage_log my_usage.csv
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umask.runtime.core.errors import DataFormatError, InputError
from umask.runtime.core.events import EventLog, OnError, open_text, parse_compact_time

log = logging.getLogger(__name__)

ABSENT_BS: int = -1  # base-station id of every event of an app-only log: "not recorded", not a station
TIME_NAMES = ("time", "timestamp", "datetime", "ts")
APP_NAMES = ("app", "app_id")
USER_NAMES = ("user", "user_id")
BYTES_NAMES = ("bytes", "traffic", "traffic_bytes")
LOCATION_NAMES = ("location", "base_station", "base_station_id", "bs", "base_id", "cell", "place")

# what a model cannot predict when a channel is absent (the command line prints it)
CHANNEL_OUTPUTS: dict[str, str] = {
    "location": "the location channel of short / long / impute predictions, cold-start place "
                "recommendations, and the app x place statistics of the profile",
    "traffic": "the traffic-volume channel (bytes) of short / long / impute predictions",
}

_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$")


@dataclass(frozen=True)
class UsageLog:
    """An app-only log: its events and the channels it cannot carry.

    events: the `EventLog` (sorted by (user, ts)); ``bs`` is :data:`ABSENT_BS` everywhere, ``bytes``
            is 0 everywhere when ``"traffic"`` is absent
    absent: channel names the log does not record, from {"location", "traffic"}; "location" always
    """

    events: EventLog
    absent: frozenset[str]

    @property
    def cannot_predict(self) -> list[str]:
        """One line per absent channel: the outputs that cannot be predicted from this log."""
        return [f"{ch}: {CHANNEL_OUTPUTS[ch]}" for ch in sorted(self.absent)]


def _parse_time(text: str) -> int | None:
    """Local seconds of a YYYYMMDDhhmmss or ISO-like local time, None if invalid."""
    text = text.strip()
    if text.isdigit() and len(text) == 14:
        stamp = int(text)
    else:
        m = _ISO.match(text)
        if not m:
            return None
        y, mo, d, hh, mi, ss = (int(g) if g else 0 for g in m.groups())
        stamp = ((((y * 100 + mo) * 100 + d) * 100 + hh) * 100 + mi) * 100 + ss
    ts, ok = parse_compact_time(np.array([stamp], np.int64))
    return int(ts[0]) if ok[0] else None


def _columns(path: Path, header: list[str]) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    for n in names:
        if n in LOCATION_NAMES:
            raise DataFormatError(path, 1, f"column {n!r} carries a location: this is not an app-only log; read it "
                                           "with umask.runtime.core.events.read_trace")

    def find(options: tuple[str, ...], required: bool) -> int | None:
        hits = [i for i, n in enumerate(names) if n in options]
        if len(hits) > 1:
            raise DataFormatError(path, 1, f"more than one column for {options[0]!r}: {[header[i] for i in hits]}")
        if not hits and required:
            raise DataFormatError(path, 1, f"header needs a {'/'.join(options)} column, found {header}")
        return hits[0] if hits else None

    cols = {"time": find(TIME_NAMES, True), "app": find(APP_NAMES, True), "user": find(USER_NAMES, False),
            "bytes": find(BYTES_NAMES, False)}
    return {k: v for k, v in cols.items() if v is not None}


def _is_header(fields: list[str]) -> bool:
    return any(f.strip().lower() in TIME_NAMES + APP_NAMES for f in fields)


def looks_like_usage_log(path: str | Path) -> bool:
    """True when the file's first line is an app-only header (time and app, no location column) or
    a headerless ``time,app`` row. Used by ``umask train`` to route ``--data``."""
    try:
        with open_text(path) as fh:
            line = fh.readline().strip()
    except (OSError, UnicodeDecodeError, EOFError):
        return False
    fields = [f.strip().lower() for f in line.split(",")]
    if _is_header(fields):
        return (any(f in TIME_NAMES for f in fields) and any(f in APP_NAMES for f in fields)
                and not any(f in LOCATION_NAMES for f in fields))
    return len(fields) == 2 and _parse_time(fields[0]) is not None and fields[1].isdigit()


def read_usage_log(path: str | Path, *, on_error: OnError = "raise", default_user: int = 0) -> UsageLog:
    """Read an app-only ``time,app`` log (plain or gzip) into a :class:`UsageLog`.

    ``default_user``: the user id of every event when the log has no user column (one person's log).
    """
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such usage log")
    rows: list[tuple[int, int, int, int, int]] = []  # user, ts, app, bytes, line
    report: Counter = Counter()
    cols: dict[str, int] | None = None
    n_fields = 0

    def bad(lineno: int, reason: str, detail: str) -> None:
        if on_error == "raise":
            raise DataFormatError(path, lineno, f"{reason}: {detail}")
        report[reason] += 1

    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                bad(lineno, "empty line", "no fields")
                continue
            fields = [f.strip() for f in line.split(",")]
            if cols is None:
                if _is_header(fields):
                    cols = _columns(path, fields)
                    n_fields = len(fields)
                    continue
                cols, n_fields = {"time": 0, "app": 1}, 2
            if len(fields) != n_fields:
                bad(lineno, "ragged row", f"expected {n_fields} fields, found {len(fields)}")
                continue
            ts = _parse_time(fields[cols["time"]])
            if ts is None:
                bad(lineno, "bad time", f"{fields[cols['time']]!r} is not a local YYYYMMDDhhmmss or "
                                        "YYYY-MM-DD hh:mm[:ss] time")
                continue
            app_text = fields[cols["app"]]
            if not app_text.isdigit():
                bad(lineno, "bad app id", f"{app_text!r} is not a non-negative integer app id")
                continue
            user = default_user
            if "user" in cols:
                text = fields[cols["user"]]
                if not text.isdigit():
                    bad(lineno, "bad user id", f"{text!r} is not a non-negative integer")
                    continue
                user = int(text)
            nbytes = 0
            if "bytes" in cols:
                text = fields[cols["bytes"]]
                if not text.isdigit():
                    bad(lineno, "bad bytes", f"{text!r} is not a non-negative integer")
                    continue
                nbytes = int(text)
            rows.append((user, ts, int(app_text), nbytes, lineno))
    if report:
        log.warning("%s: skipped %d bad rows: %s", path, sum(report.values()), dict(report))
    if not rows:
        raise DataFormatError(path, None, "no usage rows")
    a = np.asarray(rows, dtype=np.int64)
    events = EventLog(user=a[:, 0], ts=a[:, 1], bs=np.full(len(a), ABSENT_BS, np.int64), app=a[:, 2],
                      bytes=a[:, 3], line=a[:, 4], source=str(path), report=report).sorted()
    absent = {"location"} | (set() if "bytes" in (cols or {}) else {"traffic"})
    log.info("%s: %d app-only events, %d users; absent channels: %s", path, len(events), len(events.users),
             sorted(absent))
    return UsageLog(events=events, absent=frozenset(absent))


def main(argv: list[str] | None = None) -> int:
    """Print a summary of an app-only log and what it cannot predict."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m umask.runtime.core.usage_log USAGE.csv\n\n" + (__doc__ or "").split("\n\n")[0])
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        ul = read_usage_log(argv[0])
    except (DataFormatError, InputError) as e:
        print(f"usage_log: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    ev = ul.events
    print(f"{argv[0]}: {len(ev)} events, {len(ev.users)} user(s), {len(np.unique(ev.app))} apps")
    for line in ul.cannot_predict:
        print(f"cannot predict {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
