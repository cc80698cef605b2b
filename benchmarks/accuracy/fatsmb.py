"""PROTOCOL v2 C scorer: FatsMB, its ablations and every baseline on the real Taobao sample.

    umask eval C --family fatsmb --runs artifacts/fatsmb --seeds 0,1,2 --out benchmarks/results/v2_fatsmb.json
    python -m umask.bench.accuracy.fatsmb --protocol C --runs artifacts/fatsmb     # the same

Test queries only (the last interaction of each of the 814 users); every model was selected on the
validation query (the one before) by its trainer. Full ranking over all 55,233 items; repeat items
are NOT filtered. Metrics per model (mean over users; ties counted as the expectation over random
tie-breaks, `umask.train.common.metrics.full_ranking_metrics`):
``item_recall@k`` / ``item_ndcg@k`` (k = 10, 20), ``cat_recall@k`` / ``cat_ndcg@k`` (categories ranked
by their best item, `group_max_scores`), and ``item_recall@10_<behavior>`` / ``item_ndcg@10_<behavior>``
for the target behaviors pv / fav / cart / buy.

Models: the count baselines (deterministic), SASRec and BERT4Rec (one fit per ``--seeds`` seed,
best validation step kept), FatsMB runs found in ``--runs`` (``seed<k>`` folders: the headline, one
per seed; ``den_*`` / ``pos_*``: ablations), the autoencoder alone (``fatsmb_ae``, decoding z_b of
the same checkpoints), and with ``--bundle`` the exported artifacts through the torch-free runtime.
Multi-seed rows: value = mean over seeds, spread = population std over seeds. The file's meta also
holds paired bootstrap intervals over users (FatsMB minus each learned baseline and minus the best
baseline). Point estimate of FatsMB: one DDIM sample per user from a fixed seed (sampler seed 0), the
guidance w and the number of steps chosen on validation at training time.

Protocol C-mobile: ``--data <file>.mobile_mb.tsv.gz`` (`umask.train.data.mobile_mb`: app-usage
interactions, items = the 20 app categories, behaviors open / long / heavy) scores the same models on
that file. The rows then say ``data`` real or synthetic as the file says (protocol ``C``: the
scoreboard has no ``C-mobile`` tag yet; the dataset field starts with "mobile app-usage"), the
cut-offs are k = 1, 3, 5, 10, 20 (with 20 items, @10 and @20 are nearly trivial) and the per-behavior
metrics are at k = 3 and 10; learning curves go to ``fatsmb_mobile_<data>_*`` files. ``--append``
adds the rows to an existing result file (replacing the rows of the same data set, model and artifact),
so the synthetic and the real variant share one file and a baseline can join later.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from umask.bench.latency.machine import git_commit, load_average, machine_info
from umask.bench.latency.timing import TimingConfig, latency_summary, measure
from umask.train.common.checkpoints import atomic_json
from umask.train.common.metrics import full_ranking_metrics, group_max_scores
from umask.train.models.fatsmb.data import TAOBAO_SAMPLE, ProtocolC, Queries, load_protocol_c

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
CURVES = ROOT / "benchmarks" / "results" / "learning_curves"
KS = (10, 20)
# per data set kind: protocol tag, cut-offs, cut-offs of the per-behavior metrics
# and the metrics of the paired bootstrap
PRESETS: dict[str, dict[str, Any]] = {
    "taobao": {"protocol": "C", "ks": (10, 20), "behavior_ks": (10,), "compare": ("item_recall@10", "item_ndcg@10")},
    # protocol "C" until the scoreboard's PROTOCOLS knows "C-mobile"; the dataset field names the variant
    "mobile": {"protocol": "C", "ks": (1, 3, 5, 10, 20), "behavior_ks": (3, 10),
               "compare": ("item_recall@1", "item_recall@3", "item_ndcg@10")}}
PRIOR_NOTE = ("log features: recency-weighted own-history counts per behavior, co-occurrence from the last items "
              "and popularity, all counted on the training split; non-negative gains per target behavior")


def item_words(data: ProtocolC) -> str:
    """What a mobile file's items are, for the dataset field (places get their own rows, never mixed)."""
    return "places (base stations)" if data.item_kind == "place" else "app categories"


