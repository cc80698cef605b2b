"""GTS-LUM inputs from raw events, numpy only: written once, used by training, scoring and the device.

Paper mechanisms built here (paper 002, GTS-LUM; section names from its method):

* **semantic interval timestamps**: time is cut into 15-minute intervals; each interval k gets a
  text descriptor tds_k ("Wednesday, a weekday, morning rush hour") chosen from a fixed table of
  7 weekdays x 9 time categories (`descriptor_texts`), and a **time ID** shared by every behavior
  that falls into the interval (the interval's distance to the target, in intervals);
* **behaviors**: one behavior = (app category, place type) seen in an interval; the place type of
  a base station is its most frequent POI category (or "unknown place");
* **the sequence** {tds_1, b_1, b_2, ..., [SEP], tds_2, ...} over the last `max_intervals` active
  intervals before the target (`layout`), with the **target** token placed at the front, at the
  end, or nowhere (the paper's target-aware modeling);
* **per-user business inputs**: the user's app-place graph summarized with node embeddings (the
  node2vec vectors ship in the bundle), the per-user attribute table, and the user's category
  counts by hour of day (the target token's history, and the time-of-day baseline).

Token types: PAD 0, TGT 1, TDS 2, BEH 3, SEP 4. Sequences are left-padded so the last position is
always the last real token (its decoder state is the user embedding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from umask.runtime.core.errors import InputError

INTERVAL_SECONDS = 900                   # 15-minute intervals (paper: fixed 15-minute partition)
DAY_SECONDS = 86_400
INTERVALS_PER_DAY = DAY_SECONDS // INTERVAL_SECONDS
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# time categories: (first hour, weekday name, weekend name); a category lasts until the next one starts
TIME_CATEGORIES = ((0, "late night", "late night"), (5, "early morning", "early morning"),
                   (7, "morning rush hour", "morning"), (9, "morning", "late morning"), (12, "noon", "noon"),
                   (14, "afternoon", "afternoon"), (17, "evening rush hour", "early evening"), (19, "evening", "evening"),
                   (22, "night", "night"))
N_TIME_CATEGORIES = len(TIME_CATEGORIES)
N_DESCRIPTORS = 7 * N_TIME_CATEGORIES
MAX_TIME_ID = 192                        # time IDs 0..191 = intervals before the target (2 days); 192 = older
PAD, TGT, TDS, BEH, SEP = 0, 1, 2, 3, 4
TIMESTAMP_MODES = ("none", "text", "component", "positional", "full")
TARGET_MODES = ("none", "end", "front")
N_TABLE_STATS = 8                        # scalar columns of the attribute table (after the category shares)

_HOUR_CAT = np.zeros(24, np.int64)
for _i, (_h, _, _) in enumerate(TIME_CATEGORIES):
    _HOUR_CAT[_h:] = _i


def weekday_of(ts: np.ndarray | int) -> np.ndarray:
    """Monday = 0 (1970-01-01, local seconds 0, was a Thursday)."""
    return (np.asarray(ts, np.int64) // DAY_SECONDS + 3) % 7


def hour_of(ts: np.ndarray | int) -> np.ndarray:
    return (np.asarray(ts, np.int64) % DAY_SECONDS) // 3600


def descriptor_id(ts: np.ndarray | int) -> np.ndarray:
    """The semantic interval descriptor of the interval holding ``ts``: weekday * 9 + time category."""
    return weekday_of(ts) * N_TIME_CATEGORIES + _HOUR_CAT[hour_of(ts)]


def descriptor_texts() -> list[str]:
    """The N_DESCRIPTORS descriptor texts, by descriptor id ("Wednesday, a weekday, morning rush hour")."""
    out = []
    for d, name in enumerate(WEEKDAYS):
        weekend = d >= 5
        for _, wk, we in TIME_CATEGORIES:
            out.append(f"{name}, a {'weekend day' if weekend else 'weekday'}, {we if weekend else wk}")
    return out


def place_types(poi: np.ndarray) -> np.ndarray:
    """(N,) place type per station: argmax of its POI counts, or P ("unknown place") with none."""
    poi = np.asarray(poi, np.float64)
    return np.where(poi.sum(1) > 0, poi.argmax(1), poi.shape[1]).astype(np.int64)


def behavior_texts(category_names: list[str], poi_names: list[str]) -> list[str]:
    """Behavior descriptions by behavior id = category * (P + 1) + place type (embedded by Sentence-BERT)."""
    places = [f"near {p.lower()}" for p in poi_names] + ["at an unknown place"]
    return [f"uses {c} apps {p}" for c in category_names for p in places]


# ------------------------------------------------------------------------------------------------
# Events -> interval-level behaviors
# ------------------------------------------------------------------------------------------------
@dataclass
class Behaviors:
    """One user's distinct behaviors per active interval, time-sorted (the unit every model reads)."""

    interval: np.ndarray     # (M,) int64 absolute interval (ts // 900)
    category: np.ndarray     # (M,) int64 app category index 0..K-1
    place: np.ndarray        # (M,) int64 place type 0..P
    count: np.ndarray        # (M,) int64 records behind the behavior in that interval
    nbytes: np.ndarray       # (M,) int64 traffic bytes

    def before(self, ts: int) -> Behaviors:
        j = int(np.searchsorted(self.interval, int(ts) // INTERVAL_SECONDS, side="left"))
        return Behaviors(*(a[:j] for a in (self.interval, self.category, self.place, self.count, self.nbytes)))

    def between(self, t0: int, t1: int) -> Behaviors:
        i = int(np.searchsorted(self.interval, int(t0) // INTERVAL_SECONDS, side="left"))
        j = int(np.searchsorted(self.interval, int(t1) // INTERVAL_SECONDS, side="left"))
        return Behaviors(*(a[i:j] for a in (self.interval, self.category, self.place, self.count, self.nbytes)))

    def __len__(self) -> int:
        return len(self.interval)


def behaviors_from_events(ts: np.ndarray, category: np.ndarray, place: np.ndarray, nbytes: np.ndarray,
                          n_places: int) -> Behaviors:
    """Distinct (interval, category, place) of the events, with record counts and bytes, sorted by
    interval then by count (most used first)."""
    ts, category, place, nbytes = (np.asarray(a, np.int64) for a in (ts, category, place, nbytes))
    if not (len(ts) == len(category) == len(place) == len(nbytes)):
        raise InputError("events: ts, category, place and bytes must have the same length")
    if len(ts) and (category.min() < 0 or place.min() < 0 or place.max() > n_places):
        raise InputError("events: category and place indices must be >= 0 (place <= n_places)")
    if not len(ts):
        z = np.zeros(0, np.int64)
        return Behaviors(z, z, z, z, z)
    iv = ts // INTERVAL_SECONDS
    key = (iv * 1000 + category) * (n_places + 1) + place
    uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    byt = np.bincount(inv, weights=nbytes.astype(np.float64)).astype(np.int64)
    u_iv = uniq // (n_places + 1) // 1000
    u_cat = uniq // (n_places + 1) % 1000
    u_pl = uniq % (n_places + 1)
    order = np.lexsort((-cnt, u_iv))
    return Behaviors(u_iv[order], u_cat[order], u_pl[order], cnt[order], byt[order])


# ------------------------------------------------------------------------------------------------
# Per-user business inputs (from the history before the target only)
# ------------------------------------------------------------------------------------------------
def hour_histogram(b: Behaviors, n_categories: int) -> np.ndarray:
    """(24, K) number of active intervals per hour of day and category."""
    h = np.zeros((24, n_categories), np.float32)
    if len(b):
        hrs = (b.interval % INTERVALS_PER_DAY) // 4
        np.add.at(h, (hrs, b.category), 1.0)
    return h


def kernel_hour_counts(hour_hist: np.ndarray, target_ts: np.ndarray | int, hours: float = 0.0) -> np.ndarray:
    """(..., K) float64 the user's counts at each target's hour of day, from ``hour_hist`` (..., 24, K)
    (`hour_histogram`) and ``target_ts`` (...,): the counts smoothed around the clock with a Gaussian of ``hours``
    (U-MASK's kernel prior, `prior.tod_kernel` over 24 one-hour slots; 0 = the raw same-hour counts) and read at
    the target's hour. One rule for the target token, the kernel time-of-day row of PROTOCOL D and the headroom
    diagnostics: with a week of history the same-hour count has five or six draws, so neighbouring hours carry
    information."""
    from umask.runtime.families.umask.prior import tod_kernel   # numpy only, shared with U-MASK's prior

    weights = tod_kernel(24, float(hours))[hour_of(np.asarray(target_ts))]             # (..., 24)
    return np.einsum("...h,...hk->...k", weights, np.asarray(hour_hist))


def target_shares(hour_hist: np.ndarray, target_ts: int, hours: float = 0.0) -> np.ndarray:
    """(K,) float32 the user's category shares at the target's hour of day (`kernel_hour_counts` of one user's
    ``hour_hist`` (24, K), normalized): the target token's history and the head's prior (our addition)."""
    row = kernel_hour_counts(hour_hist, int(target_ts), hours)
    return (row / max(float(row.sum()), 1.0)).astype(np.float32)


def table_attributes(b: Behaviors, n_categories: int, n_places: int) -> np.ndarray:
    """(K + 8,) the per-user attribute table: category shares, then activity statistics (eq. -- the
    paper's "table data"; here derived from the history, since the simulator has no CRM table)."""
    out = np.zeros(n_categories + N_TABLE_STATS, np.float32)
    if not len(b):
        return out
    out[:n_categories] = np.bincount(b.category, minlength=n_categories)[:n_categories] / len(b)
    days = max(1.0, (b.interval[-1] - b.interval[0] + 1) / INTERVALS_PER_DAY)
    ivs = np.unique(b.interval)
    hrs = (ivs % INTERVALS_PER_DAY) // 4
    wd = weekday_of(ivs * INTERVAL_SECONDS)
    out[n_categories:] = (np.log1p(len(ivs) / days) / 5.0, np.log1p(b.nbytes.sum() / days) / 20.0,
                          len(np.unique(b.category)) / n_categories, len(np.unique(b.place)) / (n_places + 1),
                          np.mean(hrs < 7), np.mean((hrs >= 7) & (hrs < 13)), np.mean((hrs >= 13) & (hrs < 19)),
                          np.mean(wd >= 5))
    return out


def graph_summary(b: Behaviors, node_emb: np.ndarray, n_categories: int) -> np.ndarray:
    """(3 E,) the user's app-place graph through the node2vec vectors: edge-weighted means of the app
    node, the place node and their product (nodes: categories 0..K-1, then places K..K+P)."""
    E = node_emb.shape[1]
    if not len(b):
        return np.zeros(3 * E, np.float32)
    w = np.log1p(b.count.astype(np.float64))
    w = w / w.sum()
    a, p = node_emb[b.category], node_emb[n_categories + b.place]
    return np.concatenate([w @ a, w @ p, w @ (a * p)]).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# The sequence
# ------------------------------------------------------------------------------------------------
@dataclass
class Sequence:
    """One target-aware input: tokens, their table indices and time IDs, left-padded to length L."""

    types: np.ndarray        # (L,) int64 PAD/TGT/TDS/BEH/SEP
    index: np.ndarray        # (L,) int64 descriptor id (TGT/TDS) or behavior slot 0..Nb-1 (BEH), else 0
    time_id: np.ndarray      # (L,) int64 interval distance to the target, clipped at MAX_TIME_ID
    beh_category: np.ndarray  # (Nb,) int64 per behavior slot (padding: 0)
    beh_place: np.ndarray    # (Nb,) int64
    beh_valid: np.ndarray    # (Nb,) bool


def max_length(max_intervals: int, per_interval: int) -> int:
    return max_intervals * (per_interval + 2) + 1


def layout(b: Behaviors, target_ts: int, *, max_intervals: int, per_interval: int, timestamps: str = "full",
           target: str = "front") -> Sequence:
    """The sequence {tds_1, b_1, b_2, ..., [SEP], tds_2, ...} of the last ``max_intervals`` active intervals
    strictly before ``target_ts`` (``b`` must already be cut there), the target token placed per ``target``.

    ``timestamps``: "none" and "positional" leave the tds tokens out (positional keeps the time IDs);
    "text", "component" and "full" keep them (the model decides how a tds token is embedded)."""
    if timestamps not in TIMESTAMP_MODES or target not in TARGET_MODES:
        raise InputError(f"timestamps must be one of {TIMESTAMP_MODES} and target one of {TARGET_MODES}")
    L, Nb = max_length(max_intervals, per_interval), max_intervals * per_interval
    t_iv = int(target_ts) // INTERVAL_SECONDS
    types, index, tid = [], [], []
    cats = np.zeros(Nb, np.int64)
    places = np.zeros(Nb, np.int64)
    valid = np.zeros(Nb, bool)
    ivs = np.unique(b.interval)[-max_intervals:] if len(b) else np.zeros(0, np.int64)
    with_tds = timestamps in ("text", "component", "full")
    slot = 0
    for k, iv in enumerate(ivs):
        lo, hi = np.searchsorted(b.interval, [iv, iv + 1])
        t = min(max(t_iv - int(iv), 0), MAX_TIME_ID)
        if with_tds:                                         # tds_k
            types.append(TDS), index.append(int(descriptor_id(int(iv) * INTERVAL_SECONDS))), tid.append(t)
        for j in range(lo, min(hi, lo + per_interval)):      # b_k1, b_k2, ... (most used first)
            types.append(BEH), index.append(slot), tid.append(t)
            cats[slot], places[slot], valid[slot] = b.category[j], b.place[j], True
            slot += 1
        if k < len(ivs) - 1:                                 # [SEP] between intervals
            types.append(SEP), index.append(0), tid.append(t)
    tgt = ([TGT], [int(descriptor_id(int(target_ts)))], [0])
    if target == "front":
        types, index, tid = tgt[0] + types, tgt[1] + index, tgt[2] + tid
    elif target == "end":
        types, index, tid = types + tgt[0], index + tgt[1], tid + tgt[2]
    if not types:                                            # empty history, no target token: one SEP
        types, index, tid = [SEP], [0], [MAX_TIME_ID]
    pad = L - len(types)
    z = [0] * pad
    return Sequence(np.array([PAD] * pad + types, np.int64), np.array(z + index, np.int64),
                    np.array(z + tid, np.int64), cats, places, valid)


__all__ = ["INTERVAL_SECONDS", "N_DESCRIPTORS", "N_TIME_CATEGORIES", "MAX_TIME_ID", "PAD", "TGT", "TDS", "BEH", "SEP",
           "TIMESTAMP_MODES", "TARGET_MODES", "N_TABLE_STATS", "Behaviors", "Sequence", "behaviors_from_events",
           "behavior_texts", "descriptor_id", "descriptor_texts", "graph_summary", "hour_histogram", "kernel_hour_counts", "layout",
           "max_length", "place_types", "table_attributes", "target_shares", "weekday_of"]
