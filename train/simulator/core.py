"""Calibrated, agent-based, explainable simulator of week-long per-user app-usage traces (SYNTHETIC).

Why it exists
-------------
The full Tsinghua App Usage trace (about 1000 users x 1 week, Shanghai, 2016-04-20 .. 04-26) is not
reachable offline; the only real per-record data is LLMApp's 6-user, one-day sample
(``data/tsinghua_app_usage/app_usage_trace_sample_llmapp.csv.gz``). The per-user benchmarks of
PROTOCOL B therefore run on traces made here. Everything this module produces is *synthetic* and says
so in its file names (``*.synthetic.*``) and in every report it prints.

What is real and what is assumed
--------------------------------
Calibrated from REAL data at run time (nothing below is a hard-coded number taken from the data):

* base stations (ids, lat/lon, 14 POI counts) of the LLMApp location table (12,576 stations): every
  place a simulated user visits is a real station, chosen by its POI mix;
* apps and their categories (``llmapp_app.csv``): simulated app ids live in the LLMApp id space;
* population app-category shares: the record counts per category of LLMApp's traffic-bin table
  (``llmapp_traffic_bins.csv``, ~2.5 M records of the *full* trace) -- the largest real evidence
  there is; the 6-user sample's shares are reported next to them;
* bytes per record: per category, a bin is picked with the real bin share and the value is drawn
  log-uniformly inside the bin ``[left, right)``; the open top bin uses a truncated Pareto whose
  exponent is fitted (MLE) on the real sample's top-bin records;
* daily rhythm: the normalized mean 10-minute profile of Milan internet activity (30 days x 144
  slots) is the prior; the real sample's usage-episode starts per hour (07:00-23:00) update it as a
  Dirichlet posterior (prior strength `RHYTHM_PRIOR_STRENGTH` pseudo-episodes);
* burst structure: records come in *sessions* (one app, records <= `SESSION_GAP_S` apart) grouped
  in *episodes* (sessions <= `EPISODE_GAP_S` apart). Sessions per episode, records per session,
  within-session gaps and between-session gaps are bootstrapped from the real sample, as is the
  per-record probability that a neighbouring station answers (cell "ping-pong");
* the volume: episodes per day are scaled so that the population's expected records per weekday in
  07:00-23:30 equals the real sample's mean records per user-day;
* app x place and app x time-of-day affinities: lifts estimated from the real sample's sessions per
  station place type and per time-of-day bin, shrunk toward 1 (`LIFT_PRIOR_SESSIONS`);
* place-type attractiveness: how much more often the real users' sessions happen at stations of a
  dominant POI type than that type's share of all stations (shrunk, `ATTRACT_PRIOR_SESSIONS`); it
  weights the choice of anchors and of a place's serving stations;
* a station's *place type* is its dominant POI type by lift (`station_place_types`).

The population's category shares are kept on target after personal draws and context lifts by a
fixed-seed pilot (`PILOT_USERS` per archetype) that measures each archetype's session contexts, and
a Monte-Carlo fixed point that rescales the archetype bases (`_World._correct_category_base`).

Explainable assumptions (documented parameters, not fitted):

* the archetypes in `ARCHETYPES` (schedules, activity, rhythm changes, category tilts);
* `KIND_CATEGORY_LIFT` (e.g. navigation and music more likely in transit) and `KIND_RATE` (phones
  are used more while travelling, less at work);
* travel speed, serving-cell weights, exploration radius.

The model, per user
-------------------
1. Archetype (quota allocation of `SimulatorConfig.archetype_mix`, shuffled by the seed) and a
   personal activity factor (log-normal, mean 1).
2. Anchors among real stations (POI lift = the station's POI share / the city's share):
   *home* among stations with an above-median "Commercial & Residential" lift, *work* among
   above-median "Companies & Enterprises" lift at a commute distance drawn per archetype
   (log-normal around the archetype's median, 1.5..22 km), *leisure* among above-median
   "Leisure & Entertainment" + "Dining & Cuisine" + "Shopping & Consumer Goods" lift near home or
   work; each chosen with probability ~ lift x place-type attractiveness. Each place is served by
   its `N_SERVING` nearest stations with personal Dirichlet weights.
3. A week of stays (the week starts on Wednesday 2016-04-20, so days are Wed..Tue; Sat and Sun are
   weekend days) from the archetype's weekday/weekend routine with Gaussian time noise; outings go
   to a leisure anchor or, with the archetype's exploration probability, to a new station. Travel
   between places passes the real stations nearest to the straight line (one every
   `WAYPOINT_KM` km) at ~25 km/h plus 10 minutes.
4. Usage episodes: an inhomogeneous Poisson process per 10-minute slot, rate = personal activity x
   archetype rhythm x place-kind factor (normalized per day, so the place only moves usage within
   the day); a day is skipped with the archetype's inactivity probability. Each episode expands to
   sessions and records with the bootstrapped real burst structure, and episodes never overlap
   (each starts > `EPISODE_GAP_S` after the previous one ended). Each episode picks one of the
   current place's serving stations; single records switch to a neighbour with the real ping-pong
   probability.
5. Per session, an app category ~ personal preference (Dirichlet around the population shares,
   tilted by archetype) x place-kind lift x station-place-type lift x time-of-day lift; then an app
   of that category from the user's favourite apps (Dirichlet around a Zipf popularity prior by app
   id); per record, bytes from the real per-category traffic bins.

Everything is vectorized per user-week (numpy only; ~8 s for 1000 users x 7 days on 2 CPU cores);
a user's random stream is ``SeedSequence(seed).spawn(n)[i]``, so results are deterministic given the
seed; user i's random stream does not depend on ``n_users`` (its archetype allocation does).

Validation (`validate`, `format_validation`) compares the simulated weekdays, 07:00-23:30, with
the real sample (one Wednesday, 07:00-23:30, 6 users) and, where LLMApp's bin table gives them,
with the full trace's category shares and traffic quantiles.

Command line: ``python -m umask.train.simulator.core generate --users 1000 --seed 0 --out artifacts/sim``
and ``python -m umask.train.simulator.core validate --users 200 --seed 0`` (also ``umask simulate ...``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from umask.runtime.core.catalog import Catalog, load_llmapp_catalog
from umask.runtime.core.errors import DataFormatError, InputError
from umask.runtime.core.events import EventLog, read_trace, write_official_trace

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Constants
# ------------------------------------------------------------------------------------------------
DEFAULT_DATA_DIR: Path = Path(__file__).resolve().parents[2] / "data"
TSINGHUA_DIR = "tsinghua_app_usage"
MILAN_DIR = "milan_telecom"
SAMPLE_FILE = "app_usage_trace_sample_llmapp.csv.gz"
BINS_FILE = "llmapp_traffic_bins.csv"
MILAN_FILE = "milan_5x5_internet_10min_30d.csv.gz"

TRACE_NAME = "App_usage_trace.synthetic.txt.gz"
USERS_NAME = "users.synthetic.json"
README_NAME = "SYNTHETIC.md"

USER_ID_BASE = 100_000            # simulated user ids start here (real ids are small)
SESSION_GAP_S = 120               # same app, records at most this far apart -> one session
EPISODE_GAP_S = 300               # records at most this far apart -> one usage episode
SLOT_S = 600                      # episode process resolution (Milan's 10-minute slots)
SLOTS_PER_DAY = 144
WINDOW_S = (7 * 3600, 23 * 3600 + 1800)   # the real sample's observed window, 07:00-23:30
OBSERVED_HOURS = np.arange(7, 23)          # hours fully observed by the real sample (07..22)
RHYTHM_PRIOR_STRENGTH = 60.0      # Milan prior weight, in pseudo-episodes
LIFT_PRIOR_SESSIONS = 30.0        # shrinkage of data-estimated lifts toward 1, in pseudo-sessions
LIFT_CLIP = (1 / 3, 3.0)
HOUR_BIN = np.array([0] * 6 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 2)  # 6 time-of-day bins
HOUR_BIN_NAMES = ["00-06", "06-10", "10-14", "14-18", "18-22", "22-24"]
POI_SMOOTHING = 10.0              # pseudo-POIs (city mix) added before computing a station's lifts
TRAVEL_KMH = 25.0
TRAVEL_FIXED_MIN = 10.0
WAYPOINT_KM = 1.2
# Dirichlet of the personal weights of a place's serving stations (nearest first)
SERVING_ALPHA = np.array([3.0, 2.0, 1.5, 1.2, 1.0])
TRANSIT_SERVING_ALPHA = np.array([6.0, 2.0, 1.0, 0.5, 0.5])
ATTRACT_PRIOR_SESSIONS = 100.0    # shrinkage of the place-type attractiveness toward 1
ATTRACT_CLIP = (0.2, 5.0)
ANCHOR_POOL_QUANTILE = 0.5        # home/work/leisure anchors come from stations above the median lift
ANCHOR_LIFT_POWER = 1.0           # ... chosen with probability ~ lift ** power x type attractiveness
PREF_FLOOR = 0.03                 # share of the archetype base mixed into every personal preference
CALIBRATION_SEED = 20160420       # fixed stream of the pilot + Monte-Carlo category-share correction
PILOT_USERS = 6                   # pilot users per archetype (session contexts for that correction)
PILOT_CONTEXTS = 4000
N_SERVING = 5                     # stations that can answer at one place

# Place kinds (what the user is doing there).
HOME, WORK, LEISURE, EXPLORE, TRANSIT = range(5)
KIND_NAMES = ["home", "work", "leisure", "explore", "transit"]
# Episode-rate factor per place kind (normalized per day: moves usage within the day, keeps volume).
KIND_RATE = np.array([1.0, 0.8, 1.0, 1.1, 1.6])
# App-category affinity per place kind (assumption, explainable; renormalized to mean 1).
KIND_CATEGORY_LIFT: dict[str, dict[str, float]] = {
    "home": {"Games": 1.3, "Entertainment": 1.3, "Photo & Video": 1.3, "Books": 1.3, "Education": 1.3,
             "Infant & Mom": 1.3, "Shopping": 1.2, "Navigation": 0.6, "Travel": 0.7},
    "work": {"Finance": 1.4, "News": 1.2, "Utilities": 1.1, "Games": 0.6, "Photo & Video": 0.7,
             "Entertainment": 0.7},
    "leisure": {"Shopping": 1.5, "Lifestyle": 1.5, "Photo & Video": 1.4, "Navigation": 1.3, "Travel": 1.3},
    "explore": {"Navigation": 1.8, "Travel": 1.6, "Lifestyle": 1.5, "Photo & Video": 1.5, "Shopping": 1.3},
    "transit": {"Navigation": 2.0, "Music": 1.6, "News": 1.4, "Travel": 1.5, "Books": 1.3, "Games": 1.2},
}
HOME_POI = ("Commercial & Residential",)
WORK_POI = ("Companies & Enterprises",)
LEISURE_POI = ("Leisure & Entertainment", "Dining & Cuisine", "Shopping & Consumer Goods")


# ------------------------------------------------------------------------------------------------
# Archetypes
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Archetype:
    """A documented kind of user. Times are local hours; ``*_sd`` are Gaussian noise (hours)."""

    name: str
    description: str
    pattern: str                     # routine: "commute", "explore", "night", "home"
    activity: float                  # relative episodes per day (population mean is normalized)
    active_day_prob: float           # probability that a day has any usage at all
    weekend_activity: float          # activity multiplier on Sat/Sun
    has_work_prob: float             # probability of a work anchor
    commute_km: float                # median home-work distance (log-normal, sd 0.6, 1.5..22 km)
    n_leisure: int                   # favourite leisure anchors
    leisure_radius_km: float         # leisure anchors lie within this distance of home (or work)
    explore_prob: float              # an outing goes to a new random station with this probability
    explore_radius_km: float
    rhythm_shift_h: float = 0.0      # the population rhythm rolled by this many hours
    # (from hour, to hour, rate factor) windows applied after the shift; "to" > 24 wraps past midnight
    rate_windows: tuple[tuple[float, float, float], ...] = ()
    pref_concentration: float = 20.0  # Dirichlet concentration of personal category preferences
    pref_temperature: float = 1.0     # population shares ** temperature (<1: more diverse)
    category_tilt: Mapping[str, float] = field(default_factory=dict)
    app_concentration: float = 3.0    # Dirichlet concentration of favourite apps within a category
    schedule: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["category_tilt"] = dict(self.category_tilt)
        d["schedule"] = dict(self.schedule)
        d["rate_windows"] = [list(w) for w in self.rate_windows]
        return d


_COMMUTE_SCHEDULE = {"leave": 7.8, "leave_sd": 0.5, "back": 18.0, "back_sd": 0.7, "lunch_prob": 0.25,
                     "evening_prob": 0.2, "evening_stops": 1, "weekend_out": 10.5, "weekend_out_sd": 1.5,
                     "weekend_outings": 1.5, "outing_h": 3.0}

ARCHETYPES: dict[str, Archetype] = {
    "commuter": Archetype(
        name="commuter",
        description="Regular commuter: home -> work ~07:50 and back ~18:00 on weekdays through the "
                    "stations along the way, sometimes lunch near work or an evening outing; weekends "
                    "at home with an afternoon outing. Population rhythm; news/navigation/music tilt.",
        pattern="commute", activity=1.0, active_day_prob=0.98, weekend_activity=0.9, has_work_prob=1.0,
        commute_km=8.0, n_leisure=2, leisure_radius_km=3.0, explore_prob=0.1, explore_radius_km=10.0,
        category_tilt={"News": 1.3, "Navigation": 1.3, "Music": 1.2, "Finance": 1.2},
        schedule=_COMMUTE_SCHEDULE),
    "explorer": Archetype(
        name="explorer",
        description="Diverse explorer: flexible office hours, one or two outings most evenings and "
                    "several on weekends, half of them to stations never visited before; many "
                    "leisure anchors; flatter (more diverse) category preferences with a travel / "
                    "lifestyle / photo tilt; more active on weekends.",
        pattern="explore", activity=1.2, active_day_prob=0.98, weekend_activity=1.15, has_work_prob=0.9,
        commute_km=8.0, n_leisure=5, leisure_radius_km=12.0, explore_prob=0.5, explore_radius_km=15.0,
        pref_concentration=40.0, pref_temperature=0.6,
        category_tilt={"Travel": 1.5, "Lifestyle": 1.5, "Shopping": 1.4, "Photo & Video": 1.5,
                       "Navigation": 1.3},
        schedule={"leave": 8.8, "leave_sd": 0.8, "back": 17.5, "back_sd": 1.0, "lunch_prob": 0.35,
                  "evening_prob": 0.6, "evening_stops": 2, "weekend_out": 10.5, "weekend_out_sd": 1.5,
                  "weekend_outings": 2.5, "outing_h": 2.5}),
    "night": Archetype(
        name="night",
        description="Night user: rhythm shifted 3 h later, x1.8 from 20:00 to 04:00, quiet (x0.25) "
                    "06:00-12:00; often out at a leisure place until after midnight, half of them with an "
                    "afternoon/evening shift at work; games/entertainment/video tilt.",
        pattern="night", activity=1.1, active_day_prob=0.95, weekend_activity=1.2, has_work_prob=0.5,
        commute_km=5.0, n_leisure=3, leisure_radius_km=8.0, explore_prob=0.15, explore_radius_km=10.0,
        rhythm_shift_h=3.0, rate_windows=((20.0, 28.0, 1.8), (6.0, 12.0, 0.25)),
        category_tilt={"Games": 1.8, "Entertainment": 1.6, "Photo & Video": 1.6, "Music": 1.4, "News": 0.7},
        schedule={"wake": 12.5, "wake_sd": 1.0, "shift_end": 21.5, "shift_end_sd": 0.8,
                  "night_out_prob": 0.45, "weekend_night_out_prob": 0.7, "night_out_end": 25.5,
                  "night_out_end_sd": 0.7, "night_out_start": 21.5}),
    "homebody": Archetype(
        name="homebody",
        description="Homebody / remote worker: works from home, a short errand near home (within "
                    "~1.5 km) on about half the days, a weekend outing; usage spread over the "
                    "daytime (+40 % 09:00-17:00); shopping/video/education tilt, little navigation.",
        pattern="home", activity=1.0, active_day_prob=0.97, weekend_activity=1.0, has_work_prob=0.0,
        commute_km=0.0, n_leisure=1, leisure_radius_km=1.5, explore_prob=0.05, explore_radius_km=5.0,
        rate_windows=((9.0, 17.0, 1.4),),
        category_tilt={"Shopping": 1.4, "Games": 1.3, "Entertainment": 1.3, "Books": 1.4, "Education": 1.5,
                       "Infant & Mom": 1.5, "Navigation": 0.5, "Travel": 0.5},
        schedule={"errand_prob": 0.5, "errand_at": 15.0, "errand_sd": 2.0, "errand_h": 1.2,
                  "weekend_out": 14.0, "weekend_out_sd": 2.0, "weekend_outings": 0.5, "outing_h": 2.5}),
    "sparse": Archetype(
        name="sparse",
        description="Sparse / cold-start user: ~15 % of the population activity and active on only "
                    "half the days, few categories (concentrated preferences); a commuter or a "
                    "homebody routine (drawn per user).",
        pattern="commute|home", activity=0.15, active_day_prob=0.5, weekend_activity=1.0,
        has_work_prob=0.5, commute_km=6.0, n_leisure=1, leisure_radius_km=3.0, explore_prob=0.05,
        explore_radius_km=5.0, pref_concentration=3.0, pref_temperature=1.3, app_concentration=1.0,
        schedule=_COMMUTE_SCHEDULE | {"errand_prob": 0.3, "errand_at": 15.0, "errand_sd": 2.0,
                                      "errand_h": 1.0, "weekend_outings": 0.7}),
}

DEFAULT_MIX: dict[str, float] = {"commuter": 0.35, "explorer": 0.15, "night": 0.15, "homebody": 0.2,
                                 "sparse": 0.15}


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
@dataclass
class SimulatorConfig:
    """What to simulate. ``archetype_mix`` maps archetype name -> weight (normalized)."""

    n_users: int = 1000
    days: int = 7
    start_date: str = "2016-04-20"
    seed: int = 0
    archetype_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))

    def __post_init__(self) -> None:
        if int(self.n_users) < 1:
            raise InputError(f"n_users must be >= 1, got {self.n_users}")
        if int(self.days) < 1:
            raise InputError(f"days must be >= 1, got {self.days}")
        try:
            date.fromisoformat(self.start_date)
        except ValueError:
            raise InputError(f"start_date must be YYYY-MM-DD, got {self.start_date!r}") from None
        unknown = sorted(set(self.archetype_mix) - set(ARCHETYPES))
        if unknown:
            raise InputError(f"unknown archetypes {unknown}; known: {sorted(ARCHETYPES)}")
        w = np.array(list(self.archetype_mix.values()), float)
        if w.size == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise InputError(f"archetype_mix needs non-negative weights with a positive sum, got {self.archetype_mix}")
        self.n_users, self.days, self.seed = int(self.n_users), int(self.days), int(self.seed)

    @property
    def start_ts(self) -> int:
        """Local wall-clock seconds since 1970-01-01 of the first day's midnight."""
        return (date.fromisoformat(self.start_date) - date(1970, 1, 1)).days * 86400

    def to_dict(self) -> dict[str, Any]:
        return {"n_users": self.n_users, "days": self.days, "start_date": self.start_date,
                "seed": self.seed, "archetype_mix": dict(self.archetype_mix)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SimulatorConfig:
        return cls(**{k: d[k] for k in ("n_users", "days", "start_date", "seed", "archetype_mix") if k in d})


# ------------------------------------------------------------------------------------------------
# Real data: loading and statistics (the same statistics serve calibration and validation)
# ------------------------------------------------------------------------------------------------
def _paths(data_dir: str | Path | None) -> tuple[Path, Path]:
    root = Path(DEFAULT_DATA_DIR if data_dir is None else data_dir)
    ts_dir = root / TSINGHUA_DIR if (root / TSINGHUA_DIR).is_dir() else root
    mi_dir = root / MILAN_DIR if (root / MILAN_DIR).is_dir() else root
    for p in (ts_dir / SAMPLE_FILE, ts_dir / BINS_FILE, mi_dir / MILAN_FILE):
        if not p.exists():
            raise FileNotFoundError(f"{p}: needed for calibration (data_dir={root})")
    return ts_dir, mi_dir


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


# ------------------------------------------------------------------------------------------------
# The world: stations, anchor pools, archetype rhythms, volume scaling
# ------------------------------------------------------------------------------------------------
def _poi_lift(poi: np.ndarray, cols: Sequence[int]) -> np.ndarray:
    city = poi.sum(axis=0) / max(poi.sum(), 1.0)
    tot = poi.sum(axis=1)
    share = (poi[:, list(cols)].sum(axis=1) + POI_SMOOTHING * city[list(cols)].sum()) / (tot + POI_SMOOTHING)
    return share / max(city[list(cols)].sum(), 1e-12)


def _archetype_rhythm(arch: Archetype, base: np.ndarray) -> np.ndarray:
    per_h = SLOTS_PER_DAY // 24
    r = np.roll(base, round(arch.rhythm_shift_h * per_h))
    hours = (np.arange(SLOTS_PER_DAY) + 0.5) / per_h
    for a, b, f in arch.rate_windows:
        inside = ((hours >= a) & (hours < b)) | ((hours + 24 >= a) & (hours + 24 < b))
        r = r * np.where(inside, f, 1.0)
    return r / r.sum()


class _World:
    """Everything shared by all simulated users (built once per `simulate` call)."""

    def __init__(self, catalog: Catalog, cal: Calibration, config: SimulatorConfig) -> None:
        if catalog.id_space != "llmapp" or not catalog.stations.has_coordinates:
            raise InputError("the simulator needs the LLMApp catalog (stations with coordinates)")
        self.catalog, self.cal, self.config = catalog, cal, config
        st = catalog.stations
        lat0 = float(np.nanmean(st.lat))
        self.xy = np.stack([(st.lon - np.nanmean(st.lon)) * 111.32 * math.cos(math.radians(lat0)),
                            (st.lat - lat0) * 110.57], axis=1)
        poi = st.poi.astype(np.float64)
        names = list(st.poi_names)
        col = {n: i for i, n in enumerate(names)}

        def cols(want: Sequence[str]) -> list[int]:
            got = [col[w] for w in want if w in col]
            if not got:
                raise InputError(f"station table lacks POI columns {list(want)}")
            return got

        tot = poi.sum(axis=1)
        ok = tot >= 3
        self.poi_total = tot

        def pool(want: Sequence[str], q: float = ANCHOR_POOL_QUANTILE) -> np.ndarray:
            lift = _poi_lift(poi, cols(want))
            thr = np.quantile(lift[ok], q)
            return np.flatnonzero(ok & (lift >= thr))

        self.home_pool, self.work_pool, self.leisure_pool = pool(HOME_POI), pool(WORK_POI), pool(LEISURE_POI)
        self.home_lift, self.work_lift = _poi_lift(poi, cols(HOME_POI)), _poi_lift(poi, cols(WORK_POI))
        self.leisure_lift = _poi_lift(poi, cols(LEISURE_POI))
        self._nn: dict[int, np.ndarray] = {}
        self.grid = _Grid(self.xy, 1.0)
        k_n = catalog.apps.n_categories
        # apps per category, by id (Zipf popularity prior by id rank within the category)
        self.cat_apps: list[np.ndarray] = [catalog.apps.app_ids[catalog.apps.app_category == k] for k in range(k_n)]
        self.max_apps = max(1, max(len(a) for a in self.cat_apps))
        self.app_table = np.zeros((k_n, self.max_apps), np.int64)
        for k, a in enumerate(self.cat_apps):
            if len(a):
                self.app_table[k, :len(a)] = a
                self.app_table[k, len(a):] = a[-1]
        self.n_apps = np.array([len(a) for a in self.cat_apps])
        # category lifts by place kind (assumption), mean one under the population shares
        cname = {n: i for i, n in enumerate(cal.category_names)}
        kl = np.ones((len(KIND_NAMES), k_n))
        for kind, rules in KIND_CATEGORY_LIFT.items():
            for cat, f in rules.items():
                if cat in cname:
                    kl[KIND_NAMES.index(kind), cname[cat]] = f
        self.kind_lift = _mean_one(kl, cal.pop_shares)
        # archetype rhythms and per-archetype category bases (population-corrected, see below)
        self.rhythm = {a: _archetype_rhythm(arch, cal.rhythm144) for a, arch in ARCHETYPES.items()}
        lo, hi = WINDOW_S[0] // SLOT_S, WINDOW_S[1] // SLOT_S
        wmass = {a: float(r[lo:hi].sum()) for a, r in self.rhythm.items()}
        self.cat_base: dict[str, np.ndarray] = {}
        raw: dict[str, np.ndarray] = {}
        for a, arch in ARCHETYPES.items():
            b = np.where(cal.simulable, cal.pop_shares, 0.0) ** arch.pref_temperature
            tilt = np.ones(k_n)
            for cat, f in arch.category_tilt.items():
                if cat in cname:
                    tilt[cname[cat]] = f
            raw[a] = b * tilt / (b * tilt).sum()
        # volume: expected weekday records in the window of the default population = real mean
        rec_per_ep = float(cal.sessions_per_episode.mean() * cal.records_per_session.mean())
        denom = sum(DEFAULT_MIX[a] * ARCHETYPES[a].activity * ARCHETYPES[a].active_day_prob * wmass[a]
                    for a in ARCHETYPES) / sum(DEFAULT_MIX.values())
        self.base_episodes_per_day = cal.target_window_records / rec_per_ep / denom
        self.cat_base = raw
        self._correct_category_base(raw)
        log.info("world: %d stations, pools home/work/leisure = %d/%d/%d; %.1f episodes per "
                 "day at activity 1", len(self.xy), len(self.home_pool), len(self.work_pool),
                 len(self.leisure_pool), self.base_episodes_per_day)

    def _correct_category_base(self, raw: dict[str, np.ndarray]) -> None:
        """Make the activity-weighted default population reproduce ``pop_shares``.

        Personal Dirichlet draws and the context lifts (place kind, station place type, time of day)
        move the realized category shares away from the archetype bases. A small pilot population
        (`PILOT_USERS` per archetype, fixed seed) gives each archetype's real distribution of session
        contexts; a Monte-Carlo fixed point then rescales the bases by population / realized."""
        cal = self.cal
        k_n = len(cal.pop_shares)
        wts = {a: DEFAULT_MIX[a] * ARCHETYPES[a].activity * ARCHETYPES[a].active_day_prob for a in ARCHETYPES}
        mc = np.random.default_rng(CALIBRATION_SEED)
        ctx: dict[str, np.ndarray] = {}
        for a, arch in ARCHETYPES.items():
            parts = []
            for j in range(PILOT_USERS):
                u = _User(-1, arch, self, np.random.default_rng([CALIBRATION_SEED, j]))
                u.simulate(7, 2, contexts_only=True)
                parts.append(u.contexts)
            kd, pt, hb = (np.concatenate([p[i] for p in parts]) for i in range(3))
            if len(kd) == 0:
                ctx[a] = np.ones((1, k_n))
                continue
            pick = mc.integers(0, len(kd), PILOT_CONTEXTS)
            ctx[a] = self.kind_lift[kd[pick]] * cal.place_lift[pt[pick]] * cal.time_lift[hb[pick]]
        corr = np.ones(k_n)
        base: dict[str, np.ndarray] = {}
        for _ in range(4):
            mix = np.zeros(k_n)
            for a, arch in ARCHETYPES.items():
                v = raw[a] * corr
                base[a] = v / v.sum()
                p = _draw_prefs(base[a], arch.pref_concentration, mc, len(ctx[a])) * ctx[a]
                mix += wts[a] * (p / p.sum(axis=1, keepdims=True)).mean(axis=0)
            mix /= sum(wts.values())
            corr *= np.where(mix > 0, cal.pop_shares / np.maximum(mix, 1e-12), 0.0)
        for a in ARCHETYPES:
            v = raw[a] * corr
            base[a] = v / v.sum()
        self.cat_base = base

    # -- geometry --------------------------------------------------------------------------------
    def dist_from(self, row: int) -> np.ndarray:
        return np.hypot(*(self.xy - self.xy[row]).T)

    def serving(self, row: int) -> np.ndarray:
        """The N_SERVING nearest stations of a station (itself first)."""
        got = self._nn.get(row)
        if got is None:
            cand = self.grid.candidates(self.xy[row][None, :])[0]
            cand = cand[cand >= 0]
            d = np.hypot(*(self.xy[cand] - self.xy[row]).T)
            d[cand == row] = -1.0
            if len(cand) > N_SERVING and np.sort(d)[N_SERVING - 1] <= self.grid.cell:
                got = cand[np.argsort(d, kind="stable")[:N_SERVING]]
            else:  # sparse area: exact search over all stations
                d = self.dist_from(row)
                d[row] = -1.0
                got = np.argsort(d, kind="stable")[:N_SERVING]
            self._nn[row] = got
        return got

    def nearest(self, pts: np.ndarray) -> np.ndarray:
        """Nearest station row per point (exact: grid neighbourhood, brute force where sparse)."""
        cand = self.grid.candidates(pts)
        d = ((self.xy[np.maximum(cand, 0)] - pts[:, None, :]) ** 2).sum(axis=2)
        d[cand < 0] = np.inf
        best = d.argmin(axis=1)
        out = cand[np.arange(len(pts)), best]
        far = d[np.arange(len(pts)), best] > self.grid.cell ** 2
        if far.any():
            dd = ((self.xy[None, :, :] - pts[far][:, None, :]) ** 2).sum(axis=2)
            out[far] = dd.argmin(axis=1)
        return out


class _Grid:
    """Square cells of ``cell`` km; per cell, the stations of its 3x3 neighbourhood (padded with -1).
    A station within ``cell`` km of a point is always among the point's candidates."""

    def __init__(self, xy: np.ndarray, cell: float = 1.0) -> None:
        self.cell = cell
        self.lo = xy.min(axis=0)
        ij = np.floor((xy - self.lo) / cell).astype(np.int64)
        self.shape = ij.max(axis=0) + 1
        nx, ny = int(self.shape[0]), int(self.shape[1])
        tgt, sta = [], []
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                ti, tj = ij[:, 0] + di, ij[:, 1] + dj
                ok = (ti >= 0) & (ti < nx) & (tj >= 0) & (tj < ny)
                tgt.append(ti[ok] * ny + tj[ok])
                sta.append(np.flatnonzero(ok))
        t, s_ = np.concatenate(tgt), np.concatenate(sta)
        order = np.lexsort((s_, t))
        t, s_ = t[order], s_[order]
        counts = np.bincount(t, minlength=nx * ny)
        start = np.cumsum(counts) - counts
        rank = np.arange(len(t)) - start[t]
        self.table = np.full((nx * ny, max(1, int(counts.max()))), -1, np.int32)
        self.table[t, rank] = s_

    def candidates(self, pts: np.ndarray) -> np.ndarray:
        ij = np.floor((pts - self.lo) / self.cell).astype(np.int64)
        ij = np.clip(ij, 0, self.shape - 1)
        return self.table[ij[:, 0] * int(self.shape[1]) + ij[:, 1]]


# ------------------------------------------------------------------------------------------------
# One user
# ------------------------------------------------------------------------------------------------
class _User:
    def __init__(self, uid: int, arch: Archetype, world: _World, rng: np.random.Generator) -> None:
        self.uid, self.arch, self.world, self.rng = uid, arch, world, rng
        # per session of the last `simulate`: (place kind, station place type, time-of-day bin)
        self.contexts: tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[()] = ()
        cal = world.cal
        self.pattern = arch.pattern if "|" not in arch.pattern else str(rng.choice(arch.pattern.split("|")))
        self.activity = float(rng.lognormal(-0.18, 0.6))       # mean 1
        # places: (kind, primary station row, serving rows, cumulative serving weights)
        self.kind: list[int] = []
        self.rows: list[int] = []
        self.serv: list[np.ndarray] = []
        self.cumw: list[np.ndarray] = []
        self._transit: dict[int, int] = {}
        self._routes: dict[tuple[int, int], list[int]] = {}
        home_row = self._choose(world.home_pool, world.home_lift[world.home_pool] ** ANCHOR_LIFT_POWER)
        self.home = self._add_place(HOME, home_row)
        self.d_home = world.dist_from(home_row)
        self.work: int | None = None
        self.commute_km = 0.0
        has_work = self.pattern in ("commute", "explore", "night") and rng.random() < arch.has_work_prob
        if has_work:
            d = float(np.clip(rng.lognormal(math.log(max(arch.commute_km, 1.0)), 0.6), 1.5, 22.0))
            dd = self.d_home[world.work_pool]
            cand = world.work_pool[(dd >= 0.75 * d) & (dd <= 1.3 * d)]
            row = self._choose(cand, world.work_lift[cand] ** ANCHOR_LIFT_POWER) if len(cand) else int(world.work_pool[np.argmin(np.abs(dd - d))])
            self.work = self._add_place(WORK, row)
            self.commute_km = float(self.d_home[row])
        self.leisure: list[int] = []
        self.leisure_near_work: int | None = None
        for j in range(arch.n_leisure):
            near_work = self.work is not None and j == 1 and self.pattern == "commute"
            d = world.dist_from(self.rows[self.work]) if near_work else self.d_home
            self.leisure.append(self._add_place(LEISURE, self._pick_near(world.leisure_pool, d, arch.leisure_radius_km)))
            if near_work:
                self.leisure_near_work = self.leisure[-1]
        self.n_anchor_places = len(self.rows)
        # preferences
        base = world.cat_base[arch.name]
        self.pref = _draw_prefs(base, arch.pref_concentration, rng, 1)[0]
        k_n = len(base)
        self.app_cum = np.ones((k_n, world.max_apps))
        self.fav_apps: dict[str, list[int]] = {}
        for k in range(k_n):
            n = world.n_apps[k]
            if n == 0:
                continue
            prior = 1.0 / np.arange(1, n + 1)
            w = rng.dirichlet(arch.app_concentration * prior / prior.sum() * n ** 0.5 + 1e-3)
            c = np.cumsum(w)
            c[-1] = 1.0
            self.app_cum[k, :n] = c
            if self.pref[k] >= 0.05:
                self.fav_apps[cal.category_names[k]] = world.cat_apps[k][np.argsort(-w)[:3]].tolist()
        self.rhythm = world.rhythm[arch.name]

    # -- places ----------------------------------------------------------------------------------
    def _add_place(self, kind: int, row: int) -> int:
        serv = self.world.serving(row)
        w = self.rng.dirichlet(TRANSIT_SERVING_ALPHA if kind == TRANSIT else SERVING_ALPHA)
        if kind != TRANSIT:  # users linger where real users are seen more often (type attractiveness)
            cal = self.world.cal
            w = w * cal.type_attract[cal.place_types[serv]]
            w = w / w.sum()
        self.kind.append(kind)
        self.rows.append(row)
        self.serv.append(serv)
        c = np.cumsum(w)
        c[-1] = 1.0
        self.cumw.append(c)
        return len(self.rows) - 1

    def _pick_near(self, pool: np.ndarray, dist: np.ndarray, radius: float) -> int:
        dd = dist[pool]
        cand = pool[(dd <= radius) & (dd > 0.05)]
        if len(cand) == 0:
            return int(pool[np.argsort(dd)[min(1, len(pool) - 1)]])
        return self._choose(cand, self.world.leisure_lift[cand] ** ANCHOR_LIFT_POWER)

    def _choose(self, cand: np.ndarray, weight: np.ndarray | None = None) -> int:
        """A station among candidates, weighted by the real place-type attractiveness."""
        cal = self.world.cal
        p = cal.type_attract[cal.place_types[cand]] * (1.0 if weight is None else weight)
        return int(self.rng.choice(cand, p=p / p.sum()))

    def _explore_place(self) -> int:
        w = self.world
        r = self.arch.explore_radius_km
        cand = np.flatnonzero((self.d_home > 0.5) & (self.d_home <= r) & (w.poi_total > 0))
        if len(cand) == 0:
            return self.leisure[0] if self.leisure else self.home
        return self._add_place(EXPLORE, self._choose(cand, np.sqrt(w.poi_total[cand] * w.leisure_lift[cand])))

    def _outing(self, near_work: bool = False) -> int:
        rng = self.rng
        if rng.random() < self.arch.explore_prob or not self.leisure:
            return self._explore_place()
        if near_work and self.leisure_near_work is not None:
            return self.leisure_near_work
        w = 1.0 / np.arange(1, len(self.leisure) + 1)
        return self.leisure[int(rng.choice(len(self.leisure), p=w / w.sum()))]

    def route(self, a: int, b: int) -> list[int]:
        """Transit places (stations nearest to the straight line) between places a and b."""
        key = (self.rows[a], self.rows[b])
        got = self._routes.get(key)
        if got is not None:
            return got
        pa, pb = self.world.xy[key[0]], self.world.xy[key[1]]
        dist = float(np.hypot(*(pb - pa)))
        n = int(dist // WAYPOINT_KM)
        places: list[int] = []
        if n >= 1:
            f = np.arange(1, n + 1) / (n + 1)
            rows = self.world.nearest(pa[None, :] + f[:, None] * (pb - pa)[None, :])
            prev = key[0]
            for r in rows.tolist():
                if r in (prev, key[1]):
                    continue
                prev = r
                if r not in self._transit:
                    self._transit[r] = self._add_place(TRANSIT, r)
                places.append(self._transit[r])
        self._routes[key] = places
        return places

    # -- routine ---------------------------------------------------------------------------------
    def _n(self, mean: float, sd: float) -> float:
        return float(mean + sd * self.rng.standard_normal())

    def plan_day(self, dow: int) -> list[tuple[int, float]]:
        """Stays of one day as (place, end hour relative to the day's midnight; may exceed 24)."""
        s, rng, weekend = self.arch.schedule, self.rng, dow >= 5
        stays: list[tuple[int, float]] = []
        p = self.pattern
        if p in ("commute", "explore") and not weekend and self.work is not None:
            stays.append((self.home, self._n(s["leave"], s["leave_sd"])))
            if rng.random() < s["lunch_prob"]:
                t = self._n(12.1, 0.25)
                stays += [(self.work, t), (self._outing(near_work=True), t + self._n(1.0, 0.2))]
            back = self._n(s["back"], s["back_sd"])
            stays.append((self.work, back))
            if rng.random() < s["evening_prob"]:
                t = back + 0.6
                for _ in range(int(rng.integers(1, int(s["evening_stops"]) + 1))):
                    t += max(0.5, self._n(1.5, 0.5))
                    stays.append((self._outing(), t))
                    t += 0.3
            stays.append((self.home, 24.0))
        elif p == "night":
            stays.append((self.home, self._n(s["wake"], s["wake_sd"])))
            if not weekend and self.work is not None:
                stays.append((self.work, self._n(s["shift_end"], s["shift_end_sd"])))
            if rng.random() < s["weekend_night_out_prob" if weekend else "night_out_prob"]:
                start = self._n(s["night_out_start"], 0.7)
                stays.append((self.home, start))
                stays.append((self._outing(), self._n(s["night_out_end"], s["night_out_end_sd"])))
            stays.append((self.home, 24.0))
        elif p == "home" and not weekend:
            if rng.random() < s.get("errand_prob", 0.0):
                t = self._n(s["errand_at"], s["errand_sd"])
                stays += [(self.home, t), (self._outing(), t + max(0.3, self._n(s["errand_h"], 0.4)))]
            stays.append((self.home, 24.0))
        else:  # weekends (and weekday without work): outings from home
            n_out = int(rng.poisson(s.get("weekend_outings", 1.0)))
            t = self._n(s.get("weekend_out", 11.0), s.get("weekend_out_sd", 1.5))
            for _ in range(n_out):
                stays.append((self.home, t))
                t += max(0.5, self._n(s.get("outing_h", 2.5), 0.8))
                stays.append((self._outing(), t))
                t += max(0.5, self._n(1.5, 0.7))
            stays.append((self.home, 24.0))
        # enforce increasing end times (noise may reorder them), keep >= 15 minutes per stay
        out: list[tuple[int, float]] = []
        last = 0.0
        for place, end in stays:
            end = max(end, last + 0.25)
            out.append((place, end))
            last = end
        return out

    def week_segments(self, days: int, dow0: int) -> tuple[np.ndarray, np.ndarray]:
        """(segment start in seconds from the first midnight, place index) for the whole period."""
        stays: list[tuple[int, float]] = []
        for d in range(days):
            stays += [(p, d * 24.0 + e) for p, e in self.plan_day((dow0 + d) % 7)]
        starts: list[float] = [0.0]
        places: list[int] = [self.home]
        cursor = 0.0
        for place, end in stays:
            if end <= cursor + 0.1:
                continue
            if place != places[-1]:
                route = self.route(places[-1], place)
                dist = float(np.hypot(*(self.world.xy[self.rows[place]] - self.world.xy[self.rows[places[-1]]])))
                dur = (TRAVEL_FIXED_MIN + 60.0 * dist / TRAVEL_KMH) / 60.0 * float(self.rng.lognormal(0, 0.15))
                dur = min(dur, max(end - cursor - 0.25, 0.05))
                for j, wp in enumerate(route):
                    starts.append(cursor + j * dur / len(route))
                    places.append(wp)
                cursor += dur if route else 0.0
                starts.append(cursor)
                places.append(place)
            cursor = end
        return np.array(starts) * 3600.0, np.array(places, np.int64)

    # -- events ----------------------------------------------------------------------------------
    def simulate(self, days: int, dow0: int, *, contexts_only: bool = False) -> tuple[np.ndarray, ...]:
        w, cal, rng, arch = self.world, self.world.cal, self.rng, self.arch
        seg_t, seg_p = self.week_segments(days, dow0)
        kind = np.array(self.kind)
        serv = np.stack(self.serv)
        cumw = np.stack(self.cumw)
        n_slots = days * SLOTS_PER_DAY
        slot_t = np.arange(n_slots) * float(SLOT_S)
        si = np.clip(np.searchsorted(seg_t, slot_t + SLOT_S / 2, side="right") - 1, 0, None)
        shape = (np.tile(self.rhythm, days) * KIND_RATE[kind[seg_p[si]]]).reshape(days, SLOTS_PER_DAY)
        shape /= shape.sum(axis=1, keepdims=True)
        dows = (dow0 + np.arange(days)) % 7
        day_eps = (w.base_episodes_per_day * arch.activity * self.activity
                   * np.where(dows >= 5, arch.weekend_activity, 1.0)
                   * (rng.random(days) < arch.active_day_prob)
                   * rng.lognormal(-0.03125, 0.25, days))
        counts = rng.poisson((shape * day_eps[:, None]).ravel())
        ep_t = np.repeat(slot_t, counts) + rng.random(int(counts.sum())) * SLOT_S
        n_ep = len(ep_t)
        if n_ep == 0:
            z = np.zeros(0, np.int64)
            self.contexts = (z, z, z)
            return z, z, z, z
        # episodes -> sessions -> records, with the real burst structure
        def boot(arr: np.ndarray, n: int) -> np.ndarray:  # resample the real empirical distribution
            return arr[rng.integers(0, len(arr), n)]

        nsess = boot(cal.sessions_per_episode, n_ep)
        n_s = int(nsess.sum())
        sess_ep = np.repeat(np.arange(n_ep), nsess)
        size = boot(cal.records_per_session, n_s)
        n_r = int(size.sum())
        rec_sess = np.repeat(np.arange(n_s), size)
        first_rec = np.cumsum(size) - size
        g = boot(cal.within_gaps, n_r)
        g[first_rec] = 0.0
        cs = np.cumsum(g)
        off = cs - cs[first_rec][rec_sess]
        dur = off[first_rec + size - 1]
        first_sess = np.cumsum(nsess) - nsess
        step = np.zeros(n_s)
        step[1:] = dur[:-1] + boot(cal.between_gaps, n_s - 1)
        step[first_sess] = 0.0
        cs2 = np.cumsum(step)
        rel = cs2 - cs2[first_sess][sess_ep]                   # session start within its episode
        last_sess = first_sess + nsess - 1
        ep_len = rel[last_sess] + dur[last_sess]
        # episodes do not overlap: each starts > EPISODE_GAP_S after the previous one ended
        # (start'_i = max(start_i, end'_{i-1} + gap), solved with a running maximum)
        ep_t = np.sort(ep_t)
        shift = np.zeros(n_ep)
        shift[1:] = np.cumsum(ep_len[:-1] + EPISODE_GAP_S + 1.0)
        ep_t = np.maximum.accumulate(ep_t - shift) + shift
        s_start = ep_t[sess_ep] + rel
        t = s_start[rec_sess] + off
        # where: place by time, station among the place's serving stations (+ ping-pong)
        rec_place = seg_p[np.clip(np.searchsorted(seg_t, t, side="right") - 1, 0, None)]
        u_ep = rng.random(n_ep)[sess_ep][rec_sess]
        choice = np.minimum((cumw[rec_place] < u_ep[:, None]).sum(axis=1), N_SERVING - 1)
        flip = rng.random(n_r) < cal.pingpong_q
        alt = (choice + rng.integers(1, N_SERVING, n_r)) % N_SERVING
        choice = np.where(flip, alt, choice)
        row = serv[rec_place, choice]
        # what: category per session, app per session, bytes per record
        r0 = first_rec
        hour = ((s_start % 86400) // 3600).astype(np.int64)
        self.contexts = (kind[rec_place[r0]], cal.place_types[row[r0]], HOUR_BIN[hour])
        if contexts_only:
            z = np.zeros(0, np.int64)
            return z, z, z, z
        wts = (self.pref[None, :] * w.kind_lift[kind[rec_place[r0]]]
               * cal.place_lift[cal.place_types[row[r0]]] * cal.time_lift[HOUR_BIN[hour]])
        cw = np.cumsum(wts, axis=1)
        cat = np.minimum((cw < (rng.random(n_s) * cw[:, -1])[:, None]).sum(axis=1), len(self.pref) - 1)
        ai = (self.app_cum[cat] < rng.random(n_s)[:, None]).sum(axis=1)
        app = w.app_table[cat, np.minimum(ai, w.n_apps[cat] - 1)]
        rcat = cat[rec_sess]
        nbytes = _draw_bytes(cal, rcat, rng)
        keep = t < days * 86400.0
        order = np.argsort(t[keep], kind="stable")
        return (t[keep].astype(np.int64)[order], w.catalog.stations.ids[row[keep]][order],
                app[rec_sess][keep][order], nbytes[keep][order])

    def meta(self) -> dict[str, Any]:
        w = self.world
        st = w.catalog.stations

        lifts = {"home": w.home_lift, "work": w.work_lift, "leisure": w.leisure_lift}

        def anchor(role: str, p: int) -> dict[str, Any]:
            r = self.rows[p]
            return {"role": role, "bs": int(st.ids[r]), "lat": round(float(st.lat[r]), 6),
                    "lon": round(float(st.lon[r]), 6),
                    "place_type": w.cal.place_type_names[int(w.cal.place_types[r])],
                    "role_poi_lift": round(float(lifts[role][r]), 3),
                    "km_from_home": round(float(self.d_home[r]), 2),
                    "serving_bs": [int(x) for x in st.ids[self.serv[p]]]}

        anchors = [anchor("home", self.home)]
        if self.work is not None:
            anchors.append(anchor("work", self.work))
        anchors += [anchor("leisure", p) for p in self.leisure]
        explored = [int(st.ids[self.rows[p]]) for p in range(len(self.rows)) if self.kind[p] == EXPLORE]
        top = np.argsort(-self.pref)[:5]
        return {"user_id": self.uid, "archetype": self.arch.name, "routine": self.pattern,
                "activity": round(self.activity, 4), "commute_km": round(self.commute_km, 2),
                "anchors": anchors, "explored_bs": explored,
                "n_transit_bs": sum(1 for k in self.kind if k == TRANSIT),
                "top_categories": {w.cal.category_names[k]: round(float(self.pref[k]), 4) for k in top},
                "favourite_apps": self.fav_apps}


def _draw_prefs(base: np.ndarray, concentration: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, K) personal category preferences: Dirichlet(concentration * base), 3 % of base mixed in."""
    pos = base > 0
    out = np.zeros((n, len(base)))
    out[:, pos] = rng.dirichlet(np.maximum(concentration * base[pos], 1e-3), size=n)
    return (1.0 - PREF_FLOOR) * out + PREF_FLOOR * base[None, :]


def _draw_bytes(cal: Calibration, cat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per record: bin by its real share, log-uniform inside; the open top bin: truncated Pareto."""
    b = cal.bins
    n = len(cat)
    cum = np.cumsum(b.share, axis=1)
    j = np.minimum((cum[cat] < rng.random(n)[:, None]).sum(axis=1), b.left.shape[1] - 1)
    lo, hi = b.left[cat, j], b.right[cat, j]
    u = rng.random(n)
    x = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
    top = j == b.left.shape[1] - 1
    a = cal.top_bin_alpha
    x_top = lo * (1.0 - u * (1.0 - (lo / hi) ** a)) ** (-1.0 / a)
    x = np.where(top, x_top, x)
    return np.clip(np.floor(x), np.ceil(lo), np.maximum(np.ceil(hi) - 1, np.ceil(lo))).astype(np.int64)


def _allocate(mix: Mapping[str, float], n: int, rng: np.random.Generator) -> list[str]:
    """Largest-remainder quotas of the mix, shuffled."""
    names = [k for k in ARCHETYPES if mix.get(k, 0) > 0]
    w = np.array([mix[k] for k in names], float)
    exact = w / w.sum() * n
    q = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - q), kind="stable")[: n - q.sum()]:
        q[i] += 1
    out = [nm for nm, c in zip(names, q) for _ in range(c)]
    return [out[i] for i in rng.permutation(n)]


def _progress(it: Iterable[Any], total: int, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return it
    try:
        from tqdm import tqdm
    except ImportError:  # degrade gracefully
        return it
    return tqdm(it, total=total, desc="simulating users (synthetic)", unit="user")


def simulate(config: SimulatorConfig, catalog: Catalog | None = None, data_dir: str | Path | None = None,
             *, calibration: Calibration | None = None, progress: bool | None = None
             ) -> tuple[EventLog, list[dict[str, Any]]]:
    """Simulate ``config.n_users`` users over ``config.days`` days (deterministic given the seed).

    Returns the SYNTHETIC events (LLMApp id space; user ids from `USER_ID_BASE`) sorted by
    (user, time), and per-user metadata (archetype, routine, anchors with real station ids, ...)."""
    t0 = time.perf_counter()
    if catalog is None:
        catalog = load_llmapp_catalog(_paths(data_dir)[0])
    cal = calibration if calibration is not None else fit_calibration(catalog, data_dir)
    world = _World(catalog, cal, config)
    ss = np.random.SeedSequence(config.seed)
    user_seeds = ss.spawn(config.n_users)
    archs = _allocate(config.archetype_mix, config.n_users, np.random.default_rng(ss.spawn(1)[0]))
    dow0 = date.fromisoformat(config.start_date).weekday()
    start = config.start_ts
    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    meta: list[dict[str, Any]] = []
    show = config.n_users >= 200 if progress is None else progress
    for i in _progress(range(config.n_users), config.n_users, show):
        uid = USER_ID_BASE + i
        user = _User(uid, ARCHETYPES[archs[i]], world, np.random.default_rng(user_seeds[i]))
        t, bs, app, nb = user.simulate(config.days, dow0)
        cols[0].append(np.full(len(t), uid, np.int64))
        cols[1].append(t + start)
        cols[2].append(bs)
        cols[3].append(app)
        cols[4].append(nb)
        meta.append(user.meta())
    ev = EventLog(*(np.concatenate(c) if c else np.zeros(0, np.int64) for c in cols),
                  source=f"synthetic:simulator(seed={config.seed})")
    log.info("simulated %d SYNTHETIC users x %d days: %d records in %.1f s", config.n_users, config.days,
             len(ev), time.perf_counter() - t0)
    return ev, meta


# ------------------------------------------------------------------------------------------------
# Validation: simulator vs real, side by side
# ------------------------------------------------------------------------------------------------
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    x = np.r_[a, b]
    return float(np.max(np.abs(np.searchsorted(a, x, "right") / len(a) - np.searchsorted(b, x, "right") / len(b))))


def _row(section: str, statistic: str, sim: float | None, real: float | None, ref: float | None = None,
         *, kind: str = "value", unit: str = "", target: str = "real", rankable: bool = True) -> dict[str, Any]:
    """One validation row.

    kind: share | value (score = |log ratio| against the target), corr (1 - r), tvd and ks (2 x),
    info (never scored). ``target="reference"`` scores against the full-trace reference when it
    exists (it is far larger evidence than the 6-user sample). A row is flagged when the ratio is
    outside [2/3, 3/2] (shares: and one side >= 1 %), r < 0.5, TVD > 0.2 or KS > 0.25. Only
    ``rankable`` rows compete for the "largest divergences" list."""
    score = 0.0
    flag = False
    goal = ref if (target == "reference" and ref is not None) else real
    if sim is not None and goal is not None and kind in ("share", "value"):
        eps = 0.005 if kind == "share" else 1e-9
        score = abs(math.log((sim + eps) / (goal + eps)))
        flag = score > math.log(1.5) and (kind == "value" or max(sim, goal) >= 0.01)
    elif sim is not None and kind == "corr":
        score = 1.0 - sim if np.isfinite(sim) else 2.0
        flag = not (np.isfinite(sim) and sim >= 0.5)
    elif sim is not None and kind in ("tvd", "ks"):
        score = 2.0 * sim
        flag = sim > (0.2 if kind == "tvd" else 0.25)
    return {"section": section, "statistic": statistic, "simulated": sim, "real": real, "reference": ref,
            "kind": kind, "unit": unit, "target": "reference" if goal is ref and ref is not None else "real",
            "score": score, "flag": flag, "rankable": rankable and kind != "info", "rank": None}


def validate(sim_events: EventLog, real_events: EventLog, catalog: Catalog, *,
             data_dir: str | Path | None = None, top_categories: int = 8) -> list[dict[str, Any]]:
    """Simulated vs real statistics, one dict per row (see `format_validation`).

    Fairness: the real sample is one weekday (Wed 2016-04-20), 07:00-23:30, 6 users; the simulated
    trace is restricted to its weekdays (Mon..Fri) and to the same 07:00-23:30 window. Per-user-day
    statistics count user-days with at least one record in the window. The ``reference`` column holds
    the full trace's values where LLMApp's traffic-bin table gives them (category shares, traffic
    quantiles) and the Milan prior for the hourly profile."""
    types = station_place_types(catalog)
    sim = trace_stats(sim_events, catalog, weekdays_only=True, place_types=types)
    real = trace_stats(real_events, catalog, place_types=types)
    names = list(catalog.apps.category_names)
    bins: TrafficBins | None = None
    milan: np.ndarray | None = None
    try:
        ts_dir, mi_dir = _paths(data_dir)
        bins = load_traffic_bins(ts_dir / BINS_FILE, catalog)
        milan = _milan_profile(mi_dir / MILAN_FILE)
    except FileNotFoundError as e:
        log.warning("validation without the full-trace/Milan reference columns: %s", e)
    rows: list[dict[str, Any]] = []

    # 1. app-category shares
    sec = "app-category share of records"
    s_sh = sim["category_counts"] / max(sim["category_counts"].sum(), 1)
    r_sh = real["category_counts"] / max(real["category_counts"].sum(), 1)
    f_sh = None
    if bins is not None:
        has_apps = np.bincount(catalog.apps.app_category, minlength=len(names)) > 0
        f_sh = np.where(has_apps & bins.has_bins, bins.count, 0.0)
        f_sh = f_sh / f_sh.sum()
    order = np.argsort(-(r_sh + (f_sh if f_sh is not None else 0)))
    for k in order[:top_categories]:
        rows.append(_row(sec, names[k], float(s_sh[k]), float(r_sh[k]),
                         None if f_sh is None else float(f_sh[k]), kind="share", target="reference"))
    rows.append(_row(sec, "TVD simulated vs real sample", 0.5 * float(np.abs(s_sh - r_sh).sum()), None, kind="tvd"))
    if f_sh is not None:
        rows.append(_row(sec, "TVD simulated vs full trace (bins)", 0.5 * float(np.abs(s_sh - f_sh).sum()),
                         None, kind="tvd"))
        rows.append(_row(sec, "TVD real sample vs full trace (noise floor)", None,
                         0.5 * float(np.abs(r_sh - f_sh).sum()), kind="tvd", rankable=False))

    # 2. records per hour of day (share of the window's records)
    sec = "records per hour (share of 07:00-23:30)"
    hrs = np.arange(WINDOW_S[0] // 3600, (WINDOW_S[1] + 3599) // 3600)
    s_h = sim["hour_counts"][hrs] / max(sim["hour_counts"][hrs].sum(), 1)
    r_h = real["hour_counts"][hrs] / max(real["hour_counts"][hrs].sum(), 1)
    m_h = None
    if milan is not None:
        m24 = milan.reshape(24, -1).sum(axis=1)
        m24[23] *= 0.5  # the window ends at 23:30
        m_h = m24[hrs] / m24[hrs].sum()
    for i, h in enumerate(hrs):
        rows.append(_row(sec, f"{h:02d}:00", float(s_h[i]), float(r_h[i]),
                         None if m_h is None else float(m_h[i]), kind="share", rankable=False))
    rows.append(_row(sec, "Pearson r simulated vs real", _pearson(s_h, r_h), None, kind="corr"))
    rows.append(_row(sec, "Pearson r of usage-episode starts per hour, sim vs real",
                     _pearson(sim["episode_hour_counts"][hrs], real["episode_hour_counts"][hrs]), None, kind="corr"))
    if m_h is not None:
        rows.append(_row(sec, "Pearson r Milan prior vs real (reference)", None, _pearson(m_h, r_h), kind="corr",
                         rankable=False))

    # 3. per user-day: distinct locations and records
    min_real = float(real["records_per_user_day"].min()) if real["n_user_days"] else 0.0
    active = sim["records_per_user_day"] >= min_real
    for sec, key in (("distinct locations per user-day", "locations_per_user_day"),
                     ("records per user-day (07:00-23:30)", "records_per_user_day")):
        s_v, r_v = sim[key], real[key]
        for stat, fn in (("mean", np.mean), ("median", np.median), ("p10", lambda v: np.quantile(v, 0.1)),
                         ("p90", lambda v: np.quantile(v, 0.9))):
            rows.append(_row(sec, stat, float(fn(s_v)) if len(s_v) else None,
                             float(fn(r_v)) if len(r_v) else None))
        if active.any() and len(r_v):
            rows.append(_row(sec, f"mean over user-days with >= {min_real:.0f} records (as real)",
                             float(np.mean(s_v[active])), float(np.mean(r_v))))

    # 4. traffic per category
    sec = "traffic bytes per record"
    rc = real["category_counts"]
    for k in np.argsort(-rc)[:5]:
        if rc[k] == 0:
            continue
        sb = sim["bytes"][sim["bytes_category"] == k]
        rb = real["bytes"][real["bytes_category"] == k]
        if len(sb) == 0:
            rows.append(_row(sec, f"{names[k]}: no simulated records", None, float(len(rb)), kind="info"))
            continue
        has = bins is not None and bool(bins.has_bins[k])
        rows.append(_row(sec, f"{names[k]}: median", float(np.median(sb)), float(np.median(rb)),
                         bins.quantile(k, 0.5) if has else None, unit="B", target="reference"))
        rows.append(_row(sec, f"{names[k]}: p90", float(np.quantile(sb, 0.9)), float(np.quantile(rb, 0.9)),
                         bins.quantile(k, 0.9) if has else None, unit="B", target="reference"))
        if len(rb) >= 30:
            rows.append(_row(sec, f"{names[k]}: KS vs real sample", _ks(sb, rb), None, kind="ks"))
        if has:
            edges = bins.left[k, 1:]
            f_sim = np.searchsorted(np.sort(sb), edges, "left") / len(sb)
            f_full = np.cumsum(bins.share[k])[:-1] / bins.share[k].sum()
            rows.append(_row(sec, f"{names[k]}: KS vs full-trace bins (at edges)",
                             float(np.max(np.abs(f_sim - f_full))), None, kind="ks"))

    # 5. app x place co-occurrence
    sec = "app-category x place-type co-occurrence"
    s_co = sim["cooccurrence"] / max(sim["cooccurrence"].sum(), 1)
    r_co = real["cooccurrence"] / max(real["cooccurrence"].sum(), 1)
    rows.append(_row(sec, "Pearson r of joint share matrices", _pearson(s_co, r_co), None, kind="corr"))
    rt = real["cooccurrence"].sum(axis=0)
    cols = rt >= 50
    if cols.sum() >= 2:
        s_cond = sim["cooccurrence"][:, cols] / np.maximum(sim["cooccurrence"][:, cols].sum(axis=0), 1)
        r_cond = real["cooccurrence"][:, cols] / rt[cols]
        rows.append(_row(sec, f"Pearson r of P(category | place type) [{int(cols.sum())} types]",
                         _pearson(s_cond, r_cond), None, kind="corr"))
    s_pt, r_pt = s_co.sum(axis=0), r_co.sum(axis=0)
    rows.append(_row(sec, "TVD of place-type marginals", 0.5 * float(np.abs(s_pt - r_pt).sum()), None, kind="tvd"))
    tn = sim["place_type_names"]
    for j in np.argsort(-r_pt)[:4]:
        rows.append(_row(sec, f"place type share: {tn[j]}", float(s_pt[j]), float(r_pt[j]), kind="share"))

    # 6. burst structure (how records cluster)
    sec = "burst structure"
    for stat, key in (("records per session (mean)", "records_per_session"),
                      ("sessions per episode (mean)", "sessions_per_episode"),
                      ("episodes per user-day (mean)", "episodes_per_user_day")):
        rows.append(_row(sec, stat, float(np.mean(sim[key])) if len(sim[key]) else None,
                         float(np.mean(real[key])) if len(real[key]) else None))

    for stat, key in (("users compared", "n_users"), ("user-days compared", "n_user_days"),
                      ("records compared", "n_records")):
        rows.append(_row("coverage (weekdays, 07:00-23:30)", stat, float(sim[key]), float(real[key]), kind="info"))
    scored = sorted((r for r in rows if r["rankable"]), key=lambda r: -r["score"])
    for i, r in enumerate(scored[:5], start=1):
        r["rank"] = i
    return rows


def _fmt(v: float | None, kind: str, unit: str) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if kind == "info" and float(v).is_integer():
        return f"{v:,.0f}"
    if kind == "share":
        return f"{100 * v:.1f}%"
    if kind in ("corr", "tvd", "ks"):
        return f"{v:.3f}"
    if unit == "B" or abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}"


def format_validation(rows: Sequence[Mapping[str, Any]], *, title: str | None = None) -> str:
    """Text table: statistic | SYNTHETIC simulated | REAL sample | reference | divergence mark."""
    head = title or "SYNTHETIC simulator vs REAL data"
    lines = [
        "=" * 100,
        head,
        ("Simulated: weekdays only (Mon-Fri), 07:00-23:30 local.  REAL sample: 6 users, one weekday "
         "(Wed 2016-04-20), 07:00-23:30."),
        ("reference = full Tsinghua trace via LLMApp's traffic-bin table (shares, bytes) or the Milan prior "
         "(hourly); '!!' = large divergence, [n] = n-th largest."),
        "=" * 100,
        f"{'statistic':<58}{'SYNTHETIC':>12}{'REAL':>12}{'reference':>12}  mark",
    ]
    sec = None
    for r in rows:
        if r["section"] != sec:
            sec = r["section"]
            lines.append(f"-- {sec} " + "-" * max(0, 96 - len(sec)))
        k, u = r["kind"], r["unit"]
        mark = ("!!" if r["flag"] else "") + (f" [{r['rank']}]" if r["rank"] else "")
        stat = r["statistic"] if len(r["statistic"]) <= 57 else r["statistic"][:54] + "..."
        lines.append(f"{stat:<58}{_fmt(r['simulated'], k, u):>12}{_fmt(r['real'], k, u):>12}"
                     f"{_fmt(r['reference'], k, u):>12}  {mark}")
    lines.append("=" * 100)
    lines.append("largest divergences (scored against the full trace where it is known, else the real sample):")
    for r in sorted((r for r in rows if r["rank"]), key=lambda r: r["rank"]):
        k, u = r["kind"], r["unit"]
        goal = ""
        if r["target"] == "reference" and r["reference"] is not None:
            goal = f", full trace {_fmt(r['reference'], k, u)}"
        elif r["real"] is not None:
            goal = f", real {_fmt(r['real'], k, u)}"
        lines.append(f"  [{r['rank']}] {r['section']}: {r['statistic']} (simulated {_fmt(r['simulated'], k, u)}{goal})")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
def write_synthetic(out_dir: str | Path, config: SimulatorConfig, catalog: Catalog | None = None,
                    data_dir: str | Path | None = None, *, progress: bool | None = None,
                    with_validation: bool = True) -> dict[str, Path]:
    """Simulate and write ``App_usage_trace.synthetic.txt.gz`` (official layout, via
    `write_official_trace`), ``users.synthetic.json`` and ``SYNTHETIC.md``. Returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ts_dir, _ = _paths(data_dir)
    if catalog is None:
        catalog = load_llmapp_catalog(ts_dir)
    cal = fit_calibration(catalog, data_dir)
    t0 = time.perf_counter()
    events, meta = simulate(config, catalog, data_dir, calibration=cal, progress=progress)
    gen_s = time.perf_counter() - t0
    paths = {"trace": out / TRACE_NAME, "users": out / USERS_NAME, "readme": out / README_NAME}
    write_official_trace(events, paths["trace"])
    doc = {"synthetic": True, "generator": "umask.train.simulator.core", "config": config.to_dict(),
           "id_space": "llmapp", "user_id_base": USER_ID_BASE,
           "archetypes": {k: a.to_dict() for k, a in ARCHETYPES.items()}, "users": meta}
    tmp = paths["users"].with_name(paths["users"].name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(paths["users"])
    table = ""
    if with_validation:
        rows = validate(events, read_trace(ts_dir / SAMPLE_FILE), catalog, data_dir=data_dir)
        table = format_validation(rows, title=f"SYNTHETIC simulator (seed {config.seed}, {config.n_users} users) "
                                              f"vs REAL data")
    counts: dict[str, int] = {}
    for m in meta:
        counts[m["archetype"]] = counts.get(m["archetype"], 0) + 1
    cfg = json.dumps(config.to_dict(), indent=2)
    text = f"""# SYNTHETIC data -- not real users

Everything in this folder was **generated** by the project's calibrated agent-based simulator
(`umask.train.simulator.core`); no record belongs to a real person. Use it for PROTOCOL B benchmarks and
label every result computed on it *synthetic*.

- `{TRACE_NAME}`: {len(events):,} records, official Tsinghua layout
  (`user_id time(YYYYMMDDhhmmss) base_station_id app_id traffic_bytes`), LLMApp id space (apps
  1..305 of `llmapp_app.csv`, base stations of `llmapp_location.csv`); user ids start at
  {USER_ID_BASE} so they never collide with real users.
- `{USERS_NAME}`: per user the archetype, routine, activity factor, anchors (real station ids with
  coordinates and dominant POI type), explored stations, top categories and favourite apps; also
  the archetype parameters and the config.
- Generated in {gen_s:.1f} s by `python -m umask.train.simulator.core generate --users {config.n_users} --seed {config.seed} --out <dir>`
  (days={config.days}, start {config.start_date}, a {date.fromisoformat(config.start_date).strftime('%A')}).

## Config (deterministic given the seed)
```json
{cfg}
```
Archetype counts: {json.dumps(counts)}

## How it was made
Calibrated at run time on REAL data: the LLMApp 6-user sample of the Tsinghua App Usage trace
(burst structure, hourly episode starts, per-record station switching, app x place and app x time
affinities, records per user-day), LLMApp's per-category traffic bins of the full trace (category
shares, bytes per record), the LLMApp station table (anchors chosen among real stations by POI mix)
and the Milan Telecom mean daily internet profile (rhythm prior). Assumptions (archetype routines,
place-kind affinities, travel speed) are documented in the module docstring and `ARCHETYPES`.

## Validation (SYNTHETIC vs REAL)
```
{table}
```
"""
    paths["readme"].write_text(text, encoding="utf-8")
    log.info("wrote SYNTHETIC trace %s (%d records), %s, %s", paths["trace"], len(events), paths["users"],
             paths["readme"])
    return paths


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def _parse_mix(text: str | None) -> dict[str, float]:
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, val = part.partition("=")
        try:
            mix[name.strip()] = float(val)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad --mix entry {part!r}; want name=weight") from None
    return mix


def main(argv: list[str] | None = None) -> int:
    """``generate`` writes a SYNTHETIC trace; ``validate`` prints simulator vs real statistics."""
    parser = argparse.ArgumentParser(
        prog="umask simulate",
        description="Calibrated agent-based simulator of week-long per-user app-usage traces. "
                    "Everything it produces is SYNTHETIC and labeled so.",
        epilog=f"Archetypes: {', '.join(ARCHETYPES)} (default mix "
               + ", ".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()) + ").")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, users: int) -> None:
        p.add_argument("--users", type=int, default=users, help=f"number of simulated users (default {users})")
        p.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical output (default 0)")
        p.add_argument("--days", type=int, default=7, help="days to simulate from --start (default 7)")
        p.add_argument("--start", default="2016-04-20",
                       help="first day, YYYY-MM-DD (default 2016-04-20, a Wednesday, as the real trace)")
        p.add_argument("--mix", default=None,
                       help="archetype mix, e.g. 'commuter=0.35,explorer=0.15,night=0.15,homebody=0.2,sparse=0.15'")
        p.add_argument("--data-dir", default=None,
                       help=f"folder holding {TSINGHUA_DIR}/ and {MILAN_DIR}/ (default: the project's data/)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    g = sub.add_parser("generate", help="simulate and write the SYNTHETIC trace, users and SYNTHETIC.md",
                       description="Simulate users and write App_usage_trace.synthetic.txt.gz (official "
                                   "layout), users.synthetic.json and SYNTHETIC.md into --out.")
    common(g, 1000)
    g.add_argument("--out", default="artifacts/sim", help="output folder (default artifacts/sim)")
    g.add_argument("--no-validation", action="store_true", help="skip the validation table in SYNTHETIC.md")
    v = sub.add_parser("validate", help="simulate in memory and print the simulator-vs-real table",
                       description="Simulate users in memory and print SYNTHETIC vs REAL statistics side "
                                   "by side (weekdays, 07:00-23:30, as the real sample).")
    common(v, 200)
    v.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    ns = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        config = SimulatorConfig(n_users=ns.users, days=ns.days, start_date=ns.start, seed=ns.seed,
                                 archetype_mix=_parse_mix(ns.mix))
    except (InputError, argparse.ArgumentTypeError) as e:
        parser.error(str(e))
    progress = False if ns.no_progress else None
    if ns.command == "generate":
        t0 = time.perf_counter()
        paths = write_synthetic(ns.out, config, data_dir=ns.data_dir, progress=progress,
                                with_validation=not ns.no_validation)
        print(f"SYNTHETIC data written in {time.perf_counter() - t0:.1f} s:")
        for p in paths.values():
            print(f"  {p}")
        return 0
    ts_dir, _ = _paths(ns.data_dir)
    catalog = load_llmapp_catalog(ts_dir)
    cal = fit_calibration(catalog, ns.data_dir)
    t0 = time.perf_counter()
    events, _ = simulate(config, catalog, ns.data_dir, calibration=cal, progress=progress)
    gen_s = time.perf_counter() - t0
    rows = validate(events, read_trace(ts_dir / SAMPLE_FILE), catalog, data_dir=ns.data_dir)
    print(format_validation(rows, title=f"SYNTHETIC simulator ({config.n_users} users, seed {config.seed}, "
                                        f"{config.days} days, {len(events):,} records, generated in {gen_s:.1f} s) "
                                        f"vs REAL data"))
    if ns.json:
        Path(ns.json).write_text(json.dumps({"synthetic": True, "config": config.to_dict(), "rows": rows},
                                            indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
