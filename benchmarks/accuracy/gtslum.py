"""PROTOCOL D scorer: GTS-LUM runs, ablations and exported bundles next to the baselines.

    umask eval D --family gtslum --ckpt artifacts/gtslum/full_s0 ...      # (the CLI forwards here)
    python -m umask.bench.accuracy.gtslum --protocol D \\
        --runs artifacts/gtslum/full_s0,artifacts/gtslum/full_s1,artifacts/gtslum/full_s2 \\
        --ablations ts_none=artifacts/gtslum/abl_ts_none,... --bundle artifacts/gtslum/bundle \\
        --out benchmarks/results/v2_gtslum.json
    python -m umask.bench.accuracy.gtslum --only umask --umask checkpoints/umask_small   # merge U-MASK's rows

Task (docs/PROTOCOL.md D): rank the K = 20 app categories for the next hour; the truth is the set
opened in that hour; Recall@5, Recall@10, NDCG@5 averaged over windows (`umask.train.models.gtslum.data`:
synthetic users with protocol B's split, test = day 7, one window per hour with any app record; the
REAL 6-user sample: 08:00-22:00 of its day with in-day history).

Seeds: each run names its simulator seed (`--sim-seed` of the trainer, = its run seed); the headline
rows average the runs' test scores over the seeds (`spread` = population std). Baselines are scored
on the same windows of every seed. Ablation and bundle rows: the populations of their own runs.
The real sample is scored by the run of the first seed (trained on synthetic users; zero-shot).

Baselines: popularity (category shares of all users' training period; on the real sample of all
users' events before the target), the user's historical frequency by time of day (active intervals
at the target's hour of day on earlier days, ties by the user's overall frequency, then popularity),
the user's overall frequency (not required by the protocol; stronger than the time-of-day one on the
simulator), and SASRec (`umask.train.baselines.seqrec`, items = app categories of the user's interval-level
behavior sequence, behavior type = the interval's time category, target-aware with the target
hour's time category).

The U-MASK family's recommendation (`--umask CKPT`; `umask.bench.accuracy.gtslum_umask`): the per-user
U-MASK's short-term completion of the target hour, categories ranked by the predicted app channels
(row model ``umask_small``, kind ``peer``: another family of this project, not the one under test).
``--only umask`` scores only these rows and merges them into ``--out``: every other row and meta key
stays as it was; the populations (users per seed, seeds) default to the file's meta.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.families.gtslum import sequence as sq
from umask.train.common.checkpoints import atomic_json
from umask.train.models.gtslum import data as gd
from umask.train.models.gtslum import trainer as gt

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "v2_gtslum.json"
METRICS = ("recall@5", "recall@10", "ndcg@5")


# ------------------------------------------------------------------------------------------------
# Baselines
# ------------------------------------------------------------------------------------------------
def popularity_scores(users: gd.Users, x: gd.Inputs) -> np.ndarray:
    if users.synthetic:
        return np.broadcast_to(gd.popularity(users), x.truth.shape).copy()
    out = np.zeros(x.truth.shape)
    for i, t in enumerate(x.target_ts):                  # real: every user's events before the target
        cats = np.concatenate([b.before(int(t)).category for b in users.behaviors.values()])
        out[i] = np.bincount(cats, minlength=users.n_categories)
    return out


def time_of_day_scores(x: gd.Inputs, pop: np.ndarray) -> np.ndarray:
    hour = sq.hour_of(x.target_ts)
    tod = x.hour_hist[np.arange(len(x)), hour]                     # (n, K) same hour of day, earlier days
    total = x.hour_hist.sum(1)                                     # (n, K) the user's overall frequency
    scale = total.max(1, keepdims=True) + 1
    return tod + total / scale + pop / (pop.max(1, keepdims=True) + 1) / scale


# Width (hours) of the kernel time-of-day frequency row: chosen on the VALIDATION day (day 6) of the SYNTHETIC
# populations from KERNEL_GRID (`python -m umask.bench.accuracy.gtslum --only kernel` -> meta.kernel of
# v2_gtslum.json; a test checks the choice). The same lesson as U-MASK's kernel prior (prior.SMOOTH_MINUTES): a
# week of history gives the same-hour count five or six draws, so neighbouring hours carry information.
KERNEL_GRID: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0)
TOD_KERNEL_HOURS: float = 4.0


def time_of_day_kernel_scores(hour_hist: np.ndarray, target_ts: np.ndarray, pop: np.ndarray,
                              hours: float = TOD_KERNEL_HOURS) -> np.ndarray:
    """The user's time-of-day frequency smoothed over neighbouring hours: ``hour_hist`` (n, 24, K) convolved around
    the clock with the Gaussian of U-MASK's kernel prior and read at the target's hour (`sequence.kernel_hour_counts`,
    the rule of GTS-LUM's target shares); ties by the user's overall frequency, then popularity (as `time_of_day_scores`, with
    weights small enough never to override a kernel difference)."""
    sm = sq.kernel_hour_counts(hour_hist, target_ts, hours)                          # (n, K)
    total = hour_hist.sum(1)
    scale = total.max(1, keepdims=True) + 1
    return sm + 1e-3 * total / scale + 1e-6 * pop / (pop.max(1, keepdims=True) + 1) / scale


def user_frequency_scores(x: gd.Inputs, pop: np.ndarray) -> np.ndarray:
    """The user's overall frequency (active intervals per category before the target), ties by popularity."""
    total = x.hour_hist.sum(1)
    return total + pop / (pop.max(1, keepdims=True) + 1)


def headroom(users: gd.Users, x: gd.Inputs) -> dict[str, dict[str, float]]:
    """Diagnostics (not predictors): how much room the data leaves above the user's frequency.
    ``oracle_same_day_frequency`` ranks by the user's category counts on the test day itself (it sees
    the target: an upper bound for any model of a stationary per-user preference);
    ``recent_hour_then_user_frequency`` puts the categories of the last hour first."""
    pop = popularity_scores(users, x)
    uf = user_frequency_scores(x, pop)
    rec, orc = np.zeros_like(uf), np.zeros_like(uf)
    for i, (u, t) in enumerate(zip(x.users, x.target_ts)):
        b = users.behaviors[int(u)]
        np.add.at(rec[i], b.between(int(t) - 3600, int(t)).category, 1.0)
        d0 = int(t) // sq.DAY_SECONDS * sq.DAY_SECONDS
        np.add.at(orc[i], b.between(d0, d0 + sq.DAY_SECONDS).category, 1.0)
    return {"user_frequency": gt.rank_metrics(uf, x.truth),
            "recent_hour_then_user_frequency": gt.rank_metrics(rec * 100 + uf, x.truth),
            "oracle_same_day_frequency": gt.rank_metrics(orc + uf * 1e-3, x.truth)}


def _category_seq(b: sq.Behaviors) -> tuple[np.ndarray, np.ndarray]:
    """Items = categories of the interval-level behaviors (distinct per interval), behavior = time category."""
    if not len(b):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = b.interval * 1000 + b.category
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    cats = b.category[first]
    tcat = sq.descriptor_id(b.interval[first] * sq.INTERVAL_SECONDS) % sq.N_TIME_CATEGORIES
    return cats, tcat


def sasrec_scores(users: gd.Users, x: gd.Inputs, train_users: gd.Users, steps: int, seed: int) -> np.ndarray:
    from umask.train.baselines.seqrec import make

    end = train_users.start_ts + (train_users.n_days - 2) * sq.DAY_SECONDS
    seqs = [_category_seq(b.before(end)) for b in train_users.behaviors.values()]
    model = make("sasrec").fit(seqs, users.n_categories, sq.N_TIME_CATEGORIES, seed=seed, steps=steps)
    prefixes = [_category_seq(users.behaviors[int(u)].before(int(t))) for u, t in zip(x.users, x.target_ts)]
    prefixes = [p if len(p[0]) else (np.zeros(1, np.int64), np.zeros(1, np.int64)) for p in prefixes]
    target = sq.descriptor_id(x.target_ts) % sq.N_TIME_CATEGORIES
    return model.score(prefixes, target)


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
def model_inputs(users: gd.Users, meta: dict[str, Any], node_emb: np.ndarray) -> gd.Inputs:
    m = meta["model"]
    return gd.build_inputs(users, gd.windows(users, "test"), node_emb, **gd.input_kw(m))


def run_scores(run: str | Path, users: gd.Users) -> tuple[np.ndarray, gd.Inputs, dict[str, Any]]:
    model, meta = gt.load(run)
    x = model_inputs(users, meta, model.node_emb.numpy())
    return gt.predict(model, x), x, meta


def bundle_scores(bundle: str | Path, users: gd.Users, x: gd.Inputs, precision: str) -> np.ndarray:
    """Scores of the exported bundle through the torch-free runtime session, window by window."""
    from umask.runtime.session import Session

    out = np.zeros(x.truth.shape, np.float32)
    with Session.open(bundle, allow_unsigned=True, precision=precision) as s:
        for i, (u, t) in enumerate(zip(x.users, x.target_ts)):
            ev = users.events[int(u)]
            out[i] = s.scores(ev.take(ev.ts < int(t)), int(t))
    return out


def latency(run: str | Path, bundle: str | Path, *, repeats: int = 3, command: str) -> dict[str, Any]:
    """Per-request latency on the REAL sample's 45 windows (one thread): torch eager (inputs built by the
    same numpy code + the model's forward on one window) vs the runtime session (fp32, int8), which
    also parses the catalog maps of the raw events. Load average before and after is recorded."""
    import os

    import torch

    from umask.bench.latency.machine import machine_info
    from umask.runtime.session import Session

    torch.set_num_threads(1)
    real = gd.real_users()
    model, meta = gt.load(run)
    m = meta["model"]
    wins = gd.windows(real, "test")
    load0 = os.getloadavg()
    times: dict[str, list[float]] = defaultdict(list)

    def torch_one(w: gd.Window) -> None:
        x = gd.build_inputs(real, [w], model.node_emb.numpy(), **gd.input_kw(m))
        with torch.no_grad():
            model(gt.to_batch(x))

    sessions = {p: Session.open(bundle, allow_unsigned=True, precision=p) for p in ("fp32", "int8")}
    for _ in range(repeats):
        for w in wins:
            t = time.perf_counter()
            torch_one(w)
            times["torch"].append(time.perf_counter() - t)
            ev = real.events[w.user]
            hist = ev.take(ev.ts < w.target_ts)
            for p, s in sessions.items():
                t = time.perf_counter()
                s.next_apps(hist, 5, w.target_ts)
                times[p].append(time.perf_counter() - t)
    for s in sessions.values():
        s.close()
    load1 = os.getloadavg()
    artifacts = {"torch": "torch", "fp32": "onnx-fp32", "int8": "onnx-int8-dynamic"}
    rows = []
    for k, v in times.items():
        ms = np.array(v[len(wins):] if repeats > 1 else v) * 1000    # the first pass is warm-up
        for q in (50, 90):
            rows.append({"protocol": "D", "dataset": "tsinghua sample 6 users 1 day, hours 08-22 (in-day history)",
                         "data": "real", "model": "gtslum", "kind": "ours", "family": "gtslum", "artifact": artifacts[k],
                         "metric": f"latency_p{q}_ms", "value": round(float(np.percentile(ms, q)), 3),
                         "better": "lower", "n_windows": len(wins), "seeds": [int(meta["train"].get("sim_seed", 0))],
                         "spread": None, "command": command,
                         "notes": f"one request = next_apps(history, 5) for one window, 1 thread, {len(ms)} timed "
                                  f"requests; load average {load0[0]:.1f} -> {load1[0]:.1f} on a shared 2-core machine"})
    return {"machine": machine_info(), "loadavg_before": load0, "loadavg_after": load1, "rows": rows}


def _rows(scored: dict[str, dict[int, dict[str, float]]], n_win: dict[str, int], *, dataset: str, data: str,
          kinds: dict[str, tuple[str, str | None, str]], command: str, notes: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for key, per_seed in scored.items():
        kind, family, artifact = kinds[key]
        model = key.split("@")[0]
        seeds = sorted(per_seed)
        for metric in METRICS:
            v = [per_seed[s][metric] for s in seeds]
            row = {"protocol": "D", "dataset": dataset, "data": data, "model": model, "kind": kind, "family": family,
                   "artifact": artifact, "metric": metric, "value": round(float(np.mean(v)), 6), "better": "higher",
                   "n_windows": n_win[key], "seeds": seeds,
                   "spread": round(float(np.std(v)), 6) if len(v) > 1 else None, "command": command}
            if key in notes:
                row["notes"] = notes[key]
            rows.append(row)
    return rows


def umask_rows(ckpt: str | Path, seeds: Sequence[int], n_users: int, *, real: bool, command: str,
               name: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The U-MASK rows (SYNTHETIC seeds [+ REAL]) and their meta entry (`gtslum_umask.score_populations`);
    ``name``: the rows' model name (default ``gtslum_umask.MODEL``, the v3 checkpoint's)."""
    from umask.bench.accuracy import gtslum_umask as gu

    t0 = time.perf_counter()
    model = name or gu.MODEL
    scored, n_win, info = gu.score_populations(ckpt, seeds, n_users, real=real)
    kinds = {model: ("peer", None, "torch")}
    trained = (f"{ckpt}: trained on simulator seed 0's 50 users (days 1-5)" if model == gu.MODEL else
               f"{ckpt}: trained on simulator seed 0's 50 users plus other simulated users (days 1-5; its MODEL_CARD.md)")
    dataset = f"sim {n_users} users, v2 D windows (B split, test day, hourly)"
    rows = _rows({model: scored["synthetic"]}, {model: n_win["synthetic"]}, dataset=dataset, data="synthetic",
                 kinds=kinds, command=command,
                 notes={model: f"{gu.POINT_NOTE}; {trained}: seed-0 windows are its training users' unseen "
                               "test day, seeds 1-2 users it never saw"})
    if real:
        rows += _rows({model: scored["real"]}, {model: n_win["real"]},
                      dataset="tsinghua sample 6 users 1 day, hours 08-22 (in-day history)", data="real", kinds=kinds,
                      command=command, notes={model: f"{gu.POINT_NOTE}; {trained}; applied zero-shot"})
    meta = {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
            "wall_seconds": round(time.perf_counter() - t0, 1), "users_per_seed": n_users, "seeds": list(seeds),
            **info}
    return rows, meta


def merge_rows(path: Path, rows: list[dict[str, Any]], meta_key: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Replace ``path``'s rows of the new rows' models by ``rows`` (appended), set ``meta[meta_key]``; every
    other row and meta key is kept as it was."""
    doc = json.loads(path.read_text())
    models = {r["model"] for r in rows}
    doc["rows"] = [r for r in doc["rows"] if r["model"] not in models] + rows
    doc["meta"][meta_key] = meta
    atomic_json(path, doc)
    return doc


def _seed_of(run: str | Path) -> int:
    return int(json.loads((Path(run) / gt.CONFIG_FILE).read_text())["train"]["sim_seed"])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.gtslum", description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="D", help="only D")
    ap.add_argument("--runs", "--ckpt", dest="runs", default="", help="comma-separated GTS-LUM run directories")
    ap.add_argument("--ablations", default="", help="comma-separated NAME=RUN_DIR (scored on their own seed; a NAME "
                                                   "repeated with runs of other seeds gives one row over those seeds)")
    ap.add_argument("--bundle", default=None, help="an exported gtslum bundle (scored through the runtime)")
    ap.add_argument("--precisions", default="fp32,int8", help="bundle precisions to score")
    ap.add_argument("--users", type=int, default=None, help="SYNTHETIC users per seed (default: the first run's)")
    ap.add_argument("--sasrec-steps", type=int, default=500, help="SASRec training steps per seed")
    ap.add_argument("--no-real", action="store_true", help="skip the REAL 6-user sample")
    ap.add_argument("--ablations-only", action="store_true",
                    help="write only the ablation rows (the runs still choose the populations; no baselines)")
    ap.add_argument("--latency", action="store_true",
                    help="latency rows only (first run vs --bundle, real sample) into --out")
    ap.add_argument("--umask", default=None, help="a U-MASK checkpoint (checkpoints/umask_small): add the U-MASK "
                                                  "family's recommendation rows")
    ap.add_argument("--umask-name", default=None,
                    help="the U-MASK rows' model name (default umask_small); another name adds rows beside the others")
    ap.add_argument("--only", choices=("umask", "kernel"), default=None,
                    help="score only these rows and merge them into the existing --out (other rows kept); kernel: the "
                         "kernel time-of-day frequency row, its width chosen on the validation day (no run needed)")
    ap.add_argument("--seeds", default=None, help="--only: simulator seeds (default: the --out file's meta.seeds)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="result file (v2 rows)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if args.protocol != "D":
        ap.error(f"--protocol {args.protocol}: the gtslum scorer serves protocol D only")
    runs = [r for r in args.runs.split(",") if r]
    abl = [tuple(a.split("=", 1)) for a in args.ablations.split(",") if a]    # a name may repeat: one run per seed
    if args.only == "umask":
        return _only_umask(args, argv)
    if args.only == "kernel":
        return _only_kernel(args, argv)
    if not runs:
        ap.error("--runs: name at least one GTS-LUM run (one per simulator seed for the headline rows)")
    command = shlex.join(["python", "-m", "umask.bench.accuracy.gtslum", *argv])
    t0 = time.perf_counter()
    if args.latency:
        if not args.bundle:
            ap.error("--latency needs --bundle")
        lat = latency(runs[0], args.bundle, command=command)
        atomic_json(Path(args.out), {"meta": {"command": command, "commit": _git_commit(),
                                              "date": dt.date.today().isoformat(), "machine": lat["machine"],
                                              "loadavg_before": lat["loadavg_before"],
                                              "loadavg_after": lat["loadavg_after"]}, "rows": lat["rows"]})
        for r in lat["rows"]:
            print(f"{r['artifact']:18s} {r['metric']:15s} {r['value']:.2f}")
        return 0
    by_seed = {_seed_of(r): r for r in runs}
    if args.users is None:
        args.users = int(json.loads((Path(runs[0]) / gt.CONFIG_FILE).read_text())["train"]["users"])
    scored: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    n_win: dict[str, int] = defaultdict(int)
    kinds: dict[str, tuple[str, str | None, str]] = {
        "gtslum": ("ours", "gtslum", "torch"), "popularity": ("baseline", None, "numpy"),
        "time_of_day_frequency": ("baseline", None, "numpy"), "user_frequency": ("baseline", None, "numpy"),
        "time_of_day_frequency_kernel": ("baseline", None, "numpy"), "sasrec": ("baseline", None, "torch")}
    notes = {"sasrec": "items = app categories, behavior = time category of the interval, target-aware "
                       f"(target hour's time category); {args.sasrec_steps} steps on the training days"}
    pops: dict[int, gd.Users] = {}
    for seed, run in sorted(by_seed.items()):
        users = pops[seed] = gd.synthetic_users(args.users, seed)
        if args.ablations_only:
            continue
        scores, x, meta = run_scores(run, users)
        pop = popularity_scores(users, x)
        cand = {"gtslum": scores, "popularity": pop, "time_of_day_frequency": time_of_day_scores(x, pop),
                "user_frequency": user_frequency_scores(x, pop),
                "time_of_day_frequency_kernel": time_of_day_kernel_scores(x.hour_hist, x.target_ts, pop),
                "sasrec": sasrec_scores(users, x, users, args.sasrec_steps, seed)}
        for name, sc in cand.items():
            scored[name][seed] = gt.rank_metrics(sc, x.truth)
            n_win[name] += len(x)
        log.info("seed %d: %s", seed, {k: round(v[seed]["ndcg@5"], 4) for k, v in scored.items()})
    diagnostics = {}
    abl_seeds = defaultdict(list)
    for name, run in abl:
        abl_seeds[name].append(_seed_of(run))
    for name, run in abl:
        seed = _seed_of(run)
        users = pops.get(seed) or pops.setdefault(seed, gd.synthetic_users(args.users, seed))
        sc, x, meta = run_scores(run, users)
        key = f"gtslum_{name}"
        if seed in scored[key]:
            ap.error(f"--ablations: two runs of {name!r} on simulator seed {seed}")
        scored[key][seed] = gt.rank_metrics(sc, x.truth)
        n_win[key] += len(x)
        kinds[key] = ("ablation", "gtslum", "torch")
        if seed not in diagnostics:
            diagnostics[seed] = headroom(users, x)
        m, tr = meta["model"], meta["train"]
        notes[key] = (f"timestamps={m['timestamps']} target={m['target']} modalities={m['modalities']} "
                      f"prior_head={m.get('prior_head', False)}; "
                      f"target_hist_hours={m.get('target_hist_hours', 0.0)} score_gate={m.get('score_gate', False)}; "
                      f"{tr['pretrain_steps']} + {tr['steps']} steps, "
                      f"{'one seed' if len(abl_seeds[name]) == 1 else f'{len(abl_seeds[name])} seeds'}")
    first = min(by_seed)
    if args.bundle:
        users = pops[first]
        _, x, _ = run_scores(by_seed[first], users)
        for prec in args.precisions.split(","):
            key = f"gtslum@{prec}"            # the row's model is "gtslum"; the artifact tells them apart
            scored[key][first] = gt.rank_metrics(bundle_scores(args.bundle, users, x, prec), x.truth)
            n_win[key] = len(x)
            kinds[key] = ("ours", "gtslum", "onnx-fp32" if prec == "fp32" else "onnx-int8-dynamic")
            notes[key] = f"exported bundle of the seed-{first} run through the runtime session (onnxruntime)"
    dataset = f"sim {args.users} users, v2 D windows (B split, test day, hourly)"
    rows = _rows(scored, n_win, dataset=dataset, data="synthetic", kinds=kinds, command=command, notes=notes)
    if not args.no_real:
        real = gd.real_users()
        sc, x, _ = run_scores(by_seed[first], real)
        pop = popularity_scores(real, x)
        rs = {"gtslum": {0: gt.rank_metrics(sc, x.truth)}, "popularity": {0: gt.rank_metrics(pop, x.truth)},
              "time_of_day_frequency": {0: gt.rank_metrics(time_of_day_scores(x, pop), x.truth)},
              "user_frequency": {0: gt.rank_metrics(user_frequency_scores(x, pop), x.truth)},
              "time_of_day_frequency_kernel": {0: gt.rank_metrics(time_of_day_kernel_scores(x.hour_hist, x.target_ts,
                                                                                            pop), x.truth)},
              "sasrec": {0: gt.rank_metrics(sasrec_scores(real, x, pops[first], args.sasrec_steps, first), x.truth)}}
        rnotes = dict(notes, gtslum=f"trained on SYNTHETIC users (seed {first}), applied zero-shot",
                      sasrec=notes["sasrec"] + f"; trained on SYNTHETIC users (seed {first})")
        rows += _rows(rs, {k: len(x) for k in rs}, dataset="tsinghua sample 6 users 1 day, hours 08-22 (in-day history)",
                      data="real", kinds=kinds, command=command, notes=rnotes)
    umask_meta = None
    if args.umask:
        urows, umask_meta = umask_rows(args.umask, sorted(by_seed), args.users, real=not args.no_real, command=command)
        rows += urows
    doc = {"meta": {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
                    "wall_seconds": round(time.perf_counter() - t0, 1), "users_per_seed": args.users,
                    "seeds": sorted(by_seed), "runs": {str(k): str(v) for k, v in by_seed.items()},
                    "spread": "population std over simulator seeds (null for one seed)",
                    "notes": "windows without any app record in the target hour are skipped for every model",
                    "headroom_diagnostics_by_seed": diagnostics or None},
           "rows": rows}
    if umask_meta:
        doc["meta"]["umask"] = umask_meta
    atomic_json(Path(args.out), doc)
    log.info("wrote %s: %d rows", args.out, len(rows))
    for r in rows:
        if r["metric"] == "ndcg@5" or r["metric"] == "recall@5":
            print(f"{r['data']:9s} {r['model']:28s} {r['metric']:9s} {r['value']:.4f} ± {r['spread']}")
    return 0


def _merge_target(args: argparse.Namespace, argv: Sequence[str], what: str) -> tuple[Path, dict[str, Any], list[int],
                                                                                     int, str]:
    """The common start of the ``--only`` modes -> (the existing ``--out``, its document, the seeds and users per
    seed to score (flags, else the file's meta), the command line)."""
    out = Path(args.out)
    if not out.is_file():
        raise SystemExit(f"--only {what} merges into an existing result file; {out} does not exist")
    doc = json.loads(out.read_text())
    meta = doc["meta"]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [int(s) for s in meta["seeds"]]
    n_users = args.users if args.users is not None else int(meta["users_per_seed"])
    return out, doc, seeds, n_users, shlex.join(["python", "-m", "umask.bench.accuracy.gtslum", *argv])


def _check_same_windows(doc: dict[str, Any], rows: list[dict[str, Any]], who: str, *, required: bool) -> None:
    """Rows merged by an ``--only`` mode must score the file's windows: the same data set, seeds and window count
    as its popularity rows (``required``: a data set the file has no popularity row for is refused too)."""
    for r in rows:
        ref = [b for b in doc["rows"] if b["model"] == "popularity" and b["dataset"] == r["dataset"]
               and b["metric"] == r["metric"]]
        if ref and (ref[0]["n_windows"], ref[0]["seeds"]) != (r["n_windows"], r["seeds"]):
            raise SystemExit(f"{r['dataset']}: {who} scored {r['n_windows']} windows of seeds {r['seeds']}, the file's "
                             f"baselines {ref[0]['n_windows']} of {ref[0]['seeds']}: not the same windows")
        if required and not ref:
            raise SystemExit(f"{r['dataset']}: {who} scored {r['n_windows']} windows of seeds {r['seeds']}; the file "
                             f"has no baseline rows for that data set")


def _only_umask(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``--only umask``: the U-MASK rows on the populations of the existing ``--out``, merged into it."""
    from umask.bench.accuracy.gtslum_umask import DEFAULT_CKPT

    out, doc, seeds, n_users, command = _merge_target(args, argv, "umask")
    ckpt = args.umask or DEFAULT_CKPT
    rows, umeta = umask_rows(ckpt, seeds, n_users, real=not args.no_real, command=command, name=args.umask_name)
    _check_same_windows(doc, rows, "U-MASK", required=False)
    merge_rows(out, rows, "umask" if not args.umask_name else f"umask:{args.umask_name}", umeta)
    log.info("merged %d U-MASK rows into %s", len(rows), out)
    for r in rows:
        print(f"{r['data']:9s} {r['model']:14s} {r['metric']:9s} {r['value']:.4f} ± {r['spread']}")
    return 0


@dataclass
class _Counts:
    """What the count baselines read of a set of windows (the `gd.Inputs` fields, without a run's sequences)."""

    hour_hist: np.ndarray    # (n, 24, K)
    target_ts: np.ndarray    # (n,)
    truth: np.ndarray        # (n, K) bool


def count_inputs(users: gd.Users, split: str) -> _Counts:
    """`gd.build_inputs`'s baseline fields for ``split``'s windows, from the same functions (no model needed)."""
    wins = gd.windows(users, split)
    hh = np.stack([sq.hour_histogram(users.behaviors[w.user].before(w.target_ts), users.n_categories) for w in wins])
    return _Counts(hh.astype(np.float32), np.array([w.target_ts for w in wins], np.int64),
                   np.stack([w.truth for w in wins]))


def choose_kernel(val: Sequence[tuple[gd.Users, _Counts]]) -> tuple[float, dict[str, float]]:
    """The width of `KERNEL_GRID` with the highest NDCG@5 averaged over the validation populations (ties: the
    narrower) -> (width, {width: mean NDCG@5})."""
    table = {}
    for h in KERNEL_GRID:
        vals = [gt.rank_metrics(time_of_day_kernel_scores(c.hour_hist, c.target_ts, popularity_scores(u, c), h),
                                c.truth)["ndcg@5"] for u, c in val]
        table[h] = float(np.mean(vals))
    best = max(KERNEL_GRID, key=lambda h: (round(table[h], 9), -h))
    return best, {str(h): round(v, 6) for h, v in table.items()}


def _only_kernel(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``--only kernel``: the kernel time-of-day frequency row on the populations (and windows) of the existing
    ``--out``, its width chosen on their validation day; merged into the file, which must agree on the windows."""
    out, doc, seeds, n_users, command = _merge_target(args, argv, "kernel")
    t0 = time.perf_counter()
    pops = {s: gd.synthetic_users(n_users, s) for s in seeds}
    width, val_table = choose_kernel([(u, count_inputs(u, "val")) for u in pops.values()])
    name, kinds = "time_of_day_frequency_kernel", {"time_of_day_frequency_kernel": ("baseline", None, "numpy")}
    note = {name: f"the user's time-of-day frequency smoothed around the clock with a {width:g}-hour Gaussian "
                  f"(chosen on the validation day from {list(KERNEL_GRID)}); ties by overall frequency, popularity"}
    scored, n_win = {name: {}}, {name: 0}
    for s, users in pops.items():
        c = count_inputs(users, "test")
        scored[name][s] = gt.rank_metrics(time_of_day_kernel_scores(c.hour_hist, c.target_ts, popularity_scores(users, c),
                                                                    width), c.truth)
        n_win[name] += len(c.truth)
    rows = _rows(scored, n_win, dataset=f"sim {n_users} users, v2 D windows (B split, test day, hourly)",
                 data="synthetic", kinds=kinds, command=command, notes=note)
    if not args.no_real:
        real = gd.real_users()
        c = count_inputs(real, "test")
        rows += _rows({name: {0: gt.rank_metrics(time_of_day_kernel_scores(c.hour_hist, c.target_ts,
                                                                            popularity_scores(real, c), width), c.truth)}},
                      {name: len(c.truth)}, dataset="tsinghua sample 6 users 1 day, hours 08-22 (in-day history)",
                      data="real", kinds=kinds, command=command, notes=note)
    _check_same_windows(doc, rows, "the kernel row", required=True)
    meta = {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
            "wall_seconds": round(time.perf_counter() - t0, 1), "grid_hours": list(KERNEL_GRID),
            "validation_ndcg@5": val_table, "chosen_hours": width, "frozen_in_code": TOD_KERNEL_HOURS,
            "agree": width == TOD_KERNEL_HOURS}
    merge_rows(out, rows, "kernel", meta)
    log.info("merged %d kernel rows into %s (width %g h, frozen %g h)", len(rows), out, width, TOD_KERNEL_HOURS)
    for r in rows:
        print(f"{r['data']:9s} {r['model']:30s} {r['metric']:9s} {r['value']:.4f} ± {r['spread']}")
    return 0 if width == TOD_KERNEL_HOURS else 1


def _git_commit() -> str:
    from umask.bench.accuracy.user_v2 import _git_commit as commit

    return commit()


if __name__ == "__main__":
    raise SystemExit(main())
