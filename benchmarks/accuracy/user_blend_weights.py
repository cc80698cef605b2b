"""Choose the blend's last value share per task on the VALIDATION day (the "task_blend" prior of U-MASK v6).

    python -m umask.bench.accuracy.user_blend_weights        # ~8 min on one thread
    -> benchmarks/results/blend_weights_val.json

The PROTOCOL v2 B blend is 0.5 x last value + 0.5 x historical average for every task. On next-day
windows (B2) the last value is the end of today and says little about tomorrow at the same hour, so a
smaller share should do better; short-term (B1) and imputation (B4) windows may want another share. This
scores the blend for each share of :data:`GRID` on the validation day (day 6) of the 50 users of simulator
seed 0 (the users the shipped models were first trained on; the test day is never read; B3: the harness's
validation cold-start windows) and picks, per
task, the share with the lowest mean ratio of all-entry RMSE to the 0.5 blend over the three channel
groups. The picks are frozen in ``runtime/families/umask/prior.TASK_PRIOR_WEIGHTS`` (the runtime cannot
read a result file); this module reports whether they still agree.

The same run chooses the "smooth_blend" prior of U-MASK v9 (section ``smooth``): the blend over a kernel estimate of
the slot-of-day mean (sums and counts smoothed around the clock, ``prior.smooth_tod``) for each width of
:data:`SMOOTH_GRID` and each share of :data:`SMOOTH_SHARES`. One width for every task: the one whose best share per
task gives the lowest mean ratio over tasks (same ratio as above); then the share per task at that width. Frozen in
``prior.SMOOTH_MINUTES`` / ``prior.SMOOTH_PRIOR_WEIGHTS``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from umask.bench.accuracy import user as ue
from umask.bench.accuracy.user_baselines import Blend, HistoricalAverage, HistoricalAverageBefore
from umask.bench.accuracy.user_tasks import TASK_OF
from umask.bench.accuracy.user_v2 import _atomic_json
from umask.runtime.families.umask.prior import PRIOR_WEIGHT, SMOOTH_MINUTES, SMOOTH_PRIOR_WEIGHTS, TASK_PRIOR_WEIGHTS

log = logging.getLogger(__name__)

GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)
SMOOTH_GRID: tuple[float, ...] = (60.0, 120.0, 180.0, 240.0)     # kernel widths (minutes) of "smooth_blend"
SMOOTH_SHARES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5)     # its last value shares
TASKS: tuple[str, ...] = ("B1", "B2", "B3", "B4")
GROUPS: tuple[str, ...] = ("traffic", "app", "location")
DEFAULT_OUT = Path("benchmarks/results/blend_weights_val.json")


def ratio(rmse: dict[str, float], ref: dict[str, float]) -> float:
    """Mean over the channel groups of RMSE / the reference's RMSE."""
    return sum(rmse[g] / ref[g] for g in GROUPS) / len(GROUPS)


def choose(rmse: dict[float, dict[str, float]]) -> float:
    """The share whose RMSE, relative to the 0.5 blend's and averaged over the channel groups, is lowest."""
    return min(rmse, key=lambda w: (ratio(rmse[w], rmse[PRIOR_WEIGHT]), w))


def choose_smooth(smooth: dict[str, dict[float, dict[float, dict[str, float]]]],
                  ref: dict[str, dict[str, float]]) -> tuple[float, dict[str, float]]:
    """(width, share per task): the width whose best share per task has the lowest mean `ratio` over the tasks
    (ties: the narrower), then that best share per task (ties: the smaller)."""
    def best(t: str, m: float) -> float:
        return min(smooth[t][m], key=lambda w: (ratio(smooth[t][m][w], ref[t]), w))

    widths = sorted(next(iter(smooth.values())))
    m = min(widths, key=lambda m: (sum(ratio(smooth[t][m][best(t, m)], ref[t]) for t in smooth) / len(smooth), m))
    return m, {t: best(t, m) for t in smooth}