def _places(data: ProtocolC) -> str:
    return "_places" if data.item_kind == "place" else ""


def per_user_metrics(scores: np.ndarray, q: Queries, data: ProtocolC, ks: Sequence[int] = KS) -> dict[str, np.ndarray]:
    """Per-user metric arrays of one model's scores (U, n_items) on queries ``q``."""
    out: dict[str, np.ndarray] = {}
    m = full_ranking_metrics(scores, q.item, ks)
    for k in ks:
        out[f"item_recall@{k}"], out[f"item_ndcg@{k}"] = m[f"recall@{k}"], m[f"ndcg@{k}"]
    if data.has_categories:
        c = full_ranking_metrics(group_max_scores(scores, data.item_category, data.n_categories), q.category, ks)
        for k in ks:
            out[f"cat_recall@{k}"], out[f"cat_ndcg@{k}"] = c[f"recall@{k}"], c[f"ndcg@{k}"]
    return out


def summarize(per_user: dict[str, np.ndarray], q: Queries, data: ProtocolC,
              behavior_ks: Sequence[int] = (10,)) -> dict[str, tuple[float, int]]:
    """metric -> (mean, number of users), overall and per target behavior (item @ each of behavior_ks)."""
    out = {k: (float(v.mean()), len(v)) for k, v in per_user.items()}
    for b, name in enumerate(data.behaviors):
        sel = q.behavior == b
        if sel.any():
            for k in [f"item_{m}@{c}" for c in behavior_ks for m in ("recall", "ndcg")]:
                out[f"{k}_{name}"] = (float(per_user[k][sel].mean()), int(sel.sum()))
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of a - b over users and its 95 % percentile interval (users resampled with replacement)."""
    rng = np.random.default_rng(seed)
    d = np.asarray(a) - np.asarray(b)
    boots = d[rng.integers(0, len(d), (n, len(d)))].mean(axis=1)
    return {"mean_diff": float(d.mean()), "ci95_low": float(np.quantile(boots, 0.025)),
            "ci95_high": float(np.quantile(boots, 0.975))}


class Collector:
    """Per-user test metrics of every (model, seed), then the aggregated v2 rows."""

    def __init__(self, data: ProtocolC) -> None:
        self.data = data
        self.preset = PRESETS[data.kind]
        self.curve_prefix = "fatsmb" if data.kind == "taobao" else f"fatsmb_mobile{_places(data)}_{data.data}"
        self.extra_note = ""                                      # appended to every row's notes (--note)
        self._tables: dict[str, Any] = {}                          # tables_with: one per prior_config
        self.runs: dict[str, dict[int, dict[str, np.ndarray]]] = {}
        self.info: dict[str, dict[str, Any]] = {}

    def tables_with(self, config: dict | None):
        """The prior's count tables of the training split for a fit's ``prior_config`` (None: the defaults);
        built once per distinct config."""
        from umask.train.models.fatsmb import prior as prior_fit

        key = json.dumps(config, sort_keys=True)
        if key not in self._tables:
            self._tables[key] = prior_fit.tables_for(self.data, config)
        return self._tables[key]

    def add(self, model: str, seed: int, scores: np.ndarray, *, kind: str, family: str | None,
            artifact: str = "torch", notes: str = "", row_model: str | None = None) -> None:
        t = time.time()
        self.runs.setdefault(model, {})[seed] = per_user_metrics(scores, self.data.test, self.data, self.preset["ks"])
        self.info[model] = {"kind": kind, "family": family, "artifact": artifact, "notes": notes,
                            "model": row_model or model}
        r10 = self.runs[model][seed]["item_recall@10"].mean()
        log.info("%-22s seed %d item R@10 %.4f (%.1fs metrics)", model, seed, r10, time.time() - t)

    def rows(self, command: str, dataset: str) -> list[dict[str, Any]]:
        rows = []
        for model, by_seed in self.runs.items():
            bks = self.preset["behavior_ks"]
            sums = {s: summarize(pu, self.data.test, self.data, bks) for s, pu in by_seed.items()}
            seeds = sorted(sums)
            for metric in sums[seeds[0]]:
                vals = np.array([sums[s][metric][0] for s in seeds])
                info = self.info[model]
                row = {"protocol": self.preset["protocol"], "dataset": dataset, "data": self.data.data,
                       "model": info["model"], "kind": info["kind"],
                       "family": info["family"], "artifact": info["artifact"], "metric": metric,
                       "value": round(float(vals.mean()), 6), "better": "higher",
                       "n_windows": sums[seeds[0]][metric][1], "seeds": seeds,
                       "spread": round(float(vals.std()), 6) if len(seeds) > 1 else None, "command": command}
                notes = "; ".join(x for x in (info["notes"], self.extra_note) if x)
                if notes:
                    row["notes"] = notes
                rows.append(row)
        return rows

    def mean_user(self, model: str, metric: str) -> np.ndarray:
        """Per-user metric averaged over the model's seeds (for the paired bootstrap)."""
        return np.mean([pu[metric] for pu in self.runs[model].values()], axis=0)


