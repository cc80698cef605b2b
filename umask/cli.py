"""The ``umask`` command line: train, evaluate, export and run the model families.

``umask COMMAND --help`` explains each command with an example. The main ones::

    umask train umask --data data/tsinghua_app_usage/app_usage_trace_sample_llmapp.csv.gz --steps 20
    umask train umask --data my_grid.csv --grid 3x4 --slot-minutes 60 --steps 20 --out artifacts/train/my_grid
    umask eval A1 --ckpt artifacts/train/my_grid --data my_grid.csv --grid 3x4 --slot-minutes 60
    python -m umask.export.signing keygen --out keys/ --name release    # once: keys/release.key + .pub
    umask export --ckpt artifacts/train/umask_small/ckpt/latest --out artifacts/bundles/small --sign-key keys/release.key
    umask verify artifacts/bundles/small --trusted-keys keys/release.pub
    umask run --bundle artifacts/bundles/small --history events.csv --task short --trusted-keys keys/release.pub

``umask`` is also the POSIX shell builtin that sets the file-mode mask, and bash runs a builtin before
anything on PATH: type ``umask-edge`` (the same program, installed beside it), ``.venv/bin/umask`` or
``python -m umask`` in a shell.

Subcommands import their modules lazily, so ``umask --help`` is fast and the runtime-only
commands never pull in torch. Bad input ends with ONE line on stderr that names the file and line
(or the argument) and a non-zero exit status (the error class's ``exit_code``; 2 for a bad command
line); ``umask -v ...`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("umask.cli")

REPO_ROOT = Path(__file__).resolve().parents[1]
LLMAPP_SAMPLE = REPO_ROOT / "data" / "tsinghua_app_usage" / "app_usage_trace_sample_llmapp.csv.gz"
MILAN_SAMPLE = REPO_ROOT / "data" / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz"
GRID_FLAGS = ("--grid", "--slot-minutes", "--adjacency")
PER_USER_TRAINER = "umask.train.models.umask.trainer"
GRID_TRAINER = "umask.train.models.umask.grid"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's paragraphs and examples as written."""


def _input_error(message: str) -> Exception:
    from umask.runtime.core.errors import InputError

    return InputError(message)


def _trainer_options(module: str) -> set[str] | None:
    """The option strings a trainer's parser accepts (None when it cannot be imported)."""
    import importlib

    try:
        mod = importlib.import_module(module)
        parser = mod.build_parser()
    except Exception as e:  # noqa: BLE001 - a trainer mid-change must not break `umask train --help`
        log.debug("cannot build the parser of %s: %s", module, e)
        return None
    return set(parser._option_string_actions)


def _call_main(module: str, argv: list[str]) -> int:
    import importlib

    try:
        return int(importlib.import_module(module).main(argv) or 0)
    except SystemExit as e:  # argparse --help / usage errors inside the trainer
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2


# ------------------------------------------------------------------------------------------------
# umask train
# ------------------------------------------------------------------------------------------------
TRAIN_DESCRIPTION = """\
Train a model family on your data. Family `umask` (U-MASK: learned evidence mask + diffusion
transformer) picks its trainer from --data:

  * per-user behavior logs -> the per-user trainer (python -m umask.train.models.umask.trainer):
    a Tsinghua trace (App_usage_trace.txt, space-separated), the LLMApp CSV sample, or a users .npz
    (umask.train.models.umask.data.save_users); without --data it trains on simulated users;
    an app-only `time,app[,bytes]` log (no places) is read and checked, the outputs it cannot
    predict are listed, and the per-user trainer trains with its absent channels out of the loss;
  * a grid CSV (one row per time slot, one column per cell, row-major over H x W; optional header
    and leading time column) with --grid HxW --slot-minutes N [--adjacency CSV] -> the grid trainer
    (python -m umask.train.models.umask.grid); --grid without --data trains on the shipped Milan
    5x5 sample.

Every other flag is passed to the trainer; 'umask train FAMILY --help' lists them below this help."""

