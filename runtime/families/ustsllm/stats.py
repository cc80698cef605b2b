"""Grid statistics of U-STS-LLM, numpy only (shared by training, scoring and the on-device session).

A U-STS-LLM network reads a window of one grid on that grid's standardized scale (per-cell z-score
with its training period's mean and population std) plus two things fitted once on that training
period:

- the **time-of-day profile** (slots per day, cells): the per-cell mean of the standardized values by
  slot of day. It is fed to the network as a third input channel (``prior``) beside the values and the
  hidden flags, so the network corrects a historical average instead of starting from nothing;
- the **functional graph** A (cells, cells) of eqs. 8-9: the cosine similarity of the cells' mean daily
  profiles (the paper builds A "from the pairwise similarity of nodes' historical profiles"; cosine is
  the dot product of unit-length profiles, which keeps A in [-1, 1] on any grid).

:func:`fit_grid_stats` fits them from a raw (slots, cells) matrix; a Milan-trained network applied to
another grid (zero-shot) gets that grid's own statistics, never Milan's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from umask.runtime.core.errors import InputError

DAYS_PER_WEEK = 7


@dataclass(frozen=True)
class GridStats:
    """mean, std: (cells,) raw units; profile: (slots_per_day, cells) standardized; graph: (cells, cells)."""

    mean: np.ndarray
    std: np.ndarray
    profile: np.ndarray
    graph: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.mean.shape[0])

    @property
    def slots_per_day(self) -> int:
        return int(self.profile.shape[0])

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return (np.asarray(raw, np.float64) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, np.float64) * self.std + self.mean

    def to_dict(self) -> dict[str, list]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "profile": self.profile.tolist(),
                "graph": self.graph.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list], where: str = "stats") -> GridStats:
        try:
            s = cls(mean=np.asarray(d["mean"], np.float64), std=np.asarray(d["std"], np.float64),
                    profile=np.asarray(d["profile"], np.float64), graph=np.asarray(d["graph"], np.float64))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{where}: not a U-STS-LLM grid statistics object ({e})") from None
        n = s.mean.shape[0] if s.mean.ndim == 1 else -1
        if n < 1 or s.std.shape != (n,) or s.profile.ndim != 2 or s.profile.shape[1] != n or s.graph.shape != (n, n):
            raise InputError(f"{where}: inconsistent shapes mean {s.mean.shape}, std {s.std.shape}, profile "
                             f"{s.profile.shape}, graph {s.graph.shape}")
        if not (np.all(np.isfinite(s.std)) and np.all(s.std > 0)):
            raise InputError(f"{where}: std must be finite and > 0")
        return s


def functional_graph(profile: np.ndarray) -> np.ndarray:
    """Cosine similarity (cells, cells) of the columns of a (slots_per_day, cells) profile (eq. 8's A)."""
    p = np.asarray(profile, np.float64)
    p = p - p.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(p, axis=0)
    unit = p / np.where(norm > 0, norm, 1.0)
    return unit.T @ unit


def fit_grid_stats(values: np.ndarray, train_end: int, slots_per_day: int) -> GridStats:
    """Statistics of the raw (slots, cells) matrix ``values`` over slots 0..train_end-1 (row 0 = a midnight).

    The scaler is the protocol's (population std; a constant cell gets std 1), the profile the mean of the
    standardized training values by slot of day, the graph :func:`functional_graph` of that profile."""
    v = np.asarray(values, np.float64)
    if v.ndim != 2 or train_end < slots_per_day or train_end > v.shape[0]:
        raise InputError(f"values must be (slots, cells) with at least one training day, got {v.shape} and "
                         f"train_end {train_end}")
    train = v[:train_end]
    if not np.all(np.isfinite(train)):
        raise InputError("the training period holds NaN or inf")
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    z = (train - mean) / std
    phase = np.arange(train_end) % slots_per_day
    profile = np.stack([z[phase == k].mean(axis=0) for k in range(slots_per_day)])
    return GridStats(mean=mean, std=std, profile=profile, graph=functional_graph(profile))


def window_prior(profile: np.ndarray, first_slots: np.ndarray, length: int) -> np.ndarray:
    """(n, length, cells) profile values of the slots first_slots[i] .. first_slots[i] + length - 1."""
    first = np.asarray(first_slots, np.int64).reshape(-1)
    idx = (first[:, None] + np.arange(length)[None, :]) % profile.shape[0]
    return np.asarray(profile, np.float64)[idx]


def time_inputs(first_slots: np.ndarray, slots_per_day: int) -> tuple[np.ndarray, np.ndarray]:
    """(slot of day, day of week) int64 (n,) of each window's first slot (day 0 of the grid = weekday 0)."""
    first = np.asarray(first_slots, np.int64).reshape(-1)
    return first % slots_per_day, (first // slots_per_day) % DAYS_PER_WEEK


__all__ = ["GridStats", "fit_grid_stats", "functional_graph", "window_prior", "time_inputs", "DAYS_PER_WEEK"]
