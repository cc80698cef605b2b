"""The main job's steps 9-10: the shipped grid and family models, exported and served torch-free on real data.

Called by ``umask demo`` (benchmarks/demo.py); each function exports one shipped checkpoint folder to a
signed bundle, opens it with the family's runtime session as a device would, and scores or serves it:

9. ``grid_model``: U-MASK's grid model (``checkpoints/umask_grid_s0``) on every PROTOCOL A test window of
   the REAL Milan grid, raw units in and out.
10. ``family_models``: U-STS-LLM (``checkpoints/ustsllm_lowrank_profile_l1_s0``, its A2 gate in the bundle) on the same Milan windows; FatsMB
   (``checkpoints/fatsmb_taobao_s0``) ranking all 55,233 items for each REAL Taobao test user; GTS-LUM
   (``checkpoints/gtslum_s0``, trained on SYNTHETIC users) naming the next hour's app categories of the 6 REAL
   Tsinghua users at 18:00, next to the categories they really used.

``--quick`` exports fp32 only and scores every 8th window / user (the smoke path of tests/test_demo.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
TSINGHUA = ROOT / "data" / "tsinghua_app_usage"
DAY = 86_400
# the shipped folders step 10 serves, in order (a missing folder is skipped with a message)
FAMILY_MODELS = (("ustsllm", "checkpoints/ustsllm_lowrank_profile_l1_s0"), ("fatsmb", "checkpoints/fatsmb_taobao_s0"),
                 ("gtslum", "checkpoints/gtslum_s0"))


def _rel(path: Path) -> str:
    """Path relative to the repository when it lies inside it (for readable, portable summaries)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


def _export(family: str, ckpt: Path, out: Path, precisions: list[str], sign_key: Path, **options: Any) -> dict[str, Any]:
    from umask.export.families import exporter

    t0 = time.perf_counter()
    manifest = exporter(family)(ckpt, out, precisions=precisions, sign_key=sign_key, **options)
    print(f"{family}: {_rel(ckpt)} -> {_rel(out)} ({', '.join(precisions)}) in {time.perf_counter() - t0:.0f} s")
    return manifest


def score_grid_session(bundle: Path, precisions: list[str], pub: Path, quick: bool) -> list[dict[str, Any]]:
    """A1 / A2 normalized MAE of a grid bundle (``umask_grid`` or ``ustsllm``: the same ``forecast`` /
    ``impute`` session API, raw units) on the REAL Milan PROTOCOL A test windows (``quick``: every 8th)."""
    from umask.bench.accuracy import grid as harness
    from umask.bench.accuracy.grid_umask_bundle import predictions
    from umask.bench.accuracy.grid_umask_v2 import protocol_windows
    from umask.runtime.session import Session
    from umask.train.common.metrics import mae
    from umask.train.data.grids import milan_grid

    spec = harness.GridSpec(milan_grid())
    every = 8 if quick else 1
    fw, iw = (type(w)(**{f.name: getattr(w, f.name)[::every] for f in fields(w)}) for w in protocol_windows(spec, "test"))
    rows: list[dict[str, Any]] = []
    for prec in precisions:
        with Session.open(bundle, precision=prec, trusted_keys=[pub]) as s:
            t0 = time.perf_counter()
            pred = predictions(s, spec, fw, iw, ("a1", "a2"))          # raw units in and out, harness scale back
            sec = time.perf_counter() - t0
        # normalized MAE of the scored windows on the protocol's scale (A2: the hidden entries only)
        for task, nmae, n in (("A1", mae(pred["a1"], fw.y), len(fw.starts)),
                              ("A2", mae(pred["a2"], iw.truth, iw.mask), len(iw.starts))):
            rows.append({"precision": prec, "task": task, "windows": int(n), "nmae": nmae, "seconds": round(sec, 1)})
    for r in rows:
        print(f"{r['precision']:9s} {r['task']}: nMAE {r['nmae']:.4f} on {r['windows']} windows "
              f"({r['seconds']} s for both tasks)")
    return rows


