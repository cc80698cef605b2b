"""Property test: every public request method of the U-MASK `Session` on generated hostile requests.

Each generated request (a REAL user of the shipped sample, cut, shifted, mangled or replaced by a
hostile object; generated ``now_ts`` / steps / n_samples / seed / sampler / text / k / missing)
either returns an output that is valid JSON with finite numbers in range (arrays: finite, the
declared shape), or raises one of the project's error types (`UmaskError`). Anything else (a crash,
a TypeError, an onnxruntime exception, NaN / Infinity in the output) fails.

CI size: 150 examples per method. Full size (the hardening report's figures: 2,000 per method)::

    UMASK_PROPERTY_EXAMPLES=2000 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_property_session.py
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from export_fixtures import real_user, tiny_bundle
from umask.runtime.core.errors import UmaskError
from umask.runtime.core.events import EventLog
from umask.runtime.families.umask.session import Completion, Session

EXAMPLES = int(os.environ.get("UMASK_PROPERTY_EXAMPLES", "150"))
USERS = (4, 5, 6, 7, 8, 9)


@functools.lru_cache(maxsize=1)
def session() -> Session:
    return Session.open(tiny_bundle()[1])


@functools.lru_cache(maxsize=None)
def user(u: int) -> EventLog:
    return real_user(u)


HOSTILE_INTS = st.sampled_from([0, -1, 1, 2, 3, 10**6, 2**31, 2**63, -2**63, 2**64, 1000])
HOSTILE_ANY = st.sampled_from([None, True, False, 1.5, float("nan"), float("inf"), "3", b"3", [2], {}, object()])
# valid values about three times in four (one_of picks its branches uniformly), hostile ones otherwise
small_int = st.one_of(*[st.integers(1, 3)] * 6, HOSTILE_INTS, HOSTILE_ANY)
seed = st.one_of(*[st.integers(0, 2**63 - 1)] * 6, HOSTILE_INTS, HOSTILE_ANY)
text = st.one_of(*[st.none()] * 3, *[st.text(min_size=1, max_size=40)] * 3,
                 st.sampled_from(["", "   ", "lone \ud800", "x" * 9000, "Intent: social."]), HOSTILE_ANY,
                 st.binary(max_size=8))
sampler = st.one_of(*[st.sampled_from([None, "ddim", "dpmpp_2m"])] * 6, st.sampled_from(["euler", "", "DDIM"]),
                    HOSTILE_ANY)


@st.composite
def histories(draw: Any) -> Any:
    kind = draw(st.sampled_from(["real"] * 8 + ["cut", "shift", "mangle", "hostile", "path"]))
    ev = user(draw(st.sampled_from(USERS)))
    if kind == "real":
        return ev
    if kind == "cut":
        n = draw(st.integers(0, len(ev)))
        return EventLog(ev.user[:n], ev.ts[:n], ev.bs[:n], ev.app[:n], ev.bytes[:n])
    if kind == "shift":
        d = draw(st.sampled_from([-10**10, -86400, 86400 * 365, 2**40, 2**62]))
        return EventLog(ev.user, ev.ts + d, ev.bs, ev.app, ev.bytes)     # the constructor: no from_arrays checks
    if kind == "mangle":
        col = draw(st.sampled_from(["bs", "app", "bytes", "user"]))
        v = draw(st.sampled_from([-1, 0, 10**12, 2**62]))
        cols = {c: getattr(ev, c).copy() for c in ("user", "ts", "bs", "app", "bytes")}
        i = draw(st.integers(0, len(ev) - 1))
        cols[col][i] = v
        return EventLog(cols["user"], cols["ts"], cols["bs"], cols["app"], cols["bytes"])
    if kind == "path":
        return draw(st.sampled_from(["/nonexistent/events.csv", "", "a\x00b", "/", "x" * 5000]))
    return draw(HOSTILE_ANY)


@st.composite
def now_ts(draw: Any, history: Any) -> Any:
    pick = draw(st.sampled_from(["none", "none", "slots", "slots", "slots", "hostile"]))
    if pick == "none":
        return None
    if pick == "hostile" or not isinstance(history, EventLog) or len(history) == 0:
        return draw(st.one_of(HOSTILE_INTS, HOSTILE_ANY, st.integers(-2**70, 2**70)))
    ss = session().fcfg.slot_seconds
    return int(history.ts.max()) // ss * ss + draw(st.integers(-2, 2 * session().spec.context)) * ss


def missing(draw: Any) -> Any:
    s = session()
    shape = (s.spec.context, s.fcfg.H, s.fcfg.W)
    pick = draw(st.sampled_from(["none", "none", "random", "empty", "wrong"]))
    if pick == "none":
        return None
    if pick == "random":
        return np.random.default_rng(draw(st.integers(0, 99))).random(shape) < 0.3
    if pick == "empty":
        return np.zeros(shape, bool)
    return draw(st.sampled_from([np.zeros((2, 2), bool), np.ones(shape, np.float32), [[True]], "mask"]))


def _finite(obj: Any) -> None:
    json.dumps(obj, allow_nan=False, default=_np)       # raises on NaN / Infinity / non-JSON objects


def _np(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        assert np.all(np.isfinite(v)) if v.dtype.kind == "f" else True
        return v.tolist()
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        f = v.item()
        assert not isinstance(f, float) or math.isfinite(f)
        return f
    raise TypeError(f"{type(v).__name__} in the output")


def check(out: Any, method: str) -> None:
    s = session()
    if isinstance(out, Completion):
        assert out.x.shape == (s.channels.n_channels, s.spec.T, s.fcfg.H, s.fcfg.W) and np.all(np.isfinite(out.x))
        return
    if isinstance(out, np.ndarray):
        assert np.all(np.isfinite(out)), method
        return
    if method == "mask":
        out = {k: v for k, v in out.items() if k != "window"}
    if method == "window":
        assert np.all(np.isfinite(out.x)) and out.x.shape[1] == s.spec.T
        return
    _finite(out)
    if method in ("predict_short", "forecast_long"):
        assert all(0 <= v <= 1e15 for v in out["traffic_bytes"])
        assert all(0 <= loc["presence"] <= 1 for loc in out["location"])


REQUEST_KW = ("steps", "n_samples", "seed", "sampler", "now_ts", "text")


@st.composite
def requests(draw: Any, method: str) -> tuple[Any, dict[str, Any]]:
    h = draw(histories())
    kw: dict[str, Any] = {}
    for name in REQUEST_KW:
        if draw(st.integers(0, 2)) == 0:
            kw[name] = draw({"steps": small_int, "n_samples": small_int, "seed": seed, "sampler": sampler,
                             "text": text, "now_ts": now_ts(h)}[name])
    if kw.get("steps") is None and kw.get("n_samples") is None:
        kw["steps"] = 1                                   # keep most requests quick
    if method in ("impute", "complete", "mask", "window"):
        kw["missing"] = missing(draw)
    return h, kw


CALLS = {
    "predict_short": lambda s, h, kw, d: s.predict_short(h, **kw),
    "forecast_long": lambda s, h, kw, d: s.forecast_long(h, **kw),
    "recommend": lambda s, h, kw, d: s.recommend(h, k_apps=d(small_int), k_locations=d(small_int), **kw),
    "recommend_apps": lambda s, h, kw, d: s.recommend_apps(h, k=d(small_int), **kw),
    "recommend_locations": lambda s, h, kw, d: s.recommend_locations(h, k=d(small_int), **kw),
    "impute": lambda s, h, kw, d: s.impute(h, **kw),
    "complete": lambda s, h, kw, d: s.complete(h, d(st.sampled_from(["short_term", "long_term", "cold_start",
                                                                       "imputation", "bogus", 3])), **kw),
    "run": lambda s, h, kw, d: s.run(h, d(st.sampled_from(["short", "long", "cold", "impute", "x", None])),
                                     k=d(small_int), **{k: v for k, v in kw.items() if k != "missing"}),
    "mask": lambda s, h, kw, d: s.mask(h, d(st.sampled_from(["short_term", "cold_start", "imputation", "?"])),
                                       now_ts=kw.get("now_ts"), text=kw.get("text"), missing=kw.get("missing")),
    "window": lambda s, h, kw, d: s.window(h, d(st.sampled_from(["short_term", "long_term", "imputation", [1]])),
                                           now_ts=kw.get("now_ts"), missing=kw.get("missing")),
    "profile": lambda s, h, kw, d: s.profile(h, text=kw.get("text"), now_ts=kw.get("now_ts"),
                                             source=d(st.sampled_from([None, "template", "auto", "llm", 3]))),
    "embed": lambda s, h, kw, d: s.embed(h, text=kw.get("text"), now_ts=kw.get("now_ts")),
    "sbert": lambda s, h, kw, d: s.sbert(d(st.one_of(st.lists(text, max_size=3), text))),
    "tokenize": lambda s, h, kw, d: s.tokenize(d(text)),
}


@pytest.mark.parametrize("method", sorted(CALLS))
def test_session_method_never_crashes(method: str) -> None:
    s = session()
    outcomes: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(req=requests(method), data=st.data())
    def prop(req: tuple[Any, dict[str, Any]], data: Any) -> None:
        h, kw = req
        try:
            out = CALLS[method](s, h, kw, data.draw)
        except UmaskError as e:
            event(f"refused: {type(e).__name__}")
            outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
            assert str(e)                                   # a message that says why
            return
        event("served")
        check(out, method)
        outcomes["served"] = outcomes.get("served", 0) + 1

    prop()
    print(f"{method}: {EXAMPLES} examples: {outcomes}")
    assert outcomes.get("served", 0) >= 1 or EXAMPLES < 20, outcomes    # the generator reaches real outputs
