"""Grid statistics of U-STS-LLM, numpy only (shared by training, scoring and the on-device session).

A U-STS-LLM network reads a window of one grid on that grid's standardized scale (per-cell z-score
with its training period's mean and population std, floored: ``runtime/core/gridscale.py``, the scaler
every grid model of the house trains on) plus things fitted once on that training period:

- the **day-type slot-of-day profiles** (slots per day, cells), one of the weekdays and one of the
  weekend days: the per-cell mean of the standardized training days by slot of day
  (``gridscale.day_type_profiles``, the same profiles as the U-MASK grid prior,
  train/models/umask/grid_prior.py). The profile of each slot's day type is fed to the network as a
  third input channel (``prior``) and is the base of the eq. 7 guidance signal;
- the **functional graph** A (cells, cells) of eqs. 8-9: the cosine similarity of the cells' mean daily
  profiles (the paper builds A "from the pairwise similarity of nodes' historical profiles"; cosine is
  the dot product of unit-length profiles, which keeps A in [-1, 1] on any grid);
- ``first_weekday``: the weekday (Monday = 0) of the grid's slot 0 (Milan: Friday = 4), so that
  ``time_inputs`` gives the true weekday and day type to eq. 2.

:func:`fit_grid_stats` fits them from a raw (slots, cells) matrix; a Milan-trained network applied to
another grid (zero-shot) gets that grid's own statistics, never Milan's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from umask.runtime.core import gridimpute, gridscale
from umask.runtime.core.errors import InputError

DAYS_PER_WEEK = 7
# USTSConfig.guide_prior values (train/models/ustsllm/model.py); those whose impute task reads a completion of the
# window as its prior channel (the lowrank_interpolation row, or for "lowrank_profile" the
# profile_lowrank_interpolation row, runtime/core/gridimpute.py); and those whose eq. 7 imputation guidance starts
# from that channel (the others start from the linear interpolation)
GUIDE_PRIORS: tuple[str, ...] = ("grid_prior", "lowrank", "lowrank_input", "lowrank_profile")
LOWRANK_PRIOR_CHANNEL: tuple[str, ...] = ("lowrank", "lowrank_input", "lowrank_profile")
PRIOR_IS_GUIDE_BASE: tuple[str, ...] = ("lowrank", "lowrank_profile")
# the A2 rows a bundle's per-cell gate may blend the network with (export --a2-gate; the session computes them with
# prior_channel(stats, "impute", ..., name), so each name is also a guide_prior whose impute channel is that row)
A2_GATE_OTHERS: tuple[str, ...] = ("lowrank", "lowrank_profile")


@dataclass(frozen=True)
class GridStats:
    """mean, std: (cells,) raw units; profile / profile_weekend: (slots_per_day, cells) standardized, of the
    weekdays / the weekend days; graph: (cells, cells); first_weekday: weekday of slot 0 (Monday = 0)."""

    mean: np.ndarray
    std: np.ndarray
    profile: np.ndarray
    profile_weekend: np.ndarray
    graph: np.ndarray
    first_weekday: int = 0

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
                "profile_weekend": self.profile_weekend.tolist(), "graph": self.graph.tolist(),
                "first_weekday": int(self.first_weekday)}

    @classmethod
    def from_dict(cls, d: dict[str, list], where: str = "stats") -> GridStats:
        try:
            s = cls(mean=np.asarray(d["mean"], np.float64), std=np.asarray(d["std"], np.float64),
                    profile=np.asarray(d["profile"], np.float64),
                    profile_weekend=np.asarray(d["profile_weekend"], np.float64),
                    graph=np.asarray(d["graph"], np.float64), first_weekday=int(d["first_weekday"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{where}: not a U-STS-LLM grid statistics object ({e})") from None
        n = s.mean.shape[0] if s.mean.ndim == 1 else -1
        if (n < 1 or s.std.shape != (n,) or s.profile.ndim != 2 or s.profile.shape[1] != n
                or s.profile_weekend.shape != s.profile.shape or s.graph.shape != (n, n)
                or not 0 <= s.first_weekday <= 6):
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


def fit_grid_stats(values: np.ndarray, train_end: int, slots_per_day: int, first_weekday: int = 0,
                   profile_decay: float = 1.0, profile_statistic: str = "mean") -> GridStats:
    """Statistics of the raw (slots, cells) matrix ``values`` over slots 0..train_end-1 (row 0 = a midnight of
    weekday ``first_weekday``, Monday = 0).

    The scaler is the house's floored per-cell scaler (``gridscale.fit_cell_scaler``), the profiles the
    weekday / weekend slot-of-day means of the standardized training days (``gridscale.day_type_profiles``),
    the graph :func:`functional_graph` of the two profiles stacked (one day of each type). ``profile_decay``:
    training day d of n weighs ``profile_decay ** (n - 1 - d)`` in the profiles (1 = the plain mean; the grid
    prior's validation sweep chose 0.875 on Milan); ``profile_statistic`` "median": the per-slot median of the days
    instead (``gridscale.day_type_profiles``; decay must then be 1)."""
    v = np.asarray(values, np.float64)
    if v.ndim != 2 or train_end < slots_per_day or train_end > v.shape[0]:
        raise InputError(f"values must be (slots, cells) with at least one training day, got {v.shape} and "
                         f"train_end {train_end}")
    mean, std = gridscale.fit_cell_scaler(v, train_end, floor=True)
    z = (v[:train_end] - mean) / std
    wk, we = gridscale.day_type_profiles(z, train_end, slots_per_day, first_weekday, profile_decay,
                                         statistic=profile_statistic)
    return GridStats(mean=mean, std=std, profile=wk, profile_weekend=we,
                     graph=functional_graph(np.concatenate([wk, we])), first_weekday=int(first_weekday))


def window_prior(stats: GridStats, first_slots: np.ndarray, length: int) -> np.ndarray:
    """(n, length, cells): the day-type profile (weekday or weekend) of the slots first_slots[i] ..
    first_slots[i] + length - 1."""
    first = np.asarray(first_slots, np.int64).reshape(-1)
    slots = first[:, None] + np.arange(length)[None, :]                                 # (n, length)
    tod = slots % stats.slots_per_day
    weekend = gridscale.weekday(slots, stats.slots_per_day, stats.first_weekday) >= 5
    return np.where(weekend[..., None], stats.profile_weekend[tod], stats.profile[tod])


def impute_prior(x: np.ndarray, hidden: np.ndarray, profile: np.ndarray | None = None) -> np.ndarray:
    """(n, T, cells) the impute task's prior channel of a ``guide_prior="lowrank"`` network: each window's
    lowrank_interpolation (runtime/core/gridimpute.py) on the standardized scale; ``x`` (n, T, cells) with
    anything at the ``hidden`` (bool) entries. With ``profile`` (the windows' day-type profile, ``window_prior``;
    ``guide_prior="lowrank_profile"``): ``gridimpute.profile_lowrank_impute``, the completion of the window blended
    with the completion of its deviation from the profile."""
    x, hidden = np.asarray(x, np.float64), np.asarray(hidden, bool)
    if profile is not None:
        return gridimpute.profile_lowrank_impute(x, hidden, profile)
    return gridimpute.lowrank_interpolation_impute(x, hidden)


def prior_channel(stats: GridStats, task: str, x: np.ndarray, hidden: np.ndarray, first_slots: np.ndarray,
                  guide_prior: str = "grid_prior") -> np.ndarray:
    """(n, T, cells) the network's ``prior`` input for ``task`` ("forecast" / "impute"): the day-type profile
    (`window_prior`), or for the impute task of a network whose ``guide_prior`` is in LOWRANK_PRIOR_CHANNEL the
    window's `impute_prior`. Training, the scorer and the session all call this."""
    if guide_prior not in GUIDE_PRIORS:
        raise InputError(f"guide_prior {guide_prior!r:.40} is not one of {GUIDE_PRIORS}")
    if task == "impute" and guide_prior in LOWRANK_PRIOR_CHANNEL:
        profile = window_prior(stats, first_slots, np.shape(x)[1]) if guide_prior == "lowrank_profile" else None
        return impute_prior(x, hidden, profile)
    return window_prior(stats, first_slots, np.shape(x)[1])


def time_inputs(first_slots: np.ndarray, stats: GridStats) -> tuple[np.ndarray, np.ndarray]:
    """(slot of day, weekday (Monday = 0)) int64 (n,) of each window's first slot, for eq. 2."""
    first = np.asarray(first_slots, np.int64).reshape(-1)
    return first % stats.slots_per_day, gridscale.weekday(first, stats.slots_per_day, stats.first_weekday)


__all__ = ["GridStats", "fit_grid_stats", "functional_graph", "window_prior", "impute_prior", "prior_channel",
           "time_inputs", "DAYS_PER_WEEK", "GUIDE_PRIORS", "LOWRANK_PRIOR_CHANNEL", "PRIOR_IS_GUIDE_BASE", "A2_GATE_OTHERS"]