TRAIN_EPILOG = """\
examples:
  umask train umask --data data/tsinghua_app_usage/app_usage_trace_sample_llmapp.csv.gz --steps 20 --out artifacts/train/mine
  umask train umask --grid 5x5 --steps 50 --out artifacts/train/milan        # the shipped Milan sample
  umask train umask --data my_grid.csv --grid 3x4 --slot-minutes 60 --adjacency my_adj.csv --steps 50"""


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="umask train", description=TRAIN_DESCRIPTION, epilog=TRAIN_EPILOG,
                                formatter_class=_Formatter, add_help=False)
    p.add_argument("family", nargs="?", choices=sorted(FAMILIES), help="model family to train")
    p.add_argument("-h", "--help", action="store_true", help="show this help (and the trainer's flags) and exit")
    p.add_argument("--data", default=None, help="training data file (see above); default: the family's own")
    p.add_argument("--grid", default=None, help="HxW of a grid CSV's cells (needed when the cell count is not a square)")
    p.add_argument("--slot-minutes", type=int, default=None, help="grid CSV: minutes per row, divides 1440 (default 10)")
    p.add_argument("--adjacency", default=None, help="grid CSV: cells x cells 0/1 matrix or 'a,b' edge list "
                                                     "(default: 4-neighbour grid)")
    return p


def _data_kind(ns: argparse.Namespace) -> str:
    """'grid' | 'app_only' | 'per_user' for the parsed ``umask train`` / ``umask eval`` flags."""
    if ns.grid is not None or ns.slot_minutes is not None or ns.adjacency is not None:
        return "grid"
    if ns.data is None:
        return "per_user"
    path = Path(ns.data)
    if not path.is_file():
        raise _input_error(f"--data {path}: no such file")
    if path.resolve() == MILAN_SAMPLE.resolve():
        return "grid"
    from umask.runtime.core.usage_log import looks_like_usage_log

    if looks_like_usage_log(path):
        return "app_only"
    if path.suffix != ".npz" and not _looks_like_trace(path) and _looks_like_grid(path):
        return "grid"
    return "per_user"


def _looks_like_trace(path: Path) -> bool:
    """A per-user trace: the LLMApp CSV (its header names the required columns) or the official
    space-separated layout (5 whitespace-separated fields, no comma)."""
    from umask.runtime.core.events import LLMAPP_REQUIRED, open_text

    try:
        with open_text(path) as fh:
            first = fh.readline().strip()
    except (OSError, UnicodeDecodeError, EOFError):
        return False
    if "," in first:
        header = {h.strip() for h in first.split(",")}
        return set(LLMAPP_REQUIRED) <= header
    return len(first.split()) == 5


def _looks_like_grid(path: Path) -> bool:
    """A comma-separated file whose second line is all numbers in more than 2 columns."""
    from umask.runtime.core.events import open_text

    try:
        with open_text(path) as fh:
            fh.readline()
            line = fh.readline().strip()
    except (OSError, UnicodeDecodeError, EOFError):
        return False
    fields = line.split(",")
    if len(fields) < 3:
        return False
    try:
        [float(f) for f in fields[1:]]
    except ValueError:
        return False
    return True


def _train_umask(ns: argparse.Namespace, rest: list[str]) -> int:
    kind = _data_kind(ns)
    if kind == "grid":
        from umask.train.data.grids import open_grid

        grid = open_grid(ns.data or MILAN_SAMPLE, grid=ns.grid, slot_minutes=ns.slot_minutes or 10,
                         adjacency=ns.adjacency)  # checks the file (file:line errors) before any training
        print(f"umask train: {grid.describe()} -> {GRID_TRAINER}", file=sys.stderr)
        opts = _trainer_options(GRID_TRAINER)
        if opts is None:
            raise _input_error(f"the grid trainer ({GRID_TRAINER}) cannot be imported in this checkout")
        # the any-grid trainer (it has --grid) names the shipped sample 'milan'; an older one takes its path
        argv = ["--data", "milan" if grid.source == "milan" and "--grid" in opts else str(ns.data or MILAN_SAMPLE)]
        milan_shaped = (grid.height, grid.width, grid.slot_minutes) == (5, 5, 10)
        for flag, value in (("--grid", f"{grid.height}x{grid.width}"), ("--slot-minutes", str(grid.slot_minutes)),
                            ("--adjacency", ns.adjacency)):
            if flag in opts:
                if value is not None:
                    argv += [flag, value]
            elif not (milan_shaped and (flag != "--adjacency" or value is None)):
                raise _input_error(f"{flag} {value}: the grid trainer in this checkout does not accept {flag} yet "
                                   "(it reads the Milan 5x5, 10-minute layout only)")
        return _call_main(GRID_TRAINER, argv + rest)
    if kind == "app_only":
        from umask.runtime.core.usage_log import read_usage_log

        usage = read_usage_log(ns.data)
        print(f"umask train: {ns.data}: app-only log, {len(usage.events)} events, "
              f"{len(usage.events.users)} user(s); it cannot predict:", file=sys.stderr)
        for line in usage.cannot_predict:
            print(f"  - {line}", file=sys.stderr)
        from umask.runtime.core.featurize import DAY_SECONDS, day_span

        _, days = day_span(usage.events.ts, DAY_SECONDS)                # whole local days spanned
        if days < 3:
            raise _input_error(f"--data {ns.data}: the log covers {days} local day(s); training needs >= 3 whole "
                               "days (train / validation / test: the last two days are held out)")
        print(f"umask train: absent channels {sorted(usage.absent)} are neither evidence nor target -> "
              f"{PER_USER_TRAINER}", file=sys.stderr)
        return _call_main(PER_USER_TRAINER, ["--data", str(ns.data)] + rest)
    argv = [] if ns.data is None else ["--data", str(ns.data)]
    return _call_main(PER_USER_TRAINER, argv + rest)


