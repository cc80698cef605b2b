"""Property test: ``umask run`` on generated command lines, bundles and history files.

Every generated invocation (in process, ``umask.cli.main``) ends with exit status 0 and valid JSON
on stdout (no NaN / Infinity), or 2 (argparse usage), or the exit code of one of the project's error
classes with exactly ONE line on stderr, ``umask run: error: ...``. A traceback, another exit code, a
second stderr line or invalid JSON fails.

CI size: 100 examples (each opens a Session: about 1.4 s). Full size (the hardening report's figure: 2,000)::

    UMASK_PROPERTY_EXAMPLES=2000 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_property_cli.py
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import os

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from export_fixtures import edited_bundle, real_user, scratch_dir, tiny_bundle
from umask.cli import main
from umask.runtime.core.errors import EXIT_CODES
from umask.runtime.core.events import format_compact_time

EXAMPLES = int(os.environ.get("UMASK_PROPERTY_EXAMPLES", "100"))   # ~1.4 s each (a Session opens per run)
CODES = {0, 2} | set(EXIT_CODES.values())


def _csv(ev, shift: int = 0) -> str:  # noqa: ANN001
    return "time,app_id,base_id,bytes\n" + "".join(
        f"{t},{a},{b},{n}\n" for t, a, b, n in zip(format_compact_time(ev.ts + shift), ev.app, ev.bs, ev.bytes))


@functools.lru_cache(maxsize=1)
def files() -> dict[str, str]:
    """Bundles and history files every example picks from (written once)."""
    d = scratch_dir("prop-cli-")
    out = {"bundle": str(tiny_bundle()[1]), "unsigned": str(edited_bundle(d / "unsigned", sign=False)),
           "no_bundle": str(d / "nothing"), "not_a_dir": str(d)}
    ev = real_user(5)
    text = _csv(ev)
    hist = {"good": text, "good_u7": _csv(real_user(7)), "header_only": text.split("\n")[0] + "\n", "empty": "",
            "bad_int": text.replace(text.split("\n")[3].split(",")[1], "1_0", 1),
            "future": _csv(ev, 10 * 365 * 86400), "long_line": text + "9" * 10000 + "\n",
            "bad_utf8": None, "gz_damaged": None}
    for name, body in hist.items():
        p = d / f"{name}.csv"
        if name == "bad_utf8":
            p.write_bytes(text.encode()[:200] + b"\xff\xfe\n")
        elif name == "gz_damaged":
            p.write_bytes(gzip.compress(text.encode())[:300])
        else:
            p.write_text(body)
        out[f"h_{name}"] = str(p)
    out["h_missing"] = str(d / "missing.csv")
    return out


INTS = st.one_of(*[st.integers(1, 3).map(str)] * 10, st.sampled_from(["0", "-1", "100000", str(2**63), "1.5", "x", ""]))
NOW = st.one_of(st.sampled_from(["20160421180000", "20160420230000", "20160422020000", "20300101000000", "20161301000000",
                                 "0", str(2**63), "-5", "abc"]), st.integers(-10**15, 10**15).map(str))


@st.composite
def valid_argv(draw) -> list[str]:  # noqa: ANN001
    """A well-formed request (hostile only in its combination of valid values)."""
    f = files()
    a = ["run", "--bundle", f["bundle"], "--history", f[draw(st.sampled_from(["h_good", "h_good_u7"]))],
         "--task", draw(st.sampled_from(["short", "long", "cold", "impute"])), "--steps", str(draw(st.integers(1, 3)))]
    for flag, strat in (("--samples", st.integers(1, 2).map(str)), ("--seed", st.integers(0, 2**63 - 1).map(str)),
                        ("-k", st.integers(1, 30).map(str)), ("--threads", st.integers(1, 2).map(str)),
                        ("--now", st.sampled_from(["20160421180000", "20160421200000", "20160422000000"])),
                        ("--precision", st.sampled_from(["fp32", "fp16", "int8-qdq", "int8-dynamic"])),
                        ("--sbert-precision", st.sampled_from(["fp32", "int8"])),
                        ("--sampler", st.sampled_from(["ddim", "dpmpp_2m"])),
                        ("--profile-source", st.sampled_from(["auto", "template"]))):
        if draw(st.booleans()):
            a += [flag, draw(strat)]
    return a


@st.composite
def argv(draw) -> list[str]:  # noqa: ANN001
    if draw(st.integers(0, 2)) > 0:
        return draw(valid_argv())
    f = files()
    a = ["run"]
    bundle = draw(st.sampled_from(["bundle"] * 5 + ["unsigned", "no_bundle", "not_a_dir", None]))
    if bundle is not None:
        a += ["--bundle", f[bundle]]
    hist = draw(st.sampled_from(["good"] * 5 + ["good_u7", "header_only", "empty", "bad_int", "future", "long_line",
                                                "bad_utf8", "gz_damaged", "missing", None]))
    if hist is not None:
        a += ["--history", f[f"h_{hist}"]]
    task = draw(st.sampled_from(["short", "long", "cold", "impute"] * 3 + ["nope", None]))
    if task is not None:
        a += ["--task", task]
    a += ["--steps", draw(st.one_of(st.just("1"), INTS))]
    for flag, strat in (("--samples", INTS), ("--seed", INTS), ("-k", INTS), ("--threads", INTS), ("--now", NOW),
                        ("--precision", st.sampled_from(["fp32", "fp16", "int8-qdq", "int8-dynamic", "fp8", ""])),
                        ("--sbert-precision", st.sampled_from(["fp32", "int8", "int4"])),
                        ("--providers", st.sampled_from(["cpu", "cuda,cpu", "tensorrt", ",", "", "bogus"])),
                        ("--sampler", st.sampled_from(["ddim", "dpmpp_2m", "euler"])),
                        ("--profile-source", st.sampled_from(["auto", "template", "llm", "gpt"]))):
        if draw(st.integers(0, 4)) == 0:
            a += [flag, draw(strat)]
    if draw(st.integers(0, 5)) == 0:
        a.append(draw(st.sampled_from(["--allow-unsigned", "--spin", "--bogus-flag", "--trusted-keys"])))
    return a


def _strict(s: str) -> object:
    return json.loads(s, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(f"{c} in the JSON")))


def test_umask_run_never_crashes() -> None:
    outcomes: dict[int, int] = {}
    files()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(args=argv())
    def prop(args: list[str]) -> None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as e:                       # argparse: usage error or --help
                code = e.code if isinstance(e.code, int) else 2
        outcomes[code] = outcomes.get(code, 0) + 1
        if os.environ.get("UMASK_PROPERTY_DEBUG"):
            print(code, args[1:], err.getvalue().strip()[-160:])
        event(f"exit {code}")
        assert code in CODES, (code, args, err.getvalue()[-2000:])
        if code == 0:
            doc = _strict(out.getvalue())
            assert isinstance(doc, dict) and "result" in doc, args
        elif code != 2:
            lines = err.getvalue().strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("umask run: error: "), (args, err.getvalue()[-2000:])
            assert not out.getvalue(), args

    prop()
    print(f"umask run: {EXAMPLES} examples, exit codes {dict(sorted(outcomes.items()))}")
    assert outcomes.get(0, 0) >= 1 or EXAMPLES < 20, outcomes
