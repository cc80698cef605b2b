"""Write a SYNTHETIC training population of several simulator runs as one users .npz for
``umask.train.models.umask.trainer --data``.

    .venv/bin/python scripts/make_user_population.py artifacts/data/users_s0x50_s3x200.npz 0:50 3:200

Each argument after the output path is ``SEED:N_USERS`` (one simulator run; see
``data.simulated_population`` for why an evaluation population is named as its own part).
"""
from __future__ import annotations

import argparse
import logging

from umask.train.models.umask.data import save_users, simulated_population


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="users .npz to write")
    ap.add_argument("parts", nargs="+", help="SEED:N_USERS, one per simulator run")
    ap.add_argument("--days", type=int, default=7, help="simulated days per user (the last two: validation, test)")
    args = ap.parse_args(argv)
    try:
        parts = [tuple(int(v) for v in p.split(":")) for p in args.parts]
        if any(len(p) != 2 for p in parts):
            raise ValueError
    except ValueError:
        ap.error(f"parts must be SEED:N_USERS, got {args.parts}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    users = simulated_population(parts, days=args.days)
    path = save_users(args.out, users, {"source": "simulator (SYNTHETIC)", "days": args.days,
                                         "parts": ",".join(f"{s}:{n}" for s, n in parts)})
    logging.info("wrote %d users to %s", len(users), path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
