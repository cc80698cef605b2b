"""``umask export``, ``umask verify`` and ``umask run`` command lines (one-line errors, the error class's exit code).

    umask export --ckpt artifacts/train/umask_small/ckpt/latest --out artifacts/bundles/small --sign-key keys/release.key
    UMASK_TRUSTED_KEYS=keys/ umask verify artifacts/bundles/small
    umask run --bundle artifacts/bundles/small --history events.csv --task short --trusted-keys keys/release.pub
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Sequence

from umask.runtime.core.signing import add_key_options

log = logging.getLogger(__name__)


def export_main(argv: Sequence[str] | None = None) -> int:
    from umask.export.families import EXPORTERS, exporter
    from umask.export.families.umask.exporter import DEFAULT_DATA, DEFAULT_GGUF_DIR, DEFAULT_SBERT_CACHE, LLM_QUANTS
    from umask.export.families.umask.grid_exporter import A2_GATES
    from umask.export.precision import PRECISIONS
    from umask.runtime.families.ustsllm.stats import A2_GATE_OTHERS

    p = argparse.ArgumentParser(
        prog="umask export",
        description="Export a training checkpoint to a verified on-device bundle: ONNX (fp32, fp16, int8 QDQ, "
                    "int8 dynamic) of the DiT step, mask generator, profile MLP and SBERT encoder, TensorRT engines "
                    "when tensorrt imports, the profiling LLM's GGUF files, and manifest.json with sha256 and "
                    "parity figures, signed with --sign-key. Every artifact is checked against torch fp32 on "
                    "real-sample windows; one beyond its tolerance is not written.",
        epilog="A device opens only bundles signed by a key it trusts (UMASK_TRUSTED_KEYS or --trusted-keys); make "
               "a key pair once with 'python -m umask.export.signing keygen --out keys/ --name release' and keep "
               "keys/release.key private. example: umask export --ckpt artifacts/train/umask_small/ckpt/latest "
               "--out artifacts/bundles/small --sign-key keys/release.key")
    p.add_argument("--ckpt", required=True, help="checkpoint: a step directory, a ckpt/latest|best pointer, a ckpt "
                                                 "folder or a run folder")
    p.add_argument("--out", required=True, help="bundle directory to write (replaced atomically)")
    p.add_argument("--family", default="umask", choices=sorted(EXPORTERS), help="model family (default umask)")
    p.add_argument("--sign-key", default=None,
                   help="ed25519 private key (PEM) that signs manifest.json (manifest.sig); without it the bundle is "
                        "unsigned and opens only with --allow-unsigned")
    p.add_argument("--passphrase-env", default=None, help="environment variable holding the --sign-key passphrase")
    p.add_argument("--precisions", default=None,
                   help=f"comma-separated, must include fp32 (default: every precision the family's exporter makes; "
                        f"umask: {','.join(PRECISIONS)}; fatsmb: fp32,int8-qdq; gtslum: fp32,int8)")
    p.add_argument("--gguf-dir", default=str(DEFAULT_GGUF_DIR),
                   help="the U-SCOPE pipeline's GGUF folder; the LLM chosen by --llm-quant goes into the bundle's llm/ "
                        "(absent: noted, the device writes template profiles)")
    p.add_argument("--llm-quant", default="q8_0", choices=LLM_QUANTS,
                   help="which profiling LLM to ship: a merged model quant, or base+lora (base GGUF + LoRA adapter GGUF)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA),
                   help="Tsinghua LLMApp folder: catalog tables for the device + the real calibration sample")
    p.add_argument("--data", default=None, metavar="GRID_CSV",
                   help="grid families (ustsllm): the grid CSV the run was trained on (default: the path its config "
                        "records; the Milan sample for runs on it)")
    p.add_argument("--a2-gate", default=None, choices=sorted({"auto", *A2_GATES, *A2_GATE_OTHERS}),
                   help="grid families: A2's per-cell gate, chosen on the validation windows, between the network and "
                        "a simple row (ustsllm: auto | none | lowrank | lowrank_profile, default auto = the row its "
                        "imputation guidance starts from; umask_grid: lowrank | prior | none, default lowrank)")
    p.add_argument("--no-sbert", action="store_true", help="leave the SBERT encoder out (no semantic profile on device)")
    p.add_argument("--sbert-cache", default=str(DEFAULT_SBERT_CACHE), help="reuse folder for the SBERT ONNX export")
    p.add_argument("--no-tensorrt", action="store_true", help="do not try to build TensorRT engines")
    p.add_argument("--accuracy-gate", default=None, metavar="RESULT_JSON",
                   help="umask family: the device scorer's result for this checkpoint "
                        "(python -m umask.bench.accuracy.user_device); each precision's pass / fail of the 1 %% "
                        "headline gate goes into the manifest and precision=auto never picks a failed one")
    ns = p.parse_args(argv)
    from umask.runtime.core.errors import UmaskError

    try:
        import os

        pw = None
        if ns.passphrase_env:
            if ns.passphrase_env not in os.environ:
                raise _input(f"--passphrase-env {ns.passphrase_env}: no such environment variable")
            pw = os.environ[ns.passphrase_env].encode()
        options = dict(**({"precisions": [s.strip() for s in ns.precisions.split(",") if s.strip()]}
                          if ns.precisions is not None else {}),   # absent: the family exporter's own default
                       data_dir=ns.data_dir, gguf_dir=ns.gguf_dir or None, llm_quant=ns.llm_quant,
                       sbert=not ns.no_sbert, sbert_cache=ns.sbert_cache or None,
                       tensorrt=not ns.no_tensorrt, sign_key=ns.sign_key, passphrase=pw,
                       **({"accuracy_gate": ns.accuracy_gate} if ns.accuracy_gate else {}),
                       **({"data": ns.data} if ns.data else {}),
                       **({"a2_gate": ns.a2_gate} if ns.a2_gate else {}))
        fn = exporter(ns.family)
        m = fn(ns.ckpt, ns.out, **_accepted(fn, options, ns.family,
                                            given={"data", "accuracy_gate", "precisions", "a2_gate"} & set(options)))
    except (UmaskError, ValueError, OSError) as e:
        return _fail("export", e)
    summary = {p_: {n: {"status": e.get("status"), **_parity_summary(e["parity"])}
                    for n, e in a.items() if isinstance(e, dict) and "parity" in e}
               for p_, a in (m.get("artifacts") or {}).items() if isinstance(a, dict)}
    print(json.dumps({"bundle": ns.out, "signed": ns.sign_key is not None, "export_seconds": m.get("export_seconds"),
                      "tensorrt": (m.get("tensorrt") or {}).get("status", "n/a"),
                      "llm": (m.get("llm") or {}).get("status", "n/a"), "artifacts": summary}, indent=1))
    return 0


def _accepted(fn: Any, options: dict[str, Any], family: str, given: set[str]) -> dict[str, Any]:
    """The ``options`` ``fn`` takes. Every family's exporter receives the command's options; one that names its
    keywords gets only those, and an option the user gave explicitly (``given``) that it does not take is an
    error rather than silently dropped."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    unknown = sorted(k for k in given if k not in params)
    if unknown:
        raise _input(f"--{unknown[0].replace('_', '-')} does not apply to the {family} exporter")
    return {k: v for k, v in options.items() if k in params}


