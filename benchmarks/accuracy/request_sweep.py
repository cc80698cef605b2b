"""Steps and draws per request vs PROTOCOL v2 headline accuracy, through the runtime `Session` (issue 15 deliver 1).

    python -m umask.bench.accuracy.request_sweep --bundle artifacts/bundles/umask_small \\
        --trusted-keys artifacts/helperC/keys/dev.pub --users 30 --seed 0 --b1-every 8 \\
        --configs ddim:50:2,ddim:10:2,ddim:1:2,ddim:1:1 --out benchmarks/results/v2_request_sweep.json

Every configuration ``sampler:steps:draws`` scores the SAME protocol-B windows (the harness of
:mod:`umask.bench.accuracy.user`, SYNTHETIC simulator users, plus B1 on the REAL 6-user sample) through
``Session.complete_window`` of one precision, with the same per-window seeds (so draw i starts from the same
noise in every configuration). The reference is the first configuration (the 50-step result the issue names);
``meta.gaps`` holds, per configuration, the largest relative gap to it over the headline metrics
(`user_device.headline`: all-entry RMSE / MAE per channel group, app Recall@3, location Acc@1, B3 NDCG@3)
and the number of DiT evaluations one request costs (``steps x draws``). Latency is not measured here: the
latency harness (benchmarks/latency) times the chosen configuration on a quiet machine.

Rows are v2 rows (kind ``ablation``) named ``<model>@<sampler><steps>x<draws>``; the bundle's own default
configuration is the headline row of `user_device`, not of this file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from umask.bench.accuracy import user as ue
from umask.bench.accuracy import user_umask as uu
from umask.bench.accuracy.user_device import SessionPredictor, headline
from umask.bench.accuracy.user_v2 import _atomic_json, _git_commit, aggregate
from umask.runtime.core.errors import InputError
from umask.runtime.families.umask.session import Session

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "v2_request_sweep.json"


def parse_configs(text: str) -> list[tuple[str, int, int]]:
    """``"ddim:50:2,ddim:1:1"`` -> [(sampler, steps, draws), ...]; InputError names the bad item."""
    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        parts = item.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit() or min(int(parts[1]), int(parts[2])) < 1:
            raise InputError(f"--configs item {item!r:.40}: want sampler:steps:draws with steps, draws >= 1")
        out.append((parts[0], int(parts[1]), int(parts[2])))
    if not out:
        raise InputError("--configs: at least one sampler:steps:draws")
    return out


def config_name(model: str, cfg: tuple[str, int, int]) -> str:
    return f"{model}@{cfg[0]}{cfg[1]}x{cfg[2]}"


class ConfigPredictor(SessionPredictor):
    """`SessionPredictor` at one (sampler, steps, draws) configuration, named as such in ``info``."""

    def __init__(self, session: Session, cfg: tuple[str, int, int], seed: int = 0) -> None:
        super().__init__(session, seed, sampler=cfg[0], steps=cfg[1], n_samples=cfg[2])
        self.cfg = cfg

    def info(self) -> dict[str, Any]:
        sampler, steps, draws = self.cfg
        point = ("x0 estimate at t = N-1" if steps == 1 else f"{sampler} {steps} steps") + f", mean of {draws} draws"
        return {**super().info(), "samples": draws, "steps": steps, "sampler": sampler, "point_forecast": point}


def gaps(rows: Sequence[dict[str, Any]], ref: str) -> dict[str, Any]:
    """Per model: the largest relative |gap| to ``ref`` over the headline metrics, and where."""
    base = {(r["protocol"], r["data"], r["metric"]): r["value"] for r in rows if r["model"] == ref}
    out: dict[str, Any] = {}
    for r in rows:
        key = (r["protocol"], r["data"], r["metric"])
        if r["model"] == ref or not headline(r["metric"]) or key not in base:
            continue
        b = base[key]
        g = (r["value"] - b) / abs(b) if b else 0.0
        cur = out.setdefault(r["model"], {"max_abs_gap": 0.0, "worst": None, "better_or_equal": 0, "worse": 0})
        good = (g <= 0) if r["better"] == "lower" else (g >= 0)
        cur["better_or_equal" if good else "worse"] += 1
        if abs(g) >= cur["max_abs_gap"]:
            cur["max_abs_gap"], cur["worst"] = round(abs(g), 6), f"{key[0]} {key[1]} {key[2]} ({100 * g:+.2f} %)"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.request_sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--configs", default="ddim:50:2,ddim:10:2,ddim:4:1,ddim:1:2,ddim:1:1",
                    help="sampler:steps:draws, comma-separated; the FIRST is the reference")
    ap.add_argument("--model-name", default="umask_small")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--population-users", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0, help="simulator seed")
    ap.add_argument("--tasks", default="B1,B2,B3,B4")
    ap.add_argument("--b1-every", type=int, default=6)
    ap.add_argument("--b1-offset", type=int, default=2)
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--trusted-keys", default=None)
    ap.add_argument("--allow-unsigned", action="store_true")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        configs = parse_configs(args.configs)
    except InputError as e:
        ap.error(str(e))
    command = shlex.join(["python", "-m", "umask.bench.accuracy.request_sweep", *argv])
    tasks = tuple(t.strip().upper() for t in args.tasks.split(",") if t.strip())
    t0 = time.perf_counter()
    s = Session.open(args.bundle, precision=args.precision, profile_source="template", trusted_keys=args.trusted_keys,
                     allow_unsigned=args.allow_unsigned)
    models = {config_name(args.model_name, c): ConfigPredictor(s, c) for c in configs}
    windows = {"B1": {i for i in range(96) if i % args.b1_every == args.b1_offset}} if args.b1_every > 1 else None
    pop = uu.subset_population(ue.simulated_population(args.population_users, args.seed), args.users)
    for m in models.values():
        m.attach_population(pop)
    info = {n: m.info() for n, m in models.items()}
    rows = aggregate({args.seed: ue.evaluate_population(pop, models, tasks=tasks, model_info=info, command=command,
                                                        windows=windows)},
                     dataset=f"sim {args.users} users x seed {args.seed}, v2 B windows (device scoring)"
                     + (f", B1 every {args.b1_every}th target hour" if windows else ""), data="synthetic",
                     command=command)
    log.info("synthetic: %d rows, %.0f s", len(rows), time.perf_counter() - t0)
    if not args.no_real:
        rp = ue.real_population()
        for m in models.values():
            m.attach_population(rp)
        real = ue.evaluate_real_sample(models, population=rp, model_info=info, command=command)
        rows += aggregate({0: real}, dataset="tsinghua sample 6 users 1 day, in-day context (B1-real, device scoring)",
                          data="real", command=command)
    for r in rows:
        r.update(kind="ablation", family="umask", artifact=f"onnx-{args.precision}",
                 notes=f"request config {info[r['model']]['point_forecast']}; bundle {args.bundle}")
    ref = config_name(args.model_name, configs[0])
    doc = {"meta": {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
                    "wall_seconds": round(time.perf_counter() - t0, 1), "bundle": args.bundle,
                    "precision": args.precision, "reference": ref,
                    "configs": [{"model": config_name(args.model_name, c), "sampler": c[0], "steps": c[1], "draws": c[2],
                                 "dit_evals_per_request": c[1] * c[2]} for c in configs],
                    "gaps": gaps(rows, ref), "seed": args.seed, "users": args.users,
                    "notes": "same windows and per-window noise seeds for every configuration; gaps are relative to "
                             "the reference over the headline metrics (negative = lower)"},
           "rows": rows}
    _atomic_json(Path(args.out), doc)
    log.info("wrote %s (%d rows, %.0f s); gaps %s", args.out, len(rows), doc["meta"]["wall_seconds"], doc["meta"]["gaps"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
