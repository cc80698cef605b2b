"""Simulator constants, the documented archetypes, `SimulatorConfig` and the data paths.

Part of the calibrated simulator (`umask.train.simulator`; the model is described in its package
docstring). Command line: ``python -m umask.train.simulator generate|validate ...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from umask.runtime.core.errors import InputError

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


def _paths(data_dir: str | Path | None) -> tuple[Path, Path]:
    root = Path(DEFAULT_DATA_DIR if data_dir is None else data_dir)
    ts_dir = root / TSINGHUA_DIR if (root / TSINGHUA_DIR).is_dir() else root
    mi_dir = root / MILAN_DIR if (root / MILAN_DIR).is_dir() else root
    for p in (ts_dir / SAMPLE_FILE, ts_dir / BINS_FILE, mi_dir / MILAN_FILE):
        if not p.exists():
            raise FileNotFoundError(f"{p}: needed for calibration (data_dir={root})")
    return ts_dir, mi_dir
