"""The grid U-MASK bundle: export (gate, parity), the torch-free session, its CLI, on the real Milan matrix.

A tiny grid-prior model (DiT d=32, depth 1) trained for a few steps on one torch thread, exported with 2 noise
draws per window; the session's pipeline is checked against the benchmark's independent torch path
(benchmarks/accuracy/grid_umask.py ``complete(point="first_x0")``) with the same noise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from umask.runtime.core.bundle import BundleError
from umask.runtime.core.errors import InputError, SignatureError
from umask.runtime.families.umask.grid_prior import ALPHAS
from umask.runtime.session import Session
from umask.train.data import splits

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"d_model": 32, "depth": 1, "n_heads": 2, "d_hidden": 8}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from umask.train.models.umask.grid import MilanTrainConfig, load_milan, split_rows, train

    z, e_pos, _ = load_milan()
    out = tmp_path_factory.mktemp("grid_bundle") / "run"
    cfg = MilanTrainConfig(**TINY, out=str(out), batch_size=8, lr=3e-3, warmup=2, log_every=5, eval_every=20,
                           eval_batches=1, ckpt_every=20, seed=0, steps=20, mask_mode="none", prior="grid",
                           a2_prior="lowrank", progress=False)
    train(cfg, z=z, e_pos=e_pos, train_rows=split_rows("train", stride=50), val_rows=split_rows("val", stride=64))
    return out


@pytest.fixture(scope="module")
def bundle(run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from umask.export.families import exporter

    out = tmp_path_factory.mktemp("grid_bundle_out") / "bundle"
    manifest = exporter("umask_grid")(run, out, precisions=("fp32", "int8-qdq"), samples=2)
    return out, manifest


def _milan_raw() -> tuple[np.ndarray, object, object]:
    from umask.train.data.grids import milan_grid

    grid = milan_grid()
    fw = splits.forecast_windows(grid.values, "test", splits=grid.splits())
    iw = splits.imputation_windows(grid.values, "test", splits=grid.splits())
    return grid.values, fw, iw


def test_manifest_gate_and_parity(bundle) -> None:
    root, m = bundle
    assert m["family"] == "umask_grid"
    assert m["model"]["geometry"] == {"height": 5, "width": 5, "slots_per_day": 144, "history": 288, "horizon": 144,
                                      "window": 288, "frame": 576}
    assert m["model"]["prior"]["a2"] == "lowrank" and m["model"]["point"]["n_samples"] == 2
    # the gate: one alpha per cell from the grid, A1 over the prior, A2 over the lowrank row (the default)
    assert m["gate"]["forecast"]["other"] == "prior" and m["gate"]["impute"]["other"] == "lowrank"
    for g in m["gate"].values():
        assert len(g["alphas"]) == 25 and set(g["alphas"]) <= set(ALPHAS)
    par = m["artifacts"]["fp32"]["dit"]["parity"]
    assert all(par[t]["max_abs_diff_vs_torch"] <= 1e-3 and par[t]["windows"] > 100 for t in ("forecast", "impute"))
    q = m["artifacts"]["int8-qdq"]["dit"]
    assert q["status"] == "rejected" or all(q["parity"][t]["nmae_rel_diff"] <= 0.01 for t in ("forecast", "impute"))
    assert (root / "onnx/fp32/dit.onnx").is_file()


def test_pipeline_matches_the_benchmark_torch_path(bundle, monkeypatch) -> None:
    """The session's numpy frames / prior / calendar / sampler with the torch network give what the benchmark's
    torch adapters give (grid_umask.forecast_fn / impute_fn, first_x0) when both draw the same noise."""
    from umask.bench.accuracy import grid_umask as gu
    from umask.export.families.umask.grid_exporter import torch_dit

    root, _ = bundle
    sess = Session.open(root, allow_unsigned=True)
    model, config = gu.load_model(sess.manifest["checkpoint"]["path"])
    e_pos, rescale = gu.checkpoint_inputs(config)
    from umask.train.data.grids import milan_grid

    prior = gu.checkpoint_prior(model, config, milan_grid(), rescale)
    L = sess.spec.history
    a1 = {"on": True}

    def noise(shape, seed, start, k):  # the session's draw for the window's first slot
        first = int(start) - (L if a1["on"] else 0)
        return torch.from_numpy(np.random.default_rng(np.random.SeedSequence([int(seed), first, k]))
                                .standard_normal(shape, dtype=np.float32))

    monkeypatch.setattr(gu, "window_noise", noise)
    z = rescale.model.transform(milan_grid().values)
    fw = splits.forecast_windows(z, "test")
    iw = splits.imputation_windows(z, "test")
    idx = np.array([0, 77, 200])
    want = gu.forecast_fn(model, e_pos, prior=prior, point="first_x0", n_samples=2, seed=0)(fw.x[idx], fw.starts[idx],
                                                                                            144)
    got = sess.pipeline.predict(torch_dit(model), "forecast", fw.x[idx], None, fw.starts[idx] - L, n_samples=2)
    np.testing.assert_allclose(got["model"], want, atol=2e-5)
    a1["on"] = False
    obs = np.where(iw.mask[:3], np.nan, iw.truth[:3])
    want = gu.impute_fn(model, e_pos, prior=prior, point="first_x0", n_samples=2, seed=0)(obs.copy(), iw.mask[:3].copy(),
                                                                                          iw.starts[:3])
    got = sess.pipeline.predict(torch_dit(model), "impute", np.where(iw.mask[:3], 0.0, iw.truth[:3]), iw.mask[:3],
                                iw.starts[:3], n_samples=2)
    np.testing.assert_allclose(got["model"], want, atol=2e-5)
    # the bundle's stored scaler and profiles are the checkpoint's
    np.testing.assert_allclose(sess.stats.mean, rescale.model.mean, atol=1e-9)
    np.testing.assert_allclose(sess.pipeline.prior.weekday, prior.weekday, atol=1e-9)


def test_session_requests_in_raw_units(bundle) -> None:
    root, m = bundle
    values, fw, iw = _milan_raw()
    with Session.open(root, precision="int8-qdq" if m["artifacts"]["int8-qdq"]["dit"]["status"] == "ok" else "fp32",
                      allow_unsigned=True) as s:
        assert s.family == "umask_grid" and s.describe()["gate"] == {"forecast": "prior", "impute": "lowrank"}
        first = int(fw.starts[5]) - 288
        day = s.forecast(fw.x[5], first_slot=first)
        assert day.shape == (144, 25) and np.all(np.isfinite(day))
        # batched = one by one; the same seed gives the same answer
        both = s.forecast(fw.x[[5, 9]], first_slot=fw.starts[[5, 9]] - 288)
        np.testing.assert_allclose(both[0], day, rtol=1e-6)
        np.testing.assert_array_equal(s.forecast(fw.x[5], first_slot=first), day)
        assert not np.allclose(s.forecast(fw.x[5], first_slot=first, seed=1), day)
        # gated = prior + alpha (model - prior) per cell
        ungated = s.forecast(fw.x[5], first_slot=first, gated=False)
        a = np.asarray(m["gate"]["forecast"]["alphas"])
        zero, one = a == 0.0, a == 1.0
        assert zero.any() or one.any()
        np.testing.assert_allclose(day[:, one], ungated[:, one], rtol=1e-9)
        # impute: observed entries come back exactly, missing ones are filled, NaN there is never read
        mask = iw.mask[3]
        vals = np.where(mask, np.nan, iw.truth[3])
        full = s.impute(vals, mask, first_slot=int(iw.starts[3]))
        assert np.array_equal(full[~mask], iw.truth[3][~mask]) and np.all(np.isfinite(full))
        other = s.impute(np.where(mask, 1e9, iw.truth[3]), mask, first_slot=int(iw.starts[3]))
        np.testing.assert_array_equal(other, full)
        # bad requests name what is wrong
        with pytest.raises(InputError, match=r"expected shape \(288, 25\)"):
            s.forecast(fw.x[5][:, :16], first_slot=first)
        with pytest.raises(InputError, match="first_slot"):
            s.forecast(fw.x[5], first_slot=-1)
        for bad in (first + 0.5, "noon", [first, first]):                  # fractional, text, two for one window
            with pytest.raises(InputError, match="first_slot"):
                s.forecast(fw.x[5], first_slot=bad)
        np.testing.assert_array_equal(s.forecast(fw.x[5], first_slot=float(first)), day)   # a whole float is a slot
        huge = fw.x[5].copy()
        huge[7, 2] = 1e300                                                  # would overflow the float32 network
        with pytest.raises(InputError, match=r"slot 7, cell 2 .*standard deviations"):
            s.forecast(huge, first_slot=first)
        full0 = s.impute(np.full((288, 25), np.nan), np.ones((288, 25), bool), first_slot=int(iw.starts[3]))
        assert np.all(np.isfinite(full0))                                  # nothing observed: the prior's profile
        with pytest.raises(InputError, match="mask"):
            s.impute(vals, mask[:, :3], first_slot=0)
        with pytest.raises(InputError, match="n_samples"):
            s.forecast(fw.x[5], first_slot=first, n_samples=0)
        with pytest.raises(InputError, match="finite"):
            s.forecast(np.full((288, 25), np.nan), first_slot=first)
    with pytest.raises(InputError, match="closed"):
        s.forecast(fw.x[5], first_slot=first)


def test_gated_impute_beats_its_parts_on_validation(bundle) -> None:
    """The gate was chosen on the validation windows: there it is never worse than either of its ends."""
    root, m = bundle
    from umask.export.families.umask.grid_exporter import protocol_windows
    from umask.train.data.grids import milan_grid

    with Session.open(root, allow_unsigned=True) as s:
        grid = milan_grid()
        val = protocol_windows(s.stats.transform(grid.values), grid.splits(), s.spec, "val")
        x, h, f, y = val["impute"]
        p = s.predict_standardized("impute", x, h, f)
        err = {k: float(np.abs(v - y)[h].mean()) for k, v in p.items()}
    assert err["gated"] <= min(err["model"], err["lowrank"]) + 1e-12
    assert err["gated"] == pytest.approx(m["parity"]["torch_val_nmae"]["impute"], rel=1e-3)


def test_bad_gate_in_manifest_is_refused(bundle) -> None:
    from umask.runtime.core.signing import verify_bundle
    from umask.runtime.families.umask.grid_session import Session as GridSession

    root, _ = bundle
    m = verify_bundle(root, allow_unsigned=True)
    m["gate"]["impute"]["alphas"] = [1.5] * 25
    with pytest.raises(BundleError, match="gate.impute"):
        GridSession(root, m, "fp32", None, 1)
    m["gate"]["impute"] = {"other": "arima", "alphas": [0.5] * 25}
    with pytest.raises(BundleError, match="gate.impute"):
        GridSession(root, m, "fp32", None, 1)


def test_umask_run_cli_and_no_torch(bundle, tmp_path: Path) -> None:
    """``umask run`` answers a CSV window, and the session imports neither torch nor pandas."""
    root, _ = bundle
    values, fw, iw = _milan_raw()
    csv = tmp_path / "window.csv"
    win = np.where(iw.mask[0], np.nan, iw.truth[0])
    csv.write_text("\n".join(",".join("" if np.isnan(v) else f"{v:.6f}" for v in row) for row in win) + "\n")
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "pandas", "scipy"):
            sys.modules[name] = None
        from umask.export.cli import run_main
        sys.exit(run_main(["--bundle", {str(root)!r}, "--values", {str(csv)!r}, "--task", "impute",
                           "--first-slot", "{int(iw.starts[0])}", "--allow-unsigned"]))
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    got = np.asarray(out["values"])
    assert out["task"] == "impute" and out["shape"] == [288, 25]
    np.testing.assert_allclose(got[~iw.mask[0]], iw.truth[0][~iw.mask[0]], atol=1e-4)
    assert np.all(np.isfinite(got))


def test_umask_export_cli_builds_a_signed_grid_bundle(run: Path, tmp_path: Path, capsys) -> None:
    """``umask export --family umask_grid`` (the options every family receives are ignored), signed, verified."""
    from umask.export.cli import export_main, verify_main
    from umask.export.signing import generate_keypair

    priv, pub = generate_keypair(tmp_path / "keys", "t")
    out = tmp_path / "cli_bundle"
    rc = export_main(["--family", "umask_grid", "--ckpt", str(run), "--out", str(out), "--precisions", "fp32",
                      "--no-tensorrt", "--no-sbert", "--sign-key", str(priv)])
    printed = json.loads(capsys.readouterr().out)
    assert rc == 0 and printed["signed"] is True
    assert printed["artifacts"]["fp32"]["dit"]["forecast"]["max_abs_diff_vs_torch"] <= 1e-3
    assert verify_main([str(out), "--trusted-keys", str(pub)]) == 0
    with Session.open(out, trusted_keys=[str(pub)]) as s:
        assert s.describe()["n_samples"] == 16
        n_ctx, n_cells = s.describe()["history"], s.describe()["cells"]
    # `umask run` on the signed bundle takes the key like the per-user run, and points a per-user request at --values
    from umask.cli import main
    csv = tmp_path / "history.csv"
    np.savetxt(csv, _milan_raw()[0][:n_ctx, :n_cells], delimiter=",")
    capsys.readouterr()
    assert main(["run", "--bundle", str(out), "--values", str(csv), "--trusted-keys", str(pub)]) == 0
    assert json.loads(capsys.readouterr().out)["shape"][1] == n_cells
    assert main(["run", "--bundle", str(out), "--values", str(csv)]) == SignatureError.exit_code   # signed: a key is needed
    assert main(["run", "--bundle", str(out), "--history", str(csv), "--task", "short", "--trusted-keys", str(pub)]) \
        == InputError.exit_code
    assert "not a per-user --history" in capsys.readouterr().err


def test_a_torch_backend_runs_the_same_session(bundle) -> None:
    """``backend=``: the session over the checkpoint's torch network (what the benchmark's torch rows use) answers
    as the ONNX session does; anything that is not a NetworkBackend is refused."""
    from umask.bench.accuracy import grid_umask as gu
    from umask.bench.latency.backends import TorchBackend

    root, m = bundle
    values, fw, _ = _milan_raw()
    model, _ = gu.load_model(m["checkpoint"]["path"])
    with Session.open(root, allow_unsigned=True, backend=TorchBackend(model)) as t, \
            Session.open(root, allow_unsigned=True) as o:
        assert t.describe()["backend"]["backend"] == "torch" and t.self_test_files() == []
        a = t.forecast(fw.x[7], first_slot=int(fw.starts[7]) - 288)
        b = o.forecast(fw.x[7], first_slot=int(fw.starts[7]) - 288)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    with pytest.raises(InputError, match="NetworkBackend"):
        Session.open(root, allow_unsigned=True, backend=object())


def test_auto_precision_and_self_test_serve_the_grid_bundle(bundle, tmp_path: Path, monkeypatch) -> None:
    """The shared Session options work for the grid family: ``precision="auto"`` measures and picks one of the
    bundle's precisions; ``self_test=True`` runs the loaded dit file on its golden inputs."""
    monkeypatch.setenv("UMASK_CACHE_DIR", str(tmp_path / "cache"))       # the choice is recorded here, not in ~
    root, m = bundle
    with Session.open(root, precision="auto", allow_unsigned=True) as s:
        assert s.precision in m["artifacts"] and s.precision_choice["measured_ms"]["fp32"] > 0
    assert (tmp_path / "cache" / "precision_choice.json").is_file()
    with Session.open(root, precision="fp32", allow_unsigned=True, self_test=True) as s:
        rep = s.self_test_report
        assert list(rep) == ["onnx/fp32/dit.onnx"] and rep["onnx/fp32/dit.onnx"]["ok"]


