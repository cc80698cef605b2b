"""PROTOCOL v2 B3 (cross-domain cold start, U-MASK paper section 7.1.2): baselines and U-MASK.

    python -m umask.bench.accuracy.user_b3 --ckpt checkpoints/umask_small --users 50 --seeds 0,1,2 \\
        --out benchmarks/results/v2_user_b3.json

Task (`umask.train.data.user_windows.cross_domain_windows`): a test-day window per user and
direction; the user's history is the 20 slots before the day of ONE source domain (apps without
places, or places without apps); the target is the other domain's items over the day (app
categories by records; the user's layout cells by slots present). Other users of the same
population are "training users": their training days 1-5 may be read whole.

Rows (Recall / NDCG / MRR at 1, 3, 5, and 10 for apps; relevant = the true top-k, MRR: the true
top-1, `user_scoring.ranking_scores`):

* ``popularity``: every other user's training-day engagement of the target domain, summed;
* ``knn_history_average``: the historical average (training days) of the k = 10 users whose
  source-domain history at the same 20 slots of day (mean over their training days) is closest by
  cosine to the cold user's 20 slots (apps: log1p records per category and slot; places: presence
  per kind of place and slot, since layouts are per user);
* ``historical_average_warm``: NOT a cold-start method, a reference: the user's OWN target-domain
  history of days 1-6 (what the cold user does not have);
* ``umask_small:retrieval`` (ours): U-MASK as the paper describes cold start: h_u of the cold user
  from what is known (the template profile of its 20 source slots -> SBERT -> the shipped model's
  ProfileMLP, eq. 24); the k = 10 other users with the most similar h_u (computed the same way from
  their source domain at the same slots of day, training days) are retrieved; their training-day
  slot-of-day tables (all channels; places carried over by POI mix,
  `umask.runtime.families.umask.retrieval`) fill the 2-day context, the cold user's own source slots
  overwrite their part, all of it is the DiT's evidence (and so its cold-start "blend" prior); the
  completed next day is ranked by expected engagement (x0 at t = N-1);
* ``umask_small:no_retrieval`` (ablation): the same model with only the user's own 20 source slots
  as evidence (the other channels unseen);
* ``umask_small:retrieval_prior_only`` (ablation): the retrieval-filled window's prior alone (no
  network): what the DiT adds on top of the retrieved users.

Apps as a source carry no place, but the model's tensor is per cell: the slot's records are spread
over the layout by the retrieved users' presence at that slot of day (no retrieval: uniformly over
the filled cells). The REAL 6-user sample holds one day, so it has no B3 window (20 slots before a
day + the next 24 h): no real rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.featurize import decode_app_counts
from umask.runtime.families.umask import retrieval as rt
from umask.train.data import user_windows as uw
from umask.bench.accuracy import user_tasks as ut
from umask.bench.accuracy.user_baselines import HistoricalAverage
from umask.bench.accuracy.user_scoring import ranking_scores
from umask.bench.accuracy.user_v2 import _atomic_json, _git_commit

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "v2_user_b3.json"
KS = {"app": ut.APP_KS, "location": ut.LOC_KS}                    # by TARGET domain
HEADLINE = ("ndcg@3/app", "ndcg@3/location")
BASELINES = ("popularity", "knn_history_average", "historical_average_warm")
NOTES = {
    "popularity": "every other user's training-day (days 1-5) engagement of the target domain, summed (places "
                  "carried over by POI mix); not personal",
    "knn_history_average": "historical average (training days) of the k = 10 most similar other users; similarity: "
                           "cosine of the source-domain 20 slots (apps: log1p records per category x slot, location-"
                           "free; places: presence per kind of place x slot) with the other user's mean over its "
                           "training days at the same slots of day; no source activity -> popularity",
    "historical_average_warm": "REFERENCE, not a cold-start method: the user's own target-domain history (days 1-6) "
                               "summed by item; a cold user does not have it",
}


# ------------------------------------------------------------------------------------------------
# Other users: training-day tables
# ------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Bank:
    """Every user's training-day (slots [0, train_end)) slot-of-day tables, for retrieval and baselines."""

    pop: ut.UserPopulation
    users: list[int]
    tod: dict[int, np.ndarray]          # (C, spd, HW) mean featurized value by slot of day (HistoricalAverage)
    app_tod: dict[int, np.ndarray]      # (spd, K) mean records per category by slot of day (no place)
    loc_tod: dict[int, np.ndarray]      # (spd, HW) mean presence by slot of day
    kinds: dict[int, np.ndarray]        # (HW, P) unit POI-mix per layout cell
    filled: dict[int, np.ndarray]       # (HW,) bool

    @classmethod
    def build(cls, pop: ut.UserPopulation) -> Bank:
        ha, ch, spd = HistoricalAverage(pop), pop.channels, pop.slots_per_day
        tod, app_tod, loc_tod, kinds, filled = {}, {}, {}, {}, {}
        for u in pop.users:
            f = pop.features[u]
            C, _, H, W = f.tensor.shape
            tod[u] = ha.profile(u).reshape(C, spd, H * W).astype(np.float64)
            d = f.tensor.dense(0, pop.train_end)                                    # (C, T, H, W)
            rec = decode_app_counts(d[ch.apps]).sum(axis=(2, 3))                     # (K, T)
            app_tod[u] = rec.reshape(rec.shape[0], -1, spd).mean(axis=1).T          # (spd, K)
            loc_tod[u] = tod[u][ch.location_index]                                   # (spd, HW)
            kinds[u] = rt.place_kinds(f.e_pos)
            filled[u] = f.layout.filled.reshape(-1)
        return cls(pop, pop.users, tod, app_tod, loc_tod, kinds, filled)

    def transfer(self, v: int, u: int) -> np.ndarray:
        """(HW, HW): user v's places onto user u's (identity for v == u)."""
        if v == u:
            return np.eye(len(self.filled[u]))
        return rt.place_transfer(self.kinds[v], self.kinds[u], self.filled[u])

    def others(self, u: int) -> list[int]:
        return [v for v in self.users if v != u]

    def day_scores(self, users: Sequence[int], u: int, domain: str, shrink: float = 1.0) -> np.ndarray:
        """Mean over ``users`` of their training-day engagement of ``domain`` per day, on user u's items;
        ``shrink`` < 1: ``shrink`` x that + (1 - shrink) x the mean over every other user (popularity)."""
        def mean(vs: Sequence[int]) -> np.ndarray:
            if domain == "app":
                return np.mean([self.app_tod[v].sum(axis=0) for v in vs], axis=0)
            return np.mean([rt.map_places(self.loc_tod[v].sum(axis=0), self.transfer(v, u)) for v in vs], axis=0)
        out = mean(users)
        return out if shrink >= 1.0 else shrink * out + (1.0 - shrink) * mean(self.others(u))

    def neighbour_table(self, users: Sequence[int], u: int, shrink: float = 1.0) -> np.ndarray:
        """(C, spd, HW): the mean slot-of-day table of ``users`` on user u's layout (``shrink``: as `day_scores`)."""
        def mean(vs: Sequence[int]) -> np.ndarray:
            return np.mean([rt.map_places(self.tod[v], self.transfer(v, u)) for v in vs], axis=0)
        out = mean(users)
        return out if shrink >= 1.0 else shrink * out + (1.0 - shrink) * mean(self.others(u))

    def source_vector(self, u: int, source: str, hist: np.ndarray | None, tods: np.ndarray) -> np.ndarray:
        """The kNN similarity space: the cold history ``hist`` of user u, or (hist None) user u's training-day
        mean at the same slots of day ``tods``."""
        if source == "app":
            x = self.app_tod[u][tods] if hist is None else hist                      # (L, K)
            return np.log1p(x).ravel()
        x = self.loc_tod[u][tods] if hist is None else hist.reshape(len(tods), -1)   # (L, HW)
        return (x @ self.kinds[u]).ravel()                                          # presence by kind of place