def _train_other(family: str) -> Callable[[argparse.Namespace, list[str]], int]:
    """``umask train <family>`` for a family whose trainer reads its own data flags: the trainer
    registered in `umask.train.models.MODELS` gets --data / --grid / --slot-minutes / --adjacency
    (when given) followed by every other flag."""
    def train(ns: argparse.Namespace, rest: list[str]) -> int:
        from umask.train.models import MODELS

        argv = [*(["--data", str(ns.data)] if ns.data is not None else []),
                *(["--grid", ns.grid] if ns.grid is not None else []),
                *(["--slot-minutes", str(ns.slot_minutes)] if ns.slot_minutes is not None else []),
                *(["--adjacency", ns.adjacency] if ns.adjacency is not None else [])]
        return _call_main(MODELS[family], argv + rest)
    return train


def _families() -> dict[str, Callable[[argparse.Namespace, list[str]], int]]:
    """family -> its ``umask train`` handler: U-MASK picks its trainer from the data; every other family
    registered in `umask.train.models.MODELS` gets `_train_other`."""
    from umask.train.models import MODELS

    return {fam: (_train_umask if fam == "umask" else _train_other(fam)) for fam in MODELS}


FAMILIES = _families()


def _train(argv: list[str]) -> int:
    p = _train_parser()
    ns, rest = p.parse_known_args(argv)
    if ns.help or ns.family is None:
        p.print_help()
        if ns.family is None:
            return 0 if ns.help else 2
        try:
            kind = _data_kind(ns)
        except Exception:  # noqa: BLE001 - help still shows the per-user trainer's flags
            kind = "per_user"
        if ns.family != "umask":
            from umask.train.models import MODELS

            print(f"\nflags of the {ns.family} trainer ({MODELS[ns.family]}):\n")
            _call_main(MODELS[ns.family], ["--help"])
            return 0
        module = GRID_TRAINER if kind == "grid" else PER_USER_TRAINER
        print(f"\nflags of the {'grid' if kind == 'grid' else 'per-user'} trainer ({module}; "
              f"{'add --grid HxW to see the grid trainer' if kind != 'grid' else 'drop --grid for the per-user one'}):\n")
        if _trainer_options(module) is None:
            print(f"  ({module} cannot be imported in this checkout)")
            return 0
        _call_main(module, ["--help"])
        return 0
    return FAMILIES[ns.family](ns, rest)


# ------------------------------------------------------------------------------------------------
# umask eval
# ------------------------------------------------------------------------------------------------
EVAL_DESCRIPTION = """\
Score a trained model on an evaluation protocol (docs/PROTOCOL.md) next to the baselines, and
write JSON rows plus a markdown table (--out, default artifacts/eval/<protocol>.json; with --bundle
<protocol>_bundle.json).

  * A1 (forecasting: 2 days of history -> the next day) and A2 (imputation of 70-80 % hidden
    entries in 2-day windows) on any grid: --data a grid CSV with --grid HxW --slot-minutes N
    [--adjacency CSV] (default: the shipped Milan 5x5 sample). The grid is split 8:1:1 over whole
    days. --ckpt is a grid run (umask train umask --grid ...); --bundle a umask_grid bundle (umask
    export --family umask_grid), scored through its torch-free session at every precision it holds
    (benchmarks/accuracy/grid_umask_bundle.py); with neither, only the baselines are scored. Runs
    benchmarks/accuracy/grid_umask.py (grid.py for baselines only).
  * B1 (next hour), B2 (next 24 h), B3 (cold start), B4 (completion) per user: --ckpt is a
    per-user run; without --data the users are the data the run was trained on (its trace, or
    its simulated population; --users N keeps the first N); --data FILE scores another trace
    (LLMApp CSV, official layout or an app-only log). --context-slots N (non-protocol) shortens
    the context for short logs. Runs benchmarks/accuracy/user_umask.py.
  * A1/A2 --family ustsllm, A1-zeroshot / A2-zeroshot (a Milan-trained model on another grid),
    C (next-item ranking on Taobao; family fatsmb) and D (next-hour app categories; family
    gtslum) run the family's own scorer, umask.bench.accuracy.<family>, with every flag given.

Other flags go to the runner (e.g. --split val, --sampler dpmpp_2m, --users 20 for B)."""

