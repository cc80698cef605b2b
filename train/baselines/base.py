"""The baseline interface: `Predictor` (fit / forecast / impute on series) and the `BASELINES` registry.

Every baseline of the house -- the classical ones (:mod:`umask.train.baselines.classical`), the
learned peers (ARIMA, PatchTST, CSDI) and the PROTOCOL v2 B gradient-boosted global model
(:mod:`umask.train.baselines.lightgbm_global`) -- is a `Predictor` on the same array conventions:

* a *series matrix* is ``(T, N)``: T time slots, N univariate series (the 25 Milan cells, the
  (c, h, w) coordinates of a per-user tensor, or a whole population's series side by side);
* windows are stacked: ``history`` ``(n, L, N)``, NaN = not observed;
* ``starts`` ``(n,)`` are absolute slot indices (time of day = ``slot % period``, slot 0 = a local
  midnight; weekday = ``(slot // period + weekday0) % 7``) -- of the first *horizon* slot for
  `Predictor.forecast`, of the window's first slot for `Predictor.impute`;
* the values are on whatever scale the harness uses (standardized for Milan, featurized for the
  per-user tensors); a predictor never rescales the output.

The harnesses (``benchmarks/accuracy/grid_peers.py``, ``benchmarks/accuracy/user.py`` and
``user_peers.py``) adapt their windows to these calls; nothing here imports a harness.

    from umask.train.baselines import base
    model = base.get("lightgbm")(period=144).fit(train)          # train (T, N)
    y = model.forecast(history, horizon=6, starts=starts)         # (n, 6, N)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, TypeVar

import numpy as np
from umask.runtime.core.errors import InputError

__all__ = ["BASELINES", "Predictor", "get", "names", "register"]

BASELINES: dict[str, type[Predictor]] = {}
"""name -> Predictor class; filled by `register` when the defining module is imported (see `get`)."""

# modules that define registered baselines, imported lazily by `get` (torch / statsmodels / lightgbm
# are only imported when that baseline is asked for)
_MODULES: dict[str, str] = {
    "all_zero": "classical", "last_value": "classical", "seasonal_naive": "classical",
    "historical_average": "classical", "linear_interpolation": "classical", "nearest_observed": "classical",
    "blend": "classical", "lowrank_interpolation": "classical", "profile_lowrank_interpolation": "classical",
    "arima": "arima", "patchtst": "patchtst",
    "csdi": "csdi", "lightgbm": "lightgbm_global",
    "dlinear": "grid_nets", "lstm": "grid_nets", "gpt4ts": "grid_nets", "brits": "grid_nets",
    "convlstm": "grid_nets_extra", "timesnet": "grid_nets_extra", "saits": "grid_nets_extra",
}

P = TypeVar("P", bound="type[Predictor]")


def register(cls: P) -> P:
    """Class decorator: ``BASELINES[cls.name] = cls`` (names are unique)."""
    if not cls.name:
        raise InputError(f"{cls.__qualname__} has no name")
    old = BASELINES.get(cls.name)
    if old is not None and old is not cls and old.__qualname__ != cls.__qualname__:
        raise InputError(f"baseline name {cls.name!r} is taken by {old.__qualname__}")
    BASELINES[cls.name] = cls
    return cls


def names() -> list[str]:
    """Every registered baseline name (sorted)."""
    return sorted(_MODULES)


def get(name: str) -> type[Predictor]:
    """The Predictor class registered as ``name`` (imports its module on first use)."""
    if name not in BASELINES:
        mod = _MODULES.get(name)
        if mod is None:
            raise InputError(f"unknown baseline {name!r}; known: {names()}")
        import importlib

        importlib.import_module(f"umask.train.baselines.{mod}")
    return BASELINES[name]


def as_windows(x: np.ndarray, name: str, n_series: int | None = None) -> np.ndarray:
    """Check a stack of windows ``(n, L, N)`` and return it as float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise InputError(f"{name} must be (n, L, N), got shape {x.shape}")
    if n_series is not None and x.shape[2] != n_series:
        raise InputError(f"{name} has {x.shape[2]} series, the model was fitted on {n_series}")
    return x


def as_starts(starts: np.ndarray | None, n: int, name: str = "starts") -> np.ndarray:
    """``(n,)`` int64 absolute slots; None -> zeros (time of day unknown: slot 0)."""
    if starts is None:
        return np.zeros(n, np.int64)
    s = np.asarray(starts, dtype=np.int64).reshape(-1)
    if s.shape[0] != n:
        raise InputError(f"{name} has {s.shape[0]} entries for {n} windows")
    return s


def check_horizon(horizon: int) -> int:
    if int(horizon) < 1:
        raise InputError(f"horizon must be >= 1, got {horizon}")
    return int(horizon)


class Predictor(ABC):
    """A baseline on series (see the module docstring for the array conventions).

    ``name``: the registry key; ``stochastic``: draws samples (results depend on a seed, rows report
    seeds and samples); ``forecasts`` / ``imputes``: which tasks it supports (an unsupported call
    raises ``NotImplementedError``, which the harnesses read as "no row for that task").
    ``period``: slots per day (144 for 10-minute Milan slots, 96 for 15-minute per-user slots).
    """

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    forecasts: ClassVar[bool] = True
    imputes: ClassVar[bool] = False

    def __init__(self, *, period: int = 144) -> None:
        if int(period) < 1:
            raise InputError(f"period must be >= 1, got {period}")
        self.period = int(period)
        self.n_series: int | None = None

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> Predictor:
        """Fit on the training period ``train`` (T, N) only (``first_slot``: absolute slot of row 0;
        ``val``: an optional validation segment for early stopping). Returns self."""
        train = np.asarray(train, dtype=np.float64)
        if train.ndim != 2 or train.shape[0] < 1:
            raise InputError(f"train must be a non-empty (T, N) matrix, got shape {train.shape}")
        self.n_series = int(train.shape[1])
        return self

    @abstractmethod
    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        """history (n, L, N), NaN = missing -> (n, horizon, N); ``starts``: first horizon slot."""

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        """values (n, T, N), mask (n, T, N) bool True = hidden (hidden values are never read) ->
        (n, T, N) with the observed entries unchanged; ``starts``: each window's first slot."""
        raise NotImplementedError(f"{self.name} is a forecasting baseline (no imputation)")

    def info(self) -> dict[str, object]:
        """What a result row records about the model (name, stochastic, period, ...)."""
        return {"name": self.name, "stochastic": self.stochastic, "period": self.period}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, period={self.period})"
