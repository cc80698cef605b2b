"""docs/PROTOCOL.md section B: per-user splits and task windows on a `SparseBehaviorTensor` (numpy only).

Split per user by whole local days of the tensor: test = the last day, validation = the day
before, train = all earlier days. A window belongs to the split that contains its *target*; its
context may reach back into earlier splits (as in PROTOCOL A1). Windows whose context would start
before slot 0 are not produced. All ranges are half-open slot ranges [t0, t1) of the tensor.

* B1 short-term: context = 192 slots (2 days at 15 min) before the target start s, target = [s, s+4).
  One window per target start s = day start, day start + stride, ... (default stride 4 slots).
* B2 long-term: context = 192 slots, target = the whole split day (96 slots); one window per day.
* B3 cold-start, v1 cut (`cold_start_windows`, the committed v1 figures): target = a split day; the
  history is the context window [day start - 192, day start) cut to its most recent <= 20 *active*
  slots (slots with any event); the other slots of the context are treated as unobserved. Ground
  truth: categories and layout cells ranked by engagement (number of records) in the target day.
* B3 cold-start, PROTOCOL v2 cut (`cross_domain_windows`, paper section 7.1.2): target = a split
  day; the user's history is the previous 20 slots [day start - 20, day start) of ONE source
  domain ("app": records per app category and slot, summed over places, so the history says
  nothing about where; "location": presence per layout cell and slot, nothing about apps; every
  one of the 20 slots counts, active or not). The target is the OTHER domain over the next 24 h:
  app categories ranked by records, or layout cells ranked by slots present
  (`CrossDomainWindow.target_engagement`).
* B4 completion: 192-slot windows whose last slot lies in the split (default: one per split day,
  ending at the day's end). (t, h, w) coordinates are hidden exactly as in PROTOCOL A2:
  ``rng = np.random.default_rng(1000 + index)``, ``p = rng.uniform(0.7, 0.8)``,
  ``mask = rng.random((192, H, W)) < p`` (True = hidden), ``index`` = the window's position in the
  split's list. Metrics are taken over the hidden coordinates (all channels at a hidden coordinate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from umask.runtime.core.errors import InputError
from umask.runtime.core.featurize import SparseBehaviorTensor, decode_app_counts

SPLITS = ("train", "val", "test")
CONTEXT_SLOTS = 192      # 2 days of 15-minute slots
SHORT_HORIZON = 4        # 1 hour
MAX_ACTIVE_SLOTS = 20    # cold-start history cut (v1)
B3_HISTORY = 20          # PROTOCOL v2 B3: the previous 20 slots of one source domain
B3_SOURCES = ("app", "location")   # source domain; the target domain is the other one
MASK_SEED_BASE = 1000


# -----------------------------------------------------------------------------
# Splits
# -----------------------------------------------------------------------------

@dataclass(frozen=True)
class DaySplit:
    name: str
    t0: int     # first slot of the split
    t1: int     # one past the last slot

    @property
    def n_slots(self) -> int:
        return self.t1 - self.t0


def user_splits(n_slots: int, slots_per_day: int = 96) -> dict[str, DaySplit]:
    """{"train", "val", "test"} slot ranges of a tensor of ``n_slots`` (whole days, >= 3 days)."""
    if slots_per_day < 1 or n_slots % slots_per_day != 0:
        raise InputError(f"n_slots={n_slots} is not a whole number of {slots_per_day}-slot days")
    days = n_slots // slots_per_day
    if days < 3:
        raise InputError(f"need at least 3 days for train/val/test, got {days}")
    d = slots_per_day
    return {"train": DaySplit("train", 0, n_slots - 2 * d),
            "val": DaySplit("val", n_slots - 2 * d, n_slots - d),
            "test": DaySplit("test", n_slots - d, n_slots)}


def _split(tensor_or_T: SparseBehaviorTensor | int, split: str, slots_per_day: int | None) -> tuple[DaySplit, int]:
    if isinstance(tensor_or_T, SparseBehaviorTensor):
        T, spd = tensor_or_T.T, tensor_or_T.slots_per_day
    else:
        T, spd = int(tensor_or_T), 96
    spd = slots_per_day or spd
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    return user_splits(T, spd)[split], spd


# -----------------------------------------------------------------------------
# B1 / B2 forecasting windows
# -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    task: str                 # "B1" or "B2"
    split: str
    index: int                # position in the split's window list
    context: tuple[int, int]  # [c0, c1) slots
    target: tuple[int, int]   # [t0, t1) slots, t0 == c1

    def context_dense(self, x: SparseBehaviorTensor) -> np.ndarray:
        return x.dense(*self.context)   # (C, L, H, W)

    def target_dense(self, x: SparseBehaviorTensor) -> np.ndarray:
        return x.dense(*self.target)    # (C, S, H, W)


def _forecast_windows(task: str, T: SparseBehaviorTensor | int, split: str, context: int, horizon: int,
                      stride: int, slots_per_day: int | None) -> list[Window]:
    if context < 1 or horizon < 1 or stride < 1:
        raise InputError("context, horizon and stride must be >= 1")
    sp, _ = _split(T, split, slots_per_day)
    out: list[Window] = []
    for s in range(sp.t0, sp.t1 - horizon + 1, stride):
        if s - context < 0:
            continue
        out.append(Window(task, split, len(out), (s - context, s), (s, s + horizon)))
    return out


def short_term_windows(tensor: SparseBehaviorTensor | int, split: str = "test", *, context: int = CONTEXT_SLOTS,
                       horizon: int = SHORT_HORIZON, stride: int = 4,
                       slots_per_day: int | None = None) -> list[Window]:
    """B1: one window per target start in the split (targets wholly inside the split)."""
    return _forecast_windows("B1", tensor, split, context, horizon, stride, slots_per_day)


def long_term_windows(tensor: SparseBehaviorTensor | int, split: str = "test", *, context: int = CONTEXT_SLOTS,
                      horizon: int | None = None, stride: int | None = None,
                      slots_per_day: int | None = None) -> list[Window]:
    """B2: target = one whole day (``horizon`` defaults to a day, ``stride`` to a day)."""
    _, spd = _split(tensor, split, slots_per_day)
    return _forecast_windows("B2", tensor, split, context, horizon or spd, stride or spd, slots_per_day)


# -----------------------------------------------------------------------------
# B3 cold start
# -----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ColdStartWindow:
    split: str
    index: int
    context: tuple[int, int]      # [c0, c1): the model's input span
    target: tuple[int, int]       # [t0, t1): the next day
    visible_slots: np.ndarray     # (<= max_active,) sorted absolute slots kept as history

    def context_mask(self) -> np.ndarray:
        """(L,) bool over the context span: True = slot kept (observed)."""
        m = np.zeros(self.context[1] - self.context[0], bool)
        m[self.visible_slots - self.context[0]] = True
        return m

    def context_dense(self, x: SparseBehaviorTensor) -> np.ndarray:
        """(C, L, H, W) with every slot outside ``visible_slots`` zeroed."""
        d = x.dense(*self.context)
        d[:, ~self.context_mask()] = 0.0
        return d


def cold_start_windows(tensor: SparseBehaviorTensor, split: str = "test", *, context: int = CONTEXT_SLOTS,
                       max_active: int = MAX_ACTIVE_SLOTS, slots_per_day: int | None = None) -> list[ColdStartWindow]:
    """B3: one window per split day; history cut to the most recent <= ``max_active`` active slots."""
    sp, spd = _split(tensor, split, slots_per_day)
    out: list[ColdStartWindow] = []
    for t0 in range(sp.t0, sp.t1 - spd + 1, spd):
        if t0 - context < 0:
            continue
        active = tensor.active_slots(t0 - context, t0)
        out.append(ColdStartWindow(split, len(out), (t0 - context, t0), (t0, t0 + spd),
                                   active[-max_active:] if max_active > 0 else active[:0]))
    return out


def b3_target_domain(source: str) -> str:
    """The target domain of a v2 B3 window whose history is ``source`` ("app" <-> "location")."""
    if source not in B3_SOURCES:
        raise InputError(f"B3 source domain must be one of {B3_SOURCES}, got {source!r}")
    return "location" if source == "app" else "app"


@dataclass(frozen=True)
class CrossDomainWindow:
    """PROTOCOL v2 B3: ``history`` slots of the ``source`` domain -> the other domain's items in ``target``."""

    split: str
    index: int
    source: str                   # "app" | "location"
    history: tuple[int, int]      # [h0, h1): the previous B3_HISTORY slots, h1 == target start
    target: tuple[int, int]       # [t0, t1): the next day

    @property
    def target_domain(self) -> str:
        return b3_target_domain(self.source)

    def source_history(self, x: SparseBehaviorTensor) -> np.ndarray:
        """The only data of the user a cold-start model may read.

        "app": (L, K) float64 records per app category and slot, summed over the layout (no place);
        "location": (L, H, W) float32 presence 0/1 per slot and layout cell (no app)."""
        h0, h1 = self.history
        c, t, h, w, v = x.coords(h0, h1)
        t = t - h0                                                   # coords are absolute slots
        ch = x.channels
        L = h1 - h0
        if self.source == "app":
            app = (c >= ch.apps.start) & (c < ch.apps.stop)
            n = np.rint(decode_app_counts(v[app]))
            flat = t[app] * ch.n_categories + (c[app] - ch.apps.start)
            return np.bincount(flat, weights=n, minlength=L * ch.n_categories).reshape(L, ch.n_categories)
        if "location" in x.absent:
            raise InputError("B3 source 'location': this tensor records no location")
        loc = c == ch.location_index
        out = np.zeros((L, x.H, x.W), np.float32)
        out[t[loc], h[loc], w[loc]] = v[loc]
        return out

    def target_engagement(self, x: SparseBehaviorTensor) -> np.ndarray:
        """Ground-truth item scores of the target domain over the target day (float64):
        "app" -> (K,) records per category; "location" -> (H*W,) slots present per layout cell."""
        t0, t1 = self.target
        if self.target_domain == "app":
            return engagement(x, t0, t1)[0]
        c, _, h, w, v = x.coords(t0, t1)
        loc = c == x.channels.location_index
        return np.bincount(h[loc] * x.W + w[loc], weights=v[loc].astype(np.float64), minlength=x.H * x.W)


