"""Calibration of the simulator on REAL data: the 6-user LLMApp sample, LLMApp's traffic bins of the
full trace and the Milan daily profile; the trace statistics shared by calibration and validation.

Part of `umask.train.simulator`. ``calibration_targets()`` returns the REAL targets as JSON.
"""

from __future__ import annotations

import csv
import gzip
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from umask.runtime.core.catalog import Catalog, load_llmapp_catalog
from umask.runtime.core.errors import DataFormatError
from umask.runtime.core.events import EventLog, read_trace
from umask.train.simulator.config import (
    ATTRACT_CLIP,
    ATTRACT_PRIOR_SESSIONS,
    BINS_FILE,
    EPISODE_GAP_S,
    HOUR_BIN,
    HOUR_BIN_NAMES,
    LIFT_CLIP,
    LIFT_PRIOR_SESSIONS,
    MILAN_FILE,
    OBSERVED_HOURS,
    POI_SMOOTHING,
    RHYTHM_PRIOR_STRENGTH,
    SAMPLE_FILE,
    SESSION_GAP_S,
    SLOTS_PER_DAY,
    WINDOW_S,
    _paths,
)

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Real data: loading and statistics (the same statistics serve calibration and validation)
# ------------------------------------------------------------------------------------------------
def load_real_sample(data_dir: str | Path | None = None) -> EventLog:
    """The real 6-user, one-day LLMApp sample (ids in the LLMApp space)."""
    ts_dir, _ = _paths(data_dir)
    return read_trace(ts_dir / SAMPLE_FILE)


