"""Metadata the events refer to: apps -> categories, base stations -> coordinates and POI mix.

Two id spaces exist and never mix (see data/tsinghua_app_usage/SOURCE.md):

* ``official``: the Tsinghua release's ``App2Category.txt`` (1,696 apps, 20 categories 0..19),
  ``Categorys.txt`` (id -> name, with stray annotation lines that are not categories) and
  ``base_poi.txt`` (9,851 base stations x 17 POI counts, *no coordinates*). A user of the full
  trace who has base-station coordinates passes them as a CSV ``base_id,latitude,longitude``.
* ``llmapp``: LLMApp's re-indexed tables (305 apps, 20 categories 1..20, 12,576 base stations
  with latitude/longitude and 14 POI counts). The real 6-user sample and the simulator use it.

Internally a category is a dense index 0..K-1 (`AppCatalog.category_index`), whatever its file id.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umask.runtime.core.errors import DataFormatError, InputError, LimitError
from umask.runtime.core.events import _CsvRows, iter_lines, strict_int
from umask.runtime.core.limits import BULK_LIMITS, Limits

_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)


def strict_float(text: str) -> float | None:
    """A finite ASCII decimal number (``12``, ``-3.5``, ``1e-3``), else None. ``float()`` would also
    take ``nan``, ``inf``, ``1_0`` and non-ASCII digits."""
    t = text.strip()
    if not _FLOAT.fullmatch(t):
        return None
    v = float(t)
    return v if math.isfinite(v) else None


def _int_field(path, lineno: int, text: str, what: str) -> int:
    v = strict_int(text.strip())
    if v is None or abs(v) > 2**63 - 1:
        raise DataFormatError(path, lineno, f"{what}: not an integer: {text[:40]!r}")
    return v


def _float_field(path, lineno: int, text: str, what: str) -> float:
    v = strict_float(text)
    if v is None:
        raise DataFormatError(path, lineno, f"{what}: not a finite number: {text[:40]!r}")
    return v


@dataclass(frozen=True)
class MemoryFile:
    """A table already in memory (e.g. `umask.runtime.core.bundle.read_verified` bytes): ``name`` is what
    errors name (``bundle/catalog/llmapp_app.csv``), ``data`` the file's bytes (plain or gzip)."""

    name: str
    data: bytes

    def __str__(self) -> str:
        return self.name


