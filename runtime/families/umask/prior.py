"""The deterministic prior of a prior U-MASK (UMaskConfig.prior = "blend" | "task_blend" | "horizon_blend" |
"smooth_blend" | "smooth_interp"), numpy.

The DiT of a prior model takes this prior as extra input channels and predicts prior + a learned
residual (train/models/umask/model.py "Prior"; the guidance-signal idea of the U-STS-LLM seed). It
lives in the runtime because the device must build it from the user's history exactly as training
and evaluation did (DESIGN rule 2: featurization exists once): train/models/umask/data.py, the
protocol-B harness and the on-device `Session` all call these functions.

* `history_tod_sums`: per slot of day sums of the user's history before a window;
* `blend_prior`: w x last available value + (1 - w) x slot-of-day mean of the evidence-eligible data,
  never reading a target; w = 0.5 for kind "blend" (PROTOCOL v2 B "blend"), or per task for
  "task_blend" (`TASK_PRIOR_WEIGHTS`, chosen on the validation day), "horizon_blend" (`PRIOR_SHARES`) and
  "smooth_blend" (`SMOOTH_PRIOR_WEIGHTS`, with the slot-of-day mean smoothed around the clock: `SMOOTH_MINUTES`);
  "smooth_interp" is "smooth_blend" whose imputation windows read the evidence on both sides of a gap: the last
  value becomes the linear interpolation between the available slots around it (`INTERP_PRIORS`);
* `task_prior`: the prior of one window of one task given the history's sums (cold start: no earlier
  days, the context counted with its unseen entries as zeros);
* `window_prior`: of a window of a `SparseBehaviorTensor` (training, the protocol-B harness);
* `history_prior`: of a runtime `Window` from the raw event history (the on-device `Session`);
* the other optional DiT inputs (UMaskConfig.dit_calendar / dit_epos / dit_hb): `slot_calendar`, and
  `dit_extra_inputs` / `dit_extra_feeds`, which the exporter and the Session use to name and build them.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from umask.runtime.core.catalog import Catalog
from umask.runtime.core.errors import InputError
from umask.runtime.core.events import EventLog
from umask.runtime.core.featurize import DAY_SECONDS, FeatureConfig, SparseBehaviorTensor, featurize_user
from umask.runtime.core.history import TASK_NAMES, Window

PRIORS = ("none", "blend", "task_blend", "horizon_blend", "smooth_blend", "smooth_interp")   # UMaskConfig.prior / WindowConfig.prior / model.umask.prior
COLD = TASK_NAMES.index("cold_start")

PRIOR_WEIGHT = 0.5                 # last value share of the blend (PROTOCOL v2 B "blend": 0.5 / 0.5)

# Last value share per task of the "task_blend" prior. Chosen on the VALIDATION day (day 6) of the 50 seed-0
# simulator users from the grid 0 / 0.1 / 0.2 / 0.3 / 0.5 / 0.7, lowest all-entry RMSE of all three channel
# groups (`python -m umask.bench.accuracy.user_blend_weights` -> benchmarks/results/blend_weights_val.json).
# Next-day forecasting (B2) and cold start (B3, whose slot-of-day mean is over the 2 context days only) want
# almost no last value: the end of the context says little about the next day at the same hour (0.5 -> 0.1 cuts
# the validation RMSE by 9 % on B2 and 13-15 % on B3); short-term and imputation windows want 0.3.
TASK_PRIOR_WEIGHTS: dict[str, float] = {"short_term": 0.3, "long_term": 0.1, "cold_start": 0.1, "imputation": 0.3}

# The slot-of-day mean of "smooth_blend" (v9) is a kernel estimate: sums and counts by slot of day are both
# convolved, around the clock, with a Gaussian of this width (its standard deviation), and divided
# (Nadaraya-Watson). Why: with 15-minute slots and a week of history each slot of day has five or six observations
# of a bursty signal, so the raw mean is mostly noise, while a user's expected activity follows routines whose times
# vary by an hour or more from day to day. Chosen on the VALIDATION day jointly with the shares below, from the grid
# 60 / 120 / 180 / 240 minutes (`python -m umask.bench.accuracy.user_blend_weights` -> blend_weights_val.json
# "smooth"): against the raw blend of the same share, the kernel cuts the validation RMSE by about 4 % on B1,
# 6 % on B2, 5 % on B3 and 4 % on B4; 120 to 240 minutes differ by under 0.5 %.
SMOOTH_MINUTES = 180.0
# Last value share per task of "smooth_blend", chosen on the validation day jointly with SMOOTH_MINUTES (same rule
# as TASK_PRIOR_WEIGHTS). With a smooth profile the next-day forecast wants no last value at all.
SMOOTH_PRIOR_WEIGHTS: dict[str, float] = {"short_term": 0.2, "long_term": 0.0, "cold_start": 0.1, "imputation": 0.3}
PRIOR_SMOOTH_MINUTES: dict[str, float] = {"blend": 0.0, "task_blend": 0.0, "horizon_blend": 0.0,
                                          "smooth_blend": SMOOTH_MINUTES, "smooth_interp": SMOOTH_MINUTES}

# "smooth_interp" (v11): on an imputation window the evidence lies on both sides of each gap, and a completion
# that only carries the last value forward throws the later side away. Linear interpolation between the available
# slots around t replaces the last value there (ends: the nearest available value, as the linear_interpolation
# row). Why: on B4 the kernel slot-of-day mean and the interpolation row make different errors; mixed half and
# half they beat every other B4 row by about 2-3 % RMSE (the share 0.5 was chosen on the VALIDATION day for the
# kernel mean in 8 of 9 seed x channel-group cases: `python -m umask.bench.accuracy.user_impute_mix` ->
# v2_user_impute_mix.json, meta.weights, row historical_average_smooth+interp). The other tasks have no evidence
# after their targets, so their prior is "smooth_blend"'s.
INTERP_PRIORS: frozenset[str] = frozenset({"smooth_interp"})
INTERP_SHARE = 0.5                 # the interpolation's share of the "smooth_interp" imputation prior

# Last value share per task of each weighted prior kind. "horizon_blend" (v7) keeps the 0.5 of "blend" where the
# target is within hours of the evidence (short term, imputation) and takes task_blend's 0.1 for the day-ahead
# tasks (long term, cold start). Why: as a DiT input a prior is judged by the network's error, not its own. v6
# (task_blend) against v4 (blend) on the validation day (scripts/umask_prior_val.py ->
# benchmarks/results/umask_prior_val.json), mean over the channel groups of RMSE(v6) / RMSE(v4): B1 1.005, B4 1.009
# (0.3 does not help the network: it reads the last value off its evidence itself), B2 0.986, B3 0.991 (0.1 helps,
# mostly on apps: -5 % / -7 % RMSE, and NDCG@3 on B3 +5 points).
PRIOR_SHARES: dict[str, dict[str, float]] = {
    "blend": {t: PRIOR_WEIGHT for t in TASK_NAMES},
    "task_blend": TASK_PRIOR_WEIGHTS,
    "horizon_blend": {"short_term": PRIOR_WEIGHT, "long_term": TASK_PRIOR_WEIGHTS["long_term"],
                      "cold_start": TASK_PRIOR_WEIGHTS["cold_start"], "imputation": PRIOR_WEIGHT},
    "smooth_blend": SMOOTH_PRIOR_WEIGHTS,
    "smooth_interp": {**SMOOTH_PRIOR_WEIGHTS, "imputation": INTERP_SHARE},
}
IMPUTE = TASK_NAMES.index("imputation")


def prior_weight(kind: str, task: int) -> float:
    """The last value share of prior ``kind`` for task id ``task`` (TASK_NAMES order)."""
    if kind not in PRIOR_SHARES:
        raise InputError(f"prior kind {kind!r:.40}: a weighted prior is one of {tuple(PRIOR_SHARES)}")
    return PRIOR_SHARES[kind][TASK_NAMES[int(task)]]


def minutes_to_slots(minutes: float, slots_per_day: int) -> float:
    """A kernel width in minutes as slots of a day cut into ``slots_per_day`` slots."""
    return float(minutes) * int(slots_per_day) / (DAY_SECONDS / 60.0)


def prior_smooth_slots(kind: str, slots_per_day: int) -> float:
    """Kernel width of prior ``kind``'s slot-of-day mean in slots (0: the raw mean)."""
    if kind not in PRIOR_SMOOTH_MINUTES:
        raise InputError(f"prior kind {kind!r:.40}: a weighted prior is one of {tuple(PRIOR_SMOOTH_MINUTES)}")
    return minutes_to_slots(PRIOR_SMOOTH_MINUTES[kind], slots_per_day)


