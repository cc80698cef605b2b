"""U-SCOPE text side: the prompt x_u, the rule-based profile y_u, and where a profile text comes from.

numpy only (ships to devices). Three pieces:

* `build_prompt` (x_u, the conditioning of the paper's eq. 23, section 5.1; docs/paper_notes.md
  section 5 compares it with the paper's prompt): a compact,
  deterministic serialization of pi_time, C_u / C_place and sigma_u of one user's `ProfileStats`.
  It is the profiling LLM's input. Every number is rounded (integer percent, 1-2 decimals) so
  the text does not change with float noise, and it stays under `PROMPT_MAX_CHARS`.
* `template_profile` (y_u): a rule-based, structured natural-language profile with the sections
  Intent, Routine, App preferences, Place tendencies and Regularity. It is the profile the model
  uses before a profiling LLM exists, and it is the SFT target for that LLM. Every rule is written
  out below with a named threshold, and `TEMPLATE_VERSION` changes whenever a rule changes.
* `ProfileSource` / `profile_text`: callers pick "none" (no profile: the encoder side substitutes a
  learned "no profile" embedding), "template" (the rules), "llm" (a generated text, passed in or
  produced by a `ProfileGenerator` from the prompt) or "text" (any given text).

Notation used in the texts: an hour range "16-19h" is the half-open clock interval [16:00, 19:00),
it may wrap midnight ("22-02h"); a single hour "18h" is [18:00, 19:00). Percentages are integer
and rounded half up; a non-zero share below 0.5 % is written "<1%".

All shares of app categories and places come from the events at the user's frequent places
(`ProfileStats.C_u` / `C_place`, the layout-covered events); the hour-of-day distribution pi_time and
the weekday distribution use all history events.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from umask.runtime.core.errors import InputError
from umask.runtime.core.featurize import ProfileStats

TEMPLATE_VERSION = 1              # bump when a template rule or threshold changes (SFT data, caches)
PROMPT_VERSION = 1                # bump when the prompt layout changes

# -----------------------------------------------------------------------------
# Constants: prompt (x_u)
# -----------------------------------------------------------------------------

PROMPT_MAX_CHARS = 600            # hard budget of build_prompt's output
PEAK_WINDOW_HOURS = 3             # width of the "peak" window (circular, best total share)
QUIET_HOUR_SHARE = 0.01           # an hour with a share below this is "quiet"
QUIET_MIN_RUN_HOURS = 3           # only quiet runs at least this long are named
MAX_QUIET_RUNS = 2                # name at most this many quiet runs (longest first)
PROMPT_TOP_APPS = 3               # categories listed in the prompt (fewer if over budget)
PROMPT_TOP_PLACES = 3             # place types listed in the prompt (fewer if over budget)

# -----------------------------------------------------------------------------
# Constants: template profile (y_u). Shares are fractions in [0, 1].
# -----------------------------------------------------------------------------

# Intent: the categories that carry at least INTENT_MIN_SHARE of the user's app events, in
# descending order, at most INTENT_MAX, phrased with INTENT_PHRASES. If the first one has at least
# DOMINANT_APP_SHARE it is "mainly" the intent; if none reaches INTENT_MIN_SHARE the intent is
# "mixed use" led by the top category.
INTENT_MIN_SHARE = 0.10
INTENT_MAX = 3
DOMINANT_APP_SHARE = 0.60

# Routine: the day is split into DAY_PARTS. A part with at least HEAVY_PART_SHARE of the events makes
# a "<part>-heavy user"; otherwise the two largest parts, when each has at least TWO_PART_SHARE,
# make a "<a> and <b> user"; otherwise an "all-day user". The active window is the shortest
# circular hour range holding every hour with at least ACTIVE_HOUR_SHARE. Night use (00-06h) is
# "none" below NIGHT_NONE_SHARE and "some late-night use" from NIGHT_SOME_SHARE on. The weekend
# lean compares the weekend share with its even-week expectation 2/7 +- WEEKEND_TILT.
DAY_PARTS = (("night", 0, 6), ("morning", 6, 12), ("afternoon", 12, 18), ("evening", 18, 24))
HEAVY_PART_SHARE = 0.50
TWO_PART_SHARE = 0.25
ACTIVE_HOUR_SHARE = 0.02
NIGHT_NONE_SHARE = 0.01
NIGHT_SOME_SHARE = 0.05
WEEKEND_TILT = 0.10

# App preferences: the top category is "dominant" from DOMINANT_APP_SHARE, "leading" from
# LEADING_APP_SHARE, otherwise usage is "spread". Up to MINOR_APPS_MAX more categories with at
# least MINOR_APP_SHARE follow ("then ..."). A category counts as "in use" from IN_USE_SHARE.
# Breadth: the normalized entropy of the category shares; "focused" below FOCUSED_ENTROPY,
# "diverse" from DIVERSE_ENTROPY.
LEADING_APP_SHARE = 0.30
MINOR_APP_SHARE = 0.05
MINOR_APPS_MAX = 2
IN_USE_SHARE = 0.01
FOCUSED_ENTROPY = 0.25
DIVERSE_ENTROPY = 0.50

# Place tendencies: the top place type is "mostly" from MOSTLY_PLACE_SHARE, else the two largest
# are named. Mobility over the layout's frequent cells: one top cell with at least
# STAY_TOP_CELL_SHARE means "stays mostly in one area"; at least MANY_CELLS used cells means
# "moves across many areas"; else "moves among a few areas". The top category's own dominant place
# is named when it differs from the overall one and the category has at least INTENT_MIN_SHARE.
MOSTLY_PLACE_SHARE = 0.50
STAY_TOP_CELL_SHARE = 0.60
MANY_CELLS = 8

# Regularity (ProfileStats.regularity = 1 - normalized session-start entropy): "highly regular" from
# REGULAR_HIGH, "fairly regular" from REGULAR_MID, "somewhat irregular" from REGULAR_LOW, else
# "irregular"; flagged "tentative" with fewer than MIN_SESSIONS_EVIDENCE sessions. Sessions are
# "short check-ins" below SHORT_SESSION_MIN minutes on average and "long sessions" from
# LONG_SESSION_MIN; "frequent" from FREQUENT_SESSIONS_PER_DAY a day, "few" up to
# FEW_SESSIONS_PER_DAY. Day similarity (needs >= 2 active days): "days look alike" from
# SIMILAR_DAYS, "days differ" below DIFFERENT_DAYS.
REGULAR_HIGH = 0.70
REGULAR_MID = 0.50
REGULAR_LOW = 0.30
MIN_SESSIONS_EVIDENCE = 5
SHORT_SESSION_MIN = 5.0
LONG_SESSION_MIN = 60.0
FREQUENT_SESSIONS_PER_DAY = 10.0
FEW_SESSIONS_PER_DAY = 3.0
SIMILAR_DAYS = 0.80
DIFFERENT_DAYS = 0.50

# Category -> intent phrase. Keys are category names lowercased with everything but letters removed,
# so both id spaces match ("Social Networking" / "Social\\_Networking", "Health & Fitness" /
# "Health&Fitness ", "Weather" / "Weath1er", "sports"). Unknown categories use their own name.
INTENT_PHRASES = {
    "utilities": "utility tools",
    "games": "mobile gaming",
    "entertainment": "video entertainment",
    "news": "news reading",
    "socialnetworking": "social communication",
    "shopping": "online shopping",
    "finance": "finance",
    "business": "business work",
    "travel": "travel services",
    "lifestyle": "local lifestyle services",
    "education": "learning",
    "healthfitness": "health tracking",
    "infantmom": "parenting",
    "navigation": "navigation",
    "weather": "weather checks",
    "music": "music listening",
    "references": "reference lookups",
    "books": "book reading",
    "photovideo": "photo-video content",
    "sports": "sports",
}

SECTIONS = ("Intent", "Routine", "App preferences", "Place tendencies", "Regularity")


# -----------------------------------------------------------------------------
# Small deterministic formatting helpers
# -----------------------------------------------------------------------------

def _pct_int(share: float) -> int:
    """Integer percent, rounded half up (not banker's rounding) so the text is stable."""
    return int(math.floor(float(share) * 100.0 + 0.5 + 1e-9))


def pct(share: float) -> str:
    """0.4567 -> "46%"; a non-zero share below 0.5 % -> "<1%"."""
    if share > 0 and _pct_int(share) == 0:
        return "<1%"
    return f"{_pct_int(share)}%"


def _fixed(x: float, digits: int) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    q = 10.0 ** digits
    v = math.floor(abs(float(x)) * q + 0.5 + 1e-9) / q
    return f"{math.copysign(v, x) if v else 0.0:.{digits}f}"


def hour_range(start: int, end: int) -> str:
    """Half-open clock interval [start:00, end:00), 24 -> 00; e.g. (16, 19) -> "16-19h"."""
    return f"{start % 24:02d}-{end % 24:02d}h"


def category_key(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def display_name(name: str) -> str:
    """Catalog names -> readable names ("Social\\_Networking" -> "Social Networking")."""
    return re.sub(r"\s+", " ", name.replace("\\_", " ").replace("_", " ")).strip()


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _order(counts: np.ndarray) -> np.ndarray:
    """Indices by descending count, the smaller index first on ties (deterministic)."""
    return np.argsort(-np.asarray(counts, np.float64), kind="stable")


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


# -----------------------------------------------------------------------------
# Derived quantities (shared by prompt and template)
# -----------------------------------------------------------------------------

def _names(stats: ProfileStats, category_names: Sequence[str] | None,
           place_names: Sequence[str] | None) -> tuple[list[str], list[str]]:
    cats = list(stats.category_names if category_names is None else category_names)
    places = list(stats.place_types if place_names is None else place_names)
    if len(cats) != stats.C_u.shape[0]:
        raise InputError(f"{len(cats)} category names for {stats.C_u.shape[0]} categories in C_u")
    if len(places) != stats.C_place.shape[1]:
        raise InputError(f"{len(places)} place names for {stats.C_place.shape[1]} place types in C_place")
    return [display_name(c) for c in cats], [display_name(p) for p in places]


def _pi_hour(stats: ProfileStats) -> np.ndarray:
    p = np.asarray(stats.pi_time, np.float64)
    if p.shape != (24,):
        raise InputError(f"pi_time must have 24 entries, got shape {p.shape}")
    return _shares(p)


def peak_hour(pi_hour: np.ndarray) -> int:
    """The busiest hour (the earliest on ties)."""
    return int(_order(pi_hour)[0])


def peak_window(pi_hour: np.ndarray, width: int = PEAK_WINDOW_HOURS) -> tuple[int, int, float]:
    """(start, end, share) of the circular ``width``-hour window with the largest share (earliest on ties)."""
    ext = np.concatenate([pi_hour, pi_hour[: width - 1]])
    sums = np.convolve(ext, np.ones(width), mode="valid")[:24]
    s = int(_order(sums)[0])
    return s, s + width, float(sums[s])


def _circular_runs(flag: np.ndarray) -> list[tuple[int, int]]:
    """Maximal circular runs of True in a 24-vector as (start, length); the whole day -> [(0, 24)]."""
    if flag.all():
        return [(0, 24)]
    if not flag.any():
        return []
    first_false = int(np.flatnonzero(~flag)[0])
    runs, start, length = [], None, 0
    for k in range(1, 25):                       # walk once round the clock from a False hour
        h = (first_false + k) % 24
        if flag[h]:
            if start is None:
                start, length = h, 0
            length += 1
        elif start is not None:
            runs.append((start, length))
            start = None
    return runs


def quiet_runs(pi_hour: np.ndarray) -> list[tuple[int, int]]:
    """Quiet hour runs (start, end) of at least QUIET_MIN_RUN_HOURS, longest first, at most MAX_QUIET_RUNS."""
    runs = [r for r in _circular_runs(pi_hour < QUIET_HOUR_SHARE) if r[1] >= QUIET_MIN_RUN_HOURS]
    runs.sort(key=lambda r: (-r[1], r[0]))
    return [(s, s + n) for s, n in runs[:MAX_QUIET_RUNS]]


def active_window(pi_hour: np.ndarray) -> tuple[int, int] | None:
    """Shortest circular range [start, end) holding every hour with share >= ACTIVE_HOUR_SHARE."""
    active = pi_hour >= ACTIVE_HOUR_SHARE
    if not active.any():
        return None
    gaps = _circular_runs(~active)
    if not gaps:
        return 0, 24
    gs, gl = min(gaps, key=lambda r: (-r[1], r[0]))          # the largest inactive gap (earliest on ties)
    start = (gs + gl) % 24
    return start, start + (24 - gl)


def day_part_shares(pi_hour: np.ndarray) -> dict[str, float]:
    return {name: float(pi_hour[a:b].sum()) for name, a, b in DAY_PARTS}


def weekend_share(stats: ProfileStats) -> float:
    w = _shares(np.asarray(stats.pi_weekday, np.float64))
    return float(w[5] + w[6])


def _place_of_category(stats: ProfileStats, k: int) -> int:
    row = np.asarray(stats.C_place[k])
    return int(_order(row)[0]) if row.sum() > 0 else -1


def _normalized_entropy(shares: np.ndarray) -> float:
    p = shares[shares > 0]
    if len(shares) < 2 or len(p) == 0:
        return 0.0
    return float(-(p * np.log(p)).sum() / math.log(len(shares)))


# -----------------------------------------------------------------------------
# Prompt x_u
# -----------------------------------------------------------------------------

def _prompt_lines(stats: ProfileStats, cats: list[str], places: list[str], n_apps: int, n_places: int,
                  app_places: bool) -> list[str]:
    pi = _pi_hour(stats)
    days = int(stats.n_active_days)
    lines = [(f"History: {int(stats.n_events)} app events on {days} active day{'s' if days != 1 else ''}, "
              f"weekend share {pct(weekend_share(stats))}.")]

    s, e, share = peak_window(pi)
    h = peak_hour(pi)
    act = f"peak {hour_range(s, e)} ({pct(share)}), busiest hour {h:02d}h ({pct(pi[h])})"
    quiet = quiet_runs(pi)
    if quiet:
        act += ", quiet " + ", ".join(hour_range(a, b) for a, b in quiet)
    lines.append(f"Activity by hour: {act}.")

    app_counts = np.asarray(stats.C_u, np.int64).sum(axis=1)
    app_sh = _shares(app_counts)
    place_counts = np.asarray(stats.C_place, np.int64).sum(axis=0)
    top_place = int(_order(place_counts)[0]) if place_counts.sum() > 0 else -1
    items = []
    for k in _order(app_counts)[:n_apps]:
        if app_counts[k] == 0:
            break
        item = f"{cats[k]} {pct(app_sh[k])}"
        p = _place_of_category(stats, int(k))
        if app_places and p >= 0 and p != top_place:     # only where it differs from the overall top
            item += f" (mostly at {places[p]})"
        items.append(item)
    n_used = int((app_sh >= IN_USE_SHARE).sum())
    lines.append(f"Top apps: {', '.join(items)}; {n_used} categories in use." if items
                 else "Top apps: none at frequent places.")

    place_sh = _shares(place_counts)
    pitems = [f"{places[j]} {pct(place_sh[j])}" for j in _order(place_counts)[:n_places] if place_counts[j] > 0]
    cell_counts = np.asarray(stats.C_u, np.int64).sum(axis=0)
    n_cells = int((cell_counts > 0).sum())
    cell_txt = f"{n_cells} frequent cells, top cell {pct(_shares(cell_counts).max())}" if n_cells else "no frequent cells"
    lines.append(f"Places: {', '.join(pitems) if pitems else 'unknown'}; {cell_txt}.")

    lines.append(f"Regularity: {_fixed(stats.regularity, 2)} (sessions/day {_fixed(stats.sessions_per_day, 1)}, "
                 f"mean session {_fixed(stats.mean_session_minutes, 1)} min, "
                 f"day similarity {_fixed(stats.day_similarity, 2)}).")
    return lines


def build_prompt(stats: ProfileStats, category_names: Sequence[str] | None = None,
                 place_names: Sequence[str] | None = None, *, max_chars: int = PROMPT_MAX_CHARS) -> str:
    """The U-SCOPE prompt x_u: pi_time, C_u / C_place and sigma_u of one user as a few short lines.

    ``category_names`` (K) / ``place_names`` (P) override the names stored in ``stats``. Deterministic.
    If the full text exceeds ``max_chars``, detail is dropped in a fixed order (per-category places,
    then list lengths) until it fits; a text that cannot fit raises `InputError`.
    Example::

        History: 155 app events on 1 active day, weekend share 0%.
        Activity by hour: peak 11-14h (37%), busiest hour 08h (30%), quiet 23-08h, 18-22h.
        Top apps: Social Networking 89% (mostly at Dining & Cuisine), Music 8%, Utilities 1% (mostly at Dining & Cuisine); 4 categories in use.
        Places: Shopping & Consumer Goods 30%, Dining & Cuisine 28%, Life Services 19%; 13 frequent cells, top cell 26%.
        Regularity: 0.45 (sessions/day 7.0, mean session 34.6 min, day similarity n/a).

    A category's place "(mostly at X)" is written only where X differs from the overall top place type.
    """
    cats, places = _names(stats, category_names, place_names)
    attempts = [(PROMPT_TOP_APPS, PROMPT_TOP_PLACES, True), (PROMPT_TOP_APPS, PROMPT_TOP_PLACES, False),
                (2, 2, True), (2, 2, False), (1, 1, False)]
    for n_apps, n_places, app_places in attempts:
        text = "\n".join(_prompt_lines(stats, cats, places, n_apps, n_places, app_places))
        if len(text) <= max_chars:
            return text
    raise InputError(f"the prompt needs {len(text)} characters, more than max_chars={max_chars}")


# -----------------------------------------------------------------------------
# Template profile y_u
# -----------------------------------------------------------------------------

def intent_phrase(category: str) -> str:
    return INTENT_PHRASES.get(category_key(category), display_name(category).lower())


def _intent(stats: ProfileStats, cats: list[str]) -> str:
    counts = np.asarray(stats.C_u, np.int64).sum(axis=1)
    if counts.sum() == 0:
        return "unknown (no app events at frequent places)."
    sh = _shares(counts)
    order = _order(counts)
    main = [int(k) for k in order[:INTENT_MAX] if sh[k] >= INTENT_MIN_SHARE]
    if not main:
        return f"mixed use, led by {intent_phrase(cats[int(order[0])])}."
    phrases = [intent_phrase(cats[k]) for k in main]
    if sh[main[0]] >= DOMINANT_APP_SHARE:
        rest = f", also {_join(phrases[1:])}" if len(phrases) > 1 else ""
        return f"mainly {phrases[0]}{rest}."
    return f"{_join(phrases)}."


def _routine(stats: ProfileStats) -> str:
    pi = _pi_hour(stats)
    parts = day_part_shares(pi)
    ranked = sorted(parts.items(), key=lambda kv: (-kv[1], [p[0] for p in DAY_PARTS].index(kv[0])))
    (p1, s1), (p2, s2) = ranked[0], ranked[1]
    if s1 >= HEAVY_PART_SHARE:
        kind = f"{p1}-heavy user"
    elif s2 >= TWO_PART_SHARE:
        a, b = sorted((p1, p2), key=[p[0] for p in DAY_PARTS].index)
        kind = f"{a} and {b} user"
    else:
        kind = "all-day user"
    out = [kind]
    win = active_window(pi)
    if win is not None:
        out.append(f"active {hour_range(*win)}" if win[1] - win[0] > 1 else f"active around {win[0]:02d}h")
    out.append(f"busiest at {peak_hour(pi):02d}h")
    night = parts["night"]
    if night < NIGHT_NONE_SHARE:
        out.append("no night use")
    elif night >= NIGHT_SOME_SHARE and p1 != "night":
        out.append(f"some late-night use ({pct(night)})")
    we = weekend_share(stats)
    if we <= 0.0:
        out.append("weekdays only")
    elif we >= 1.0:
        out.append("weekends only")
    elif we >= 2 / 7 + WEEKEND_TILT:
        out.append("weekend-leaning")
    elif we <= 2 / 7 - WEEKEND_TILT:
        out.append("weekday-leaning")
    else:
        out.append("even over the week")
    return ", ".join(out) + "."


def _apps(stats: ProfileStats, cats: list[str]) -> str:
    counts = np.asarray(stats.C_u, np.int64).sum(axis=1)
    if counts.sum() == 0:
        return "none recorded at frequent places."
    sh = _shares(counts)
    order = [int(k) for k in _order(counts)]
    top = order[0]
    if sh[top] >= DOMINANT_APP_SHARE:
        head = f"dominated by {cats[top]} ({pct(sh[top])})"
    elif sh[top] >= LEADING_APP_SHARE:
        head = f"led by {cats[top]} ({pct(sh[top])})"
    else:
        head = f"spread, top {cats[top]} ({pct(sh[top])})"
    minor = [k for k in order[1:1 + MINOR_APPS_MAX] if sh[k] >= MINOR_APP_SHARE]
    if minor:
        head += ", then " + _join([f"{cats[k]} ({pct(sh[k])})" for k in minor])
    ent = _normalized_entropy(sh)
    breadth = "focused" if ent < FOCUSED_ENTROPY else "diverse" if ent >= DIVERSE_ENTROPY else "moderately varied"
    n_used = int((sh >= IN_USE_SHARE).sum())
    return f"{head}; {breadth} ({n_used} categor{'y' if n_used == 1 else 'ies'})."


def _places(stats: ProfileStats, cats: list[str], places: list[str]) -> str:
    out = []
    pc = np.asarray(stats.C_place, np.int64).sum(axis=0)
    if pc.sum() > 0:
        sh = _shares(pc)
        order = [int(j) for j in _order(pc)]
        if sh[order[0]] >= MOSTLY_PLACE_SHARE:
            out.append(f"mostly around {places[order[0]]} places ({pct(sh[order[0]])})")
        else:
            two = [j for j in order[:2] if pc[j] > 0]
            out.append("around " + _join([f"{places[j]} ({pct(sh[j])})" for j in two]) + " places")
        app_counts = np.asarray(stats.C_u, np.int64).sum(axis=1)
        k = int(_order(app_counts)[0])
        pk = _place_of_category(stats, k)
        if _shares(app_counts)[k] >= INTENT_MIN_SHARE and pk >= 0 and pk != order[0]:
            out.append(f"uses {cats[k]} mostly at {places[pk]} places")
    else:
        out.append("place types unknown")
    cells = np.asarray(stats.C_u, np.int64).sum(axis=0)
    n_cells = int((cells > 0).sum())
    if n_cells:
        top = float(_shares(cells).max())
        if top >= STAY_TOP_CELL_SHARE:
            out.append(f"stays mostly in one area ({pct(top)} of events)")
        elif n_cells >= MANY_CELLS:
            out.append(f"moves across many areas ({n_cells} cells)")
        else:
            out.append(f"moves among a few areas ({n_cells} cells)")
    return "; ".join(out) + "."


def _regularity(stats: ProfileStats) -> str:
    r = float(stats.regularity)
    if not math.isfinite(r):
        level = "unknown"
    elif r >= REGULAR_HIGH:
        level = "highly regular"
    elif r >= REGULAR_MID:
        level = "fairly regular"
    elif r >= REGULAR_LOW:
        level = "somewhat irregular"
    else:
        level = "irregular"
    head = level
    if int(stats.n_sessions) < MIN_SESSIONS_EVIDENCE:
        head += f", tentative ({int(stats.n_sessions)} session{'s' if int(stats.n_sessions) != 1 else ''})"
    spd, mins = float(stats.sessions_per_day), float(stats.mean_session_minutes)
    freq = ("frequent" if spd >= FREQUENT_SESSIONS_PER_DAY else "few" if spd <= FEW_SESSIONS_PER_DAY
            else "moderate")
    style = ("short check-ins" if mins < SHORT_SESSION_MIN else "long sessions" if mins >= LONG_SESSION_MIN
             else "medium sessions")
    out = [head, f"{freq} {style} ({_fixed(spd, 1)} a day, mean {_fixed(mins, 0)} min)"]
    ds = float(stats.day_similarity)
    if math.isfinite(ds):
        out.append("days look alike" if ds >= SIMILAR_DAYS else "days differ" if ds < DIFFERENT_DAYS
                   else "days partly alike")
    return "; ".join(out) + "."


def profile_sections(stats: ProfileStats, category_names: Sequence[str] | None = None,
                     place_names: Sequence[str] | None = None) -> dict[str, str]:
    """The template profile as {section: sentence}, sections in `SECTIONS` order."""
    cats, places = _names(stats, category_names, place_names)
    body = {
        "Intent": _intent(stats, cats),
        "Routine": _routine(stats),
        "App preferences": _apps(stats, cats),
        "Place tendencies": _places(stats, cats, places),
        "Regularity": _regularity(stats),
    }
    return {k: v[:1].upper() + v[1:] for k, v in body.items()}


def template_profile(stats: ProfileStats, category_names: Sequence[str] | None = None,
                     place_names: Sequence[str] | None = None) -> str:
    """The rule-based profile y_u: "Intent: ... Routine: ... App preferences: ... Place tendencies: ...
    Regularity: ..." on one line each. Deterministic; the rules are the constants of this module."""
    return "\n".join(f"{k}: {v}" for k, v in profile_sections(stats, category_names, place_names).items())


# -----------------------------------------------------------------------------
# Where a profile text comes from
# -----------------------------------------------------------------------------

class ProfileSource(str, Enum):
    """How a user's profile text is obtained.

    NONE: no profile (the encoder side uses its learned "no profile" embedding); TEMPLATE: the rules
    of `template_profile`; LLM: text written by the profiling LLM from `build_prompt` (given as
    ``text``, or generated by a `ProfileGenerator`); TEXT: any text the caller supplies.
    """

    NONE = "none"
    TEMPLATE = "template"
    LLM = "llm"
    TEXT = "text"

    @classmethod
    def parse(cls, source: ProfileSource | str) -> ProfileSource:
        if isinstance(source, cls):
            return source
        try:
            return cls(str(source).lower())
        except ValueError:
            raise InputError(f"unknown profile source {source!r}; use one of "
                             f"{[s.value for s in cls]}") from None


PROFILE_SPEC_HELP = "template, none, or llm:MODEL.gguf[+LORA.gguf]"


class ProfileSpec(NamedTuple):
    """A parsed profile source spec (`parse_profile_spec`): the source and, for "llm", its GGUF files."""

    source: ProfileSource
    model: str | None = None
    lora: str | None = None


def parse_profile_spec(spec: str) -> ProfileSpec:
    """``template`` | ``none`` | ``llm:MODEL.gguf[+LORA.gguf]`` (a base GGUF plus an optional GGUF LoRA
    adapter, run by runtime/engines/llama.LlamaProfiler) -> `ProfileSpec`. The one spelling shared by the
    trainer (``--profile-source``) and the benchmark harness (``--profile NAME=SPEC``). Paths are not
    checked here (`profile_generator` does)."""
    spec = str(spec).strip()
    if spec in (ProfileSource.TEMPLATE.value, ProfileSource.NONE.value):
        return ProfileSpec(ProfileSource(spec))
    if not spec.startswith("llm:"):
        raise InputError(f"unknown profile source {spec!r}: use {PROFILE_SPEC_HELP}")
    model, _, lora = spec[4:].partition("+")
    if not model:
        raise InputError(f"profile source {spec!r}: no GGUF model after 'llm:' (use {PROFILE_SPEC_HELP})")
    return ProfileSpec(ProfileSource.LLM, model, lora or None)


def profile_generator(spec: str | ProfileSpec, n_threads: int = 1) -> ProfileGenerator | None:
    """The greedy LlamaProfiler of an ``llm:`` spec (None for template / none). InputError when a GGUF
    file is missing or llama-cpp-python is not installed (the optional ``llm`` extra)."""
    ps = spec if isinstance(spec, ProfileSpec) else parse_profile_spec(spec)
    if ps.source is not ProfileSource.LLM:
        return None
    from umask.runtime.engines.llama import LLMUnavailableError, LlamaProfiler

    try:
        return LlamaProfiler(ps.model, lora_path=ps.lora, n_threads=n_threads)
    except LLMUnavailableError as e:
        raise InputError(f"profile source llm:{ps.model}: {e}") from e


@runtime_checkable
class ProfileGenerator(Protocol):
    """Anything that turns a prompt x_u into a profile y_u (e.g. a llama.cpp wrapper)."""

    def __call__(self, prompt: str) -> str: ...


def normalize_text(text: str) -> str:
    """Strip and collapse runs of spaces/tabs, keep line breaks (one per line), so equal profiles
    give equal cache keys."""
    lines = [re.sub(r"[ \t\r\f\v]+", " ", ln).strip() for ln in str(text).split("\n")]
    return "\n".join(ln for ln in lines if ln)


def profile_text(source: ProfileSource | str, stats: ProfileStats | None = None,
                 category_names: Sequence[str] | None = None, place_names: Sequence[str] | None = None, *,
                 text: str | None = None, generator: ProfileGenerator | None = None) -> str | None:
    """The profile text of one user for ``source``; None for "none".

    "template" needs ``stats``; "text" needs ``text``; "llm" takes ``text`` (already generated) or
    calls ``generator(build_prompt(stats, ...))``. Returned texts are `normalize_text`-ed; an empty
    text is an error (use "none" for no profile).
    """
    src = ProfileSource.parse(source)
    if src is ProfileSource.NONE:
        return None
    if src is ProfileSource.TEMPLATE:
        if stats is None:
            raise InputError("profile source 'template' needs the user's ProfileStats")
        out = template_profile(stats, category_names, place_names)
    elif src is ProfileSource.TEXT or text is not None:
        if text is None:
            raise InputError(f"profile source '{src.value}' needs text=...")
        out = text
    else:  # LLM without a ready text: generate it from the prompt
        if generator is None or stats is None:
            raise InputError("profile source 'llm' needs text=... or both stats and generator=...")
        out = generator(build_prompt(stats, category_names, place_names))
        if not isinstance(out, str):
            raise InputError(f"the profile generator returned {type(out).__name__}, not str")
    out = normalize_text(out)
    if not out:
        raise InputError(f"profile source '{src.value}' gave an empty text (use 'none' for no profile)")
    return out
