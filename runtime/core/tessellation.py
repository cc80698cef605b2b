"""Spatial tessellation: a global 500 m city grid and a per-user H x W layout of anchor cells.

The paper tessellates space into an H x W grid (section 3.1, eq. 1) of 500 m cells (section 7.1.1)
and gives each cell a location embedding E_pos(h, w) derived from its POI mix (section 4.3.2,
eq. 15). Real users do not stay inside one small window:
the 6 users of the real sample each visit 7-23 base stations spread over 20-70 km in one day, so
a contiguous H x W window of 500 m cells would miss most of their events (the best 8 km window
covers only 45-76 %). The tessellation therefore has two levels:

* `CityGrid`: one global grid of ``cell_m`` square cells over the city, in an equirectangular
  projection about a reference latitude. Origin and reference latitude are stored fields derived
  deterministically from the base-station table (`CityGrid.from_stations`), so the training side
  and the device compute identical cells.
* `UserLayout`: per user, the H x W (default 4 x 4 = 16) global cells the user visited most during
  a fitting period (history only, never a target period). The chosen cells are ordered along a
  Hilbert curve over the city grid and written into the layout along a Hilbert path (square
  power-of-two layouts) or a boustrophedon path (others), so cells that are near in the city tend
  to be neighbours in the layout, which spatial patching relies on. Empty slots hold -1.

A layout slot is addressed by ``slot = h * W + w``. Events in cells outside the layout get slot -1
and are counted by the featurizer, never dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umask.runtime.core.catalog import BaseStationTable, Catalog
from umask.runtime.core.errors import InputError
from umask.runtime.core.events import EventLog

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)
UNKNOWN_PLACE = "unknown"


# -----------------------------------------------------------------------------
# Global city grid
# -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CityGrid:
    """Square cells of ``cell_m`` metres; cell (gy, gx) counts north (gy) and east (gx) of the origin.

    y = (lat - lat0) * pi/180 * R,  x = (lon - lon0) * pi/180 * R * cos(lat_ref),
    gy = floor(y / cell_m),  gx = floor(x / cell_m).  ``ny x nx`` is the extent that holds every
    base station of the table the grid was built from.
    """

    lat0: float      # degrees, southern edge of row 0
    lon0: float      # degrees, western edge of column 0
    lat_ref: float   # degrees, latitude of the projection's true scale
    cell_m: float = 500.0
    ny: int = 0      # rows covering the station table's bounding box
    nx: int = 0      # columns covering the station table's bounding box

    def __post_init__(self) -> None:
        if not (self.cell_m > 0 and math.isfinite(self.cell_m)):
            raise InputError(f"cell_m must be a positive number, got {self.cell_m}")
        for name in ("lat0", "lon0", "lat_ref"):
            if not math.isfinite(getattr(self, name)):
                raise InputError(f"CityGrid.{name} must be finite")
        if not -89.0 <= self.lat_ref <= 89.0:
            raise InputError(f"lat_ref {self.lat_ref} is out of range")

    @classmethod
    def from_stations(cls, table: BaseStationTable, cell_m: float = 500.0) -> "CityGrid":
        """Grid whose origin is the stations' bounding-box corner rounded down to 0.01 degree."""
        ok = np.isfinite(table.lat) & np.isfinite(table.lon)
        if not ok.any():
            raise InputError("the base-station table has no coordinates (official id space?): "
                             "load them with load_official_catalog(..., coordinates=CSV)")
        lat, lon = table.lat[ok], table.lon[ok]
        lat0 = math.floor(float(lat.min()) * 100.0) / 100.0
        lon0 = math.floor(float(lon.min()) * 100.0) / 100.0
        lat_ref = round((float(lat.min()) + float(lat.max())) / 2.0, 4)
        grid = cls(lat0, lon0, lat_ref, float(cell_m))
        gy, gx = grid.cell_of(lat, lon)
        return cls(lat0, lon0, lat_ref, float(cell_m), int(gy.max()) + 1, int(gx.max()) + 1)

    def cell_of(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) degrees -> (gy, gx) int64 cell indices. Coordinates must be finite."""
        lat = np.asarray(lat, np.float64)
        lon = np.asarray(lon, np.float64)
        if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
            raise InputError("cell_of got NaN/inf coordinates")
        rad = math.pi / 180.0
        y = (lat - self.lat0) * rad * EARTH_RADIUS_M
        x = (lon - self.lon0) * rad * EARTH_RADIUS_M * math.cos(self.lat_ref * rad)
        return np.floor(y / self.cell_m).astype(np.int64), np.floor(x / self.cell_m).astype(np.int64)

    def contains(self, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
        """True where the cell lies inside the grid's extent."""
        gy, gx = np.asarray(gy), np.asarray(gx)
        return (gy >= 0) & (gy < self.ny) & (gx >= 0) & (gx < self.nx)

    @property
    def hilbert_order(self) -> int:
        """Smallest k with 2**k >= max(ny, nx): the Hilbert curve that covers the grid."""
        return max(1, int(math.ceil(math.log2(max(self.ny, self.nx, 2)))))

    def to_dict(self) -> dict[str, Any]:
        return {"lat0": self.lat0, "lon0": self.lon0, "lat_ref": self.lat_ref, "cell_m": self.cell_m,
                "ny": self.ny, "nx": self.nx}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CityGrid":
        return cls(float(d["lat0"]), float(d["lon0"]), float(d["lat_ref"]), float(d["cell_m"]),
                   int(d["ny"]), int(d["nx"]))


