"""Command line of the simulator: ``generate`` writes a SYNTHETIC trace, ``validate`` prints the
simulator-vs-real table.

``python -m umask.train.simulator generate --users 1000 --seed 0 --out artifacts/sim`` and
``python -m umask.train.simulator validate --users 200 --seed 0`` (also ``umask simulate ...``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from umask.runtime.core.catalog import load_llmapp_catalog
from umask.runtime.core.errors import InputError
from umask.runtime.core.events import read_trace
from umask.train.simulator.calibration import fit_calibration
from umask.train.simulator.config import (
    ARCHETYPES,
    DEFAULT_MIX,
    MILAN_DIR,
    SAMPLE_FILE,
    TSINGHUA_DIR,
    SimulatorConfig,
    _paths,
)
from umask.train.simulator.traces import write_synthetic
from umask.train.simulator.validation import format_validation, validate
from umask.train.simulator.world import simulate

# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def _parse_mix(text: str | None) -> dict[str, float]:
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, val = part.partition("=")
        try:
            mix[name.strip()] = float(val)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad --mix entry {part!r}; want name=weight") from None
    return mix


def main(argv: list[str] | None = None) -> int:
    """``generate`` writes a SYNTHETIC trace; ``validate`` prints simulator vs real statistics."""
    parser = argparse.ArgumentParser(
        prog="umask simulate",
        description="Calibrated agent-based simulator of week-long per-user app-usage traces. "
                    "Everything it produces is SYNTHETIC and labeled so.",
        epilog=f"Archetypes: {', '.join(ARCHETYPES)} (default mix "
               + ", ".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()) + ").")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, users: int) -> None:
        p.add_argument("--users", type=int, default=users, help=f"number of simulated users (default {users})")
        p.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical output (default 0)")
        p.add_argument("--days", type=int, default=7, help="days to simulate from --start (default 7)")
        p.add_argument("--start", default="2016-04-20",
                       help="first day, YYYY-MM-DD (default 2016-04-20, a Wednesday, as the real trace)")
        p.add_argument("--mix", default=None,
                       help="archetype mix, e.g. 'commuter=0.35,explorer=0.15,night=0.15,homebody=0.2,sparse=0.15'")
        p.add_argument("--data-dir", default=None,
                       help=f"folder holding {TSINGHUA_DIR}/ and {MILAN_DIR}/ (default: the project's data/)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    g = sub.add_parser("generate", help="simulate and write the SYNTHETIC trace, users and SYNTHETIC.md",
                       description="Simulate users and write App_usage_trace.synthetic.txt.gz (official "
                                   "layout), users.synthetic.json and SYNTHETIC.md into --out.")
    common(g, 1000)
    g.add_argument("--out", default="artifacts/sim", help="output folder (default artifacts/sim)")
    g.add_argument("--no-validation", action="store_true", help="skip the validation table in SYNTHETIC.md")
    v = sub.add_parser("validate", help="simulate in memory and print the simulator-vs-real table",
                       description="Simulate users in memory and print SYNTHETIC vs REAL statistics side "
                                   "by side (weekdays, 07:00-23:30, as the real sample).")
    common(v, 200)
    v.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    ns = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        config = SimulatorConfig(n_users=ns.users, days=ns.days, start_date=ns.start, seed=ns.seed,
                                 archetype_mix=_parse_mix(ns.mix))
    except (InputError, argparse.ArgumentTypeError) as e:
        parser.error(str(e))
    progress = False if ns.no_progress else None
    if ns.command == "generate":
        t0 = time.perf_counter()
        paths = write_synthetic(ns.out, config, data_dir=ns.data_dir, progress=progress,
                                with_validation=not ns.no_validation)
        print(f"SYNTHETIC data written in {time.perf_counter() - t0:.1f} s:")
        for p in paths.values():
            print(f"  {p}")
        return 0
    ts_dir, _ = _paths(ns.data_dir)
    catalog = load_llmapp_catalog(ts_dir)
    cal = fit_calibration(catalog, ns.data_dir)
    t0 = time.perf_counter()
    events, _ = simulate(config, catalog, ns.data_dir, calibration=cal, progress=progress)
    gen_s = time.perf_counter() - t0
    rows = validate(events, read_trace(ts_dir / SAMPLE_FILE), catalog, data_dir=ns.data_dir)
    print(format_validation(rows, title=f"SYNTHETIC simulator ({config.n_users} users, seed {config.seed}, "
                                        f"{config.days} days, {len(events):,} records, generated in {gen_s:.1f} s) "
                                        f"vs REAL data"))
    if ns.json:
        Path(ns.json).write_text(json.dumps({"synthetic": True, "config": config.to_dict(), "rows": rows},
                                            indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