def _fatsmb_runs(runs: Path) -> list[tuple[str, Path]]:
    """Run folders named seed<k> (headline), den_* and pos_* (ablations); anything else is left alone."""
    if not runs.exists():
        return []
    return sorted((p.name, p) for p in runs.iterdir()
                  if (p / "config.json").exists() and re.fullmatch(r"seed\d+|den_\w+|pos_\w+", p.name))


def score_fatsmb(col: Collector, runs: list[tuple[str, Path]], steps: int | None, samples: int) -> None:
    import torch

    from umask.train.models.fatsmb import prior as prior_fit
    from umask.train.models.fatsmb import trainer

    q = col.data.test
    for name, run in runs:
        model, meta = trainer.load(run)
        # the learning curve next to the results (not for a run trained on another file, e.g. synthetic users
        # scored on the real ones: that curve is not this data set's)
        if (run / "curve.jsonl").exists() and Path(meta["data"]).resolve() == Path(col.data.path).resolve():
            CURVES.mkdir(parents=True, exist_ok=True)
            (CURVES / f"{col.curve_prefix}_{name}.jsonl").write_text((run / "curve.jsonl").read_text())
        if meta["n_items"] != col.data.n_items:
            raise ValueError(f"{run}: trained on {meta['n_items']} items, data has {col.data.n_items}")
        st = steps or meta["sampling"]["steps"]
        w = meta["sampling"]["guidance"]
        torch.manual_seed(0)
        s = np.mean([trainer.score(model, q.prefixes, q.behavior, steps=st, w=w, seed=i) for i in range(samples)], axis=0)
        note = f"DDIM {st} steps, guidance w={w} (chosen on validation), mean scores of {samples} sample(s)"
        fits = {m: prior_fit.load_fit(run, m) for m in prior_fit.MODES} if name.startswith("seed") else {}
        if name.startswith("seed"):
            seed = int(name[4:])
            if fits.get("diffusion"):                                # the headline is FatsMB + prior
                f = fits["diffusion"]
                col.add("fatsmb", seed, prior_fit.score(model, meta, f, col.tables_with(f.get("prior_config")), q.prefixes,
                                                        q.behavior), kind="ours",
                        family="fatsmb", notes=f"FatsMB + repeat/co-occurrence prior (documented deviation): {PRIOR_NOTE}; "
                        f"decoder scale a={f['scale'][0]}{_decay_note(f)} chosen on validation; " + note)
                col.add("fatsmb_noprior", seed, s, kind="ablation", family="fatsmb", notes="FatsMB as in the paper, no prior; " + note)
            else:
                col.add("fatsmb", seed, s, kind="ours", family="fatsmb", notes=note)
            col.add("fatsmb_ae", seed, trainer.score(model, q.prefixes, q.behavior, mode="ae"), kind="ablation",
                    family="fatsmb", notes="autoencoder alone: decoder(z_b) of the same checkpoint, no diffusion, no prior")
            if fits.get("ae"):
                f = fits["ae"]
                col.add("fatsmb_ae_prior", seed, prior_fit.score(model, meta, f, col.tables_with(f.get("prior_config")),
                                                                 q.prefixes, q.behavior),
                        kind="ablation", family="fatsmb", notes=f"autoencoder alone + the prior ({PRIOR_NOTE}; decoder "
                        f"scale a={f['scale'][0]}{_decay_note(f)} chosen on validation): does diffusion add anything "
                        "beyond it")
        else:
            col.add(f"fatsmb_{name}", int(meta["train"]["seed"]), s, kind="ablation", family="fatsmb",
                    notes=f"{name}: no prior; " + ("stage 1 shared with seed0; " if meta["train"].get("init_from") else "") + note)
            if name.startswith("pos_"):                             # position ablations change the autoencoder
                col.add(f"fatsmb_{name}_ae", int(meta["train"]["seed"]), trainer.score(model, q.prefixes, q.behavior, mode="ae"),
                        kind="ablation", family="fatsmb", notes=f"{name}: autoencoder alone, decoder(z_b), no prior")


