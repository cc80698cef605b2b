"""The main job (``umask demo``): the whole pipeline end to end on the bundled data.

set-up (scripts/demo.sh) -> data -> train -> export -> open the bundle with the runtime -> serve real
users -> latency and accuracy summary. ``--quick`` runs the same story with a tiny model and short
settings in a few minutes (what tests/test_demo.py smoke-tests).

1. Real Tsinghua sample (6 users, 1 day): load, check against the catalog, featurize with the one
   runtime featurization, print per-user coverage and U-SCOPE statistics.
2. Synthetic users from the calibrated simulator (labeled synthetic): generate a week, write it in
   the official trace layout, read it back with the same loader as real data, featurize with
   layouts fitted on the training days only, build the PROTOCOL B windows, print the
   simulator-vs-real validation table.
3. Milan (real): PROTOCOL A1/A2 windows and the baseline rows.
4. Taobao (real): PROTOCOL C leave-one-out split.
5. The U-MASK model: by default the trained small model shipped in ``checkpoints/umask_small_v9/``
   (``--model``, e.g. ``checkpoints/umask_small_v4`` or ``checkpoints/umask_small`` for v3; its MODEL_CARD.md says what it was trained on and how it scores), so nothing is
   trained; ``--retrain`` trains U-MASK (profile MLP + mask generator + DiT, v2 recipe) from scratch
   on the synthetic users of step 2 (the small config, ``--train-steps`` 600); ``--quick`` always
   trains the tiny config for 60 steps (the smoke path).
6. The U-SCOPE profiling LLM: the GGUF files of ``artifacts/uscope/gguf`` when a U-SCOPE run made
   them (``--llm-dir``); otherwise the bundle carries no LLM and the runtime writes the rule-based
   template profile (said in the output).
7. Export the checkpoint to a verified bundle (ONNX fp32 + int8 QDQ with ``--quick``; every
   precision otherwise; the TensorRT step prints its skip here; where the exporter does not take the
   model's inputs yet, the demo says so and scores the torch model on the real users instead), then
   open it with the torch-free
   runtime ``Session`` and serve the 6 REAL users of the Tsinghua sample at 18:00 of their day:
   profile text, the evidence mask as a compact text strip, the next-hour prediction, cold-start app
   and location recommendations.
8. Latency and accuracy summary: the runtime's full request per precision (p50 over the 6 users)
   and its short-term MAE against the users' real next hour, next to the last-value baseline; the
   export-time parity figures; the full latency harness is ``python -m umask.bench.latency.harness``.
9. The grid model (REAL Milan): the shipped ``checkpoints/umask_grid_s0`` (``--grid-model``) exported as a
   signed ``umask_grid`` bundle (fp32 + int8 QDQ; ``--quick``: fp32 with 2 noise draws), opened by the
   torch-free session and scored in raw units on the PROTOCOL A test windows (``--quick``: every 8th) next
   to the best simple rows (ARIMA is not re-run here: 0.401 / 0.271 in ``milan_arima.json``).
10. The other families (``--families``, on by default, off with ``--quick``): the shipped U-STS-LLM, FatsMB and
   GTS-LUM checkpoints exported to signed bundles and served by their torch-free sessions on REAL data: Milan
   A1 / A2, Taobao item Recall@10, the 6 Tsinghua users' next-hour app categories
   (benchmarks/demo_families.py).
 in ``artifacts/demo/summary.json``; the printed summary says which data is real.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.demo_families import _rel, _section, family_models, grid_model
from umask.export.errors import ExportError
from umask.runtime.core.catalog import load_llmapp_catalog
from umask.runtime.core.events import read_official_trace, read_trace
from umask.runtime.core.errors import InputError
from umask.runtime.core.featurize import FeatureConfig, featurize_population
from umask.runtime.core.tessellation import dominant_place_type

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
TSINGHUA = DATA / "tsinghua_app_usage"
DAY = 86_400


# -----------------------------------------------------------------------------
# 1. real Tsinghua sample
# -----------------------------------------------------------------------------

def real_sample(cfg: FeatureConfig) -> dict[str, Any]:
    _section("1. Tsinghua App Usage sample (REAL: 6 users, 2016-04-20)")
    catalog = load_llmapp_catalog(TSINGHUA)
    events = read_trace(TSINGHUA / "app_usage_trace_sample_llmapp.csv.gz")
    catalog.check_events(events)
    feats = featurize_population(events, catalog, cfg)
    names = catalog.apps.category_names
    rows = []
    print(f"{len(events)} records, {len(feats)} users, {len(np.unique(events.bs))} base stations; "
          f"layout {cfg.H}x{cfg.W} cells of {cfg.cell_m:.0f} m, fitted in-sample (the sample has one day)")
    print(f"{'user':>5} {'records':>8} {'coverage':>9} {'nnz':>6} {'regularity':>10}  top categories / most visited place type")
    for u, f in feats.items():
        cat_tot = f.profile.C_u.sum(axis=1)
        top = [names[i] for i in np.argsort(-cat_tot, kind="stable")[:2] if cat_tot[i] > 0]
        place = dominant_place_type(f.layout, catalog)[int(np.argmax(f.layout.counts))]  # most visited cell
        rows.append({"user": u, "records": f.report.n_events, "coverage": f.report.coverage,
                     "nnz": f.tensor.nnz, "regularity": f.profile.regularity, "top_categories": top})
        print(f"{u:>5} {f.report.n_events:>8} {f.report.coverage:>9.3f} {f.tensor.nnz:>6} "
              f"{f.profile.regularity:>10.3f}  {', '.join(top)} / {place}")
    return {"data": "real", "users": rows}


# -----------------------------------------------------------------------------
# 2. synthetic users from the calibrated simulator
# -----------------------------------------------------------------------------

def synthetic_users(cfg: FeatureConfig, n_users: int, seed: int, out_dir: Path) -> dict[str, Any]:
    from umask.train import simulator
    from umask.train.data.user_windows import (cold_start_windows, completion_windows, long_term_windows,
                                          short_term_windows, user_splits)

    _section(f"2. Calibrated simulator (SYNTHETIC: {n_users} users x 7 days, seed {seed})")
    catalog = load_llmapp_catalog(TSINGHUA)
    sim_cfg = simulator.SimulatorConfig(n_users=n_users, seed=seed)
    t = time.perf_counter()
    paths = simulator.write_synthetic(out_dir, sim_cfg, catalog=catalog, with_validation=False)
    trace_path = paths["trace"]
    t_gen = time.perf_counter() - t
    events = read_official_trace(trace_path)  # the same loader as for the real trace
    catalog.check_events(events)
    print(f"wrote {_rel(trace_path)} ({trace_path.stat().st_size / 1e6:.1f} MB, "
          f"{len(events)} records) in {t_gen:.1f} s; read back with the official-format loader")

    start = int(events.ts.min()) // DAY * DAY
    fit_end = start + 5 * DAY  # layouts and profiles from the 5 training days only (no leakage)
    t = time.perf_counter()
    feats = featurize_population(events, catalog, cfg, fit_end_ts=fit_end)
    t_feat = time.perf_counter() - t
    cov_train, cov_test, nbytes = [], [], 0
    for f in feats.values():
        nbytes += f.tensor.nbytes
        cov_train.append(f.report.coverage)
    from umask.runtime.core.tessellation import coverage
    test_ev = events.between(start + 6 * DAY, start + 7 * DAY)
    for u, f in feats.items():
        ev = test_ev.for_user(u)
        if len(ev):
            cov_test.append(coverage(ev, f.layout, catalog))
    any_t = next(iter(feats.values())).tensor
    splits = user_splits(any_t.shape[1], cfg.slots_per_day)
    n_b1 = len(short_term_windows(any_t, "test"))
    n_b2 = len(long_term_windows(any_t, "test"))
    n_b3 = len(cold_start_windows(any_t, "test"))
    n_b4 = len(completion_windows(any_t, "test"))
    print(f"featurized {len(feats)} users in {t_feat:.1f} s: tensor {tuple(any_t.shape)} (C, T, H, W) each, "
          f"{nbytes / 1e6:.1f} MB sparse in all")
    print(f"layout coverage (fit on days 1-5): all days mean {np.mean(cov_train):.3f}; "
          f"held-out test day mean {np.mean(cov_test):.3f} (min {np.min(cov_test):.3f})")
    print("per-user split (days): " + ", ".join(f"{k} {v.t0 // cfg.slots_per_day + 1}-{v.t1 // cfg.slots_per_day}"
                                                 for k, v in splits.items()))
    print(f"PROTOCOL B test windows per user: B1 {n_b1}, B2 {n_b2}, B3 {n_b3}, B4 {n_b4}")

    real = read_trace(TSINGHUA / "app_usage_trace_sample_llmapp.csv.gz")
    table_rows = simulator.validate(events, real, catalog)
    print()
    print(simulator.format_validation(table_rows))
    return {"data": "synthetic", "trace": _rel(trace_path), "n_users": len(feats),
            "records": len(events), "generate_s": round(t_gen, 2), "featurize_s": round(t_feat, 2),
            "sparse_mb": round(nbytes / 1e6, 2), "coverage_fit_days_mean": float(np.mean(cov_train)),
            "coverage_test_day_mean": float(np.mean(cov_test)),
            "windows_per_user": {"B1": n_b1, "B2": n_b2, "B3": n_b3, "B4": n_b4},
            "validation": table_rows}


# -----------------------------------------------------------------------------
# 3. Milan and 4. Taobao
# -----------------------------------------------------------------------------

def milan() -> dict[str, Any]:
    from umask.bench.accuracy import grid as milan_eval
    from umask.train.data.milan import read_internet_matrix

    _section("3. Milan Telecom Italia 5x5 internet, 30 days (REAL): PROTOCOL A baselines")
    matrix = read_internet_matrix(DATA / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz")
    rows = milan_eval.evaluate_a1(matrix) + milan_eval.evaluate_a2(matrix)
    print(milan_eval.markdown_table(rows))
    return {"data": "real", "rows": rows}


def taobao() -> dict[str, Any]:
    from umask.train.data.splits import leave_one_out
    from umask.train.data.taobao import BEHAVIORS, read_user_behavior

    _section("4. Taobao UserBehavior head (REAL): PROTOCOL C leave-one-out")
    inter = read_user_behavior(DATA / "taobao_user_behavior" / "UserBehavior_head.csv.gz")
    split = leave_one_out(inter.user, inter.timestamp)
    counts = inter.behavior_counts()
    test_beh = np.bincount(inter.behavior[split.test], minlength=len(BEHAVIORS))
    print(f"{len(inter.user)} interactions, {inter.n_users} users, {len(np.unique(inter.item))} items; "
          f"behaviors {counts}")
    print(f"leave-one-out: train {len(split.train)}, val {len(split.val)}, test {len(split.test)} "
          f"(test behaviors: {dict(zip(BEHAVIORS, test_beh.tolist()))})")
    return {"data": "real", "interactions": len(inter.user), "users": inter.n_users,
            "train": len(split.train), "val": len(split.val), "test": len(split.test)}


# -----------------------------------------------------------------------------
# 5. train U-MASK
# -----------------------------------------------------------------------------

def train_umask(trace: Path, out_dir: Path, quick: bool, steps: int | None, threads: int) -> Path:
    from umask.train.models.umask.trainer import TrainConfig, train

    cfg = TrainConfig(model="tiny" if quick else "small",
                      model_overrides={"t_power": 2.0, "data_scale": "none"},   # the v2 recipe (README)
                      steps=steps or (60 if quick else 600), warmup=10 if quick else 50, batch_size=8,
                      ckpt_every=10_000, eval_every=0, data=str(trace), out=str(out_dir),
                      resume="never" if not (out_dir / "ckpt").exists() else "auto", num_threads=threads,
                      progress=True)
    _section(f"5. Train U-MASK ({cfg.model} config, {cfg.steps} steps) on the SYNTHETIC users of step 2")
    if (out_dir / "ckpt").exists():
        print(f"resuming / reusing {_rel(out_dir)} (delete it to train from scratch)")
    t = time.perf_counter()
    ckpt = train(cfg)
    print(f"checkpoint {_rel(ckpt)} ({time.perf_counter() - t:.0f} s)")
    return ckpt


def shipped_model(model_dir: Path) -> Path:
    """The shipped checkpoint folder (model.safetensors + config.json + MODEL_CARD.md): print what it is."""
    from umask.train.common.checkpoints import resolve_checkpoint

    ckpt = resolve_checkpoint(model_dir)
    config = json.loads((ckpt / "config.json").read_text())
    m, sh = config.get("model", {}), config.get("shipped", {})
    _section(f"5. U-MASK: the shipped model {_rel(ckpt)} (no training; --retrain trains from scratch)")
    print(f"config {m.get('name')}, prior {m.get('prior', 'none')}, trained {sh.get('step')} steps on "
          f"{config.get('data', {}).get('source')} ({config.get('data', {}).get('n_users_loaded')} users); "
          f"weights {sh.get('weights')} {sh.get('dtype')}; card: {_rel(ckpt / 'MODEL_CARD.md')}")
    return ckpt


def serve_torch(ckpt: Path, why: str) -> dict[str, Any]:
    """B1 (next hour) of the 6 REAL users with the torch model, next to the real-sample baselines."""
    from umask.bench.accuracy import user as ue
    from umask.bench.accuracy.user_umask import umask_predictor

    _section("7b. The torch model on the 6 REAL users (B1, next hour, every hour of their day)")
    print(f"not exported: {why}")
    pop = ue.real_population()
    pred = umask_predictor(ckpt, n_samples=2)
    pred.attach_population(pop)
    rows = ue.evaluate_real_sample({**ue.real_baseline_models(), "umask": pred}, population=pop)
    out = []
    print(f"{'model':<14}{'RMSE traffic':>13}{'RMSE app':>10}{'RMSE loc':>10}{'MAE loc':>9}  (featurized scale, REAL)")
    for r in rows:
        m = r["metrics"]
        print(f"{r['model']:<14}{m['traffic']['rmse']:>13.4f}{m['app']['rmse']:>10.4f}{m['location']['rmse']:>10.4f}"
              f"{m['location']['mae']:>9.4f}")
        out.append({"model": r["model"], "n_windows": r["n_windows"],
                    "rmse": {g: m[g]["rmse"] for g in ("traffic", "app", "location")},
                    "mae": {g: m[g]["mae"] for g in ("traffic", "app", "location")}})
    return {"data": "real", "artifact": "torch", "not_exported": why, "rows": out}


# -----------------------------------------------------------------------------
# 6-7. LLM files, export, serve real users with the runtime
# -----------------------------------------------------------------------------

def llm_files(llm_dir: Path | None, quant: str = "q8_0") -> Path | None:
    from umask.export.families.umask.exporter import select_gguf

    _section("6. U-SCOPE profiling LLM (GGUF for llama.cpp)")
    entry = select_gguf(llm_dir, quant)
    if entry["status"] != "present":
        print(f"{entry['note']}: the bundle carries no LLM and profiles come from the rule-based template "
              "(run the U-SCOPE pipeline, see the README, to add the LLM)")
        return None
    for f in entry["files"]:
        g = Path(entry["source"]) / Path(f).name
        print(f"ships {_rel(g)}  {g.stat().st_size / 1e6:.1f} MB ({entry['quant']})")
    return llm_dir


def demo_key(keys: Path) -> tuple[Path, Path]:
    """(private, public) key of this demo run, made once in ``keys`` (artifacts/demo/keys by default).

    The demo signs its own export and opens it as a device would: with the signature checked against
    this key (``trusted_keys=``), not with ``allow_unsigned`` (the same path a user's bundle takes)."""
    from umask.export.signing import generate_keypair

    priv, pub = keys / "demo.key", keys / "demo.pub"
    if priv.is_file() and pub.is_file():
        return priv, pub
    priv.unlink(missing_ok=True)
    pub.unlink(missing_ok=True)
    return generate_keypair(keys, "demo")


def export_bundle(ckpt: Path, out: Path, quick: bool, gguf_dir: Path | None,
                  sign_key: Path | None = None) -> dict[str, Any]:
    from umask.export.families.umask.exporter import export_bundle as export

    precisions = ["fp32", "int8-qdq"] if quick else ["fp32", "fp16", "int8-qdq", "int8-dynamic"]
    _section(f"7a. Export {_rel(ckpt)} -> {_rel(out)} ({', '.join(precisions)})")
    manifest = export(ckpt, out, precisions=precisions, gguf_dir=gguf_dir, max_windows=8 if quick else 24,
                      sign_key=sign_key)
    print(f"bundle written in {manifest.get('export_seconds')} s, {len(manifest['files'])} files, "
          f"{sum(int(f['size']) for f in manifest['files'].values()) / 1e6:.1f} MB in all")
    return manifest


def _mask_strip(mask: np.ndarray, slots_per_hour: int, hours: int = 24) -> str:
    """The last ``hours`` hours of a (T, H, W) evidence mask as one character per hour: the share of
    the hour's (slot, cell) coordinates chosen as evidence (' ' none, '.' < 1/4, ':' < 1/2, '#' more)."""
    per_hour = mask.reshape(-1, slots_per_hour, *mask.shape[1:]).mean(axis=(1, 2, 3))[-hours:]
    return "".join(" " if v == 0 else "." if v < 0.25 else ":" if v < 0.5 else "#" for v in per_hour)


def serve_real_users(bundle: Path, precision: str, now_hour: int = 18, trusted_keys: Any = None) -> dict[str, Any]:
    from umask.runtime.families.umask.session import Session

    _section(f"7b. Runtime Session ({precision}, torch-free) serving the 6 REAL users at {now_hour}:00")
    s = Session.open(bundle, precision=precision, threads=1, trusted_keys=trusted_keys)
    rep = s.report()
    print(f"providers {sorted({p for ps in rep['providers'].values() for p in ps})}, LLM "
          f"{'on' if rep['llm'] else 'off (template profiles)'}, sampler {rep['sampler_defaults']}")
    events = read_trace(TSINGHUA / "app_usage_trace_sample_llmapp.csv.gz")
    day = int(events.ts.min()) // DAY * DAY
    now = day + now_hour * 3600
    users = []
    for u in (int(v) for v in events.users):
        hist = events.for_user(u).between(day, now)
        if len(hist) == 0:
            continue
        sph = 60 // s.fcfg.slot_minutes
        print(f"\n-- user {u}: {len(hist)} events before {now_hour}:00 --")
        rec: dict[str, Any] = {"user": u}
        try:
            prof = s.profile(hist, now_ts=now)
            m = s.mask(hist, "short_term", now_ts=now)
            pred = s.predict_short(hist, now_ts=now, seed=0)
        except InputError as e:   # e.g. no event inside the model's context window
            print(f"no prediction: {e}")
            users.append({**rec, "error": str(e)})
            continue
        print(f"profile ({prof['source']}):\n  " + (prof['text'] or '-').replace(chr(10), chr(10) + '  '))
        print(f"evidence mask, last {min(24, s.spec.context // sph)} h (one char per hour, '#' dense): "
              f"|{_mask_strip(m['mask'][:s.spec.context], sph)}| k = {m['k']} of {m['n_avail']} available")
        top = ", ".join(f"{a['category']} {a['expected_records']:.2f}" for a in pred["apps"][:3])
        loc0 = pred["location"][0]
        print(f"next hour: traffic {sum(pred['traffic_bytes']) / 1e3:.1f} kB; apps {top}; "
              f"place {loc0.get('place_type', '?')} (presence {loc0['presence']:.2f})")
        rec.update({"profile_source": prof["source"], "profile": prof["text"], "k": m["k"], "n_avail": m["n_avail"],
                    "next_hour": pred})
        try:
            rec_ = s.recommend(hist, k_apps=3, k_locations=2, now_ts=now, seed=0)   # one cold-start completion
            apps, locs = rec_["apps"], rec_["locations"]
            print("cold-start apps: " + ", ".join(a["category"] for a in apps) + "; places: "
                  + ", ".join(str(loc.get("place_type", loc["grid_cell"])) for loc in locs))
            rec.update({"recommend_apps": apps, "recommend_locations": locs})
        except InputError as e:
            print(f"no cold-start recommendation: {e}")
            rec["recommend_error"] = str(e)
        users.append(rec)
    return {"data": "real", "precision": precision, "runtime": rep, "now_hour": now_hour, "users": users}


# -----------------------------------------------------------------------------
# 8. latency and accuracy summary
# -----------------------------------------------------------------------------

def latency_accuracy(bundle: Path, manifest: dict[str, Any], hours: tuple[int, ...] = (10, 14, 18),
                     trusted_keys: Any = None) -> dict[str, Any]:
    """The runtime's full short-term request per precision: p50 latency over every (user, hour) and
    the MAE of its next-hour prediction against the REAL next hour (featurized scale), next to the
    last-value baseline on the same windows."""
    from umask.bench.latency.request import RealSample
    from umask.runtime.families.umask.session import Session

    _section("8. Latency and accuracy of the on-device request (REAL sample, this machine)")
    real = RealSample.load(TSINGHUA)   # the latency harness's view of the sample: histories and truths
    precs = [p for p, nets in manifest["artifacts"].items()
             if all(nets.get(n, {}).get("status") == "ok" for n in ("dit", "maskgen", "profile_mlp"))]
    rows = []
    for prec in precs:
        s = Session.open(bundle, precision=prec, threads=1, profile_source="template", trusted_keys=trusted_keys)
        lat, err, err_lv, act, act_lv = [], [], [], [], []
        for ui in range(len(real.events)):
            for h in hours:
                hist, now = real.history(ui, h)
                if len(hist) == 0:
                    continue
                t = time.perf_counter()
                try:
                    c = s.complete(hist, "short_term", now_ts=now, seed=0)
                except InputError:   # nothing inside the model's context window
                    continue
                lat.append(time.perf_counter() - t)
                t0, t1 = c.window.target_slots
                truth = real.truth(ui, c.window)                              # (C, Th, H, W), same layout
                ctx = s.spec.context
                pred = np.clip(c.x[:, t0:t1], 0.0, None)
                last = np.repeat(c.window.x[:, ctx - 1:ctx], t1 - t0, axis=1)   # last-value: the slot before now
                err.append(np.abs(pred - truth).mean())
                err_lv.append(np.abs(last - truth).mean())
                a = truth != 0
                if a.any():
                    act.append(np.abs(pred - truth)[a].mean())
                    act_lv.append(np.abs(last - truth)[a].mean())
        lat_ms = np.array(lat) * 1e3
        row = {"precision": prec, "requests": len(lat), "p50_ms": round(float(np.median(lat_ms)), 1),
               "p90_ms": round(float(np.percentile(lat_ms, 90)), 1),
               "mae": float(np.mean(err)) if err else None, "active_mae": float(np.mean(act)) if act else None,
               "last_value_mae": float(np.mean(err_lv)) if err_lv else None,
               "last_value_active_mae": float(np.mean(act_lv)) if act_lv else None,
               "parity": manifest["artifacts"][prec].get("dit", {}).get("parity")}
        rows.append(row)
    print(f"{'precision':<13}{'requests':>9}{'p50 ms':>9}{'p90 ms':>9}{'MAE':>9}{'act. MAE':>10}"
          f"{'last-value MAE':>16}{'LV act. MAE':>13}")
    for r in rows:
        f = (lambda v: f"{v:.4f}" if v is not None else "-")
        print(f"{r['precision']:<13}{r['requests']:>9}{r['p50_ms']:>9.1f}{r['p90_ms']:>9.1f}{f(r['mae']):>9}"
              f"{f(r['active_mae']):>10}{f(r['last_value_mae']):>16}{f(r['last_value_active_mae']):>13}")
    print("MAE on the featurized scale over every entry of the next hour (active: truth != 0). The model was "
          "trained on SYNTHETIC users only (zero-shot on the REAL sample). Latency: one full request "
          "(window, template profile text, SBERT, h_u, mask, sampling; the LLM profile is timed by "
          "python -m umask.bench.latency.harness), 1 onnxruntime thread, this machine.")
    return {"data": "real", "hours": list(hours), "rows": rows}


# -----------------------------------------------------------------------------
# entry point
# -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="umask demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few-minute path (fewer synthetic users)")
    p.add_argument("--users", type=int, default=None, help="synthetic users (default 1000, --quick 100)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    p.add_argument("--out", type=Path, default=ROOT / "artifacts" / "demo", help="output folder")
    p.add_argument("--model", type=Path, default=ROOT / "checkpoints" / "umask_small_v9",
                   help="the shipped U-MASK checkpoint folder served by default")
    p.add_argument("--retrain", action="store_true",
                   help="train U-MASK from scratch on the simulated users instead of serving --model")
    p.add_argument("--train-steps", type=int, default=None,
                   help="U-MASK training steps with --retrain (default 600; --quick: 60, the tiny config)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training")
    p.add_argument("--llm-dir", type=Path, default=ROOT / "artifacts" / "uscope" / "gguf",
                   help="folder with the U-SCOPE GGUF files to ship in the bundle (absent: template profiles)")
    p.add_argument("--precision", default="int8-qdq", help="precision the runtime serves the real users with")
    p.add_argument("--data-only", action="store_true", help="stop after the data steps 1-4")
    p.add_argument("--grid-model", type=Path, default=ROOT / "checkpoints" / "umask_grid_s0",
                   help="the shipped grid U-MASK checkpoint of step 9 (a folder without config.json skips the step)")
    p.add_argument("--families", action=argparse.BooleanOptionalAction, default=None,
                   help="step 10: export and serve the shipped U-STS-LLM, FatsMB and GTS-LUM checkpoints (default: "
                        "on, off with --quick)")
    args = p.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)   # progress reaches a log file as it happens
    n_users = args.users or (100 if args.quick else 1000)
    if args.families is None:
        args.families = not args.quick
    if n_users < 1:
        p.error("--users must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = FeatureConfig()
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"feature_config": cfg.to_dict(), "quick": args.quick}
    summary["tsinghua_real"] = real_sample(cfg)
    summary["simulator"] = synthetic_users(cfg, n_users, args.seed, args.out / "sim")
    summary["milan"] = milan()
    summary["taobao"] = taobao()
    if not args.data_only:
        trace = args.out / "sim" / "App_usage_trace.synthetic.txt.gz"
        shipped = not (args.quick or args.retrain)
        if shipped and not (args.model / "config.json").is_file():
            p.error(f"--model {args.model}: no shipped checkpoint there (config.json); use --retrain")
        if shipped:
            ckpt = shipped_model(args.model)
            summary["train"] = {"data": "synthetic", "checkpoint": _rel(ckpt), "source": "shipped (not trained here)"}
        else:
            if args.quick:
                log.warning("--quick: serving a tiny model trained here for %s steps (the smoke path); its predictions "
                            "are near-constant across users. The full run serves the shipped %s.",
                            args.train_steps or 60, args.model)
            ckpt = train_umask(trace, args.out / "train", args.quick, args.train_steps, args.threads)
            summary["train"] = {"data": "synthetic", "checkpoint": _rel(ckpt), "source": "trained in this run"}
        gguf_dir = llm_files(args.llm_dir)
        key, pub = demo_key(args.out / "keys")      # the run's own signing key (see demo_key)
        try:
            manifest = export_bundle(ckpt, args.out / "bundle", args.quick, gguf_dir, sign_key=key)
        except (ExportError, InputError) as e:
            if not shipped:
                raise
            summary["export"] = {"error": str(e)}
            summary["serve"] = serve_torch(ckpt, str(e))
        else:
            summary["export"] = {"bundle": _rel(args.out / "bundle"), "seconds": manifest.get("export_seconds"),
                                 "llm": manifest.get("llm", {}).get("status")}
            summary["export"]["signed_by"] = _rel(pub)
            summary["serve"] = serve_real_users(args.out / "bundle", args.precision, trusted_keys=[pub])
            summary["latency_accuracy"] = latency_accuracy(args.out / "bundle", manifest, trusted_keys=[pub])
        if (args.grid_model / "config.json").is_file():
            summary["grid"] = grid_model(args.grid_model, args.out / "grid_bundle", args.quick, key, pub,
                                         summary["milan"]["rows"])
        else:
            print(f"step 9 skipped: no grid checkpoint at {args.grid_model}")
        if args.families:
            summary["families"] = family_models(args.out, args.quick, key, pub, summary["milan"]["rows"])
        else:
            print("step 10 skipped (--no-families)")
    summary["elapsed_s"] = round(time.perf_counter() - t0, 1)
    out = args.out / "summary.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    tmp.replace(out)
    _section("done")
    print(f"summary written to {out} ({summary['elapsed_s']} s). Real: Tsinghua sample, Milan, Taobao. "
          f"Synthetic: the simulator's {n_users} users.")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(main())
