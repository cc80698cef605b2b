"""Runtime Session (issue 5): numpy samplers vs torch, determinism, threads, bad inputs, generated histories."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from export_fixtures import edited_bundle, real_user, tiny_bundle
from umask.runtime.core.catalog import load_llmapp_catalog
from umask.runtime.core.errors import BundleError, DataFormatError, InputError
from umask.runtime.core.events import EventLog, format_compact_time
from umask.runtime.core.history import load_history, read_events_csv
from umask.runtime.engines.samplers import Schedule, make_sampler
from umask.runtime.families.umask.session import Session

DATA = Path(__file__).resolve().parents[1] / "data" / "tsinghua_app_usage"


@pytest.fixture(scope="module")
def session() -> Session:
    return Session.open(tiny_bundle()[1])


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_numpy_samplers_match_torch(name: str, steps: int) -> None:
    import torch

    from umask.train.diffusion import VPSchedule, make_sampler as torch_sampler

    vp = VPSchedule(1000, "cosine")
    rng = np.random.default_rng(0)
    x_obs = rng.standard_normal((2, 3, 8, 2, 2)).astype(np.float32)
    mask = (rng.random((2, 1, 8, 2, 2)) < 0.4).astype(np.float32)
    x_obs *= mask
    noise = rng.standard_normal(x_obs.shape).astype(np.float32)
    w = rng.standard_normal((3, 3)).astype(np.float32) * 0.3

    def f_np(x: np.ndarray, t: int) -> np.ndarray:       # a nonlinear t-dependent "denoiser"
        return np.tanh(np.einsum("bcthw,cd->bdthw", x, w)) * (1.0 + t / 1000.0)

    def f_t(x: torch.Tensor, t: int) -> torch.Tensor:
        return torch.from_numpy(f_np(x.numpy(), t))

    ref = torch_sampler(name, vp).sample(f_t, torch.from_numpy(x_obs), torch.from_numpy(mask), steps,
                                         noise=torch.from_numpy(noise)).numpy()
    got = make_sampler(name, Schedule(vp.alphas_cumprod.numpy())).sample(f_np, x_obs, mask, steps, noise=noise)
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-5)
    obs = np.broadcast_to(mask > 0.5, got.shape)
    assert np.array_equal(got[obs], x_obs[obs])              # exact evidence


def test_same_seed_identical_and_seeds_differ(session: Session) -> None:
    ev = real_user(5)
    a = session.complete(ev, "long_term", seed=11, steps=4).x
    b = session.complete(ev, "long_term", seed=11, steps=4).x
    c = session.complete(ev, "long_term", seed=12, steps=4).x
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert session.last_timings.keys() >= {"window", "sbert", "profile_mlp", "mask", "sample"}


def test_threads_give_the_sequential_results(session: Session) -> None:
    jobs = [(u, t, s) for u in (4, 5, 7) for t, s in (("short_term", 1), ("cold_start", 2))]
    seq = {j: session.complete(real_user(j[0]), j[1], seed=j[2], steps=3).x for j in jobs}
    par: dict = {}
    errs: list = []

    def work(j):
        try:
            par[j] = session.complete(real_user(j[0]), j[1], seed=j[2], steps=3).x
        except Exception as e:   # noqa: BLE001 - reported below
            errs.append(e)

    threads = [threading.Thread(target=work, args=(j,)) for j in jobs for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errs
    for j in jobs:
        assert np.array_equal(par[j], seq[j])


def test_task_outputs_are_json_ready(session: Session) -> None:
    import json

    ev = real_user(6)
    for task in ("short", "long", "cold", "impute"):
        out = session.run(ev, task, k=3, steps=2)
        json.dumps(out)
        assert out["runtime"]["precision"] == "fp32"
    r = session.predict_short(ev, steps=2)
    assert len(r["slots"]) == 2 and len(r["traffic_bytes"]) == 2 and all(v >= 0 for v in r["traffic_bytes"])
    apps = session.recommend_apps(ev, k=3, steps=2)
    assert [a["rank"] for a in apps] == [1, 2, 3] and apps[0]["score"] >= apps[-1]["score"]
    locs = session.recommend_locations(ev, k=2, steps=2)
    assert len(locs) == 2 and "lat" in locs[0]
    n_slots = min(session.fcfg.H * session.fcfg.W, session.limits.max_k)
    many = session.recommend_locations(ev, k=n_slots, steps=2)          # never an empty layout slot
    assert many and all(p["grid_cell"][0] >= 0 and "lat" in p for p in many)
    one_place = ev.take(np.flatnonzero(ev.bs == np.bincount(ev.bs).argmax()))   # the user's events at one station
    few = session.recommend_locations(one_place, k=n_slots, steps=2)
    assert 1 <= len(few) < n_slots and all(p["grid_cell"][0] >= 0 for p in few)
    both = session.recommend(ev, k_apps=3, k_locations=2, steps=2)   # one completion serves both lists
    assert both["apps"] == apps and both["locations"] == locs


def _events(user_ts_bs_app_bytes) -> EventLog:
    return EventLog.from_arrays(*user_ts_bs_app_bytes)


def test_bad_inputs_raise_clear_errors(session: Session, tmp_path: Path) -> None:
    ev = real_user(5)
    with pytest.raises(InputError, match="empty history"):
        session.complete(ev.take(np.zeros(len(ev), bool)), "short_term")
    with pytest.raises(InputError, match="unknown task"):
        session.complete(ev, "tomorrow")
    with pytest.raises(InputError, match="future-dated"):
        session.complete(ev, "short_term", now_ts=int(ev.ts[len(ev) // 2]))
    fut = _events((ev.user, ev.ts + 400 * 365 * 86400 // 10 * 10, ev.bs, ev.app, ev.bytes))
    with pytest.raises(InputError, match="future-dated|spans"):
        session.complete(fut, "short_term")
    with pytest.raises(DataFormatError, match="unknown app id 99999999"):
        session.complete(_events((ev.user, ev.ts, ev.bs, np.where(np.arange(len(ev)) == 3, 99999999, ev.app),
                                  ev.bytes)), "short_term")
    with pytest.raises(DataFormatError, match="unknown base station"):
        session.complete(_events((ev.user, ev.ts, ev.bs + 10**9, ev.app, ev.bytes)), "short_term")
    with pytest.raises(InputError, match="integers"):
        EventLog.from_arrays(ev.user, ev.ts.astype(float) + np.nan, ev.bs, ev.app, ev.bytes)
    with pytest.raises(InputError, match="1-D"):
        EventLog.from_arrays(ev.user[:, None], ev.ts, ev.bs, ev.app, ev.bytes)
    bad = EventLog(ev.user, ev.ts.astype(np.float64), ev.bs, ev.app, ev.bytes)
    with pytest.raises(InputError, match="integer array"):
        session.complete(bad, "short_term")
    two = _events((np.r_[ev.user, ev.user + 1], np.r_[ev.ts, ev.ts], np.r_[ev.bs, ev.bs], np.r_[ev.app, ev.app],
                   np.r_[ev.bytes, ev.bytes]))
    with pytest.raises(InputError, match="one user"):
        session.complete(two, "short_term")
    for kw, msg in (({"steps": 0}, "steps"), ({"steps": 10**6}, "steps"), ({"n_samples": 0}, "n_samples"),
                    ({"sampler": "euler"}, "sampler"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed")):
        with pytest.raises(InputError, match=msg):
            session.complete(ev, "short_term", **kw)
    with pytest.raises(InputError, match="missing must be a bool array"):
        session.impute(ev, missing=np.zeros((3, 3), bool))
    with pytest.raises(InputError, match="positive integer"):
        session.recommend_apps(ev, k=0)
    import umask.runtime.core.history as hist

    with pytest.raises(InputError, match="limit"):
        big = _events((np.zeros(hist.MAX_EVENTS + 1, np.int64), np.full(hist.MAX_EVENTS + 1, ev.ts[0]),
                       np.full(hist.MAX_EVENTS + 1, ev.bs[0]), np.full(hist.MAX_EVENTS + 1, ev.app[0]),
                       np.ones(hist.MAX_EVENTS + 1, np.int64)))
        session.complete(big, "short_term")
    # events.csv: malformed lines name the file and line
    p = tmp_path / "events.csv"
    p.write_text("time,app_id,base_id,bytes\n20160420081500,%d,%d,10\n20160420081600,%d,%d,-5\n"
                 % (ev.app[0], ev.bs[0], ev.app[0], ev.bs[0]))
    with pytest.raises(DataFormatError, match=r"events.csv:3: negative bytes"):
        load_history(p)
    p.write_text("time,app_id,base_id,bytes\n20161320081500,1,1,10\n")
    with pytest.raises(DataFormatError, match="unparseable time"):
        load_history(p)
    for header in ("time,app,bytes", "12.5,80.1,33.0,41.9"):      # another CSV (a grid row): the layouts are named
        p.write_text(header + "\n")
        with pytest.raises(DataFormatError, match=r"events.csv:1: the header .* is none of the history layouts: "
                                                  r"events.csv \(header time,app_id,base_id,bytes\)"):
            load_history(p)
    with pytest.raises(InputError, match="no such history"):
        session.complete(tmp_path / "nope.csv", "short_term")


def test_events_csv_round_trip_equals_the_trace(session: Session, tmp_path: Path) -> None:
    ev = real_user(8)
    p = tmp_path / "events.csv"
    rows = ["time,app_id,base_id,bytes"] + [f"{t},{a},{b},{n}" for t, a, b, n in
                                             zip(format_compact_time(ev.ts), ev.app, ev.bs, ev.bytes)]
    p.write_text("\n".join(rows) + "\n")
    got = read_events_csv(p, user=int(ev.user[0]))
    assert np.array_equal(got.ts, ev.ts) and np.array_equal(got.app, ev.app)
    a = session.complete(p, "short_term", seed=1, steps=2).x
    b = session.complete(ev, "short_term", seed=1, steps=2).x
    assert np.array_equal(a, b)


_CAT = load_llmapp_catalog(DATA)
_APPS = _CAT.apps.app_ids if hasattr(_CAT.apps, "app_ids") else None
_REAL = real_user(5)
_BS = np.unique(_REAL.bs)                      # real stations of one user (a compact area)
_APP_IDS = np.unique(real_user(4).app)
_T0 = int(_REAL.ts.min()) // 86400 * 86400


@st.composite
def histories(draw):
    n = draw(st.integers(0, 60))
    ts = draw(st.lists(st.integers(0, 2 * 86400 - 1), min_size=n, max_size=n))
    bs = draw(st.lists(st.integers(0, len(_BS) - 1), min_size=n, max_size=n))
    app = draw(st.lists(st.integers(0, len(_APP_IDS) - 1), min_size=n, max_size=n))
    nb = draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n))
    corrupt = draw(st.sampled_from(["none"] * 6 + ["app", "bs", "bytes"]))
    task = draw(st.sampled_from(["short_term", "long_term", "cold_start", "imputation"]))
    return (np.asarray(ts, np.int64) + _T0, _BS[np.asarray(bs, np.int64)], _APP_IDS[np.asarray(app, np.int64)],
            np.asarray(nb, np.int64), corrupt, task)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(h=histories())
def test_generated_histories(session: Session, h) -> None:
    ts, bs, app, nb, corrupt, task = h
    n = len(ts)
    if corrupt == "app" and n:
        app = app.copy()
        app[-1] = 10**8
    if corrupt == "bs" and n:
        bs = bs.copy()
        bs[0] = 10**9 + 7
    if corrupt == "bytes" and n:
        nb = nb.copy()
        nb[n // 2] = -1
    try:
        ev = EventLog.from_arrays(np.zeros(n, np.int64), ts, bs, app, nb)
        c = session.complete(ev, task, steps=1, n_samples=1, seed=0, text="Intent: mainly social communication.")
    except InputError as e:
        assert n == 0 or corrupt == "bytes" or "nothing to impute" in str(e) or "no slot" in str(e), e
        return
    except DataFormatError as e:
        assert corrupt in ("app", "bs"), e
        return
    assert corrupt == "none" or n == 0
    w = c.window
    assert c.x.shape == w.x.shape and np.all(np.isfinite(c.x))
    assert c.mask.shape == w.avail.shape[1:] and not (c.mask & (w.avail[0] < 0.5)).any()
    assert c.k == int(c.mask.sum())
    assert np.array_equal(c.x[:, c.mask], w.x[:, c.mask])     # exact evidence
    assert np.all(w.x[:, w.avail[0] < 0.5] == 0)


def test_int8_sbert_is_opt_in_and_close_to_fp32(session: Session) -> None:
    """sbert_precision='int8' loads the export's cosine-gated int8 encoder; embeddings stay within its gate."""
    s8 = Session.open(tiny_bundle()[1], sbert_precision="int8")
    assert session.report()["sbert"].endswith("fp32/sbert.onnx") and s8.report()["sbert"].endswith("int8/sbert.onnx")
    texts = ["Intent: Mainly social communication.", "Routine: evening-heavy user, busiest at 21h."]
    a, b = session.sbert(texts), s8.sbert(texts)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.98 and not np.array_equal(a, b)
    with pytest.raises(InputError):
        Session.open(tiny_bundle()[1], sbert_precision="int4")


