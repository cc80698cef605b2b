"""Day-aligned frames of the grid U-MASK (issue 10, PROTOCOL A), numpy only.

A grid window is written into a frame of T = 4 days at frame position ``offset`` = (its first slot) mod
D (D = slots per day): the frame starts at the local midnight on or before the window, so frame
position p is always time of day p mod D and the DiT's fixed positional embedding carries the time of
day (train/models/umask/grid.py explains why this alignment is what made forecasting work). Training
(grid.py re-exports these with Milan's geometry as the default), the scorers and the torch-free grid
session (grid_session.py) all build their frames here.

``geom`` is anything with ``frame`` (T), ``shape`` (H, W), ``period`` (D) and ``horizon`` (the A1
horizon): train's ``GridGeometry`` or the session's :class:`FrameSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from umask.runtime.core.errors import InputError

__all__ = ["FrameSpec", "GridShape", "forecast_frame", "frame_offset", "impute_frame", "read_frame"]


class GridShape:
    """``shape`` / ``n_cells`` / ``period`` of anything with ``height``, ``width`` and ``slots_per_day`` (the
    bundle's :class:`FrameSpec` and training's ``grid.GridGeometry``)."""

    height: int
    width: int
    slots_per_day: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def n_cells(self) -> int:
        return self.height * self.width

    @property
    def period(self) -> int:
        return self.slots_per_day


@dataclass(frozen=True)
class FrameSpec(GridShape):
    """The lengths of a grid bundle's frames (its manifest ``model.geometry``): H x W cells, D slots a day,
    the A1 history / horizon, the A2 window and the frame T."""

    height: int
    width: int
    slots_per_day: int
    history: int
    horizon: int
    window: int
    frame: int

    @classmethod
    def of(cls, d: dict[str, Any], where: str = "geometry") -> FrameSpec:
        try:
            spec = cls(**{f.name: int(d[f.name]) for f in fields(cls)})
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{where}: not a grid frame geometry ({e})") from None
        if (min(spec.height, spec.width, spec.slots_per_day, spec.horizon, spec.window) < 1
                or spec.history + spec.horizon + spec.slots_per_day - 1 > spec.frame
                or spec.window + spec.slots_per_day - 1 > spec.frame):
            raise InputError(f"{where}: a window at every time of day must fit the frame, got {spec}")
        return spec

    def to_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


def frame_offset(first_slot: np.ndarray | int, period: int) -> np.ndarray:
    """Frame position of an absolute slot: its time of day (slot mod D). The frame starts at the
    local midnight on or before the window's first slot, so frame position p is always time of day
    p mod D (the DiT's fixed positional embedding then carries the time of day)."""
    return np.asarray(first_slot, np.int64) % int(period)


def _frames(n: int, geom: Any) -> dict[str, np.ndarray]:
    x0 = np.zeros((n, 1, geom.frame, *geom.shape), np.float32)
    return {"x0": x0, "avail": np.zeros_like(x0), "target": np.zeros_like(x0)}


def forecast_frame(history: np.ndarray, starts: np.ndarray, geom: Any) -> dict[str, np.ndarray]:
    """A1 frames from (n, 2D, cells) standardized histories and their horizon starts (n,):
    x0 / avail / target (n, 1, T, H, W) plus ``offset`` (n,) = frame position of the first
    history slot. The horizon part of x0 is 0 (unknown); target marks it."""
    history = np.asarray(history, np.float32)
    n, L = history.shape[:2]
    off = frame_offset(np.asarray(starts, np.int64) - L, geom.period).reshape(-1)
    if off.shape != (n,):
        raise ValueError(f"{n} histories but {off.shape[0]} starts")
    fr = _frames(n, geom)
    for i, o in enumerate(off):
        fr["x0"][i, 0, o:o + L] = history[i].reshape(L, *geom.shape)
        fr["avail"][i, 0, o:o + L] = 1.0
        fr["target"][i, 0, o + L:o + L + geom.horizon] = 1.0
    return {**fr, "offset": off}


def impute_frame(values: np.ndarray, hidden: np.ndarray, starts: np.ndarray, geom: Any) -> dict[str, np.ndarray]:
    """A2 frames from (n, L<=2D, cells) values (any value at hidden entries, NaN allowed), (n, L,
    cells) hidden masks and the windows' first slots (n,): the window sits at frame positions
    [offset, offset + L) with offset = first slot mod D; everything else is zero, unavailable and
    not a target. x0 keeps the given values at hidden entries (ground truth in training, 0 at
    evaluation)."""
    values = np.asarray(values, np.float64)
    hidden = np.asarray(hidden, bool)
    n, L, _ = values.shape
    off = frame_offset(starts, geom.period).reshape(-1)
    if off.shape != (n,):
        raise ValueError(f"{n} windows but {off.shape[0]} starts")
    vals = np.nan_to_num(values, nan=0.0).reshape(n, L, *geom.shape)
    hid = hidden.reshape(n, L, *geom.shape)
    fr = _frames(n, geom)
    for i, o in enumerate(off):
        fr["x0"][i, 0, o:o + L] = vals[i]
        fr["avail"][i, 0, o:o + L] = ~hid[i]
        fr["target"][i, 0, o:o + L] = hid[i]
    return {**fr, "offset": off}


def read_frame(full: np.ndarray, first: np.ndarray, length: int) -> np.ndarray:
    """(n, length, cells): frame positions first[i] .. first[i] + length - 1 of (n, 1, T, H, W) frames."""
    idx = np.asarray(first, np.int64)[:, None] + np.arange(length)[None, :]              # (n, length)
    n = full.shape[0]
    return np.take_along_axis(full[:, 0], idx[:, :, None, None], axis=1).reshape(n, length, -1)
