"""The grid prior of a training run (issue 10, PROTOCOL A): the runtime's numpy prior plus the run's settings.

The prior itself (weekday / weekend slot-of-day profiles, the A1 level term, the A2 interpolation or
lowrank_interpolation, the calendar features; why each constant) lives in
runtime/families/umask/grid_prior.py, so that training, the scorers and the torch-free grid session
build it from one implementation. This module re-exports it and adds :func:`prior_of`, which reads a
run's ``config.json["train"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from umask.runtime.families.umask.grid_prior import (A2_PRIORS, CALENDAR_DIM, DAYS_PER_FRAME, LEVEL_SLOTS_OF_DAY,
                                                     LEVEL_WEIGHT, MILAN_FIRST_WEEKDAY, GridPrior, calendar,
                                                     weekday)

__all__ = ["A2_PRIORS", "CALENDAR_DIM", "DAYS_PER_FRAME", "LEVEL_SLOTS_OF_DAY", "LEVEL_WEIGHT", "MILAN_FIRST_WEEKDAY",
           "GridPrior", "calendar", "first_weekday_of_run", "prior_of", "profile_decay_of_run", "weekday"]


def first_weekday_of_run(train_cfg: Mapping[str, Any], source: str = "milan") -> int:
    """The weekday (Monday = 0) of slot 0 a run was trained with: ``first_weekday`` of its settings, else
    Milan's (Friday) for the shipped sample and Monday for any other grid."""
    fw = train_cfg.get("first_weekday")
    if fw is None:
        fw = MILAN_FIRST_WEEKDAY if source == "milan" else 0
    return int(fw)


def profile_decay_of_run(train_cfg: Mapping[str, Any]) -> float:
    """The ``profile_decay`` a grid run's profiles were fit with: its setting, else 1 (the plain mean of every run
    saved before the setting)."""
    return float(train_cfg.get("profile_decay", 1.0))


def prior_of(train_cfg: Mapping[str, Any], z: np.ndarray, train_end: int, slots_per_day: int,
             source: str = "milan") -> GridPrior | None:
    """The :class:`GridPrior` a grid run's settings (``config.json["train"]`` or the config as a
    dict) ask for, fit on ``z``'s training period; None for ``prior="none"`` (also runs saved before
    the option). ``profile_decay`` absent (runs saved before it): 1, the plain mean they trained on."""
    if train_cfg.get("prior", "none") == "none":
        return None
    return GridPrior.fit(z, train_end, slots_per_day, first_weekday_of_run(train_cfg, source),
                         a2=str(train_cfg.get("a2_prior", "interpolation")),
                         profile_decay=profile_decay_of_run(train_cfg))