def _input(msg: str) -> Exception:
    from umask.runtime.core.errors import InputError

    return InputError(msg)


def _fail(cmd: str, e: BaseException) -> int:
    """One line on stderr, the error class's exit code (2 for errors without one)."""
    text = " ".join(str(e).split()) or type(e).__name__
    print(f"umask {cmd}: error: {text}", file=sys.stderr)
    code = getattr(e, "exit_code", 2)
    return code if isinstance(code, int) and code != 0 else 2


def verify_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="umask verify",
        description="Verify a bundle: the strict manifest schema, every file's size and sha256, no unlisted file, "
                    "no symlink, and the ed25519 signature by a trusted key. Prints one line and a JSON summary.",
        epilog="exit status: 0 verified; 6 refused bundle; 7 manifest schema error; 8 unsigned / untrusted / bad "
               "signature. example: UMASK_TRUSTED_KEYS=keys/ umask verify artifacts/bundles/small")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--self-test", action="store_true", help="also run every ONNX file on its golden inputs (CPU) and "
                   "compare with the golden outputs (exit 6 naming the file and the difference)")
    add_key_options(p)
    ns = p.parse_args(argv)
    from umask.runtime.core.bundle import bundle_family
    from umask.runtime.core.errors import UmaskError
    from umask.runtime.core.signing import read_signature, verify_bundle

    try:
        m = verify_bundle(ns.bundle, trusted_keys=ns.trusted_keys, allow_unsigned=ns.allow_unsigned)
        sig = read_signature(ns.bundle)
        if ns.self_test:
            from umask.runtime.engines.ort import self_test

            self_test(ns.bundle, m)
    except (UmaskError, ValueError, OSError) as e:
        return _fail("verify", e)
    files = m["files"]
    arts = m.get("artifacts", {})
    signed = f"signed by key {sig['key_id']}" if sig else "UNSIGNED (accepted: --allow-unsigned)"
    print(f"umask verify: {ns.bundle}: OK ({len(files)} files, {sum(f['size'] for f in files.values()):,} bytes, "
          f"{signed})")
    print(json.dumps({"bundle": str(ns.bundle), "family": bundle_family(m), "schema_version": m["schema_version"],
                      "key_id": sig["key_id"] if sig else None, "files": len(files),
                      "bytes": sum(f["size"] for f in files.values()),
                      "precisions": {p_: sorted(n for n, e in a.items() if e.get("status") == "ok")
                                     for p_, a in arts.items()} if isinstance(arts, dict) else None,
                      "sbert": m.get("sbert", {}).get("status"), "llm": m.get("llm", {}).get("status"),
                      "created_utc": m.get("created_utc"), "self_test": "passed" if ns.self_test else None}, indent=1))
    return 0


