"""Command line of the latency harness: ``python -m umask.bench.latency.harness`` (or ``... .latency.cli``).

::

    python -m umask.bench.latency.harness --bundle artifacts/bundles/small \\
        --out benchmarks/results/latency_cpu.json [--quick] [--threads 1,2] [--providers CPUExecutionProvider]

Parses the options into a `HarnessConfig` (sampler, steps and samples default to the bundle
manifest's), runs the harness and writes the JSON / CSV / markdown results atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from umask.bench.latency.harness import DEFAULT_OUT, HarnessConfig, run
from umask.bench.latency.request import PRECISIONS, RequestSpec
from umask.bench.latency.rows import COMPONENTS, markdown_summary, write_results
from umask.bench.latency.timing import FULL_TIMING, QUICK_TIMING
from umask.runtime.families.umask.checks import task_defaults

log = logging.getLogger(__name__)


def _csv(text: str, conv: Callable[[str], Any]) -> tuple[Any, ...]:
    return tuple(conv(x.strip()) for x in text.split(",") if x.strip())


def _bool(x: str) -> bool:
    if x.lower() in ("1", "on", "true", "yes"):
        return True
    if x.lower() in ("0", "off", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {x!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umask.bench.latency.harness",
                                description="Latency harness: every artifact of a bundle on every available engine",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory (umask export); its manifest names "
                                                              "the checkpoint of the torch reference")
    p.add_argument("--ckpt", type=Path, default=None, help="torch reference checkpoint (default: the manifest's)")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT))
    p.add_argument("--quick", action="store_true", help="smoke mode: 3 samples per row, no burn-in, no request metric")
    p.add_argument("--metric", action=argparse.BooleanOptionalAction, default=None,
                   help="compute the request task metric over the REAL sample (default: on, off with --quick)")
    p.add_argument("--threads", default="1", help="comma list of intra-op / torch thread counts")
    p.add_argument("--spinning", default="off", help="comma list of onnxruntime spinning settings (on/off)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the component rows")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--providers", default=None, help="comma list of onnxruntime EPs (default: every available)")
    p.add_argument("--components", default=",".join(COMPONENTS))
    p.add_argument("--engines", default="torch,onnxruntime,tensorrt,llama.cpp")
    p.add_argument("--gguf", action="append", default=[], type=Path, help="GGUF file(s) (default: the bundle's llm/ "
                                                                          "or artifacts/uscope/gguf)")
    p.add_argument("--llm-request-quant", default="q8_0", help="GGUF quant of the profile-generated request row")
    p.add_argument("--llm-max-tokens", type=int, default=192)
    p.add_argument("--sampler", default=None, choices=("ddim", "dpmpp_2m"), help="default: the manifest's")
    p.add_argument("--steps", type=int, default=None, help="default: the manifest's")
    p.add_argument("--samples", type=int, default=None, help="default: the manifest's")
    p.add_argument("--reference", default=None, metavar="SAMPLER:STEPS:DRAWS",
                   help="also time a torch eager request at this sampler configuration in the same run (e.g. "
                        "ddim:50:2, the many-step sampler); the ratios then state the speed-up against it too")
    p.add_argument("--v2-out", type=Path, default=None, help="also write the request rows as a PROTOCOL v2 result "
                   "file (scoreboard rows request_p50_ms / request_p99_ms), e.g. benchmarks/results/v2_umask_latency.json")
    p.add_argument("--model-name", default="umask_small", help="model name of the --v2-out rows")
    p.add_argument("--user-index", type=int, default=0)
    p.add_argument("--hour", type=int, default=18)
    p.add_argument("--warmup-s", type=float, default=None)
    p.add_argument("--duration-s", type=float, default=None)
    p.add_argument("--min-samples", type=int, default=None)
    p.add_argument("--burn-in-s", type=float, default=None)
    p.add_argument("--max-load", type=float, default=None, help="wait until the 1-min load average is below this")
    p.add_argument("--wait-load-s", type=float, default=1800.0)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--peers", action="store_true", help="also time the bundle's DiT step in the peer runtimes "
                   "(OpenVINO, from the isolated env of scripts/peers_env.sh) next to onnxruntime, interleaved")
    return p


def config_from_args(ns: argparse.Namespace) -> HarnessConfig:
    timing = QUICK_TIMING if ns.quick else FULL_TIMING
    over = {k: v for k, v in {"warmup_s": ns.warmup_s, "duration_s": ns.duration_s, "min_samples": ns.min_samples,
                              "burn_in_s": ns.burn_in_s}.items() if v is not None}
    if over:
        timing = replace(timing, **over, max_samples=max(timing.max_samples, over.get("min_samples", 0)))
    defaults = {"sampler": "ddim", "steps": 10, "n_samples": 2}
    if ns.bundle is not None and (ns.bundle / "manifest.json").is_file():
        defaults.update(json.loads((ns.bundle / "manifest.json").read_text()).get("diffusion", {}).get("defaults", {}))
    defaults = task_defaults(defaults, RequestSpec.task)      # the benchmarked request's task overrides
    req = RequestSpec(user_index=ns.user_index, hour=ns.hour, sampler=ns.sampler or defaults["sampler"],
                      steps=ns.steps or int(defaults["steps"]), n_samples=ns.samples or int(defaults["n_samples"]))
    ref = None
    if ns.reference:
        parts = ns.reference.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise SystemExit(f"--reference {ns.reference!r}: want SAMPLER:STEPS:DRAWS, e.g. ddim:50:2")
        ref = replace(req, sampler=parts[0], steps=int(parts[1]), n_samples=int(parts[2]))
    precisions = _csv(ns.precisions, str)
    bad = [x for x in precisions if x not in PRECISIONS]
    comps = _csv(ns.components, str)
    badc = [x for x in comps if x not in COMPONENTS]
    if bad or badc:
        raise SystemExit(f"unknown precisions {bad} (known {PRECISIONS}) / components {badc} (known {COMPONENTS})")
    return HarnessConfig(bundle=ns.bundle, ckpt=ns.ckpt, out=ns.out, quick=ns.quick, threads=_csv(ns.threads, int),
                         spinning=_csv(ns.spinning, _bool), batch=ns.batch, precisions=precisions,
                         providers=_csv(ns.providers, str) if ns.providers else None, components=comps,
                         engines=_csv(ns.engines, str), gguf=tuple(ns.gguf), llm_request_quant=ns.llm_request_quant,
                         llm_max_tokens=ns.llm_max_tokens, request=req, reference_request=ref, timing=timing,
                         metric=(not ns.quick) if ns.metric is None else ns.metric,
                         data_dir=ns.data_dir, peers=ns.peers)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    cfg = config_from_args(ns)
    command = shlex.join(["python", "-m", "umask.bench.latency.harness", *argv])
    rows, meta, skipped = run(cfg, command, max_load=ns.max_load, wait_load_s=ns.wait_load_s)
    paths = write_results(cfg.out, rows, meta, skipped)
    if ns.v2_out is not None:
        from umask.bench.latency.rows import v2_request_rows
        from umask.train.common.checkpoints import atomic_json

        v2 = {"meta": {"command": command, "commit": meta.get("git_commit"), "date": str(meta.get("date", ""))[:10],
                       "source": str(cfg.out), "notes": "request rows of the latency harness run (see its .md)"},
              "rows": v2_request_rows(rows, meta, ns.model_name)}
        ns.v2_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_json(ns.v2_out, v2)
        paths.append(ns.v2_out)
    print(markdown_summary(rows, meta, skipped), end="")
    for s in skipped:
        log.info("skip: %s", s)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


__all__ = ["build_parser", "config_from_args", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