def test_llm_profile_path_uses_the_bundle_llm_without_deadlock(monkeypatch, tmp_path: Path) -> None:
    """The LLM branch of profile()/embed(): the manifest's model file goes to LlamaProfiler, one
    instance serves every request (llama_cpp itself is replaced: CI does not build it)."""
    import umask.runtime.engines.llama as llm_mod

    made: list[tuple[str, object]] = []

    class FakeProfiler:
        def __init__(self, model_path, lora_path=None, n_threads=1) -> None:
            made.append((Path(model_path).name, lora_path))

        def generate(self, prompt: str, max_tokens: int = 192) -> str:
            assert prompt.startswith("History:")
            return "Intent: Mainly social communication.\nRoutine: evening user."

    monkeypatch.setattr(llm_mod, "LlamaProfiler", FakeProfiler)

    def with_llm(m: dict) -> None:
        m["llm"] = {"status": "present", "model": "llm/uscope-q8_0.gguf", "lora": None,
                    "files": ["llm/uscope-q8_0.gguf"]}

    b = edited_bundle(tmp_path / "b", manifest_edit=with_llm, add_files={"llm/uscope-q8_0.gguf": b"GGUF fake"})
    s = Session.open(b)
    monkeypatch.setattr(Session, "_llm_available", lambda self: True)
    events = real_user()
    out = s.profile(events, source="llm")
    assert out["source"] == "llm" and out["text"].startswith("Intent:")
    h = s.embed(events)                                   # the LLM text feeds SBERT -> h_u
    assert np.all(np.isfinite(h)) and made == [("uscope-q8_0.gguf", None)]
    # the GGUF is re-hashed right before llama.cpp opens it (verified_path): a swapped file is refused
    (b / "llm" / "uscope-q8_0.gguf").write_bytes(b"GGUF evil")
    s2 = Session.open(b, verify=False)
    with pytest.raises(BundleError, match="changed since the manifest"):
        s2.profile(events, source="llm")