# ------------------------------------------------------------------------------------------------
# Property: hostile requests either answer with finite raw values (observed entries exact) or raise a UmaskError
# ------------------------------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HOSTILE = st.sampled_from([None, True, 1.5, float("nan"), float("inf"), -1, 2**63, 2**64, "3", b"3", [2], {}, object()])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_grid_requests_answer_or_raise_a_umask_error(bundle, data) -> None:
    from umask.runtime.core.errors import UmaskError

    root, _ = bundle
    sess = _shared_session(str(root))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    task = data.draw(st.sampled_from(["forecast", "impute"]))
    slots = data.draw(st.sampled_from([288, 287, 1, 144, 300, 0]))
    cells = data.draw(st.sampled_from([25, 25, 25, 24, 1]))
    vals = rng.gamma(1.0, 50.0, (slots, cells))
    if data.draw(st.booleans()):
        vals[rng.random(vals.shape) < 0.05] = data.draw(st.sampled_from([np.nan, np.inf, -1e30, 1e300, 0.0]))
    values: object = vals if data.draw(st.integers(0, 5)) else data.draw(HOSTILE)
    first = data.draw(st.one_of(st.integers(0, 10**7), HOSTILE))
    n = data.draw(st.one_of(st.integers(1, 3), HOSTILE))
    seed = data.draw(st.one_of(st.integers(0, 2**63 - 1), HOSTILE))
    try:
        if task == "forecast":
            out = sess.forecast(values, first_slot=first, n_samples=n, seed=seed)
        else:
            mask = rng.random(np.shape(vals)) < data.draw(st.floats(0.0, 1.0))
            if isinstance(values, np.ndarray):
                values = np.where(mask, np.nan, values)
            out = sess.impute(values, mask if data.draw(st.integers(0, 5)) else data.draw(HOSTILE),
                              first_slot=first, n_samples=n, seed=seed)
    except UmaskError:
        return
    assert np.all(np.isfinite(out))
    if task == "impute":
        assert np.array_equal(out[~mask], np.asarray(values)[~mask])


_SESSIONS: dict[str, Session] = {}


def _shared_session(root: str) -> Session:
    if root not in _SESSIONS:
        _SESSIONS[root] = Session.open(root, allow_unsigned=True)
    return _SESSIONS[root]


def test_umask_eval_scores_a_grid_bundle(bundle, tmp_path: Path, capsys) -> None:
    """``umask eval A2 --bundle DIR``: every precision of a umask_grid bundle through its session on the Milan test
    windows; a per-user bundle is refused with a line that says what A1 / A2 take."""
    from umask.cli import main

    root, m = bundle
    out = tmp_path / "a2.json"
    assert main(["eval", "A2", "--bundle", str(root), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    arts = {r["artifact"] for r in rows if r["metric"] == "nmae"}
    assert arts == {f"onnx-{p}" for p, a in m["artifacts"].items() if a["dit"]["status"] == "ok"}
    assert all(r["protocol"] == "A2" and 0.1 < r["value"] < 1.0 for r in rows if r["metric"] == "nmae")
    from export_fixtures import tiny_bundle

    capsys.readouterr()
    assert main(["eval", "A1", "--bundle", str(tiny_bundle()[1])]) == 3
    assert "family 'umask'" in capsys.readouterr().err