def station_cells(table: BaseStationTable, grid: CityGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell of every station row: (gy, gx, has_coordinates). Rows without coordinates get -1."""
    ok = np.isfinite(table.lat) & np.isfinite(table.lon)
    gy = np.full(len(table.ids), -1, np.int64)
    gx = np.full(len(table.ids), -1, np.int64)
    if ok.any():
        gy[ok], gx[ok] = grid.cell_of(table.lat[ok], table.lon[ok])
    return gy, gx, ok


def event_cells(events: EventLog, catalog: Catalog, grid: CityGrid) -> tuple[np.ndarray, np.ndarray]:
    """Global cell (gy, gx) of every event's base station, each (N,) int64.

    Unknown base stations raise `InputError` (use `Catalog.check_events` first for file/line
    messages); so do stations without coordinates (the official id space ships none).
    """
    rows = catalog.stations.index_of(events.bs)
    lat, lon = catalog.stations.lat[rows], catalog.stations.lon[rows]
    bad = ~(np.isfinite(lat) & np.isfinite(lon))
    if bad.any():
        ids = np.unique(events.bs[bad])[:10].tolist()
        raise InputError(f"{int(bad.sum())} events are at base stations without coordinates, e.g. {ids} "
                         f"(catalog id space '{catalog.id_space}'; the official release has no coordinates: "
                         f"pass coordinates=CSV to load_official_catalog)")
    return grid.cell_of(lat, lon)


# -----------------------------------------------------------------------------
# Hilbert curve (vectorized; x = column, y = row)
# -----------------------------------------------------------------------------

def hilbert_index(y: np.ndarray, x: np.ndarray, order: int) -> np.ndarray:
    """Distance along the Hilbert curve of side 2**order for cells (y, x) in [0, 2**order)."""
    n = 1 << order
    x = np.array(x, np.int64, copy=True)
    y = np.array(y, np.int64, copy=True)
    if ((x < 0) | (x >= n) | (y < 0) | (y >= n)).any():
        raise InputError(f"hilbert_index: coordinates outside [0, {n})")
    d = np.zeros(x.shape, np.int64)
    s = n // 2
    while s > 0:
        rx = ((x & s) > 0).astype(np.int64)
        ry = ((y & s) > 0).astype(np.int64)
        d += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant so that the sub-curve has the canonical orientation
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, s - 1 - (x & (s - 1)), x & (s - 1))
        y = np.where(flip, s - 1 - (y & (s - 1)), y & (s - 1))
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s //= 2
    return d


def hilbert_point(d: int, order: int) -> tuple[int, int]:
    """Inverse of `hilbert_index` for one distance: returns (y, x)."""
    x = y = 0
    t = int(d)
    s = 1
    while s < (1 << order):
        rx = 1 & (t // 2)
        ry = 1 & (t ^ rx)
        if ry == 0:
            if rx == 1:
                x, y = s - 1 - x, s - 1 - y
            x, y = y, x
        x += s * rx
        y += s * ry
        t //= 4
        s *= 2
    return y, x


def layout_path(H: int, W: int) -> np.ndarray:
    """(H*W, 2) (h, w) positions visited in order; consecutive positions are 4-neighbours.

    A Hilbert path for square power-of-two layouts (4 x 4, 8 x 8, ...), else a boustrophedon
    (row 0 left to right, row 1 right to left, ...).
    """
    if H == W and H >= 2 and (H & (H - 1)) == 0:
        order = H.bit_length() - 1
        return np.array([hilbert_point(d, order) for d in range(H * W)], np.int64)
    path = [(h, w if h % 2 == 0 else W - 1 - w) for h in range(H) for w in range(W)]
    return np.array(path, np.int64).reshape(-1, 2)


# -----------------------------------------------------------------------------
# Per-user layout
# -----------------------------------------------------------------------------

def _cell_key(gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """One int64 per cell, order-preserving in (gy, gx) for cells with |gy|, |gx| < 2**31."""
    return (np.asarray(gy, np.int64) << 32) + (np.asarray(gx, np.int64) + (1 << 31))


@dataclass(eq=False)
class UserLayout:
    """The user's H x W anchor cells. ``cells[h, w] = (gy, gx)`` or (-1, -1) for an empty slot."""

    grid: CityGrid
    cells: np.ndarray             # (H, W, 2) int64 global cell per slot, -1 where empty
    counts: np.ndarray            # (H, W) int64 fitting-period events per slot, 0 where empty
    user: int | None = None
    fit_start_ts: int | None = None   # [fit_start_ts, fit_end_ts): the fitting period's events
    fit_end_ts: int | None = None
    _keys: np.ndarray = field(init=False, repr=False)    # sorted cell keys of filled slots
    _slots: np.ndarray = field(init=False, repr=False)   # slot index aligned with _keys

    def __post_init__(self) -> None:
        self.cells = np.asarray(self.cells, np.int64)
        self.counts = np.asarray(self.counts, np.int64)
        if self.cells.ndim != 3 or self.cells.shape[2] != 2 or self.counts.shape != self.cells.shape[:2]:
            raise InputError(f"UserLayout: cells must be (H, W, 2) and counts (H, W); "
                             f"got {self.cells.shape}, {self.counts.shape}")
        flat = self.cells.reshape(-1, 2)
        filled = (flat >= 0).all(axis=1)
        if not (filled | (flat == -1).all(axis=1)).all():
            raise InputError("UserLayout: a slot is neither a valid cell nor empty (-1, -1)")
        keys = _cell_key(flat[filled, 0], flat[filled, 1])
        if len(np.unique(keys)) != len(keys):
            raise InputError("UserLayout: a cell appears in two slots")
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._slots = np.flatnonzero(filled)[order]

    @property
    def H(self) -> int:
        return int(self.cells.shape[0])

    @property
    def W(self) -> int:
        return int(self.cells.shape[1])

    @property
    def filled(self) -> np.ndarray:
        """(H, W) bool: True where the slot holds a cell."""
        return (self.cells >= 0).all(axis=2)

    def slot_of_cell(self, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
        """Layout slot h*W+w of each global cell, -1 for cells outside the layout."""
        keys = _cell_key(gy, gx)
        if len(self._keys) == 0:
            return np.full(keys.shape, -1, np.int64)
        pos = np.clip(np.searchsorted(self._keys, keys), 0, len(self._keys) - 1)
        return np.where(self._keys[pos] == keys, self._slots[pos], -1).astype(np.int64)

    def locate(self, events: EventLog, catalog: Catalog) -> np.ndarray:
        """(N,) int64 layout slot h*W+w of every event, or -1 for events outside the layout."""
        gy, gx = event_cells(events, catalog, self.grid)
        return self.slot_of_cell(gy, gx)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict (for the export manifest and on-device state)."""
        return {"grid": self.grid.to_dict(), "H": self.H, "W": self.W,
                "cells": self.cells.tolist(), "counts": self.counts.tolist(),
                "user": self.user, "fit_start_ts": self.fit_start_ts, "fit_end_ts": self.fit_end_ts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UserLayout":
        H, W = int(d["H"]), int(d["W"])
        cells = np.array(d["cells"], np.int64).reshape(H, W, 2)
        counts = np.array(d["counts"], np.int64).reshape(H, W)
        opt = lambda k: None if d.get(k) is None else int(d[k])  # noqa: E731
        return cls(CityGrid.from_dict(d["grid"]), cells, counts, opt("user"), opt("fit_start_ts"), opt("fit_end_ts"))


def _single_user(events: EventLog, what: str) -> int:
    if len(events) == 0:
        raise InputError(f"{what}: empty history (no events)")
    users = np.unique(events.user)
    if len(users) != 1:
        raise InputError(f"{what} needs the events of exactly one user, got {len(users)} users "
                         f"({users[:10].tolist()}); use EventLog.for_user")
    return int(users[0])


def fit_layout(events: EventLog, catalog: Catalog, grid: CityGrid, H: int = 4, W: int = 4) -> UserLayout:
    """Choose the user's H*W most visited cells (by events) of the fitting-period ``events``.

    Pass history only (never the target period). Ties: count descending, then gy, then gx.
    The chosen cells are sorted by their Hilbert index on the city grid and laid out along
    `layout_path(H, W)`; the remaining slots are empty (-1).
    """
    if H < 1 or W < 1:
        raise InputError(f"layout must be at least 1 x 1, got {H} x {W}")
    user = _single_user(events, "fit_layout")
    gy, gx = event_cells(events, catalog, grid)
    inside = grid.contains(gy, gx)
    if not inside.all():
        raise InputError(f"{int((~inside).sum())} events lie outside the grid's extent "
                         f"({grid.ny} x {grid.nx} cells); build the grid from this catalog's stations")
    keys, cnt = np.unique(_cell_key(gy, gx), return_counts=True)     # sorted by (gy, gx)
    cells = np.stack([keys >> 32, (keys & 0xFFFFFFFF) - (1 << 31)], axis=1)  # (n, 2) (gy, gx)
    top = np.lexsort((cells[:, 1], cells[:, 0], -cnt))[: H * W]
    cells, cnt = cells[top], cnt[top]
    hil = hilbert_index(cells[:, 0], cells[:, 1], grid.hilbert_order)
    order = np.argsort(hil, kind="stable")
    cells, cnt = cells[order], cnt[order]

    path = layout_path(H, W)[: len(cells)]
    out_cells = np.full((H, W, 2), -1, np.int64)
    out_counts = np.zeros((H, W), np.int64)
    out_cells[path[:, 0], path[:, 1]] = cells
    out_counts[path[:, 0], path[:, 1]] = cnt
    return UserLayout(grid, out_cells, out_counts, user,
                      int(events.ts.min()), int(events.ts.max()) + 1)


def coverage(events: EventLog, layout: UserLayout, catalog: Catalog) -> float:
    """Fraction of ``events`` whose cell is in the layout (NaN for no events)."""
    if len(events) == 0:
        return float("nan")
    return float((layout.locate(events, catalog) >= 0).mean())


# -----------------------------------------------------------------------------
# Location embedding E_pos from the POI mix
# -----------------------------------------------------------------------------

def _check_grid(layout: UserLayout, grid: CityGrid | None) -> CityGrid:
    if grid is not None and grid != layout.grid:
        raise InputError(f"grid {grid} differs from the layout's grid {layout.grid}")
    return layout.grid


def slot_poi_counts(layout: UserLayout, catalog: Catalog, grid: CityGrid | None = None, *,
                    cells: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(H*W, P) float64 POI counts summed over ALL catalog stations inside each slot's cell.

    ``cells`` may carry a precomputed `station_cells(catalog.stations, grid)` (for populations).
    """
    grid = _check_grid(layout, grid)
    table = catalog.stations
    if not table.has_coordinates:
        raise InputError("the base-station table has no coordinates: cannot place POIs in cells")
    gy, gx, ok = cells if cells is not None else station_cells(table, grid)
    slot = np.where(ok, layout.slot_of_cell(gy, gx), -1)
    sel = slot >= 0
    out = np.zeros((layout.H * layout.W, table.poi.shape[1]), np.float64)
    np.add.at(out, slot[sel], table.poi[sel].astype(np.float64))
    return out


def poi_embedding(layout: UserLayout, catalog: Catalog, grid: CityGrid | None = None, *,
                  cells: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """E_pos: (H, W, P+1) float32. Per slot: POI shares (sum to 1; zeros without POIs), then
    log1p(total POI count) / 10. Empty slots are all zeros."""
    counts = slot_poi_counts(layout, catalog, grid, cells=cells)          # (H*W, P)
    total = counts.sum(axis=1, keepdims=True)                             # (H*W, 1)
    shares = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    emb = np.concatenate([shares, np.log1p(total) / 10.0], axis=1)        # (H*W, P+1)
    return emb.reshape(layout.H, layout.W, -1).astype(np.float32)


def dominant_place_index(layout: UserLayout, catalog: Catalog, grid: CityGrid | None = None, *,
                         cells: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(H*W,) int64 index of the most frequent POI type per slot (first on ties), -1 if none."""
    counts = slot_poi_counts(layout, catalog, grid, cells=cells)
    return np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), -1).astype(np.int64)


def dominant_place_type(layout: UserLayout, catalog: Catalog, grid: CityGrid | None = None, *,
                        cells: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> list[str]:
    """Per slot h*W+w: the name of the most frequent POI type, or "unknown"."""
    names = catalog.stations.poi_names
    idx = dominant_place_index(layout, catalog, grid, cells=cells)
    return [names[i] if i >= 0 else UNKNOWN_PLACE for i in idx.tolist()]