def _memory_rows(src: MemoryFile, limits: Limits | None, sep: str) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of an in-memory CSV with the bounds of `iter_lines` (decompressed bytes, line
    length, line count; UTF-8 and gzip damage named by line)."""
    lim = BULK_LIMITS if limits is None else limits
    data = src.data
    if data[:2] == b"\x1f\x8b":
        out, n = [], 0
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                while n <= lim.max_decompressed_bytes:
                    block = gz.read(1 << 20)
                    if not block:
                        break
                    out.append(block)
                    n += len(block)
            data = b"".join(out)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
            raise DataFormatError(src, None, f"corrupt or truncated gzip data ({e})") from None
    if len(data) > lim.max_decompressed_bytes:
        raise LimitError(src, None, f"more than {lim.max_decompressed_bytes:,} bytes (decompressed) "
                                    "(Limits.max_decompressed_bytes)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    state = {"line": 0}

    def lines() -> Iterator[str]:
        fh = io.BytesIO(data)
        while True:
            raw = fh.readline(lim.max_line_bytes + 1)
            if not raw:
                return
            state["line"] += 1
            n = state["line"]
            if n > lim.max_lines:
                raise LimitError(src, n, f"more than {lim.max_lines:,} lines (Limits.max_lines)")
            if len(raw) > lim.max_line_bytes and raw[-1:] != b"\n":
                raise LimitError(src, n, f"line longer than {lim.max_line_bytes:,} bytes (Limits.max_line_bytes)")
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(src, n, f"not UTF-8 text ({e.reason} at byte {e.start} of the line)") from None

    reader = csv.reader(lines(), strict=True, delimiter=sep)
    while True:
        before = state["line"] + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataFormatError(src, max(before, state["line"]), f"malformed CSV ({e})") from None
        yield before, row


def _csv_table(path, limits: Limits | None, sep: str = ","):
    """(header, iterator of (line, row)) of a CSV table (a path or a `MemoryFile`); an empty file raises
    naming line 1."""
    rows = iter(_memory_rows(path, limits, sep) if isinstance(path, MemoryFile)
                else _CsvRows(path, limits, delimiter=sep))
    first = next(rows, None)
    if first is None:
        raise DataFormatError(path, 1, "empty file, expected a header")
    header = [h.strip() for h in first[1]]
    if len(set(header)) != len(header):
        raise DataFormatError(path, 1, f"duplicate column names in the header {header[:20]}")
    return header, rows


# -----------------------------------------------------------------------------
# Data classes
# -----------------------------------------------------------------------------

@dataclass
class AppCatalog:
    app_ids: np.ndarray          # (A,) int64, sorted
    app_category: np.ndarray     # (A,) int64 dense category index 0..K-1, aligned with app_ids
    category_ids: np.ndarray     # (K,) int64 the categories' ids as in the files
    category_names: list[str]    # (K,) readable names

    @property
    def n_categories(self) -> int:
        return len(self.category_ids)

    def category_index(self, apps: np.ndarray, *, unknown: str = "raise") -> np.ndarray:
        """Dense category index per app id. Unknown apps raise (``unknown="raise"``) or map to -1."""
        apps = np.asarray(apps, np.int64)
        pos = np.searchsorted(self.app_ids, apps)
        pos = np.clip(pos, 0, max(len(self.app_ids) - 1, 0))
        known = (self.app_ids[pos] == apps) if len(self.app_ids) else np.zeros(apps.shape, bool)
        if unknown == "raise" and not known.all():
            bad = np.unique(apps[~known])[:10]
            raise InputError(f"{int((~known).sum())} events name apps absent from the catalog, e.g. {bad.tolist()}")
        return np.where(known, self.app_category[pos], -1)


@dataclass
class BaseStationTable:
    ids: np.ndarray          # (N,) int64, sorted
    lat: np.ndarray          # (N,) float64, NaN where unknown
    lon: np.ndarray          # (N,) float64, NaN where unknown
    poi: np.ndarray          # (N, P) float32 POI counts
    poi_names: list[str]     # (P,)

    @property
    def has_coordinates(self) -> bool:
        return bool(np.isfinite(self.lat).any())

    def index_of(self, ids: np.ndarray, *, unknown: str = "raise") -> np.ndarray:
        """Row index per base-station id; unknown ids raise or map to -1."""
        ids = np.asarray(ids, np.int64)
        pos = np.clip(np.searchsorted(self.ids, ids), 0, max(len(self.ids) - 1, 0))
        known = (self.ids[pos] == ids) if len(self.ids) else np.zeros(ids.shape, bool)
        if unknown == "raise" and not known.all():
            bad = np.unique(ids[~known])[:10]
            raise InputError(f"{int((~known).sum())} events name base stations absent from the table, e.g. {bad.tolist()}")
        return np.where(known, pos, -1)


# What to do about an unknown id, per id space: the two numberings share no mapping (SOURCE.md), so the
# error says which one the tools expect rather than guessing.
_ID_SPACE_HINT = {
    "llmapp": "; the per-user tools read LLMApp's re-indexed ids (apps 1..305 in llmapp_app.csv, base stations "
              "in llmapp_location.csv.gz). The official Tsinghua numbering (App2Category.txt, base_poi.txt) is another "
              "id space with no mapping to this one: re-index such a trace first, or log app ids of llmapp_app.csv",
}


@dataclass
class Catalog:
    apps: AppCatalog
    stations: BaseStationTable
    id_space: str            # "official" or "llmapp"

    def check_events(self, events) -> None:
        """Raise `DataFormatError` at the first event whose app or base station is unknown."""
        for what, ids, known in (
            ("app", events.app, self.apps.category_index(events.app, unknown="map") >= 0),
            ("base station", events.bs, self.stations.index_of(events.bs, unknown="map") >= 0),
        ):
            if not known.all():
                i = int(np.flatnonzero(~known)[0])
                line = None if events.line is None else int(events.line[i])
                raise DataFormatError(events.source, line,
                                      f"unknown {what} id {int(ids[i])} ({int((~known).sum())} events in all; "
                                      f"catalog id space is '{self.id_space}'){_ID_SPACE_HINT.get(self.id_space, '')}")


# -----------------------------------------------------------------------------
# Official Tsinghua metadata
# -----------------------------------------------------------------------------

_CATEGORY_LINE = re.compile(r"^([0-9]+)\t(.*)$")


def load_official_categories(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """``Categorys.txt``: keep lines ``<id>\\t'<name>'``; stray annotation lines are not categories."""
    ids, names = [], []
    for lineno, raw in iter_lines(path, BULK_LIMITS):
        m = _CATEGORY_LINE.match(raw.rstrip("\r\n"))
        if not m:
            continue  # e.g. "'wechat','linkedin','weibo'": an annotation, documented in SOURCE.md
        cid = _int_field(path, lineno, m.group(1), "category id")
        if cid in ids:
            raise DataFormatError(path, lineno, f"duplicate category id {cid}")
        ids.append(cid)
        names.append(m.group(2).strip().strip("'").strip().replace("\\_", "_"))
    if not ids:
        raise DataFormatError(path, None, "no '<id>\\t<name>' lines found")
    return np.array(ids, np.int64), names


def _read_int_pairs(path: str | Path, sep: str | None) -> np.ndarray:
    rows = []
    for lineno, raw in iter_lines(path, BULK_LIMITS):
        parts = raw.split(sep) if sep else raw.split()
        if not parts or parts == [""]:
            continue
        if len(parts) != 2:
            raise DataFormatError(path, lineno, f"expected 2 fields, got {len(parts)}")
        a, b = (strict_int(x.strip()) for x in parts)
        if a is None or b is None or max(abs(a), abs(b)) > 2**63 - 1:
            raise DataFormatError(path, lineno, f"non-integer field in {raw.strip()[:80]!r}")
        rows.append((a, b))
    return np.array(rows, np.int64).reshape(-1, 2)


def _app_catalog(path, pairs: np.ndarray, cat_ids: np.ndarray, cat_names: list[str]) -> AppCatalog:
    order = np.argsort(pairs[:, 0], kind="stable")
    pairs = pairs[order]
    if len(np.unique(pairs[:, 0])) != len(pairs):
        raise DataFormatError(path, None, "an app id appears twice")
    dense = {int(c): i for i, c in enumerate(cat_ids)}
    unknown = sorted(set(pairs[:, 1].tolist()) - set(dense))
    if unknown:
        raise DataFormatError(path, None, f"apps refer to unknown category ids {unknown[:10]}")
    return AppCatalog(pairs[:, 0], np.array([dense[int(c)] for c in pairs[:, 1]], np.int64), cat_ids, cat_names)


def _read_poi_table(path: str | Path, *, id_col: str, sep: str, coord_cols: tuple[str, str] | None,
                    poi_prefix: str = "") -> BaseStationTable:
    header, rows = _csv_table(path, BULK_LIMITS, sep)
    if id_col not in header:
        raise DataFormatError(path, 1, f"missing column {id_col!r}")
    skip = {id_col} | set(coord_cols or ()) | {"base_key"}
    poi_cols = [i for i, h in enumerate(header) if h not in skip and h.startswith(poi_prefix)]
    if coord_cols and any(c not in header for c in coord_cols):
        raise DataFormatError(path, 1, f"missing coordinate columns {coord_cols}")
    id_i = header.index(id_col)
    co_i = [header.index(c) for c in coord_cols] if coord_cols else []
    ids, lat, lon, poi = [], [], [], []
    for lineno, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise DataFormatError(path, lineno, f"expected {len(header)} fields, got {len(row)}")
        ids.append(_int_field(path, lineno, row[id_i], id_col))
        if coord_cols:
            la, lo = (_float_field(path, lineno, row[i], header[i]) for i in co_i)
            if not (-90 <= la <= 90 and -180 <= lo <= 180):
                raise DataFormatError(path, lineno, f"coordinates out of range ({la}, {lo})")
            lat.append(la)
            lon.append(lo)
        counts = [_float_field(path, lineno, row[i], header[i]) for i in poi_cols]
        if any(c < 0 for c in counts):
            raise DataFormatError(path, lineno, "negative POI count")
        poi.append(counts)
    ids_a = np.array(ids, np.int64)
    order = np.argsort(ids_a, kind="stable")
    if len(np.unique(ids_a)) != len(ids_a):
        raise DataFormatError(path, None, "a base-station id appears twice")
    n = len(ids_a)
    lat_a = np.array(lat, np.float64) if coord_cols else np.full(n, np.nan)
    lon_a = np.array(lon, np.float64) if coord_cols else np.full(n, np.nan)
    names = [header[i][len(poi_prefix):] for i in poi_cols]
    return BaseStationTable(ids_a[order], lat_a[order], lon_a[order],
                            np.array(poi, np.float32).reshape(n, len(poi_cols))[order], names)


def load_coordinates(table: BaseStationTable, path: str | Path) -> BaseStationTable:
    """Attach coordinates from a CSV ``base_id,latitude,longitude`` (for the official id space)."""
    header, rows = _csv_table(path, BULK_LIMITS)
    need = ("base_id", "latitude", "longitude")
    if not set(need) <= set(header):
        raise DataFormatError(path, 1, f"need columns {sorted(need)}, got {header[:20]}")
    bi, ai, oi = (header.index(c) for c in need)
    lat, lon = table.lat.copy(), table.lon.copy()
    for lineno, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise DataFormatError(path, lineno, f"expected {len(header)} fields, got {len(row)}")
        bid = _int_field(path, lineno, row[bi], "base_id")
        la, lo = _float_field(path, lineno, row[ai], "latitude"), _float_field(path, lineno, row[oi], "longitude")
        if not (-90 <= la <= 90 and -180 <= lo <= 180):
            raise DataFormatError(path, lineno, f"coordinates out of range ({la}, {lo})")
        i = int(table.index_of(np.array([bid]), unknown="map")[0])
        if i < 0:
            raise DataFormatError(path, lineno, f"unknown base station {bid}")
        lat[i], lon[i] = la, lo
    return BaseStationTable(table.ids, lat, lon, table.poi, table.poi_names)


def load_official_catalog(folder: str | Path, *, coordinates: str | Path | None = None) -> Catalog:
    """The Tsinghua release's metadata from one folder (``.gz`` variants accepted)."""
    folder = Path(folder)

    def find(name: str) -> Path:
        for cand in (folder / name, folder / (name + ".gz")):
            if cand.exists():
                return cand
        raise FileNotFoundError(f"{folder}: neither {name} nor {name}.gz")

    cat_ids, cat_names = load_official_categories(find("Categorys.txt"))
    a2c = find("App2Category.txt")
    apps = _app_catalog(a2c, _read_int_pairs(a2c, None), cat_ids, cat_names)
    stations = _read_poi_table(find("base_poi.txt"), id_col="BaseID", sep="\t", coord_cols=None)
    if coordinates is not None:
        stations = load_coordinates(stations, coordinates)
    return Catalog(apps, stations, "official")