EVAL_EPILOG = """\
examples:
  umask eval A1                                           # baselines on the Milan test days
  umask eval A1 --ckpt artifacts/train/my_grid --data my_grid.csv --grid 3x4 --slot-minutes 60 --stride 6
  umask eval B2 --ckpt artifacts/train/umask_small/ckpt/best --users 20"""

PROTOCOLS = ("A1", "A2", "A1-ZEROSHOT", "A2-ZEROSHOT", "B1", "B2", "B3", "B4", "C", "D")
# the family a protocol scores when --family is not given (A and B: U-MASK)
DEFAULT_EVAL_FAMILY = {"C": "fatsmb", "D": "gtslum"}


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="umask eval", description=EVAL_DESCRIPTION, epilog=EVAL_EPILOG,
                                formatter_class=_Formatter)
    p.add_argument("protocol", type=str.upper, choices=PROTOCOLS, help="evaluation protocol")
    p.add_argument("--family", default=None, help="model family scored (default: umask for A and B, fatsmb for C, "
                                                  "gtslum for D); a family other than umask runs "
                                                  "umask.bench.accuracy.<family>")
    p.add_argument("--ckpt", default=None, help="training run folder or checkpoint directory")
    p.add_argument("--bundle", default=None, help="an exported bundle directory (umask export)")
    p.add_argument("--data", default=None, help="A1/A2: grid CSV (default: Milan 5x5); B: the Tsinghua "
                                                "folder of the catalog and the real sample")
    p.add_argument("--grid", default=None, help="A1/A2: HxW of the grid's cells")
    p.add_argument("--slot-minutes", type=int, default=None, help="A1/A2: minutes per row (default 10)")
    p.add_argument("--adjacency", default=None, help="A1/A2: cells x cells 0/1 matrix or 'a,b' edge list")
    p.add_argument("--out", default=None, help="JSON rows (the .md table goes next to it)")
    p.add_argument("--stride", type=int, default=1, help="score every N-th protocol window (slow models)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the runner's)")
    p.add_argument("--samples", type=int, default=None, help="samples averaged per window (default: the runner's)")
    return p


def _eval_other(ns: argparse.Namespace, family: str, rest: list[str]) -> int:
    """A family's own scorer, `umask.bench.accuracy.<family>` (``main(argv)``), with --protocol and every
    flag given on the command line."""
    import importlib.util

    from umask.train.models import MODELS

    if family not in MODELS:
        raise _input_error(f"--family {family}: not a model family (known: {sorted(MODELS)})")
    module = f"umask.bench.accuracy.{family}"
    if importlib.util.find_spec(module) is None:
        raise _input_error(f"--family {family}: this checkout has no scorer {module}")
    fwd = [*(["--ckpt", ns.ckpt] if ns.ckpt else []), *(["--bundle", ns.bundle] if ns.bundle else []),
           *(["--data", ns.data] if ns.data else []), *(["--grid", ns.grid] if ns.grid else []),
           *(["--slot-minutes", str(ns.slot_minutes)] if ns.slot_minutes is not None else []),
           *(["--adjacency", ns.adjacency] if ns.adjacency else []), *(["--out", ns.out] if ns.out else []),
           *(["--stride", str(ns.stride)] if ns.stride != 1 else []),
           *(["--steps", str(ns.steps)] if ns.steps is not None else []),
           *(["--samples", str(ns.samples)] if ns.samples is not None else [])]
    if family == "ustsllm" and ns.ckpt and not ns.data and "ZEROSHOT" not in ns.protocol:
        fwd += _run_grid_flags(ns.ckpt)              # a run on the user's own grid is scored on that grid
    protocol = ns.protocol.replace("-ZEROSHOT", "-zeroshot")           # the scoreboard's spelling
    return _call_main(module, ["--protocol", protocol, *fwd, *rest])