def cross_domain_windows(tensor: SparseBehaviorTensor, source: str, split: str = "test", *,
                         history: int = B3_HISTORY, slots_per_day: int | None = None) -> list[CrossDomainWindow]:
    """PROTOCOL v2 B3: one window per split day, history = the ``history`` slots before the day."""
    b3_target_domain(source)
    if history < 1:
        raise InputError(f"history must be >= 1 slot, got {history}")
    sp, spd = _split(tensor, split, slots_per_day)
    out: list[CrossDomainWindow] = []
    for t0 in range(sp.t0, sp.t1 - spd + 1, spd):
        if t0 - history < 0:
            continue
        out.append(CrossDomainWindow(split, len(out), source, (t0 - history, t0), (t0, t0 + spd)))
    return out


def _rank(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest positive scores; ties broken by the smaller index."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    order = order[scores[order] > 0]
    return order[:k]


def engagement(tensor: SparseBehaviorTensor, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
    """Records in [t0, t1): per app category (K,) and per layout slot h*W+w (H*W,), float64."""
    ch = tensor.channels
    c, _, h, w, v = tensor.coords(t0, t1)
    app = (c >= ch.apps.start) & (c < ch.apps.stop)
    n = np.rint(decode_app_counts(v[app]))
    per_cat = np.bincount(c[app] - ch.apps.start, weights=n, minlength=ch.n_categories)
    per_cell = np.bincount(h[app] * tensor.W + w[app], weights=n, minlength=tensor.H * tensor.W)
    return per_cat, per_cell


def top_k_categories(tensor: SparseBehaviorTensor, target: tuple[int, int], k: int = 10) -> np.ndarray:
    """Ranked ground truth: up to k category indices 0..K-1 by records in the target (engaged only)."""
    return _rank(engagement(tensor, *target)[0], k)


def top_k_locations(tensor: SparseBehaviorTensor, target: tuple[int, int], k: int = 5) -> np.ndarray:
    """Ranked ground truth: up to k layout slots h*W+w by records in the target (engaged only)."""
    return _rank(engagement(tensor, *target)[1], k)


# -----------------------------------------------------------------------------
# B4 completion
# -----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class CompletionWindow:
    split: str
    index: int
    span: tuple[int, int]   # [s, s + L)
    seed: int
    p: float                # the drawn hiding probability
    mask: np.ndarray        # (L, H, W) bool, True = hidden

    @property
    def hidden_fraction(self) -> float:
        return float(self.mask.mean())


def completion_mask(index: int, length: int, H: int, W: int) -> tuple[int, float, np.ndarray]:
    """(seed, p, mask (length, H, W) bool): the PROTOCOL A2 recipe with seed = 1000 + index."""
    seed = MASK_SEED_BASE + int(index)
    rng = np.random.default_rng(seed)
    p = float(rng.uniform(0.7, 0.8))
    return seed, p, rng.random((length, H, W)) < p


def completion_windows(tensor: SparseBehaviorTensor, split: str = "test", *, length: int = CONTEXT_SLOTS,
                       stride: int | None = None, slots_per_day: int | None = None) -> list[CompletionWindow]:
    """B4: ``length``-slot windows whose last slot lies in the split; ends at the split's end, end - stride, ...

    Default stride = one day, i.e. one window per split day ending at the day's end.
    """
    sp, spd = _split(tensor, split, slots_per_day)
    stride = stride or spd
    if stride < 1 or length < 1:
        raise InputError("length and stride must be >= 1")
    # window end e (exclusive) with its last slot e - 1 inside the split, counted back from the split's end
    ends = [e for e in range(sp.t0 + 1, sp.t1 + 1) if (sp.t1 - e) % stride == 0 and e >= length]
    out: list[CompletionWindow] = []
    for e in ends:
        i = len(out)
        seed, p, mask = completion_mask(i, length, tensor.H, tensor.W)
        out.append(CompletionWindow(split, i, (e - length, e), seed, p, mask))
    return out