PARITY_KEYS = ("rel_max", "completion_max_abs_diff")          # the U-MASK exporter's headline parity figures


def _parity_summary(parity: dict) -> dict:
    """The figures ``umask export`` prints per artifact: the U-MASK ones, else (other families, parity per task)
    each task's max |diff| against torch and relative nMAE change."""
    if any(k in parity for k in PARITY_KEYS):
        return {k: parity.get(k) for k in PARITY_KEYS}
    return {t: {k: v[k] for k in ("max_abs_diff_vs_torch", "nmae_rel_diff") if k in v}
            for t, v in parity.items() if isinstance(v, dict)}


def _bundle_family_of(argv: Sequence[str]) -> str | None:
    """The ``family`` of the manifest of ``--bundle DIR`` in ``argv`` (None when there is no readable
    one: the U-MASK parser below then reports the problem)."""
    args = list(argv)
    for i, a in enumerate(args):
        value = args[i + 1] if a == "--bundle" and i + 1 < len(args) else (a[9:] if a.startswith("--bundle=") else None)
        if value is None:
            continue
        from umask.runtime.core.bundle import bundle_family, read_manifest

        try:
            return bundle_family(read_manifest(value))
        except Exception:  # noqa: BLE001 - reported again, with its exit code, by the session that opens it
            return None
    return None