def _decay_note(fit: dict) -> str:
    """", repeat decay d" when the fit chose its repeat decay on validation (`prior.fit_prior_decays`)."""
    return f", repeat decay {fit['prior_config']['repeat_decay']}" if "repeat_decay_grid" in fit else ""


def score_blend_decays(col: Collector, decays: Sequence[float]) -> None:
    """``blend_longmem``: the blend with the repeat features' recency decay (`PriorConfig.repeat_decay`,
    0.9 in FatsMB's prior) chosen on validation among ``decays``. A diagnostic for long histories
    (the mobile variant: ~650 interactions per user, where 0.9 ** age forgets all but the last ~20)."""
    from umask.runtime.families.fatsmb.prior import PriorConfig
    from umask.train.baselines import seqrec

    d = col.data
    val = (d.val.prefixes, d.val.item, d.val.behavior)
    fits = {x: seqrec.make("blend").fit(d.train, d.n_items, d.n_behaviors, seed=0, val=val, val_metric=d.val_metric,
                                        prior_cfg=PriorConfig(repeat_decay=x)) for x in decays}
    got = {x: m.fit_info[f"val_{d.val_metric}"] for x, m in fits.items()}
    best = max(decays, key=lambda x: (got[x], -x))
    col.add("blend_longmem", 0, fits[best].score(d.test.prefixes, d.test.behavior), kind="baseline", family=None,
            notes=f"the blend with repeat_decay={best} (FatsMB's prior: 0.9), chosen on validation {d.val_metric} among "
                  + ", ".join(f"{x}: {v:.4f}" for x, v in got.items()))


