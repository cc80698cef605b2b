"""Per-user U-MASK checkpoints on the VALIDATION day: which prior kind each task should use (issue 10, v6 -> v7).

    python scripts/umask_prior_val.py checkpoints/umask_small_v4 checkpoints/umask_small_v6 \
        --out benchmarks/results/umask_prior_val.json          # ~6 min per checkpoint on one thread

Scores each checkpoint (x0 at t = N-1, 1 draw, as the test rows) and the blend / blend_tuned baselines on the
validation day (day 6) of the 50 users of simulator seed 0, B1 every 2nd target hour, B2-B4: RMSE per channel
group, app Recall@3, location Acc@1, B3 NDCG@3. The test day is never read. v6 ("task_blend": last value
share 0.3 / 0.1 / 0.1 / 0.3) against v4 ("blend": 0.5 everywhere) on these windows decides the shares of v7.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from umask.bench.accuracy import user as ue
from umask.bench.accuracy.user_umask import b1_hours, umask_predictor
from umask.bench.accuracy.user_v2 import _atomic_json


def summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        m = r["metrics"]
        d = {f"rmse/{g}": round(float(m[g]["rmse"]), 6) for g in ("traffic", "app", "location")}
        d.update({k: round(float(v), 4) for k, v in m.get("events", {}).items() if "@" in k and "n_slots" not in k})
        for g, rk in m.get("ranking", {}).items():
            if isinstance(rk, dict) and "ndcg@3" in rk:
                d[f"ndcg@3/{g}"] = round(float(rk["ndcg@3"]), 4)
        out.setdefault(r["task_id"], {})[r["model"]] = d
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/umask_prior_val.json"))
    ap.add_argument("--prior-rows", action="store_true", help="also score each checkpoint's prior alone")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pop = ue.simulated_population(a.users, 0)
    ha = ue.HistoricalAverage(pop)
    from umask.bench.accuracy.user_baselines import TaskBlend

    models = {"blend": ue.Blend(ha), "blend_tuned": TaskBlend(ha)}
    from umask.bench.accuracy.user_umask_v2 import ablated

    for c in a.ckpts:
        p = umask_predictor(c, n_samples=1, point="first_x0")
        p.attach_population(pop)
        models[Path(c).name] = p
        if a.prior_rows:                       # the checkpoint's own prior alone (its kind, from the history)
            pr = ablated(c, "prior_only", 1)
            pr.attach_population(pop)
            models[f"{Path(c).name}:prior_only"] = pr
    rows = ue.evaluate_population(pop, models, split="val", tasks=("B1", "B2", "B3", "B4"),
                                  windows={"B1": set(b1_hours(2, 0))},
                                  command=" ".join(["python", "scripts/umask_prior_val.py", *sys.argv[1:]]))
    res = {"meta": {"command": " ".join(["python", "scripts/umask_prior_val.py", *sys.argv[1:]]),
                    "data": f"SYNTHETIC: {a.users} simulator users, seed 0, VALIDATION day (day 6); B1 every 2nd "
                            "target hour; point estimator x0 at t = N-1, 1 draw"},
           "val": summary(rows)}
    _atomic_json(a.out, res)
    print(json.dumps(res["val"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