@dataclass(eq=False)
class Case:
    """One v2 B3 window of one user."""

    user: int
    window: uw.CrossDomainWindow
    hist: np.ndarray            # source_history
    truth: np.ndarray           # target_engagement

    @property
    def tods(self) -> np.ndarray:
        return np.arange(*self.window.history) % self.pop_spd

    pop_spd: int = 96


def cases(pop: ut.UserPopulation, source: str, split: str = "test") -> list[Case]:
    out = []
    for u in pop.users:
        x = pop.features[u].tensor
        for w in uw.cross_domain_windows(x, source, split):
            out.append(Case(u, w, w.source_history(x), w.target_engagement(x), pop.slots_per_day))
    return out


# ------------------------------------------------------------------------------------------------
# Baselines: item scores of the target domain
# ------------------------------------------------------------------------------------------------
def popularity(bank: Bank, case: Case) -> np.ndarray:
    return bank.day_scores([v for v in bank.users if v != case.user], case.user, case.window.target_domain)


def knn_users(bank: Bank, case: Case, k: int = rt.DEFAULT_K) -> list[int] | None:
    """The k nearest other users by the raw source-domain history (None: no source activity)."""
    src = case.window.source
    q = bank.source_vector(case.user, src, case.hist, case.tods)
    b = np.stack([bank.source_vector(v, src, None, case.tods) for v in bank.users])
    got = rt.cosine_top_k(q, b, k, exclude=np.array([v == case.user for v in bank.users]))
    return None if got is None else [bank.users[i] for i in got[0]]