# -----------------------------------------------------------------------------
# LLMApp re-indexed metadata
# -----------------------------------------------------------------------------

LLMAPP_TABLES = ("llmapp_app.csv", "llmapp_category.csv", "llmapp_location.csv.gz")


def load_llmapp_catalog(folder: str | Path) -> Catalog:
    """LLMApp's app, category and location tables (the real sample's and the simulator's id space)."""
    folder = Path(folder)
    loc = folder / "llmapp_location.csv.gz"
    if not loc.exists():
        loc = folder / "llmapp_location.csv"
    return _llmapp_catalog(folder / "llmapp_category.csv", folder / "llmapp_app.csv", loc)


def load_llmapp_catalog_bytes(tables: Mapping[str, bytes], origin: str = "<memory>") -> Catalog:
    """`load_llmapp_catalog` over tables already read (a bundle's verified bytes): ``tables`` maps the
    file names (``llmapp_app.csv``, ``llmapp_category.csv``, ``llmapp_location.csv.gz`` or ``.csv``) to
    their bytes; errors name ``origin/<file>:<line>``."""
    def src(name: str) -> MemoryFile:
        if name not in tables:
            raise DataFormatError(f"{origin}/{name}", None, "catalog table missing")
        return MemoryFile(f"{origin}/{name}", bytes(tables[name]))

    loc = "llmapp_location.csv.gz" if "llmapp_location.csv.gz" in tables else "llmapp_location.csv"
    return _llmapp_catalog(src("llmapp_category.csv"), src("llmapp_app.csv"), src(loc))