def _run_grid_flags(ckpt: str) -> list[str]:
    """--data / --grid / --slot-minutes of the grid CSV a grid run was trained on ([] for the Milan sample or an
    unreadable config; `umask.train.data.grids.run_grid_args`); without them a run trained on another grid would
    be scored on Milan."""
    import json

    from umask.train.common.checkpoints import resolve_checkpoint
    from umask.train.data.grids import run_grid_args

    try:
        cfg = json.loads((resolve_checkpoint(ckpt) / "config.json").read_text())
    except (OSError, ValueError):
        return []                                    # the scorer reports the checkpoint problem itself
    args = run_grid_args(cfg.get("train", {}))
    if args["path"] is None:
        return []
    if not Path(args["path"]).is_file():
        raise _input_error(f"--ckpt {ckpt} was trained on {args['path']}, which is not there: pass --data GRID_CSV")
    log.info("scoring on the run's own grid %s", args["path"])
    return ["--data", str(args["path"]), *(["--grid", str(args["grid"])] if args["grid"] else []),
            "--slot-minutes", str(args["slot_minutes"])]


def _eval(argv: list[str]) -> int:
    p = _eval_parser()
    ns, rest = p.parse_known_args(argv)
    family = ns.family or DEFAULT_EVAL_FAMILY.get(ns.protocol, "umask")
    if family not in ("umask", "umask_grid"):           # umask_grid: the grid U-MASK, scored below (A1 / A2)
        return _eval_other(ns, family, rest)
    if ns.protocol not in ("A1", "A2", "B1", "B2", "B3", "B4"):
        raise _input_error(f"{ns.protocol}: U-MASK is scored on A1, A2 and B1-B4; {ns.protocol} needs --family")
    # a bundle's scores get their own default file: the checkpoint runners also write a markdown table beside theirs,
    # and a bundle run over the same path would leave that table describing another model
    out = ns.out or f"artifacts/eval/{ns.protocol.lower()}{'_bundle' if ns.bundle is not None else ''}.json"
    if ns.stride < 1:
        raise _input_error(f"--stride must be >= 1, got {ns.stride}")
    sampling = [*(["--steps", str(ns.steps)] if ns.steps is not None else []),
                *(["--samples", str(ns.samples)] if ns.samples is not None else [])]
    if ns.protocol in ("A1", "A2"):
        from umask.train.data.grids import open_grid

        data = str(ns.data or MILAN_SAMPLE)
        open_grid(data, grid=ns.grid, slot_minutes=ns.slot_minutes or 10, adjacency=ns.adjacency)  # file:line errors first
        grid_flags = ["--data", data, "--slot-minutes", str(ns.slot_minutes or 10),
                      *(["--grid", ns.grid] if ns.grid else []), *(["--adjacency", ns.adjacency] if ns.adjacency else [])]
        task = ns.protocol.lower()
        if ns.bundle is not None:
            return _eval_grid_bundle(ns.bundle, task, grid_flags, out, ns, rest)
        if ns.ckpt is None:
            if sampling or ns.stride != 1:
                raise _input_error("--steps / --samples / --stride need a model (--ckpt)")
            return _call_main("umask.bench.accuracy.grid", [*grid_flags, "--tasks", task, "--out", out, *rest])
        if not Path(ns.ckpt).exists():
            raise _input_error(f"--ckpt {ns.ckpt}: no such run or checkpoint")
        return _call_main("umask.bench.accuracy.grid_umask",
                          ["--umask", ns.ckpt, "--dit-all", "", *grid_flags, "--tasks", task, "--out", out,
                           f"--{task}-stride", str(ns.stride), "--no-reference", *sampling, *rest])
    # B1-B4
    if ns.bundle is not None:
        raise _input_error("--bundle: B1-B4 score training checkpoints (--ckpt) in this version; a bundle's accuracy "
                           "on the real sample is measured by 'umask bench latency'")
    if ns.ckpt is None:
        raise _input_error(f"{ns.protocol} needs --ckpt (a per-user training run or checkpoint)")
    if not Path(ns.ckpt).exists():
        raise _input_error(f"--ckpt {ns.ckpt}: no such run or checkpoint")
    if ns.grid or ns.slot_minutes or ns.adjacency:
        raise _input_error("--grid / --slot-minutes / --adjacency belong to A1/A2 (grids), not to per-user protocols")
    if ns.stride != 1:
        rest = ["--b1-every", str(ns.stride), *rest]
    return _call_main("umask.bench.accuracy.user_umask",
                      ["--ckpt", ns.ckpt, "--name", "umask", "--tasks", ns.protocol, "--out", out,
                       *_eval_user_data(ns), *sampling, *rest])