def knn_history_average(bank: Bank, case: Case, k: int = rt.DEFAULT_K, shrink: float = 1.0) -> np.ndarray:
    nb = knn_users(bank, case, k)
    return popularity(bank, case) if nb is None else bank.day_scores(nb, case.user, case.window.target_domain, shrink)


def historical_average_warm(bank: Bank, case: Case) -> np.ndarray:
    """Reference only: the user's own target domain over every slot before the target day."""
    x = bank.pop.features[case.user].tensor
    t0 = case.window.target[0]
    if case.window.target_domain == "app":
        return uw.engagement(x, 0, t0)[0]
    d = x.dense(0, t0)[x.channels.location_index]
    return d.reshape(d.shape[0], -1).sum(axis=0).astype(np.float64)


BASELINE_FNS: dict[str, Callable[[Bank, Case], np.ndarray]] = {
    "popularity": popularity, "knn_history_average": knn_history_average,
    "historical_average_warm": historical_average_warm}


# ------------------------------------------------------------------------------------------------
# Scoring and rows
# ------------------------------------------------------------------------------------------------
def score_cases(preds: Sequence[np.ndarray], cs: Sequence[Case]) -> list[dict[str, float] | None]:
    """Per window: the ranking metrics of the target domain (None: no target activity)."""
    return [ranking_scores(p, c.truth, KS[c.window.target_domain]) for p, c in zip(preds, cs)]


def summarize(per_window: Sequence[dict[str, float] | None]) -> tuple[dict[str, float], int, int]:
    """(mean metric over ranked windows, n ranked, n skipped)."""
    got = [m for m in per_window if m is not None]
    keys = got[0].keys() if got else ()
    return {k: float(np.mean([m[k] for m in got])) for k in keys}, len(got), len(per_window) - len(got)


def rows_from(results: Mapping[str, Mapping[int, Mapping[str, Any]]], *, dataset: str, data: str, command: str,
              kinds: Mapping[str, tuple[str, str | None, str]]) -> list[dict[str, Any]]:
    """results[model][seed] = {target domain: (metrics, n, skipped)} -> one row per (model, metric):
    mean over seeds, spread = population std over seeds (ddof 0)."""
    out = []
    for model, by_seed in results.items():
        kind, family, artifact = kinds[model]
        seeds = sorted(by_seed)
        for domain in ("app", "location"):
            names = list(by_seed[seeds[0]][domain][0])
            for name in names:
                v = [by_seed[s][domain][0][name] for s in seeds]
                out.append({"protocol": "B3", "dataset": dataset, "data": data, "model": model, "kind": kind,
                            "family": family, "artifact": artifact, "metric": f"{name}/{domain}",
                            "value": round(float(np.mean(v)), 6),
                            "spread": round(float(np.std(v)), 6) if len(seeds) > 1 else None, "better": "higher",
                            "n_windows": int(sum(by_seed[s][domain][1] for s in seeds)), "seeds": seeds,
                            "command": command, "notes": NOTES.get(model.split(":")[-1], NOTES.get(model, ""))})
    return out