def _llmapp_catalog(cat_path, app_path, loc) -> Catalog:
    header, rows = _csv_table(cat_path, BULK_LIMITS)
    if "app_type_id" not in header or "en" not in header:
        raise DataFormatError(cat_path, 1, "need columns app_type_id,en")
    ti, ei = header.index("app_type_id"), header.index("en")
    cat_list, cat_names = [], []
    for lineno, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise DataFormatError(cat_path, lineno, f"expected {len(header)} fields, got {len(row)}")
        cid = _int_field(cat_path, lineno, row[ti], "app_type_id")
        if cid in cat_list:
            raise DataFormatError(cat_path, lineno, f"duplicate category id {cid}")
        cat_list.append(cid)
        cat_names.append(row[ei].strip())
    if not cat_list:
        raise DataFormatError(cat_path, 2, "no categories")
    cat_ids = np.array(cat_list, np.int64)
    header, rows = _csv_table(app_path, BULK_LIMITS)
    if not {"app_id", "app_cate_id"} <= set(header):
        raise DataFormatError(app_path, 1, "need columns app_id,app_cate_id")
    ai, ci = header.index("app_id"), header.index("app_cate_id")
    plist = []
    for lineno, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise DataFormatError(app_path, lineno, f"expected {len(header)} fields, got {len(row)}")
        plist.append((_int_field(app_path, lineno, row[ai], "app_id"), _int_field(app_path, lineno, row[ci], "app_cate_id")))
    pairs = np.array(plist, np.int64).reshape(-1, 2)
    apps = _app_catalog(app_path, pairs, cat_ids, cat_names)
    stations = _read_poi_table(loc, id_col="base_id", sep=",", coord_cols=("latitude", "longitude"),
                               poi_prefix="poi_")
    return Catalog(apps, stations, "llmapp")