def _milan_profile(path: Path) -> np.ndarray:
    """Normalized mean 10-minute profile (144,) of the Milan 5x5 internet matrix (cells summed)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        m = np.loadtxt(fh, delimiter=",", ndmin=2)
    if m.shape[0] % SLOTS_PER_DAY:
        raise DataFormatError(path, None, f"{m.shape[0]} rows is not a whole number of 144-slot days")
    prof = m.sum(axis=1).reshape(-1, SLOTS_PER_DAY).mean(axis=0)
    return prof / prof.sum()


@dataclass
class TrafficBins:
    """Per dense category: 10 quantile bins [left, right) with their shares (NaN rows: no bins)."""

    left: np.ndarray    # (K, B)
    right: np.ndarray   # (K, B)
    share: np.ndarray   # (K, B)
    count: np.ndarray   # (K,) records of the full trace behind the bins

    @property
    def has_bins(self) -> np.ndarray:
        return self.count > 0

    def quantile(self, k: int, q: float) -> float:
        """Quantile from the bin edges (exact at the edges, log-linear inside a bin)."""
        cum = np.r_[0.0, np.cumsum(self.share[k])]
        cum /= cum[-1]
        j = int(np.clip(np.searchsorted(cum, q, side="right") - 1, 0, self.left.shape[1] - 1))
        f = (q - cum[j]) / max(cum[j + 1] - cum[j], 1e-12)
        lo, hi = math.log(self.left[k, j]), math.log(self.right[k, j])
        return float(math.exp(lo + f * (hi - lo)))

    def cdf(self, k: int, x: np.ndarray) -> np.ndarray:
        """CDF at x, log-linear interpolation between edges."""
        edges = np.r_[self.left[k], self.right[k, -1]]
        cum = np.r_[0.0, np.cumsum(self.share[k])]
        cum /= cum[-1]
        return np.interp(np.log(np.maximum(x, 1e-9)), np.log(edges), cum)


def load_traffic_bins(path: str | Path, catalog: Catalog) -> TrafficBins:
    """``llmapp_traffic_bins.csv`` -> `TrafficBins` in the catalog's dense category order."""
    path = Path(path)
    cid = {int(c): i for i, c in enumerate(catalog.apps.category_ids)}
    rows: dict[int, list[tuple[int, float, float, float]]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"app_cate_id", "bin_index", "left", "right", "count"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise DataFormatError(path, 1, f"need columns {sorted(need)}")
        for lineno, r in enumerate(reader, start=2):
            try:
                c, b = int(r["app_cate_id"]), int(r["bin_index"])
                lo, hi, n = float(r["left"]), float(r["right"]), float(r["count"])
            except ValueError as e:
                raise DataFormatError(path, lineno, str(e)) from None
            if c not in cid:
                raise DataFormatError(path, lineno, f"unknown category id {c}")
            if not (0 < lo < hi) or n < 0:
                raise DataFormatError(path, lineno, f"bad bin [{lo}, {hi}) count {n}")
            rows.setdefault(cid[c], []).append((b, lo, hi, n))
    nb = max(len(v) for v in rows.values())
    k_n = catalog.apps.n_categories
    left, right = np.full((k_n, nb), np.nan), np.full((k_n, nb), np.nan)
    share, count = np.zeros((k_n, nb)), np.zeros(k_n)
    for k, v in rows.items():
        v.sort()
        if len(v) != nb:
            raise DataFormatError(path, None, f"category {catalog.apps.category_ids[k]} has {len(v)} bins, expected {nb}")
        arr = np.array([x[1:] for x in v])
        left[k], right[k] = arr[:, 0], arr[:, 1]
        share[k] = arr[:, 2] / arr[:, 2].sum()
        count[k] = arr[:, 2].sum()
    return TrafficBins(left, right, share, count)


def station_place_types(catalog: Catalog) -> tuple[np.ndarray, list[str]]:
    """Dominant POI type per station: argmax of the POI *lift* (share / city share, smoothed with
    `POI_SMOOTHING` pseudo-POIs of the city mix). Stations without POIs get the extra type "No POI"."""
    poi = catalog.stations.poi.astype(np.float64)
    city = poi.sum(axis=0) / max(poi.sum(), 1.0)
    tot = poi.sum(axis=1, keepdims=True)
    lift = (poi + POI_SMOOTHING * city) / (tot + POI_SMOOTHING) / np.maximum(city, 1e-12)
    types = np.where(tot[:, 0] > 0, lift.argmax(axis=1), poi.shape[1])
    return types.astype(np.int64), list(catalog.stations.poi_names) + ["No POI"]


def _segment_bursts(e: EventLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted events -> (session-start mask, episode-start mask, gap to previous record in s)."""
    n = len(e)
    same = np.zeros(n, bool)
    if n > 1:
        same[1:] = e.user[1:] == e.user[:-1]
    gap = np.full(n, np.inf)
    if n > 1:
        gap[1:] = np.diff(e.ts).astype(np.float64)
    gap[~same] = np.inf
    new_ep = gap > EPISODE_GAP_S
    app_change = np.ones(n, bool)
    if n > 1:
        app_change[1:] = e.app[1:] != e.app[:-1]
    new_sess = new_ep | (gap > SESSION_GAP_S) | app_change
    return new_sess, new_ep, gap


def trace_stats(events: EventLog, catalog: Catalog, *, weekdays_only: bool = False,
                window: tuple[int, int] | None = WINDOW_S,
                place_types: tuple[np.ndarray, list[str]] | None = None) -> dict[str, Any]:
    """Statistics of a trace restricted to a time-of-day window (and optionally to Mon..Fri).

    Returns numpy arrays: category record counts, records per hour, per user-day records and
    distinct stations (user-days with >= 1 record), bytes with their category, the category x
    place-type co-occurrence counts, and the burst structure (sessions, episodes)."""
    e = events.sorted()
    sod = e.ts % 86400
    keep = np.ones(len(e), bool)
    if window is not None:
        keep &= (sod >= window[0]) & (sod < window[1])
    if weekdays_only:
        keep &= ((e.ts // 86400 + 3) % 7) < 5      # 1970-01-01 was a Thursday; Monday = 0
    e = e.take(keep)
    sod = e.ts % 86400
    k_n = catalog.apps.n_categories
    cats = catalog.apps.category_index(e.app)
    types, type_names = place_types if place_types is not None else station_place_types(catalog)
    ptype = types[catalog.stations.index_of(e.bs)]
    day = e.ts // 86400
    ud_key = e.user * 1_000_000 + day
    uds, ud_inv = np.unique(ud_key, return_inverse=True)
    recs_ud = np.bincount(ud_inv, minlength=len(uds))
    pair = np.unique(np.stack([ud_inv, e.bs]), axis=1) if len(e) else np.zeros((2, 0), np.int64)
    locs_ud = np.bincount(pair[0], minlength=len(uds))
    new_sess, new_ep, _ = _segment_bursts(e)
    cooc = np.zeros((k_n, len(type_names)))
    np.add.at(cooc, (cats, ptype), 1.0)
    return {
        "n_records": len(e), "n_users": len(np.unique(e.user)), "n_user_days": len(uds),
        "category_counts": np.bincount(cats, minlength=k_n).astype(np.float64),
        "hour_counts": np.bincount(sod // 3600, minlength=24).astype(np.float64),
        "episode_hour_counts": np.bincount(sod[new_ep] // 3600, minlength=24).astype(np.float64),
        "records_per_user_day": recs_ud.astype(np.float64),
        "locations_per_user_day": locs_ud.astype(np.float64),
        "bytes": e.bytes.astype(np.float64), "bytes_category": cats,
        "cooccurrence": cooc, "place_type_names": type_names,
        "records_per_session": np.bincount(np.cumsum(new_sess) - 1).astype(np.float64) if len(e) else np.zeros(0),
        "sessions_per_episode": (np.bincount(np.cumsum(new_ep)[new_sess] - 1).astype(np.float64)
                                 if len(e) else np.zeros(0)),
        "episodes_per_user_day": (np.bincount(ud_inv[new_ep], minlength=len(uds)).astype(np.float64)
                                  if len(e) else np.zeros(0)),
    }


# ------------------------------------------------------------------------------------------------
# Calibration
# ------------------------------------------------------------------------------------------------
@dataclass
class Calibration:
    """Model inputs fitted on real data (see the module docstring), plus the real targets."""

    category_names: list[str]
    simulable: np.ndarray          # (K,) bool: categories with apps and traffic bins
    pop_shares: np.ndarray         # (K,) population category shares (full trace, bin counts)
    milan144: np.ndarray           # (144,) Milan prior, sums to 1
    rhythm144: np.ndarray          # (144,) population episode-start shape (posterior), sums to 1
    sessions_per_episode: np.ndarray
    records_per_session: np.ndarray
    within_gaps: np.ndarray        # seconds between records of a session
    between_gaps: np.ndarray       # seconds between sessions of an episode
    pingpong_q: float              # per-record probability that another serving station answers
    place_lift: np.ndarray         # (T, K) station place type -> category lift
    time_lift: np.ndarray          # (6, K) time-of-day bin -> category lift
    bins: TrafficBins
    top_bin_alpha: float           # Pareto exponent of the open top traffic bin
    target_window_records: float   # real mean records per user-day, 07:00-23:30
    place_types: np.ndarray        # (N stations,) dominant POI type
    type_attract: np.ndarray       # (T,) how much more often real users are at a type than its station share
    place_type_names: list[str]
    targets: dict[str, Any]        # JSON-ready real statistics


def _shrunk_lift(counts: np.ndarray, base: np.ndarray) -> np.ndarray:
    """counts (G, K) -> lift (G, K) = smoothed P(k | g) / P(k), shrunk toward 1, clipped."""
    n_g = counts.sum(axis=1, keepdims=True)
    p = np.maximum(base, 1e-12)[None, :]
    lift = (counts + LIFT_PRIOR_SESSIONS * p) / ((n_g + LIFT_PRIOR_SESSIONS) * p)
    lift[:, base <= 0] = 1.0
    return np.clip(lift, *LIFT_CLIP)


def _mean_one(lift: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Rescale each row so that sum_k shares_k * lift_k = 1 (keeps the population marginal)."""
    return lift / (lift @ shares)[..., None]


def fit_calibration(catalog: Catalog, data_dir: str | Path | None = None) -> Calibration:
    """Fit every data-driven model input on the real files under ``data_dir``."""
    ts_dir, mi_dir = _paths(data_dir)
    real = read_trace(ts_dir / SAMPLE_FILE)
    catalog.check_events(real)
    bins = load_traffic_bins(ts_dir / BINS_FILE, catalog)
    k_n = catalog.apps.n_categories
    has_apps = np.bincount(catalog.apps.app_category, minlength=k_n) > 0
    simulable = has_apps & bins.has_bins
    pop = np.where(simulable, bins.count, 0.0)
    pop = pop / pop.sum()
    types, type_names = station_place_types(catalog)

    # burst structure of the whole real sample
    e = real.sorted()
    new_sess, new_ep, gap = _segment_bursts(e)
    sess_id = np.cumsum(new_sess) - 1
    rec_per_sess = np.bincount(sess_id)
    sess_first = np.flatnonzero(new_sess)
    sess_per_ep = np.bincount(np.cumsum(new_ep)[sess_first] - 1)
    within = gap[~new_sess]
    between = gap[sess_first][~new_ep[sess_first]]
    inner = np.flatnonzero(~new_sess)
    switch = float(np.mean(e.bs[inner] != e.bs[inner - 1])) if len(inner) else 0.0
    q = 0.5 * (1.0 - math.sqrt(max(1.0 - 2.0 * switch, 0.0)))   # 2q(1-q) = switch

    # rhythm: Milan prior x real episode starts per hour (Dirichlet posterior on observed hours)
    milan = _milan_profile(mi_dir / MILAN_FILE)
    m24 = milan.reshape(24, -1).sum(axis=1)
    ep_hours = (e.ts[new_ep] % 86400) // 3600
    n_h = np.bincount(ep_hours, minlength=24).astype(np.float64)
    obs = OBSERVED_HOURS
    mass, n_obs = m24[obs].sum(), n_h[obs].sum()
    post24 = m24.copy()
    post24[obs] = mass * (RHYTHM_PRIOR_STRENGTH * m24[obs] / mass + n_h[obs]) / (RHYTHM_PRIOR_STRENGTH + n_obs)
    rhythm = milan * np.repeat(post24 / m24, SLOTS_PER_DAY // 24)
    rhythm /= rhythm.sum()

    # affinities from real sessions (category at the session's first record)
    cats = catalog.apps.category_index(e.app)
    s_cat = cats[sess_first]
    s_type = types[catalog.stations.index_of(e.bs[sess_first])]
    s_bin = HOUR_BIN[(e.ts[sess_first] % 86400) // 3600]
    base = np.bincount(s_cat, minlength=k_n).astype(np.float64)
    base /= base.sum()
    c_place = np.zeros((len(type_names), k_n))
    np.add.at(c_place, (s_type, s_cat), 1.0)
    c_time = np.zeros((len(HOUR_BIN_NAMES), k_n))
    np.add.at(c_time, (s_bin, s_cat), 1.0)
    place_lift = _mean_one(_shrunk_lift(c_place, base), pop)
    city_t = np.bincount(types, minlength=len(type_names)) / len(types)
    sess_t = np.bincount(s_type, minlength=len(type_names)).astype(np.float64)
    attract = ((sess_t + ATTRACT_PRIOR_SESSIONS * city_t) / (sess_t.sum() + ATTRACT_PRIOR_SESSIONS)
               / np.maximum(city_t, 1e-12))
    attract = np.clip(attract, *ATTRACT_CLIP)
    time_lift = _mean_one(_shrunk_lift(c_time, base), pop)

    # Pareto exponent of the open top traffic bin, pooled over categories (MLE on real records)
    top_left = bins.left[cats, -1]
    top_right = bins.right[cats, -1]
    in_top = np.isfinite(top_left) & (e.bytes >= top_left) & (e.bytes < top_right)
    logs = np.log(e.bytes[in_top] / top_left[in_top])
    alpha = float(in_top.sum() / logs.sum()) if in_top.sum() >= 5 and logs.sum() > 0 else 1.0

    real_stats = trace_stats(real, catalog, place_types=(types, type_names))
    targets = _targets_json(real_stats, bins, catalog, pop, milan)
    targets["burst_structure"] = {
        "session_gap_s": SESSION_GAP_S, "episode_gap_s": EPISODE_GAP_S,
        "records_per_session_mean": float(rec_per_sess.mean()),
        "sessions_per_episode_mean": float(sess_per_ep.mean()),
        "within_session_station_switch_rate": switch, "top_traffic_bin_pareto_alpha": alpha}
    cal = Calibration(
        category_names=list(catalog.apps.category_names), simulable=simulable, pop_shares=pop,
        milan144=milan, rhythm144=rhythm, sessions_per_episode=sess_per_ep.astype(np.int64),
        records_per_session=rec_per_sess.astype(np.int64), within_gaps=within.astype(np.float64),
        between_gaps=between.astype(np.float64), pingpong_q=q, place_lift=place_lift,
        time_lift=time_lift, bins=bins, top_bin_alpha=alpha,
        target_window_records=float(real_stats["records_per_user_day"].mean()),
        place_types=types, type_attract=attract, place_type_names=type_names, targets=targets)
    log.info("calibration: %d real records, %d sessions, %d episodes; target %.0f records per user-day "
             "(07:00-23:30); ping-pong q=%.3f; top-bin Pareto alpha=%.2f", len(e), len(rec_per_sess),
             len(sess_per_ep), cal.target_window_records, q, alpha)
    return cal


def _targets_json(st: Mapping[str, Any], bins: TrafficBins, catalog: Catalog, pop: np.ndarray,
                  milan: np.ndarray) -> dict[str, Any]:
    names = list(catalog.apps.category_names)
    cc = st["category_counts"]
    per_cat: dict[str, Any] = {}
    for k, name in enumerate(names):
        b = st["bytes"][st["bytes_category"] == k]
        entry: dict[str, Any] = {}
        if len(b):
            entry["sample_n"] = len(b)
            entry["sample_median"] = float(np.median(b))
            entry["sample_p90"] = float(np.quantile(b, 0.9))
        if bins.has_bins[k]:
            entry["full_median"] = bins.quantile(k, 0.5)
            entry["full_p90"] = bins.quantile(k, 0.9)
            entry["bins_left"] = bins.left[k].tolist()
            entry["bins_right"] = bins.right[k].tolist()
        if entry:
            per_cat[name] = entry
    co = st["cooccurrence"]
    hours = st["hour_counts"]
    return {
        "source": "REAL: LLMApp sample of the Tsinghua App Usage trace (6 users, 2016-04-20, "
                  "window 07:00-23:30) + LLMApp traffic-bin counts of the full trace + Milan profile",
        "category_names": names,
        "category_shares_sample": (cc / max(cc.sum(), 1)).tolist(),
        "category_shares_full": pop.tolist(),
        "records_per_hour": hours.tolist(),
        "records_per_hour_share": (hours / max(hours.sum(), 1)).tolist(),
        "milan_hourly_share": milan.reshape(24, -1).sum(axis=1).tolist(),
        "distinct_locations_per_user_day": st["locations_per_user_day"].tolist(),
        "records_per_user_day": st["records_per_user_day"].tolist(),
        "traffic_bytes_per_category": per_cat,
        "place_type_names": list(st["place_type_names"]),
        "cooccurrence_category_x_place_type": (co / max(co.sum(), 1)).tolist(),
    }


def calibration_targets(data_dir: str | Path | None = None) -> dict[str, Any]:
    """The REAL statistics the simulator is calibrated to and validated against (JSON-ready dict).

    Computed at run time from the files under ``data_dir`` (the project's ``data/`` folder by
    default): app-category shares (sample and full trace), records per hour of day, distinct
    locations per user-day, traffic per category (sample quantiles and full-trace bins), records per
    user-day, category x dominant-POI-type co-occurrence, and the burst structure."""
    ts_dir, _ = _paths(data_dir)
    return fit_calibration(load_llmapp_catalog(ts_dir), data_dir).targets