def paired_ndcg(per: Mapping[str, Mapping[str, list[float]]], model: str, baselines: Sequence[str],
                n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``model`` minus the best baseline on NDCG@3 per target domain, windows pooled over seeds, bootstrap."""
    rng = np.random.default_rng(seed)
    out = {}
    for domain in ("app", "location"):
        a = np.array(per[model][domain])
        if not len(a):
            continue
        best = max(baselines, key=lambda b: float(np.mean(per[b][domain])))
        b = np.array(per[best][domain])
        idx = rng.integers(0, len(a), (n_boot, len(a)))
        boot = (a[idx] - b[idx]).mean(axis=1)
        out[domain] = {"best_baseline": best, "model": round(float(a.mean()), 4), "baseline": round(float(b.mean()), 4),
                       "diff": round(float((a - b).mean()), 4),
                       "diff_ci95": [round(float(np.percentile(boot, 2.5)), 4),
                                     round(float(np.percentile(boot, 97.5)), 4)],
                       "windows_model_better": int((a > b).sum()), "windows_baseline_better": int((a < b).sum()),
                       "n_windows": int(len(a))}
    return out


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------
def evaluate(bank: Bank, split: str, *, k_knn: int, k_ret: int, shrink_knn: float = 1.0, shrink_ret: float = 1.0,
             runner: Any = None, name: str = "umask_small", models: Sequence[str] | None = None,
             variants: Sequence[str] | None = None) -> dict[str, Any]:
    """One population and split -> {"results": {model: {target: (metrics, n, skipped)}},
    "ndcg3": {model: {target: [per-window NDCG@3]}}, "fallbacks": {...}}."""
    models = list(BASELINE_FNS) if models is None else list(models)
    preds: dict[str, dict[str, list[np.ndarray]]] = defaultdict(dict)
    fallbacks: dict[str, int] = defaultdict(int)
    cs_by_source = {src: cases(bank.pop, src, split) for src in uw.B3_SOURCES}
    for src, cs in cs_by_source.items():
        for m in models:
            if m == "knn_history_average":
                preds[m][src] = [knn_history_average(bank, c, k_knn, shrink_knn) for c in cs]
                fallbacks[f"knn_no_source_activity/{src}"] += sum(knn_users(bank, c, k_knn) is None for c in cs)
            else:
                preds[m][src] = [BASELINE_FNS[m](bank, c) for c in cs]
        if runner is not None:
            runner.k, runner.shrink = k_ret, shrink_ret
            for variant, p in runner.run(bank, cs, variants).items():
                preds[f"{name}:{variant}"][src] = p
            fallbacks[f"retrieval_no_profile/{src}"] += runner.last_fallbacks
    results: dict[str, dict[str, Any]] = {}
    ndcg3: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for model, by_src in preds.items():
        results[model] = {}
        for src, p in by_src.items():
            sc = score_cases(p, cs_by_source[src])
            target = uw.b3_target_domain(src)
            results[model][target] = summarize(sc)
            ndcg3[model][target] = [m["ndcg@3"] for m in sc if m is not None]
    return {"results": results, "ndcg3": ndcg3, "fallbacks": dict(fallbacks)}


def retrieval_diagnostics(bank: Bank, runner: Any, k: int, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Where the cold-start error is: NDCG@3 of the plain mean of k retrieved users' training-day engagement
    (no network) when they are chosen by h_u (U-MASK), by the raw source history (kNN), at random, or by an
    ORACLE that compares the users' own training-day target-domain profiles (a cold user does not have
    them: the ceiling of retrieval with this k)."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for src in uw.B3_SOURCES:
        for c in cases(bank.pop, src, split):
            target, others = c.window.target_domain, [v for v in bank.users if v != c.user]
            prof = runner.profile(bank.pop, c.user, src, lambda s_, c=c: (s_ >= c.window.history[0])
                                  & (s_ < c.window.history[1]))
            own = bank.day_scores([c.user], c.user, target)
            oracle = sorted(others, key=lambda v: -float(rt.unit(bank.day_scores([v], c.user, target))
                                                         @ rt.unit(own)))[:k]
            hb = runner.bank_hb(bank, src)
            got = rt.cosine_top_k(runner.h_b(bank, [c])[0], hb, k, exclude=np.array([v == c.user for v in bank.users]))
            picks = {"h_u": runner.retrieve(bank, c, prof, runner.h_u([prof])[0]), "source_history": knn_users(bank, c, k),
                     "h_b": None if got is None else [bank.users[i] for i in got[0]],
                     "random": [others[i] for i in rng.choice(len(others), k, replace=False)], "oracle": oracle}
            for how, nb in picks.items():
                m = ranking_scores(bank.day_scores(nb or others, c.user, target), c.truth, (3,))
                if m is not None:
                    out[target][how].append(m["ndcg@3"])
    return {d: {how: round(float(np.mean(v)), 4) for how, v in by.items()} for d, by in out.items()}


def select(bank: Bank, ks: Sequence[int], shrinks: Sequence[float], runner: Any, name: str) -> dict[str, Any]:
    """k and shrink of the kNN baseline and of U-MASK's retrieval, each chosen on the VALIDATION day (day 6 as
    the target) by the mean of NDCG@3 over the two target domains; the test day is never read."""
    grid: dict[str, dict[str, float]] = defaultdict(dict)
    for k in ks:
        for lam in shrinks:
            ev = evaluate(bank, "val", k_knn=k, k_ret=k, shrink_knn=lam, shrink_ret=lam, runner=runner, name=name,
                          models=["knn_history_average"], variants=["retrieval"])
            for model, res in ev["results"].items():
                grid[model][f"{k},{lam:g}"] = round(float(np.mean([res[d][0]["ndcg@3"] for d in ("app", "location")])), 4)

    def best(model: str) -> tuple[int, float]:
        v = grid[model]
        key = max(v, key=lambda kl: (v[kl], -float(kl.split(",")[0])))
        return int(key.split(",")[0]), float(key.split(",")[1])

    (k_knn, s_knn) = best("knn_history_average")
    (k_ret, s_ret) = best(f"{name}:retrieval") if runner is not None else (k_knn, s_knn)
    return {"what": "mean NDCG@3 (apps, places) on the validation day by 'k,shrink'; best per method",
            "val_ndcg3": dict(grid), "k_knn": k_knn, "shrink_knn": s_knn, "k_retrieval": k_ret, "shrink_retrieval": s_ret}


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user_b3", description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="checkpoints/umask_small", help="U-MASK checkpoint ('' = baselines only)")
    ap.add_argument("--name", default="umask_small")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--k", type=int, default=rt.DEFAULT_K, help="retrieved / nearest users (without --select-k)")
    ap.add_argument("--select-k", default="", metavar="K,K,...",
                    help="choose k (and shrink) per method on the validation day of the first seed among these")
    ap.add_argument("--shrink", type=float, default=1.0,
                    help="weight of the retrieved users against every other user (without --select-k)")
    ap.add_argument("--select-shrink", default="1", metavar="S,S,...", help="shrink values tried with --select-k")
    ap.add_argument("--diagnose", action="store_true", help="retrieval diagnostics per seed (meta)")
    ap.add_argument("--diagnose-k", type=int, default=5, help="k of the retrieval diagnostics (fixed: comparable)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = shlex.join(["python", "-m", "umask.bench.accuracy.user_b3", *argv])
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    t_start = time.perf_counter()
    runner = None
    if args.ckpt:
        import torch

        from umask.bench.accuracy.user_b3_umask import UMaskColdStart

        torch.set_num_threads(max(1, args.threads))
        runner = UMaskColdStart(args.ckpt, k=args.k)
    k_knn = k_ret = args.k
    s_knn = s_ret = args.shrink
    selection = None
    results: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))   # NDCG@3 per window
    fallbacks: dict[str, int] = defaultdict(int)
    diagnostics: dict[int, Any] = {}
    for seed in seeds:
        bank = Bank.build(ut.simulated_population(args.users, seed))
        if args.select_k and selection is None:
            selection = select(bank, [int(k) for k in args.select_k.split(",")],
                               [float(x) for x in args.select_shrink.split(",")], runner, args.name)
            k_knn, k_ret = selection["k_knn"], selection["k_retrieval"]
            s_knn, s_ret = selection["shrink_knn"], selection["shrink_retrieval"]
            log.info("k chosen on the validation day: %s", selection)
        ev = evaluate(bank, "test", k_knn=k_knn, k_ret=k_ret, shrink_knn=s_knn, shrink_ret=s_ret, runner=runner,
                      name=args.name)
        for model, res in ev["results"].items():
            results[model][seed] = res
            for d, v in ev["ndcg3"][model].items():
                per[model][d].extend(v)
        for k, v in ev["fallbacks"].items():
            fallbacks[k] += v
        if args.diagnose and runner is not None:
            runner.k, runner.shrink = args.diagnose_k, 1.0
            diagnostics[seed] = retrieval_diagnostics(bank, runner, args.diagnose_k, seed=seed)
        log.info("seed %d done (%.0f s)", seed, time.perf_counter() - t_start)
    kinds = {b: ("baseline", None, "numpy") for b in BASELINES}
    if runner is not None:
        kinds.update({f"{args.name}:retrieval": ("ours", "umask", "torch"),
                      f"{args.name}:no_retrieval": ("ablation", "umask", "torch"),
                      f"{args.name}:retrieval_prior_only": ("ablation", "umask", "numpy")})
        runner.k, runner.shrink = k_ret, s_ret
        NOTES.update(runner.notes())
    NOTES["knn_history_average"] = (NOTES["knn_history_average"].replace("k = 10", f"k = {k_knn}")
                                    + f"; shrink {s_knn:g} (x the neighbours + (1 - shrink) x every other user)")
    dataset = f"sim {args.users} users x {len(seeds)} seeds, v2 B3 cut (20 source-domain slots -> next 24 h)"
    rows = rows_from(results, dataset=dataset, data="synthetic", command=command, kinds=kinds)
    cold_baselines = ["popularity", "knn_history_average"]
    meta = {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
            "wall_seconds": round(time.perf_counter() - t_start, 1), "users_per_seed": args.users, "seeds": seeds,
            "k_knn": k_knn, "k_retrieval": k_ret, "shrink_knn": s_knn, "shrink_retrieval": s_ret,
            "selection": selection,
            "place_temperature": rt.PLACE_TEMPERATURE,
            "task": "PROTOCOL v2 B3: history = the 20 slots before the test day (day 7) of one source domain; "
                    "target = the other domain's items over the day; 'app' rows = places -> apps, 'location' rows "
                    "= apps -> places",
            "spread": "population std over simulator seeds",
            "real": "no rows: the REAL sample holds one day, so no 20-slot history + next-24 h window exists",
            "fallbacks": dict(fallbacks),
            "point_estimator": "baselines: item scores; U-MASK: expected engagement of the completed day from the x0 "
                               "prediction at t = N-1 (one noise draw)"}
    if diagnostics:
        meta["retrieval_diagnostics"] = {
            "what": retrieval_diagnostics.__doc__.split("\n\n")[0].replace("\n    ", " "),
            "k": args.diagnose_k, "by_seed": {str(s): v for s, v in diagnostics.items()},
            "mean": {d: {how: round(float(np.mean([diagnostics[s][d][how] for s in diagnostics])), 4)
                         for how in next(iter(diagnostics.values()))[d]} for d in ("app", "location")}}
    if runner is not None:
        meta["model"] = runner.info()
        meta["paired_ndcg@3"] = {"what": "model minus the best cold-start baseline (popularity, knn) by pooled NDCG@3, "
                                         "per window pooled over seeds; 2000-resample bootstrap 95 % interval",
                                 **{m: paired_ndcg(per, m, cold_baselines) for m in per if m.startswith(args.name)}}
    _atomic_json(Path(args.out), {"meta": meta, "rows": rows})
    log.info("wrote %s: %d rows (%.0f s)", args.out, len(rows), meta["wall_seconds"])
    print(table(rows))
    return 0


def table(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("ndcg@3", "recall@3", "mrr@3")) -> str:
    """Markdown: model x (metric/domain), mean ± sd over seeds."""
    cols = [f"{m}/{d}" for d in ("app", "location") for m in metrics]
    by: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        if r["metric"] in cols:
            sd = f" ± {r['spread']:.3f}" if r["spread"] is not None else ""
            by[r["model"]][r["metric"]] = f"{r['value']:.3f}{sd}"
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for model, v in by.items():
        lines.append(f"| {model} | " + " | ".join(v.get(c, "-") for c in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