def run(n_users: int = 50, seed: int = 0) -> dict[str, Any]:
    def models(pop: ue.UserPopulation) -> dict[str, ue.Predictor]:
        ha = HistoricalAverage(pop)
        out: dict[str, ue.Predictor] = {f"blend_w{w}": Blend(ha, w) for w in GRID}
        for m in SMOOTH_GRID:
            hs = HistoricalAverageBefore(pop, m)
            out.update({f"smooth_m{m}_w{w}": Blend(hs, w) for w in SMOOTH_SHARES})
        return out

    rows = ue.evaluate(models, n_users=n_users, seed=seed, split="val", tasks=TASKS)
    table: dict[str, dict[float, dict[str, float]]] = {t: {} for t in TASKS}
    smooth: dict[str, dict[float, dict[float, dict[str, float]]]] = {t: {m: {} for m in SMOOTH_GRID} for t in TASKS}
    for r in rows:
        v = {g: float(r["metrics"][g]["rmse"]) for g in GROUPS}
        if r["model"].startswith("smooth_m"):
            m, w = r["model"].removeprefix("smooth_m").split("_w")
            smooth[r["task_id"]][float(m)][float(w)] = v
        else:
            table[r["task_id"]][float(r["model"].removeprefix("blend_w"))] = v
    chosen = {t: choose(table[t]) for t in TASKS}
    frozen = {t: TASK_PRIOR_WEIGHTS[TASK_OF[t]] for t in TASKS}
    ref = {t: table[t][PRIOR_WEIGHT] for t in TASKS}
    s_minutes, s_shares = choose_smooth(smooth, ref)
    s_frozen = {t: SMOOTH_PRIOR_WEIGHTS[TASK_OF[t]] for t in TASKS}
    smooth_res = {"grid_minutes": list(SMOOTH_GRID), "grid_shares": list(SMOOTH_SHARES),
                  "rule": "one width for all tasks: lowest mean over tasks of the best share's ratio (mean over "
                          "groups of RMSE / RMSE of the raw 0.5 blend); then per task the share with the lowest ratio",
                  "rmse": {t: {str(m): {str(w): v for w, v in smooth[t][m].items()} for m in SMOOTH_GRID} for t in TASKS},
                  "ratio_to_raw_0.5_blend": {t: {str(m): {str(w): round(ratio(v, ref[t]), 5) for w, v in smooth[t][m].items()}
                                                 for m in SMOOTH_GRID} for t in TASKS},
                  "chosen_minutes": s_minutes, "chosen": s_shares,
                  "frozen_in_runtime": {"minutes": SMOOTH_MINUTES, "shares": s_frozen},
                  "agree": s_minutes == SMOOTH_MINUTES and s_shares == s_frozen}
    return {"meta": {"command": " ".join(["python", "-m", "umask.bench.accuracy.user_blend_weights", *sys.argv[1:]]),
                     "data": f"SYNTHETIC: {n_users} simulator users, seed {seed}, validation day (day 6)",
                     "rule": "per task, the share with the lowest mean over traffic / app / location of "
                             "RMSE(share) / RMSE(0.5)", "grid": list(GRID)},
            "rmse": {t: {str(w): v for w, v in table[t].items()} for t in TASKS},
            "chosen": chosen, "frozen_in_runtime": frozen, "agree": chosen == frozen and smooth_res["agree"],
            "smooth": smooth_res}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user_blend_weights", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=50, help="simulator users")
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result file (JSON)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    res = run(a.users, a.seed)
    _atomic_json(a.out, res)
    log.info("chosen %s (runtime: %s); smooth %s min %s (runtime: %s) -> %s", res["chosen"], res["frozen_in_runtime"],
             res["smooth"]["chosen_minutes"], res["smooth"]["chosen"], res["smooth"]["frozen_in_runtime"], a.out)
    return 0 if res["agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