def _eval_grid_bundle(bundle: str, task: str, grid_flags: list[str], out: str, ns: argparse.Namespace,
                      rest: list[str]) -> int:
    """A1 / A2 of a ``umask_grid`` bundle through its torch-free session, every precision it holds
    (benchmarks/accuracy/grid_umask_bundle.py; no latency rows, no draws sweep)."""
    from umask.runtime.core.bundle import bundle_family, read_manifest

    if not (Path(bundle) / "manifest.json").is_file():
        raise _input_error(f"--bundle {bundle}: no bundle there (no manifest.json; umask export --family umask_grid)")
    manifest = read_manifest(bundle)
    if bundle_family(manifest) != "umask_grid":
        raise _input_error(f"--bundle {bundle}: A1/A2 score grid bundles (umask export --family umask_grid), this one is "
                           f"family {bundle_family(manifest)!r}; per-user checkpoints are scored on B1-B4")
    if ns.ckpt is not None or ns.steps is not None or ns.samples is not None or ns.stride != 1:
        raise _input_error("--bundle: give the bundle alone (--ckpt / --steps / --samples / --stride are for checkpoints)")
    precs = [p for p, a in manifest["artifacts"].items() if (a.get("dit") or {}).get("status") == "ok"]
    grid_flags = list(grid_flags)
    if "--adjacency" in grid_flags:                                      # not an input of the grid bundle
        i = grid_flags.index("--adjacency")
        del grid_flags[i:i + 2]
    return _call_main("umask.bench.accuracy.grid_umask_bundle",
                      ["--bundles", bundle, "--tasks", task, "--precisions", ",".join(precs), "--no-latency",
                       "--sweep-precision", "", "--out", out, *grid_flags, *rest])


def _eval_user_data(ns: argparse.Namespace) -> list[str]:
    """B1-B4 --data -> the runner's flags. A file is the user's data (a Tsinghua trace: LLMApp CSV or
    the official layout, or an app-only log; read as `umask train` reads it) -> ``--trace``; a folder
    is the Tsinghua catalog folder (``--data-dir``, as before). Without --data the runner scores the
    data the run was trained on (the simulator only for a simulator-trained run)."""
    if ns.data is None:
        return []
    if Path(ns.data).is_dir():
        return ["--data-dir", ns.data]
    kind = _data_kind(ns)                                   # the reader `umask train` would pick
    if kind == "grid":
        raise _input_error(f"--data {ns.data}: a grid CSV; {ns.protocol} scores per-user data (a Tsinghua trace: "
                           "LLMApp CSV or official layout, or an app-only time,app log); grids are A1/A2: "
                           f"umask eval A1 --data {ns.data} --grid HxW")
    if Path(ns.data).suffix == ".npz":
        raise _input_error(f"--data {ns.data}: a users .npz has no raw events; {ns.protocol} needs the trace it was "
                           "made from")
    return ["--trace", ns.data]


# ------------------------------------------------------------------------------------------------
# The other commands
# ------------------------------------------------------------------------------------------------
def _demo(argv: list[str]) -> int:
    from umask.bench.demo import main

    return main(argv)


def _simulate(argv: list[str]) -> int:
    from umask.train.simulator.cli import main

    return main(argv)


def _export(argv: list[str]) -> int:
    from umask.export.cli import export_main

    return export_main(argv)


def _run(argv: list[str]) -> int:
    from umask.export.cli import run_main   # imports only the runtime (no torch) for this command

    return run_main(argv)


def _verify(argv: list[str]) -> int:
    from umask.export.cli import verify_main   # runtime only (no torch)

    return verify_main(argv)


BENCH_HELP = """usage: umask bench {latency|sweep|plots} [options]

Measure on-device cost: 'latency' times every precision of a bundle on real-sample requests,
'sweep' scores sampler steps against accuracy, 'plots' draws the committed rows. Each has --help.

example: umask bench latency --bundle artifacts/bundles/small --quick"""