def run_main(argv: Sequence[str] | None = None) -> int:
    """``umask run``: a U-MASK bundle is served below; a bundle of another family goes to the
    ``run_main(argv)`` of its session module (`umask.runtime.families.FAMILIES`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    family = _bundle_family_of(argv)
    if family is not None and family != "umask":
        import importlib

        from umask.runtime.families import FAMILIES

        if family not in FAMILIES:
            from umask.runtime.core.errors import BundleError

            print(f"umask run: {BundleError(f'family {family!r} is not served by this runtime (known: {sorted(FAMILIES)})')}",
                  file=sys.stderr)
            return BundleError.exit_code
        module = importlib.import_module(FAMILIES[family].partition(":")[0])
        if not hasattr(module, "run_main"):        # fatsmb, gtslum: served from Python only in this version
            from umask.runtime.core.errors import InputError

            served = sorted({"umask", *(f for f, path in FAMILIES.items()
                                        if hasattr(importlib.import_module(path.partition(":")[0]), "run_main"))})
            print(f"umask run: error: {family} bundles have no command-line request format in this version: open "
                  f"them with the torch-free Python session ({FAMILIES[family].replace(':', '.')}.open(bundle)); "
                  f"'umask run' serves {', '.join(served)} bundles", file=sys.stderr)
            return InputError.exit_code
        return int(module.run_main(argv) or 0)
    return _run_umask(argv)


def _run_umask(argv: Sequence[str] | None = None) -> int:
    from umask.runtime.core.errors import (BUNDLE_ERRORS, DataFormatError, InputError, LimitError,
                                           exit_status_help)
    from umask.runtime.core.limits import REQUEST_LIMITS

    p = argparse.ArgumentParser(
        prog="umask run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a bundle on one user's raw event history, privately (numpy + onnxruntime, no torch, no "
                    "network), and print the predictions as JSON. The bundle must be signed by a trusted key "
                    "(--trusted-keys or $UMASK_TRUSTED_KEYS) unless --allow-unsigned.",
        epilog="history formats: events.csv (header time,app_id,base_id,bytes; time = local YYYYMMDDhhmmss), the\n"
               "official Tsinghua trace text, or the LLMApp CSV sample (one user).\n\n"
               "bounds of a request (umask.runtime.core.limits.RequestLimits; beyond one: exit 5):\n"
               + REQUEST_LIMITS.help_text() +
               "\n\n" + exit_status_help(InputError, DataFormatError, LimitError, *BUNDLE_ERRORS) + "\n\n"
               "example: umask run --bundle artifacts/bundles/small --history events.csv --task short\n\n"
               "This help is the per-user U-MASK bundle's. A bundle of another family has its own flags (see\n"
               "'umask run --bundle BUNDLE --help'): grid bundles (umask_grid, ustsllm) take --values CSV --task\n"
               "forecast|impute --first-slot N; gtslum takes --history FILE [--now T] [-k N]; fatsmb takes\n"
               "--history ITEMS.csv --behavior B [-k N].")
    p.add_argument("--bundle", required=True, help="bundle directory written by 'umask export'")
    p.add_argument("--history", required=True, help="the user's event history file")
    p.add_argument("--task", required=True, choices=("short", "long", "cold", "impute"),
                   help="short: next hour; long: next 24 h; cold: app + location recommendation; impute: fill gaps")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8-qdq | int8-dynamic | auto (the measured, recorded "
                   "fastest on this machine; int8 only where >= 10 %% faster than fp32) (default fp32)")
    p.add_argument("--sbert-precision", default="fp32", choices=("fp32", "int8"),
                   help="profile-text encoder: fp32 (default) or the bundle's cosine-gated int8 SBERT (~4x smaller)")
    p.add_argument("--providers", default="cpu", help="comma-separated: cpu, cuda, tensorrt (falls back to cpu)")
    p.add_argument("--threads", type=int, default=1,
                   help=f"onnxruntime intra-op threads, 1..{REQUEST_LIMITS.max_threads} (default 1)")
    p.add_argument("--spin", action="store_true", help="let idle onnxruntime threads spin (faster, burns CPU)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"sampler steps, 1..{REQUEST_LIMITS.max_steps} (default: the bundle's)")
    p.add_argument("--sampler", default=None, choices=("ddim", "dpmpp_2m"), help="default: the bundle's")
    p.add_argument("--samples", type=int, default=None,
                   help=f"completions averaged, 1..{REQUEST_LIMITS.max_samples}; steps x samples <= "
                        f"{REQUEST_LIMITS.max_denoiser_calls} (default: the bundle's)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed, 0..2**63-1 (default 0)")
    p.add_argument("-k", type=int, default=5, help=f"items to recommend (task cold), 1..{REQUEST_LIMITS.max_k}")
    p.add_argument("--now", type=int, default=None,
                   help="end of the history as local YYYYMMDDhhmmss (default: the slot after the last event); at "
                        "most the model's context window after the last event")
    p.add_argument("--profile-source", default="auto", choices=("auto", "template", "llm"))
    p.add_argument("--self-test", action="store_true", help="run the loaded networks on their golden inputs first "
                   "(exit 6 naming the file and the difference when an output is off)")
    add_key_options(p)
    ns = p.parse_args(argv)
    from umask.runtime.core.errors import UmaskError
    from umask.runtime.core.history import compact_time
    from umask.runtime.session import Session

    try:
        now_ts = compact_time(ns.now, "--now")
        providers = [x.strip() for x in ns.providers.split(",") if x.strip()]
        if not providers:
            raise InputError(f"--providers {ns.providers!r}: name at least one provider (cpu, cuda, tensorrt)")
        with Session.open(ns.bundle, providers=providers, threads=ns.threads, allow_spinning=ns.spin,
                          sbert_precision=ns.sbert_precision, precision=ns.precision,
                          profile_source=ns.profile_source, trusted_keys=ns.trusted_keys,
                          allow_unsigned=ns.allow_unsigned, self_test=ns.self_test) as s:
            kw = {"steps": ns.steps, "sampler": ns.sampler, "n_samples": ns.samples, "seed": ns.seed, "now_ts": now_ts}
            out = s.run(ns.history, ns.task, k=ns.k, **kw)
        try:
            text = json.dumps(out, indent=1, allow_nan=False, default=float)
        except (ValueError, TypeError) as e:
            from umask.runtime.core.errors import BundleError

            raise BundleError(f"{ns.bundle}: the output is not valid JSON ({e})") from None
    except (UmaskError, ValueError, OSError) as e:
        return _fail("run", e)
    print(text)
    return 0


__all__ = ["export_main", "run_main", "verify_main"]