def check_prior_note(kind: str, note: dict[str, Any] | None, where: str) -> None:
    """A bundle's recorded prior parameters (manifest ``parity_inputs.prior``: the last value share per task and
    the kernel width the exporter saw) must be the ones this runtime builds for ``kind``; otherwise the device
    would feed the network another prior than it was trained and gated with. InputError naming the field.
    Bundles without the note (or without ``smooth_minutes``, exported before the kernel prior) mean width 0."""
    if kind == "none" or not isinstance(note, dict):
        return
    if note.get("kind", kind) != kind:
        raise InputError(f"{where}: parity_inputs.prior.kind {note.get('kind')!r:.40} != model.umask.prior {kind!r:.40}")

    def number(field: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{where}: parity_inputs.prior.{field} must be a number, got {v!r:.40}")
        return float(v)

    shares = note.get("weight_last_value")
    if isinstance(shares, dict):
        for i, t in enumerate(TASK_NAMES):
            if t in shares and number(f"weight_last_value.{t}", shares[t]) != prior_weight(kind, i):
                raise InputError(f"{where}: parity_inputs.prior.weight_last_value.{t} = {shares[t]!r:.20}, but this "
                                 f"runtime's {kind!r} prior uses {prior_weight(kind, i)}: re-export the bundle with it")
    width = number("smooth_minutes", note.get("smooth_minutes", 0.0))
    if width != PRIOR_SMOOTH_MINUTES[kind]:
        raise InputError(f"{where}: parity_inputs.prior.smooth_minutes = {width:g}, but this runtime's {kind!r} prior "
                         f"smooths with {PRIOR_SMOOTH_MINUTES[kind]:g}: re-export the bundle with it")


@functools.lru_cache(maxsize=16)
def tod_kernel(slots_per_day: int, sigma_slots: float) -> np.ndarray:
    """(spd, spd) float64 circulant Gaussian smoother around the clock: ``K[s, s']`` ~ exp(-d(s, s')^2 / 2 sigma^2)
    with d the circular distance in slots, rows summing to 1 (unused by the ratio in `tod_mean`, but it keeps a
    smoothed profile on the data's scale). sigma 0: the identity. Cached (every window's prior asks for the same
    few kernels), so the array is read-only."""
    spd = int(slots_per_day)
    if sigma_slots <= 0:
        k = np.eye(spd)
    else:
        d = np.abs(np.arange(spd)[:, None] - np.arange(spd)[None, :])
        d = np.minimum(d, spd - d)
        k = np.exp(-0.5 * (d / float(sigma_slots)) ** 2)
        k = k / k.sum(axis=1, keepdims=True)
    k.setflags(write=False)
    return k


def smooth_tod(a: np.ndarray, sigma_slots: float, axis: int) -> np.ndarray:
    """``a`` smoothed along its slot-of-day ``axis`` by `tod_kernel` (float64; ``a`` itself when sigma is 0)."""
    if sigma_slots <= 0:
        return np.asarray(a, np.float64)
    a = np.moveaxis(np.asarray(a, np.float64), axis, 0)
    K = tod_kernel(a.shape[0], float(sigma_slots))
    return np.moveaxis(np.tensordot(K, a, axes=(1, 0)), 0, axis)


def tod_mean(sums: np.ndarray, counts: np.ndarray, smooth_slots: float, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean by slot of day, ``sums / counts``, with the slot-of-day axis at ``axis`` in both (``counts``
    broadcastable to ``sums``, size-1 axes elsewhere) -> (mean, the counts it divided by), float64. Raw
    (``smooth_slots`` 0): counts floored at 1. Kernel ("smooth_blend", the ``*_smooth`` baseline rows): sums and
    counts both smoothed around the clock first (`smooth_tod`, Nadaraya-Watson); a slot of day with no count
    within reach (<= 1e-9) gets count 0 and mean 0. The one rule the prior and the baselines share."""
    if smooth_slots <= 0:
        cnt = np.asarray(counts, np.float64)
        return sums / np.maximum(cnt, 1.0), cnt
    sums, cnt = smooth_tod(sums, smooth_slots, axis), smooth_tod(counts, smooth_slots, axis)
    cnt = np.where(cnt > 1e-9, cnt, 0.0)
    return sums / np.where(cnt > 0, cnt, 1.0), cnt


def history_tod_sums(tensor: SparseBehaviorTensor, t_end: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums by slot of day of every entry of slots ``[0, t_end)`` -> (sums (C, spd, H, W) float64,
    counts (spd,) int64 = how many of those slots fall on each slot of day). Every slot of the user's
    past is observed (an absent entry is an observed zero), so the count is per slot, not per entry."""
    spd = tensor.slots_per_day
    C, _, H, W = tensor.shape
    t_end = max(0, min(int(t_end), tensor.T))
    c, t, h, w, v = tensor.coords(0, t_end)
    flat = ((c * spd + t % spd) * H + h) * W + w
    sums = np.bincount(flat, weights=v.astype(np.float64), minlength=C * spd * H * W).reshape(C, spd, H, W)
    return sums, np.bincount(np.arange(t_end) % spd, minlength=spd).astype(np.int64)


def _tod_fold(v: np.ndarray, tod: np.ndarray, slots_per_day: int, axis: int) -> np.ndarray:
    """Sum ``v`` along ``axis`` (the window's T slots) into slot-of-day bins, float64: the window's slots of
    day run consecutively (``tod[t] = (start + t) % spd``), so each day is one contiguous slice added in
    place. (A one-hot einsum did the same in 20 ms per request on one core; this takes well under 1 ms.)"""
    v = np.moveaxis(np.asarray(v), axis, 0)
    out = np.zeros((slots_per_day, *v.shape[1:]), np.float64)
    t, T = 0, v.shape[0]
    while t < T:
        s0 = int(tod[t])
        n = min(slots_per_day - s0, T - t)
        out[s0:s0 + n] += v[t:t + n]
        t += n
    return np.moveaxis(out, 0, axis)


def blend_prior(x_win: np.ndarray, avail: np.ndarray, start: int, hist_sums: np.ndarray | None,
                hist_counts: np.ndarray | None, slots_per_day: int, weight: float = PRIOR_WEIGHT, *,
                counted: np.ndarray | None = None, smooth_slots: float = 0.0, interpolate: bool = False) -> np.ndarray:
    """The "blend" prior (C, T, H, W) float32 of one window, from evidence-eligible data only.

    ``x_win`` (C, T, H, W) the window (only ``x_win * avail`` is read: targets never enter),
    ``avail`` (1 | -, T, H, W) 0/1, ``start`` the absolute slot of window slot 0 (its slot of day is
    ``start % slots_per_day``), ``hist_sums`` / ``hist_counts`` from `history_tod_sums` over the
    user's slots before ``start`` (None: no history, the cold-start case). Per coordinate:

    * last value ``lv``: the value of the same (c, h, w) at the last available slot at or before t
      (for a target: strictly before, since a target is never available); before the first
      available slot the first one (backward fill, as ``last_value_impute``); 0 without any;
    * slot-of-day mean ``ha``: the mean of every eligible observation of (c, h, w) at t's slot of
      day: the history's slots plus the window's AVAILABLE slots (a forecasting context, the
      visible imputation entries, the visible cold-start slots). ``counted`` (T, H, W) bool widens
      the window's part to slots counted as observed ZEROS where not available (cold start: the
      whole context, as the harness's B3 blend, "cut slots as 0"); it never reads a value there;
    * ``smooth_slots`` > 0 ("smooth_blend"): sums and counts are both smoothed around the clock
      before the division (`tod_mean`), a kernel estimate of the slot-of-day mean;
    * ``interpolate`` ("smooth_interp" imputation windows): ``lv`` is the linear interpolation in time between
      the last available slot at or before t and the first one at or after it, where both exist (else the
      nearest one, as above);
    * prior = ``weight * lv + (1 - weight) * ha``, or ``lv`` alone where the slot of day has no
      eligible observation at all.
    """
    C, T, H, W = x_win.shape
    a = np.asarray(avail).reshape(T, H, W) > 0.5                          # (T, H, W)
    xe = np.where(a[None], x_win, 0.0).astype(np.float32)                 # (C, T, H, W) eligible values only
    ar = np.arange(T)[:, None, None]
    fwd = np.maximum.accumulate(np.where(a, ar, -1), axis=0)              # last avail slot <= t
    bwd = np.minimum.accumulate(np.where(a, ar, T)[::-1], axis=0)[::-1]   # first avail slot >= t
    idx = np.where(fwd >= 0, fwd, bwd)                                    # (T, H, W); T = none
    lv = np.take_along_axis(xe, np.broadcast_to(np.minimum(idx, T - 1)[None], xe.shape), axis=1)
    lv *= (idx < T)[None]
    if interpolate:                                                       # both sides of a gap: linear in time
        both = (fwd >= 0) & (bwd < T) & (bwd > fwd)                       # (T, H, W)
        nxt = np.take_along_axis(xe, np.broadcast_to(np.minimum(bwd, T - 1)[None], xe.shape), axis=1)
        frac = np.where(both, (ar - fwd) / np.maximum(bwd - fwd, 1), 0.0).astype(np.float32)
        lv = np.where(both[None], lv + frac[None] * (nxt - lv), lv)
    tod = (int(start) + np.arange(T)) % slots_per_day                     # (T,)
    seen = a if counted is None else (a | np.asarray(counted, bool).reshape(T, H, W))
    sums = _tod_fold(xe, tod, slots_per_day, axis=1)                      # (C, spd, H, W)
    cnt = _tod_fold(seen, tod, slots_per_day, axis=0)                     # (spd, H, W)
    if hist_sums is not None:
        sums = sums + hist_sums
        cnt = cnt + np.asarray(hist_counts, np.float64)[:, None, None]
    mean, used = tod_mean(sums, cnt[None], smooth_slots, 1)               # (C, spd, H, W), (1, spd, H, W)
    ha = mean[:, tod]                                                     # (C, T, H, W)
    has = (used[0] > 0)[tod]                                              # (T, H, W)
    return np.where(has[None], weight * lv + (1.0 - weight) * ha, lv).astype(np.float32)


def task_prior(x_win: np.ndarray, avail: np.ndarray, start: int, task: int, context: int,
               hist: tuple[np.ndarray, np.ndarray] | None, slots_per_day: int,
               weight: float = PRIOR_WEIGHT, smooth_slots: float = 0.0, interpolate: bool = False) -> np.ndarray:
    """`blend_prior` of one window of ``task`` given the history's ``(sums, counts)`` (`history_tod_sums`
    over the user's slots before the window; None: no history). Cold start ignores ``hist``: PROTOCOL B3's
    user has no earlier days, and the ``context`` slots count with their unseen entries as zeros (as the
    harness's B3 blend). ``interpolate`` applies to imputation windows only (`INTERP_PRIORS`)."""
    if int(task) == COLD:
        counted = np.zeros(np.asarray(avail).shape[-3:], bool)
        counted[:context] = True
        return blend_prior(x_win, avail, start, None, None, slots_per_day, weight, counted=counted,
                           smooth_slots=smooth_slots)
    hs, hc = (None, None) if hist is None else hist
    return blend_prior(x_win, avail, start, hs, hc, slots_per_day, weight, smooth_slots=smooth_slots,
                       interpolate=interpolate and int(task) == IMPUTE)


def window_prior(tensor: SparseBehaviorTensor, start: int, x_win: np.ndarray, avail: np.ndarray, task: int,
                 context: int, kind: str = "blend") -> np.ndarray:
    """`task_prior` of a window of ``tensor`` starting at slot ``start`` (slot 0 of ``tensor`` is a local
    midnight), with the user's history before ``start`` (training and the protocol-B harness); ``kind`` the
    model's prior (a key of `PRIOR_SHARES`: its last value share per task, `prior_weight`)."""
    hist = None if int(task) == COLD else history_tod_sums(tensor, start)
    spd = tensor.slots_per_day
    return task_prior(x_win, avail, start, task, context, hist, spd, prior_weight(kind, task),
                      prior_smooth_slots(kind, spd), kind in INTERP_PRIORS)


def history_prior(events: EventLog, catalog: Catalog, fcfg: FeatureConfig, w: Window, context: int,
                  kind: str = "blend") -> np.ndarray:
    """The prior (C, T, H, W) of a runtime `Window` built from the raw history (the device path).

    The history is featurized with the window's own layout from the local midnight of its first event
    up to the window start (every slot there is an observed slot, as the device's ``avail`` counts
    them: runtime/core/history.build_window) and summed by slot of day (`history_tod_sums`); then
    `task_prior` as in training. Slot of day: absolute slot ``window_start_ts // slot_seconds``
    modulo slots per day (local seconds, so a multiple of a day is a local midnight)."""
    ss = int(w.slot_seconds)
    spd = DAY_SECONDS // ss
    start = int(w.window_start_ts) // ss
    hist = None
    if w.task_id != COLD and len(events):
        day0 = int(np.min(events.ts)) // DAY_SECONDS * DAY_SECONDS
        n = (int(w.window_start_ts) - day0) // ss
        if n > 0:
            before = events.take(events.ts < w.window_start_ts)
            if len(before):
                tensor, _ = featurize_user(before, catalog, w.layout, fcfg, day0, n)
                hist = history_tod_sums(tensor, n)
            else:                                        # observed slots without any event: zeros
                C, _, H, W = w.x.shape
                hist = (np.zeros((C, spd, H, W)), np.bincount(np.arange(n) % spd, minlength=spd).astype(np.int64))
    return task_prior(w.x, w.avail, start, w.task_id, context, hist, spd, prior_weight(kind, w.task_id),
                      prior_smooth_slots(kind, spd), kind in INTERP_PRIORS)


# ------------------------------------------------------------------------------------------------
# The optional DiT inputs beyond the window (UMaskConfig.prior / dit_calendar / dit_epos / dit_hb)
# ------------------------------------------------------------------------------------------------
CAL_DIM = 5                        # sin / cos slot of day, sin / cos day of week, weekend flag
DIT_EXTRA_INPUTS = ("prior", "cal", "e_pos", "h_b")   # the exported DiT step's optional inputs, in this order


def slot_calendar(start_ts: int, slot_seconds: int, start: int, T: int) -> np.ndarray:
    """(T, CAL_DIM) float32 calendar of the window slots ``start .. start + T - 1`` of a tensor whose slot 0
    begins at local time ``start_ts`` (a local midnight): sin / cos of the slot of day, sin / cos of the
    weekday (Monday = 0), 1 on Saturday / Sunday. Calendar only: no data is read. (The device passes
    ``start_ts = 0`` and the window's absolute slot.)"""
    spd = DAY_SECONDS // int(slot_seconds)
    slots = int(start) + np.arange(int(T))
    tod = 2.0 * np.pi * (slots % spd) / spd
    day = int(start_ts) // DAY_SECONDS + slots // spd                     # days since 1970-01-01 (a Thursday)
    dow = (day + 3) % 7                                                   # Monday = 0
    ang = 2.0 * np.pi * dow / 7.0
    return np.stack([np.sin(tod), np.cos(tod), np.sin(ang), np.cos(ang), (dow >= 5).astype(np.float64)],
                    axis=1).astype(np.float32)


def dit_extra_inputs(umask_cfg: dict[str, Any] | None) -> tuple[str, ...]:
    """The optional DiT inputs of a model from its ``model.umask`` config (manifest): a subset of
    `DIT_EXTRA_INPUTS`. InputError for an unknown prior kind."""
    cfg = umask_cfg or {}
    kind = str(cfg.get("prior", "none"))
    if kind not in PRIORS:
        raise InputError(f"model.umask.prior {kind!r:.40}: this runtime builds {PRIORS}")
    on = {"prior": kind != "none", "cal": bool(cfg.get("dit_calendar")), "e_pos": bool(cfg.get("dit_epos")),
          "h_b": bool(cfg.get("dit_hb"))}
    return tuple(n for n in DIT_EXTRA_INPUTS if on[n])


def dit_extra_feeds(names: tuple[str, ...], w: Window, prior: np.ndarray | None, h_b: np.ndarray | None,
                    x_scale: np.ndarray) -> dict[str, np.ndarray]:
    """The DiT step's optional feeds for one window (batch 1): ``prior`` in model space (x ``x_scale``),
    ``cal`` (1, T, CAL_DIM), ``e_pos`` (1, H, W, P) as the mask generator gets it, ``h_b`` (1, d) from it."""
    out: dict[str, np.ndarray] = {}
    if "prior" in names:
        out["prior"] = (np.asarray(prior, np.float32)[None] * x_scale).astype(np.float32)
    if "cal" in names:
        out["cal"] = slot_calendar(0, w.slot_seconds, int(w.window_start_ts) // int(w.slot_seconds), w.x.shape[1])[None]
    if "e_pos" in names:
        out["e_pos"] = np.asarray(w.e_pos, np.float32)[None]
    if "h_b" in names:
        if h_b is None:
            raise InputError("this model's DiT takes h_b: the mask generator gave none")
        out["h_b"] = np.asarray(h_b, np.float32).reshape(1, -1)
    return out


__all__ = ["PRIORS", "PRIOR_WEIGHT", "TASK_PRIOR_WEIGHTS", "PRIOR_SHARES", "prior_weight", "SMOOTH_MINUTES",
           "SMOOTH_PRIOR_WEIGHTS", "PRIOR_SMOOTH_MINUTES", "minutes_to_slots", "prior_smooth_slots", "check_prior_note",
           "tod_kernel", "smooth_tod", "tod_mean", "history_tod_sums", "blend_prior", "task_prior", "window_prior", "history_prior",
           "CAL_DIM", "DIT_EXTRA_INPUTS", "slot_calendar", "dit_extra_inputs", "dit_extra_feeds"]