def _simple_rows(baseline_rows: list[dict[str, Any]] | None) -> str:
    if not baseline_rows:
        return "(simple rows: umask demo step 3)"
    base = {r["model"] + "/" + r["task"][:2]: r["metrics"]["normalized_mae"] for r in baseline_rows}
    return (f"all test windows, simple rows: A1 historical average {base['historical_average/A1']:.3f}, "
            f"A2 linear interpolation {base['linear_interpolation/A2']:.3f}, lowrank_interpolation "
            f"{base['lowrank_interpolation/A2']:.3f}, profile_lowrank_interpolation "
            f"{base['profile_lowrank_interpolation/A2']:.3f}; ARIMA 0.401 / 0.271 (milan_arima.json)")


# -----------------------------------------------------------------------------
# 9. The U-MASK grid model
# -----------------------------------------------------------------------------
def grid_model(ckpt: Path, out: Path, quick: bool, sign_key: Path, pub: Path,
               baseline_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Step 9: export the shipped grid checkpoint, open the bundle as a device would, score Milan A1 / A2 with it;
    ``baseline_rows``: step 3's Milan baseline rows (every test window), printed next to it."""
    precisions = ["fp32"] if quick else ["fp32", "int8-qdq"]
    samples = 2 if quick else 16
    _section(f"9. The grid model (REAL Milan): {_rel(ckpt)} -> {_rel(out)} ({', '.join(precisions)}, {samples} draws)")
    manifest = _export("umask_grid", ckpt, out, precisions, sign_key, samples=samples)
    print(f"per-cell gate chosen on the validation days (A1 over the prior, A2 over "
          f"{manifest['gate']['impute']['other']})")
    rows = score_grid_session(out, precisions, pub, quick)
    print(_simple_rows(baseline_rows))
    return {"data": "real", "checkpoint": _rel(ckpt), "bundle": _rel(out), "rows": rows,
            "export_seconds": manifest.get("export_seconds")}


# -----------------------------------------------------------------------------
# 10. The other families
# -----------------------------------------------------------------------------
def _ustsllm(ckpt: Path, out: Path, quick: bool, key: Path, pub: Path,
             baseline_rows: list[dict[str, Any]] | None) -> dict[str, Any]:
    precisions = ["fp32"] if quick else ["fp32", "int8-qdq"]
    manifest = _export("ustsllm", ckpt, out, precisions, key)
    g = (manifest.get("gate") or {}).get("impute")
    print("A2 per-cell gate chosen on the validation days: " + (f"over {g['other']}" if g else "none"))
    rows = score_grid_session(out, precisions, pub, quick)
    print(_simple_rows(baseline_rows))
    return {"data": "real (Milan)", "rows": rows}


def _fatsmb(ckpt: Path, out: Path, quick: bool, key: Path, pub: Path) -> dict[str, Any]:
    from umask.runtime.session import Session
    from umask.train.common.metrics import full_ranking_metrics
    from umask.train.models.fatsmb.data import TAOBAO_SAMPLE, load_protocol_c

    precisions = ["fp32"] if quick else ["fp32", "int8-qdq"]
    _export("fatsmb", ckpt, out, precisions, key)
    data = load_protocol_c(TAOBAO_SAMPLE)
    q = data.test
    users = np.arange(0, len(q), 8 if quick else 1)
    rows = []
    for prec in precisions:
        with Session.open(out, precision=prec, trusted_keys=[pub]) as s:
            t0 = time.perf_counter()
            per = [full_ranking_metrics(s.scores(*q.prefixes[u], int(q.behavior[u]))[None], q.item[u:u + 1], ks=(10,))
                   for u in users]                   # the scorer's metric: one held-out item, full ranking
            ms = 1e3 * (time.perf_counter() - t0) / len(users)
        rows.append({"precision": prec, "users": int(len(users)),
                     "recall@10": float(np.mean([m["recall@10"] for m in per])),
                     "ndcg@10": float(np.mean([m["ndcg@10"] for m in per])), "ms_per_request": round(ms, 1)})
        print(f"{prec:9s} item Recall@10 {rows[-1]['recall@10']:.4f} / NDCG@10 {rows[-1]['ndcg@10']:.4f} over "
              f"{len(users)} REAL test users (full ranking of {data.n_items} items, {ms:.1f} ms a request)")
    with Session.open(out, precision=precisions[0], trusted_keys=[pub]) as s:
        u = int(users[0])
        raw = [(int(data.item_ids[i]), int(b)) for i, b in zip(*q.prefixes[u])]
        rec = s.recommend(raw, behavior=int(q.behavior[u]), k=5)
    print(f"one request: user {u}'s {len(raw)} interactions -> next '{rec['behavior']}' items {rec['items']} "
          f"(held-out item {int(data.item_ids[q.item[u]])})")
    return {"data": "real (Taobao)", "rows": rows, "example": {"user": u, **rec}}


def _gtslum(ckpt: Path, out: Path, quick: bool, key: Path, pub: Path, now_hour: int = 18) -> dict[str, Any]:
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.runtime.core.events import read_trace
    from umask.runtime.session import Session

    precisions = ["fp32"] if quick else ["fp32", "int8"]
    _export("gtslum", ckpt, out, precisions, key)          # (its exporter writes fp32 and int8 either way)
    events = read_trace(TSINGHUA / "app_usage_trace_sample_llmapp.csv.gz")
    apps = load_llmapp_catalog(TSINGHUA).apps
    day = int(events.ts.min()) // DAY * DAY
    now = day + now_hour * 3600
    users, hits, n = [], 0, 0
    with Session.open(out, precision=precisions[-1], trusted_keys=[pub]) as s:
        for u in (int(v) for v in events.users):
            ev = events.for_user(u)
            hist, nxt = ev.between(day, now), ev.between(now, now + 3600)
            if len(hist) == 0:
                continue
            top = [a["category"] for a in s.next_apps(hist, k=5, now_ts=now)]
            used = sorted({apps.category_names[c] for c in apps.category_index(nxt.app, unknown="map") if c >= 0})
            hits += len(set(top) & set(used))
            n += len(used)
            users.append({"user": u, "top5": top, "used_next_hour": used})
            print(f"user {u}: top-5 {', '.join(top)} | used in the next hour: {', '.join(used) or '-'}")
    print(f"({precisions[-1]}) {hits} of the {n} categories used between {now_hour}:00 and {now_hour + 1}:00 were in "
          "the top 5 (the model was trained on SYNTHETIC users; these users are REAL and unseen)")
    return {"data": "real (Tsinghua, 6 users), model trained on synthetic users", "precision": precisions[-1],
            "users": users, "recall@5_of_used": hits / n if n else None}


def family_models(out: Path, quick: bool, key: Path, pub: Path, baseline_rows: list[dict[str, Any]] | None = None,
                  models: tuple[tuple[str, str], ...] = FAMILY_MODELS) -> dict[str, Any]:
    """Step 10: every shipped family folder of ``models`` (family, path under the repository), exported and served."""
    _section("10. The other families' shipped models, exported and served torch-free on REAL data")
    done: dict[str, Any] = {}
    for family, rel in models:
        ckpt = ROOT / rel
        if not (ckpt / "config.json").is_file():
            print(f"{family}: skipped, no shipped checkpoint at {rel}")
            continue
        bundle = out / f"{family}_bundle"
        t0 = time.perf_counter()
        if family == "ustsllm":
            rec = _ustsllm(ckpt, bundle, quick, key, pub, baseline_rows)
        elif family == "fatsmb":
            rec = _fatsmb(ckpt, bundle, quick, key, pub)
        else:
            rec = _gtslum(ckpt, bundle, quick, key, pub)
        done[family] = {"checkpoint": rel, "bundle": _rel(bundle), "seconds": round(time.perf_counter() - t0, 1), **rec}
    return done


__all__ = ["grid_model", "family_models", "score_grid_session", "FAMILY_MODELS"]