def test_per_task_sampler_defaults() -> None:
    """diffusion.defaults.by_task overrides the bundle defaults for that task only; explicit arguments win."""
    from umask.runtime.core.limits import REQUEST_LIMITS
    from umask.runtime.families.umask.checks import request_args

    d = {"sampler": "ddim", "steps": 1, "n_samples": 2, "by_task": {"short_term": {"n_samples": 1}}}
    assert request_args(REQUEST_LIMITS, d, 1000, None, None, None, 0, "short_term")[:3] == (1, 1, "ddim")
    assert request_args(REQUEST_LIMITS, d, 1000, None, None, None, 0, "long_term")[:2] == (1, 2)
    assert request_args(REQUEST_LIMITS, d, 1000, None, 3, None, 0, "short_term")[:2] == (1, 3)
    assert request_args(REQUEST_LIMITS, d, 1000, None, None, None, 0)[:2] == (1, 2)


def test_all_evidence_tasks_reveal_every_available_coordinate(session: Session, tmp_path: Path) -> None:
    """manifest model.all_evidence_tasks: those tasks' evidence is the whole avail; others keep the learned mask."""
    ev = real_user(6)
    learned = session.mask(ev, "imputation")
    assert learned["k"] < learned["n_avail"]                     # the tiny model's learned mask drops some

    def edit(m):
        m["model"]["all_evidence_tasks"] = ["imputation"]

    s2 = Session.open(edited_bundle(tmp_path / "b", manifest_edit=edit))
    got = s2.mask(ev, "imputation")
    avail = got["window"].avail[0] > 0.5
    assert got["k"] == got["n_avail"] == int(avail.sum()) and np.array_equal(got["mask"], avail)
    short = s2.mask(ev, "short_term")                            # another task: unchanged
    assert np.array_equal(short["mask"], session.mask(ev, "short_term")["mask"])

    def bad(m):
        m["model"]["all_evidence_tasks"] = ["teleport"]

    with pytest.raises(BundleError, match="all_evidence_tasks"):
        Session.open(edited_bundle(tmp_path / "c", manifest_edit=bad))
