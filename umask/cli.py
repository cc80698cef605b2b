"""The ``umask`` command line.

Subcommands import their modules lazily, so ``umask --help`` is fast and the runtime-only
commands never pull in torch.
"""

from __future__ import annotations

import argparse
import logging
import sys


def _demo(argv: list[str]) -> int:
    from umask.bench.demo import main

    return main(argv)


def _simulate(argv: list[str]) -> int:
    from umask.train.simulator import main

    return main(argv)


def _export(argv: list[str]) -> int:
    from umask.export.cli import export_main

    return export_main(argv)


def _run(argv: list[str]) -> int:
    from umask.export.cli import run_main   # imports only the runtime (no torch) for this command

    return run_main(argv)


def _bench(argv: list[str]) -> int:
    subs = {"latency": "umask.bench.latency.harness", "sweep": "umask.bench.latency.steps_sweep", "plots": "umask.bench.plots.latency"}
    if not argv or argv[0] not in subs:
        print("usage: umask bench {latency|sweep|plots} [options]  (each with --help)")
        return 2
    import importlib

    return int(importlib.import_module(subs[argv[0]]).main(argv[1:]) or 0)


def _uscope(argv: list[str]) -> int:
    if argv and argv[0] == "synth":
        from umask.train.models.umask.uscope.synth import main as synth_main

        return int(synth_main(argv[1:]) or 0)
    if argv and argv[0] == "base":
        from umask.train.models.umask.uscope.llm import prepare_base

        print(prepare_base(source=argv[1] if len(argv) > 1 else None))
        return 0
    from umask.export.uscope_pipeline import main as pipeline_main

    return int(pipeline_main(argv) or 0)


COMMANDS = {
    "demo": (_demo, "the main job: the end-to-end pipeline on the bundled data (add --quick for a short run)"),
    "simulate": (_simulate, "generate or validate calibrated synthetic week-long user traces"),
    "export": (_export, "checkpoint -> verified on-device bundle (ONNX fp32/fp16/int8, TensorRT, GGUF, manifest)"),
    "bench": (_bench, "latency harness / steps-vs-accuracy sweep / plots: bench latency|sweep|plots --help"),
    "uscope": (_uscope, "U-SCOPE profiling LLM: SFT -> DPO -> GGUF -> on-device profile (--quick); 'uscope synth', 'uscope base [HF_DIR]'"),
    "run": (_run, "run a bundle on one user's event history (torch-free, offline) and print JSON predictions"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="umask",
        description="U-MASK Edge: train, export and run personalized spatio-temporal behavior models.",
        epilog="Run 'umask COMMAND --help' for a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND",
                        help="; ".join(f"{k}: {v[1]}" for k, v in sorted(COMMANDS.items())))
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    fn, _ = COMMANDS[ns.command]
    return int(fn(ns.args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