def score_baselines(col: Collector, seeds: Sequence[int], steps: int, only: Sequence[str]) -> None:
    from umask.train.baselines import seqrec

    d = col.data
    val = (d.val.prefixes, d.val.item, d.val.behavior)
    for name in [n for n in ("pop", "pop_behavior", "recent", "history_freq", "cooc") if n in only]:
        m = seqrec.make(name).fit(d.train, d.n_items, d.n_behaviors)
        col.add(name, 0, m.score(d.test.prefixes, d.test.behavior), kind="baseline", family=None,
                notes="deterministic; fitted on the training rows")
    if "blend" in only:
        m = seqrec.make("blend").fit(d.train, d.n_items, d.n_behaviors, seed=0, val=val, val_metric=d.val_metric)
        col.add("blend", 0, m.score(d.test.prefixes, d.test.behavior), kind="baseline", family=None,
                notes=f"recent + co-occurrence blend: {PRIOR_NOTE}, no neural part; gains fitted on training-split "
                      f"queries, best validation step {m.best_step} by {d.val_metric} kept (the same fit as FatsMB's prior)")
    CURVES.mkdir(parents=True, exist_ok=True)
    learned = [n for n in ("sasrec", "bert4rec") if n in only]
    if learned:
        log.warning("training the %s baseline(s): %d steps x %d seed(s) each, several CPU minutes; "
                    "--baselines without them (e.g. --baselines pop,recent,blend, or '' for none) skips this",
                    " / ".join(learned), steps, len(seeds))
    for name in learned:
        for seed in seeds:
            t = time.time()
            m = seqrec.make(name).fit(d.train, d.n_items, d.n_behaviors, seed=seed, steps=steps, val=val,
                                      eval_every=max(1, steps // 6), val_metric=d.val_metric)
            log.info("%s seed %d trained in %.0fs (best step %s)", name, seed, time.time() - t, getattr(m, "best_step", None))
            with open(CURVES / f"{col.curve_prefix}_baseline_{name}_seed{seed}.jsonl", "w", encoding="utf-8") as fh:
                for rec in m.curve:
                    fh.write(json.dumps(rec) + "\n")
            col.add(name, seed, m.score(d.test.prefixes, d.test.behavior), kind="baseline", family=None,
                    notes=f"{steps} steps, best validation step {getattr(m, 'best_step', None)} by {d.val_metric} kept; "
                          "target-behavior aware")


def score_bundle(col: Collector, bundle: Path, samples: int) -> None:
    """The shipped artifacts: every precision of the bundle through the runtime session, one request per user.
    A bundle exported without the prior (``--no-prior``) while the runs have one gives ``fatsmb_noprior`` rows
    (compared with that torch ablation): the networks' own quantization error, which the prior can hide."""
    from umask.runtime.session import Session

    q = col.data.test
    for prec in ("fp32", "int8-qdq"):
        with Session.open(bundle, precision=prec, allow_unsigned=True) as sess:
            model = "fatsmb" if "prior" in sess.manifest or "fatsmb_noprior" not in col.runs else "fatsmb_noprior"
            s = np.stack([np.mean([sess.scores(p[0], p[1], int(b), seed=i) for i in range(samples)], axis=0)
                          for p, b in zip(q.prefixes, q.behavior)])
        col.add(f"{model}@onnx-{prec}", 0, s, kind="ours" if model == "fatsmb" else "ablation", family="fatsmb",
                artifact=f"onnx-{prec}", row_model=model,
                notes=f"runtime session of the seed0 bundle {bundle.name} (numpy DDIM + onnxruntime, same start "
                      f"noise as the torch rows)" + ("" if model == "fatsmb" else "; exported without the prior"))


def latency(run: Path, bundle: Path, data: ProtocolC, requests: int, out: Path, command: str, note: str = "") -> None:
    """p50 / p99 ms of ONE request (history -> top-10 over the full item table) for torch eager and the
    runtime session at each precision of ``bundle``; requests cycle over the test users' histories
    (Taobao or a mobile file: the rows' dataset and data fields follow ``data``; ``note`` joins every row's notes)."""
    import torch

    from umask.runtime.session import Session
    from umask.train.models.fatsmb import trainer

    from umask.train.models.fatsmb import prior as prior_fit

    model, meta = trainer.load(run)
    st, w = meta["sampling"]["steps"], meta["sampling"]["guidance"]
    fit = prior_fit.load_fit(run, "diffusion")
    tables = prior_fit.tables_for(data, fit.get("prior_config")) if fit else None
    q = data.test
    where = (f"mobile app-usage ({data.source}), one request = history -> top-10 of {data.n_items} {item_words(data)}"
             if data.kind == "mobile" else f"taobao sample, one request = history -> top-10 of {data.n_items} items")
    users = list(range(min(requests, len(q))))
    cfg = TimingConfig(warmup_s=1.0, duration_s=5.0, min_samples=len(users), max_samples=len(users))
    hist = [[(int(data.item_ids[i]), int(b)) for i, b in zip(*q.prefixes[u])] for u in users]
    fns: dict[str, Callable[[int], Any]] = {}
    with torch.inference_mode():
        def torch_req(u: int) -> Any:
            if fit:                                                # the same model + prior as the bundle
                s = prior_fit.score(model, meta, fit, tables, [q.prefixes[u]], q.behavior[u:u + 1])[0]
            else:
                s = trainer.score(model, [q.prefixes[u]], q.behavior[u:u + 1], steps=st, w=w)[0]
            return np.argpartition(-s, 9)[:10]
        fns["torch"] = torch_req
        sessions = {p: Session.open(bundle, precision=p, allow_unsigned=True)
                    for p in ("fp32", "int8-qdq")}
        for p, sess in sessions.items():
            fns[f"onnx-{p}"] = lambda u, sess=sess: sess.recommend(hist[u], int(q.behavior[u]), k=10)
        rows, load = [], {}
        for art, fn in fns.items():
            it = iter(users * 1000)
            load[art] = load_average()
            timing = measure(lambda: fn(next(it)), cfg)
            summ = latency_summary(timing.samples_ms)
            log.info("%s: p50 %.1f ms p99 %.1f ms (%d requests)", art, summ["p50"], summ["p99"], len(timing.samples_ms))
            for metric, key in (("request_p50_ms", "p50"), ("request_p99_ms", "p99")):
                rows.append({"protocol": "C", "dataset": where, "data": data.data, "model": "fatsmb", "kind": "ours",
                             "family": "fatsmb", "artifact": art, "metric": metric, "value": summ[key],
                             "better": "lower", "n_windows": len(timing.samples_ms), "seeds": [0], "spread": None,
                             "command": command,
                             "notes": f"one CPU thread; DDIM {st} steps x 2 (CFG)" + ("; + repeat/co-occurrence prior"
                                      if fit else "") + f"; load average before: {load[art]}" + (f"; {note}" if note else "")})
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_json(out, {"meta": {"command": command, "commit": git_commit() or "unknown",
                               "date": dt.date.today().isoformat(), "machine": machine_info(),
                               "load_average_before_each": load,
                               "note": "shared 2-core machine with other jobs running: absolute times are inflated"},
                      "rows": rows})
    log.info("wrote %s", out)


def _metric_order(metric: str) -> tuple:
    m = re.fullmatch(r"(item|cat)_(recall|ndcg)@(\d+)(?:_(\w+))?", metric)
    return (m.group(4) or "", m.group(1), int(m.group(3)), m.group(2) != "recall") if m else (metric,)


def markdown(doc: dict[str, Any]) -> str:
    """The result file as markdown tables, one section per data set (``meta.parts`` after ``--append``):
    overall metrics per (model, artifact), then the per-behavior metrics."""
    parts = doc["meta"].get("parts") or [doc["meta"]]
    lines: list[str] = []
    for ds in dict.fromkeys(p.get("dataset") for p in parts):
        rows = [r for r in doc["rows"] if ds is None or r["dataset"] == ds]
        these = [p for p in parts if p.get("dataset") == ds]
        if not rows:
            continue
        keys = list(dict.fromkeys((r["model"], r["artifact"], r["kind"]) for r in rows))
        val = {(r["model"], r["artifact"], r["metric"]): r for r in rows}

        def cell(m, a, metric):
            r = val.get((m, a, metric))
            if r is None:
                return "-"
            return f"{r['value']:.4f}" + (f" ± {r['spread']:.4f}" if r.get("spread") is not None else "")

        def table(metrics):
            out = ["| model | artifact | kind | seeds | " + " | ".join(metrics) + " |",
                   "| --- | --- | --- | --- | " + " | ".join("---" for _ in metrics) + " |"]
            for m, a, k in keys:
                seeds = next((len(r["seeds"]) for r in rows if r["model"] == m and r["artifact"] == a), 0)
                if any((m, a, x) in val for x in metrics):
                    out.append(f"| {m} | {a} | {k} | {seeds} | " + " | ".join(cell(m, a, x) for x in metrics) + " |")
            return "\n".join(out)

        metrics = sorted({r["metric"] for r in rows}, key=_metric_order)
        overall = [m for m in metrics if not _metric_order(m)[0]]
        per_b = [m for m in metrics if _metric_order(m)[0]]
        boot = {k: v for p in these for k, v in (p.get("paired_bootstrap_over_users") or {}).items()}
        lines += [f"## {rows[0]['protocol']}: {rows[0]['dataset']} ({rows[0]['data']})", ""]
        lines += [f"Command: `{p.get('command')}` (commit {p.get('commit')}, {p.get('date')})" for p in these]
        lines += ["", f"{rows[0]['data']} data, {these[0].get('users')} users, full ranking over {these[0].get('n_items')} "
                  "items; value ± population std over seeds.", "", table(overall), "", "Per target behavior (item level):",
                  "", table(per_b), "", "Paired bootstrap over users (mean difference, 95 % interval):", ""]
        lines += [f"- {k}: {v['mean_diff']:+.4f} [{v['ci95_low']:+.4f}, {v['ci95_high']:+.4f}]"
                  + (f", relative {v['relative']:+.2%}" if "relative" in v else "") for k, v in boot.items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="umask eval C --family fatsmb", description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="C", help="C (C-mobile follows from a mobile --data file)")
    p.add_argument("--data", default=str(TAOBAO_SAMPLE),
                   help="Taobao file (Tianchi CSV or retail.txt) or a *.mobile_mb.tsv[.gz] file (protocol C-mobile)")
    p.add_argument("--runs", default="artifacts/fatsmb", help="folder of FatsMB runs (seed<k>, den_*, pos_*)")
    p.add_argument("--ckpt", default=None, help="one FatsMB run folder (instead of --runs)")
    p.add_argument("--bundle", action="append", default=[], help="exported bundle(s) to score through the runtime")
    p.add_argument("--seeds", default="0,1,2", help="seeds of SASRec / BERT4Rec")
    p.add_argument("--baseline-steps", type=int, default=1000, help="training steps of SASRec / BERT4Rec")
    p.add_argument("--baselines", default="pop,pop_behavior,recent,cooc,blend,sasrec,bert4rec",
                   help="comma list of baselines to run ('' = none)")
    p.add_argument("--steps", type=int, default=None, help="override the DDIM steps chosen on validation")
    p.add_argument("--samples", type=int, default=1, help="DDIM samples per user (scores averaged)")
    p.add_argument("--stride", type=int, default=1, help="accepted for the CLI; protocol C scores every user")
    p.add_argument("--max-users", type=int, default=0, help="first N users only (tests)")
    p.add_argument("--out", default="artifacts/eval/c_fatsmb.json", help="v2 result file")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--render", default=None, help="only write the markdown table of this result file (next to it)")
    p.add_argument("--latency", type=int, default=0, help="instead of accuracy: time N requests of --ckpt vs --bundle")
    p.add_argument("--append", action="store_true",
                   help="add the rows to --out if it exists (rows of the same data set, model and artifact are replaced)")
    p.add_argument("--note", default="", help="text appended to every row's notes")
    p.add_argument("--blend-repeat-decays", default="",
                   help="comma list: also score blend_longmem, the blend with its repeat decay chosen on validation")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if ns.protocol not in ("C", "C-mobile"):
        p.error(f"--protocol {ns.protocol}: FatsMB is scored on protocol C only")
    if ns.render:
        src = Path(ns.render)
        src.with_suffix(".md").write_text(markdown(json.loads(src.read_text())))
        return 0
    import torch

    torch.set_num_threads(ns.num_threads)
    t0 = time.time()
    data = load_protocol_c(ns.data, max_users=ns.max_users or None)
    command = "umask eval C --family fatsmb " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
                                                          if a not in ("--protocol", "C"))
    if ns.latency:
        if not (ns.ckpt and ns.bundle):
            p.error("--latency needs --ckpt and --bundle")
        latency(Path(ns.ckpt), Path(ns.bundle[0]), data, ns.latency, Path(ns.out), command, note=ns.note)
        return 0
    col = Collector(data)
    col.extra_note = ns.note
    only = [b for b in ns.baselines.split(",") if b]
    score_baselines(col, [int(s) for s in ns.seeds.split(",")], ns.baseline_steps, only)
    if ns.blend_repeat_decays:
        score_blend_decays(col, [float(x) for x in ns.blend_repeat_decays.split(",")])
    if ns.ckpt:                                                # one run: scored as the headline seed
        run = Path(ns.ckpt)
        runs = [(run.name if run.name.startswith("seed") else "seed0", run)]
    else:
        runs = _fatsmb_runs(Path(ns.runs))
    score_fatsmb(col, runs, ns.steps, ns.samples)
    for b in ns.bundle:
        score_bundle(col, Path(b), ns.samples)
    if data.kind == "mobile":
        dataset = (f"mobile app-usage ({data.source}), items = {data.n_items} {item_words(data)}, behaviors "
                   f"{'/'.join(data.behaviors)}, {len(data.test)} users, LOO test, full ranking")
    else:
        dataset = f"taobao UserBehavior sample, {len(data.test)} users, LOO test, full ranking over {data.n_items} items"
    rows = col.rows(command, dataset)
    compare: dict[str, Any] = {}
    if "fatsmb" in col.runs:
        for metric in col.preset["compare"]:
            base = [m for m in col.runs if col.info[m]["kind"] == "baseline"]
            best = max(base, key=lambda m: col.mean_user(m, metric).mean()) if base else None
            others = ("sasrec", "bert4rec", "blend", "blend_longmem", "history_freq", "recent", "fatsmb_noprior",
                      "fatsmb_ae_prior")
            for other in sorted({*(m for m in others if m in col.runs), *([best] if best else [])}):
                compare[f"fatsmb - {other} ({metric})"] = paired_bootstrap(col.mean_user("fatsmb", metric),
                                                                         col.mean_user(other, metric))
    for key in [k for k in col.runs if "@onnx-" in k]:
        torch_model = key.split("@")[0]
        if 0 in col.runs.get(torch_model, {}):
            for metric in ("item_recall@10", "item_ndcg@10"):
                a, t = col.runs[key][0][metric], col.runs[torch_model][0][metric]
                compare[f"{key} - torch seed0 ({metric})"] = {
                    **paired_bootstrap(a, t), "relative": float((a.mean() - t.mean()) / max(t.mean(), 1e-12))}
    doc = {"meta": {"command": command, "commit": git_commit() or "unknown", "date": dt.date.today().isoformat(),
                    "wall_seconds": round(time.time() - t0, 1), "data": data.path, "users": len(data.test),
                    "n_items": data.n_items, "point_estimator": "FatsMB: one DDIM sample (seed 0) decoded to item scores "
                    "(+ the prior where the run has prior_diffusion.json); "
                    "baselines: their deterministic scores", "spread": "population std over seeds (null for one seed)",
                    "ties": "expected rank under random tie-breaking",
                    "paired_bootstrap_over_users": compare, "dataset": dataset},
           "rows": rows}
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc["meta"]["models"] = sorted(col.runs)
    if ns.append and out.exists():                              # one file for several data sets / later models
        old = json.loads(out.read_text())
        new = {(r["dataset"], r["model"], r["artifact"]) for r in rows}
        doc["rows"] = [r for r in old["rows"] if (r["dataset"], r["model"], r["artifact"]) not in new] + rows
        # an earlier part is dropped only when this run replaced all of its models on the same data set
        parts = [m for m in old["meta"].get("parts") or [old["meta"]]
                 if not (m.get("dataset") == dataset and m.get("models") is not None and set(m["models"]) <= set(col.runs))]
        doc["meta"]["parts"] = [*parts, {k: v for k, v in doc["meta"].items() if k != "parts"}]
    atomic_json(out, doc)
    out.with_suffix(".md").write_text(markdown(doc))
    log.info("wrote %s (%d rows) and its .md", out, len(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
