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

Command line: ``python -m umask.train.simulator generate --users 1000 --seed 0 --out artifacts/sim``
and ``python -m umask.train.simulator validate --users 200 --seed 0`` (also ``umask simulate ...``).

Modules
-------
``config`` (constants, `ARCHETYPES`, `SimulatorConfig`), ``calibration`` (real-data loading, trace
statistics, `fit_calibration`), ``agents`` (one user: anchors, routine, episodes, records), ``world``
(what all users share, and `simulate`), ``validation`` (`validate`, `format_validation`), ``traces``
(`write_synthetic`), ``cli`` (`main`; ``python -m umask.train.simulator``).
"""

from umask.train.simulator.calibration import (
    Calibration,
    TrafficBins,
    calibration_targets,
    fit_calibration,
    load_real_sample,
    load_traffic_bins,
    station_place_types,
    trace_stats,
)
from umask.train.simulator.cli import main
from umask.train.simulator.config import (
    ARCHETYPES,
    BINS_FILE,
    DEFAULT_DATA_DIR,
    DEFAULT_MIX,
    EPISODE_GAP_S,
    KIND_NAMES,
    MILAN_DIR,
    MILAN_FILE,
    README_NAME,
    SAMPLE_FILE,
    SESSION_GAP_S,
    SLOT_S,
    SLOTS_PER_DAY,
    TRACE_NAME,
    TSINGHUA_DIR,
    USER_ID_BASE,
    USERS_NAME,
    WINDOW_S,
    Archetype,
    SimulatorConfig,
)
from umask.train.simulator.traces import write_synthetic
from umask.train.simulator.validation import format_validation, validate
from umask.train.simulator.world import simulate

__all__ = [
    "ARCHETYPES", "BINS_FILE", "DEFAULT_DATA_DIR", "DEFAULT_MIX", "EPISODE_GAP_S", "KIND_NAMES", "MILAN_DIR",
    "MILAN_FILE", "README_NAME", "SAMPLE_FILE", "SESSION_GAP_S", "SLOTS_PER_DAY", "SLOT_S", "TRACE_NAME",
    "TSINGHUA_DIR", "USERS_NAME", "USER_ID_BASE", "WINDOW_S", "Archetype", "Calibration", "SimulatorConfig",
    "TrafficBins", "calibration_targets", "fit_calibration", "format_validation", "load_real_sample",
    "load_traffic_bins", "main", "simulate", "station_place_types", "trace_stats", "validate",
    "write_synthetic",
]
