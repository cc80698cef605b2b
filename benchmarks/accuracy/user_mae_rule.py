"""A median point estimator for sparse behavior channels: the mean estimate with small values set to 0.

    python -m umask.bench.accuracy.user_umask_v2 --ckpt checkpoints/umask_small --mae-rule ...   (the user)

Why. All-entry MAE is minimised by the per-entry conditional median. Most entries of a user's
behavior tensor are exactly 0 (no app record, not at that place, no traffic), so wherever the chance
of any activity is below one half the median is 0, and elsewhere it is about the typical active
value. A conditional-mean estimate (U-MASK's x0, the blend, LightGBM) is small but positive on most
of those entries, which is why the all-zero forecast won every MAE row. The median of a few DDIM
samples (the earlier estimator) is too noisy to reach exact zeros.

The rule. Per channel group g (traffic, apps, location): ``m = 0`` where ``mean <= tau_g``, else the
mean itself or a fixed active level ``L_g`` (the median of a zero-inflated variable is the median of
its active part once activity is likely; location is 0/1 presence, so its active median is 1). tau_g
and L_g come from fixed grids (:data:`TAUS`, 0 = the mean itself, inf = all-zero; :data:`LEVELS`, None
= keep the mean), chosen per task on the VALIDATION day (day 6) of the same users, then frozen and
applied to the test day. A monotone threshold on the mean is the simplest decision rule with the
median's shape for a zero-inflated variable: the mean rises with the chance of activity. Every v2 baseline with a mean-type forecast gets the same rule with
its own tau (``<baseline>@mae`` rows), so the comparison stays fair.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from umask.bench.accuracy import user as ue
from umask.bench.accuracy.user_scoring import _group_slices
from umask.runtime.core.featurize import ChannelLayout

Predictor = Callable[[Any], np.ndarray]

TAUS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6,
                           0.65, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, math.inf)
LEVELS: tuple[float | None, ...] = (None, 0.25, 0.5, 0.75, 1.0)
SUFFIX = "@mae"
NOTE = ("point estimator (MAE): the mean estimate with entries <= tau_g set to 0 and the others kept or set to a "
        "level L_g; tau, L per task and channel group chosen on the validation day (day 6) of the same users ({taus})")


# ------------------------------------------------------------------------------------------------
# The rule
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZeroRule:
    """Per channel group: entries whose mean estimate is <= taus[g] become 0, the others keep the
    mean or, where ``levels[g]`` is set, become that level."""

    taus: Mapping[str, float]
    levels: Mapping[str, float | None] | None = None

    def apply(self, pred: np.ndarray, channels: ChannelLayout) -> np.ndarray:
        """(n, C, T, H, W) mean estimate -> the same shape with the rule applied (a new array)."""
        out = np.array(pred, dtype=np.float32, copy=True)
        for g, sl in _group_slices(channels).items():
            out[:, sl] = _rule(out[:, sl], self.taus.get(g, 0.0), (self.levels or {}).get(g))
        return out

    def describe(self) -> dict[str, dict[str, float | str | None]]:
        return {g: {"tau": "inf" if math.isinf(t) else float(t), "level": (self.levels or {}).get(g)}
                for g, t in self.taus.items()}


def _rule(p: np.ndarray, tau: float, level: float | None) -> np.ndarray:
    if tau <= 0 and level is None:
        return p
    on = p > tau
    return np.where(on, p if level is None else np.asarray(level, p.dtype), np.zeros((), p.dtype))


# ------------------------------------------------------------------------------------------------
# Calibration on the validation day
# ------------------------------------------------------------------------------------------------
class _Sums:
    """Absolute-error sums per (model, task, group) and (tau, level) candidate over the eval entries."""

    def __init__(self, taus: Sequence[float], levels: Sequence[float | None]) -> None:
        self.cands = [(t, lv) for t in taus for lv in levels if not (math.isinf(t) and lv is not None)]
        self.sae: dict[tuple[str, str, str], np.ndarray] = defaultdict(lambda: np.zeros(len(self.cands)))
        self.n: dict[tuple[str, str, str], float] = defaultdict(float)

    def add(self, model: str, task: str, pred: np.ndarray, truth: np.ndarray, eval_mask: np.ndarray,
            channels: ChannelLayout) -> None:
        for g, sl in _group_slices(channels).items():
            y = np.asarray(truth[:, sl], np.float64)
            m = np.broadcast_to(eval_mask, y.shape)
            p, yv = np.asarray(pred[:, sl], np.float64)[m], y[m]
            key = (model, task, g)
            self.n[key] += p.size
            for k, (tau, level) in enumerate(self.cands):
                self.sae[key][k] += np.abs(_rule(p, tau, level) - yv).sum()

    def rules(self) -> dict[str, dict[str, ZeroRule]]:
        """model -> task -> the rule with the lowest validation MAE per group (ties: the first
        candidate, i.e. the smaller tau, the mean before a level)."""
        best: dict[str, dict[str, dict[str, tuple[float, float | None]]]] = defaultdict(lambda: defaultdict(dict))
        for (model, task, g), sae in self.sae.items():
            best[model][task][g] = self.cands[int(np.argmin(sae))]
        return {m: {t: ZeroRule({g: c[0] for g, c in gs.items()}, {g: c[1] for g, c in gs.items()})
                    for t, gs in ts.items()} for m, ts in best.items()}

    def table(self) -> dict[str, dict[str, dict[str, list[float]]]]:
        """model -> task -> group -> validation MAE per candidate (for the result file)."""
        out: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(dict))
        for (model, task, g), sae in self.sae.items():
            out[model][task][g] = [round(float(v) / max(self.n[(model, task, g)], 1.0), 6) for v in sae]
        return {m: dict(ts) for m, ts in out.items()}


def calibrate(pop: ue.UserPopulation, models: Mapping[str, Predictor], tasks: Sequence[str], *,
              windows: Mapping[str, Collection[int]] | None = None, split: str = "val",
              taus: Sequence[float] = TAUS, levels: Sequence[float | None] = LEVELS, batch_size: int = 32
              ) -> tuple[dict[str, dict[str, ZeroRule]], dict[str, Any]]:
    """Choose each model's rule per task on ``split`` (default the validation day).

    Returns (model -> task -> ZeroRule, a JSON record: the candidates and the validation MAE of each)."""
    sums = _Sums(taus, levels)
    for task in tasks:
        declined: set[str] = set()             # a model that does not do a task (NotImplementedError) gets no rule
        for batch in ue.iter_batches(pop, task, split, batch_size, windows=windows):
            view = batch.model_view()
            for name, fn in models.items():
                if name in declined:
                    continue
                try:
                    pred = np.asarray(fn(view))
                except NotImplementedError:
                    declined.add(name)
                    continue
                sums.add(name, task, pred, batch.truth, batch.eval_mask, batch.channels)
    rules = sums.rules()
    record = {"split": split, "candidates_tau_level": [["inf" if math.isinf(t) else t, lv] for t, lv in sums.cands],
              "val_mae_per_tau": sums.table(),
              "chosen": {m: {t: r.describe() for t, r in ts.items()} for m, ts in rules.items()}}
    return rules, record


# ------------------------------------------------------------------------------------------------
# Predictors with the rule
# ------------------------------------------------------------------------------------------------
class LastCall:
    """Memoize a predictor's output for the view it saw last, so the mean row and its ``@mae`` row
    share one network evaluation (the harness calls every model on a view before the next)."""

    def __init__(self, fn: Predictor) -> None:
        self.fn = fn
        self._view: Any = None
        self._out: np.ndarray | None = None

    def __call__(self, view: Any) -> np.ndarray:
        if view is not self._view:
            self._out, self._view = self.fn(view), view
        assert self._out is not None
        return self._out

    def __getattr__(self, name: str) -> Any:        # attach_population, info, ... of the wrapped predictor
        return getattr(self.fn, name)


def ruled(fn: Predictor, rules: Mapping[str, ZeroRule]) -> Predictor:
    """``fn`` with its task's rule applied; tasks without a rule are skipped (NotImplementedError)."""
    def call(view: Any) -> np.ndarray:
        rule = rules.get(view.task)
        if rule is None:
            raise NotImplementedError(f"no calibrated MAE rule for task {view.task}")
        return rule.apply(fn(view), view.channels)
    return call
