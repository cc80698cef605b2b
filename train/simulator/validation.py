"""Validation report: SYNTHETIC simulated statistics next to the REAL sample and the full-trace
reference, with divergence scores (`validate`, `format_validation`).

Part of `umask.train.simulator`. ``python -m umask.train.simulator validate --users 200 --seed 0``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from umask.runtime.core.catalog import Catalog
from umask.runtime.core.events import EventLog
from umask.train.simulator.calibration import (
    TrafficBins,
    _milan_profile,
    load_traffic_bins,
    station_place_types,
    trace_stats,
)
from umask.train.simulator.config import BINS_FILE, MILAN_FILE, WINDOW_S, _paths

log = logging.getLogger(__name__)

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