def _bench(argv: list[str]) -> int:
    subs = {"latency": "umask.bench.latency.harness", "sweep": "umask.bench.latency.steps_sweep",
            "plots": "umask.bench.plots.latency"}
    if not argv or argv[0] not in subs:
        print(BENCH_HELP, file=sys.stdout if argv[:1] in (["-h"], ["--help"]) else sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return _call_main(subs[argv[0]], argv[1:])


USCOPE_HELP = """usage: umask uscope [synth|base [HF_DIR]] [options]

The U-SCOPE profiling LLM: without a subcommand, the pipeline SFT -> DPO -> GGUF -> on-device
profile (--quick for a short run; its own --help lists the options); 'synth' writes the
constrained synthetic profile pairs; 'base [HF_DIR]' prepares the base model.

example: umask uscope --quick"""


def _uscope(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(USCOPE_HELP)
        print()
        return _call_main("umask.export.uscope_pipeline", ["--help"])
    if argv and argv[0] == "synth":
        return _call_main("umask.train.models.umask.uscope.synth", argv[1:])
    if argv and argv[0] == "base":
        from umask.train.models.umask.uscope.llm import prepare_base

        print(prepare_base(source=argv[1] if len(argv) > 1 else None))
        return 0
    return _call_main("umask.export.uscope_pipeline", argv)


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "train": (_train, "train a model family: 'train umask --data FILE' (per-user logs or a grid CSV with --grid HxW)"),
    "eval": (_eval, "score a checkpoint on a protocol next to the baselines: 'eval A1|A2|B1-B4|C|D --ckpt DIR [--family F]'"),
    "demo": (_demo, "the main job: the end-to-end pipeline on the bundled data (add --quick for a short run)"),
    "simulate": (_simulate, "generate or validate calibrated synthetic week-long user traces"),
    "export": (_export, "checkpoint -> verified on-device bundle (ONNX fp32/fp16/int8, TensorRT, GGUF, manifest)"),
    "bench": (_bench, "latency harness / steps-vs-accuracy sweep / plots: bench latency|sweep|plots --help"),
    "uscope": (_uscope, "U-SCOPE profiling LLM: SFT -> DPO -> GGUF -> on-device profile (--quick); 'uscope synth', 'uscope base [HF_DIR]'"),
    "run": (_run, "run a bundle on one user's event history (torch-free, offline) and print JSON predictions"),
    "verify": (_verify, "verify a bundle: schema, every file's sha256, the signature by a trusted key (--trusted-keys)"),
}


def _error_types() -> tuple[type[BaseException], ...]:
    """The project's bad-input error types (plus OSError for missing / unreadable files)."""
    from umask.runtime.core import errors

    types: list[type[BaseException]] = [OSError, ValueError]
    for name in ("UmaskError", "InputError", "DataFormatError", "LimitError", "BundleError"):
        t = getattr(errors, name, None)
        if isinstance(t, type):
            types.append(t)
    try:
        from umask.runtime.core.bundle import BundleError

        types.append(BundleError)
    except ImportError:
        pass
    return tuple(types)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {text}"
    return text


def _version() -> str:
    """The installed distribution's version (pyproject.toml), or 'unknown' when run from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("umask-edge")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="umask",
        description="U-MASK Edge: train, evaluate, export and run personalized spatio-temporal behavior models "
                    "(per-user app-usage logs, or any grid of cells over time).",
        epilog="Run 'umask COMMAND --help' for a command's options and an example, e.g. 'umask train umask --help'.\n"
               "In a shell, 'umask' alone is the builtin that sets the file-mode mask: type 'umask-edge' (this same\n"
               "program), '.venv/bin/umask' or 'python -m umask'; the examples' 'umask' means any of them.",
        formatter_class=_Formatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages; show tracebacks")
    parser.add_argument("--version", action="version", version=f"umask-edge {_version()}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND",
                        help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    fn, _ = COMMANDS[ns.command]
    try:
        return int(fn(ns.args) or 0)
    except _error_types() as e:
        if ns.verbose:
            raise
        print(f"umask {ns.command}: error: {_one_line(e)}", file=sys.stderr)
        code = getattr(e, "exit_code", 2)
        return code if isinstance(code, int) and code != 0 else 2


if __name__ == "__main__":
    raise SystemExit(main())
