"""ExecuTorch (XNNPACK) as a peer runtime of the latency harness (issue 15).

The ExecuTorch program is the bundle checkpoint's DiT step, torch.export-ed in the XNNPACK-friendly form
(benchmarks/latency/et_program.py); the form must be the same function as the exported ONNX network.
The run through ExecuTorch needs the isolated environment (bash scripts/peers_env_executorch.sh) and is
skipped without it; without it the harness says so in one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export_fixtures import tiny_bundle
from umask.bench.latency import et_program, peers
from umask.bench.latency.rows import validate_row
from umask.train.models.umask.dit import patchify, unpatchify


def test_xnnpack_form_is_the_same_function() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 66, 16, 4, 4)
    assert torch.equal(et_program.patchify6(x, (4, 2, 2)), patchify(x, (4, 2, 2)))
    tok = torch.randn(2, 16, 22 * 16)
    assert torch.equal(et_program.unpatchify6(tok, 22, (4, 2, 2), (4, 2, 2)), unpatchify(tok, 22, (4, 2, 2), (4, 2, 2)))
    ckpt, b = tiny_bundle()
    step, names = et_program.dit_step(ckpt)
    from umask.runtime.core.bundle import verify_bundle

    feed = peers.dit_feed(b, verify_bundle(b), "fp32")
    assert set(names) == set(feed)
    args = tuple(torch.from_numpy(feed[n]) for n in names)
    with torch.no_grad():
        ref = step(*args)
        with et_program.xnnpack_form(step):
            assert all(blk.attn.attn_impl == "math" for blk in step.dit.blocks)
            got = step(*args)
        again = step(*args)
    assert float((got - ref).abs().max()) < 1e-5 * max(1.0, float(ref.abs().max()))
    assert torch.equal(again, ref) and "embed_patches" not in step.dit.__dict__     # restored on exit


def test_executorch_skipped_without_environment(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(peers, "peers_python", lambda: None)
    monkeypatch.setattr(et_program, "et_python", lambda: None)
    res = peers.run(tiny_bundle()[1], ["fp32"], rounds=2, block=1, repetitions=1)
    assert {r["engine"] for r in res["rows"]} == {"onnxruntime"}
    assert sum("no ExecuTorch environment" in s for s in res["skipped"]) == 1


@pytest.mark.skipif(et_program.et_python() is None,
                    reason="no ExecuTorch environment (bash scripts/peers_env_executorch.sh)")
def test_executorch_runs_the_dit_step_with_parity(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(peers, "peers_python", lambda: None)          # ExecuTorch only: keeps the test short
    monkeypatch.setenv("UMASK_ET_CACHE", str(tmp_path / "pte"))
    res = peers.run(tiny_bundle()[1], ["fp32"], rounds=4, block=2, repetitions=2)
    et = [r for r in res["rows"] if r["engine"] == "executorch"]
    assert et, res["skipped"]
    r = et[0]
    validate_row(r)
    # the worker protocol: the ready line (version), `run 2` twice -> 4 latencies, the outputs on the feed
    # written for parity (same shape as onnxruntime's, else the parity line would have raised)
    assert res["meta"]["versions"]["executorch"].startswith("1.")
    assert r["samples"] == 4 and r["latency_ms"]["min"] > 0 and r["provider_used"] == ["XnnpackBackend"]
    assert r["parity"]["rel_max"] < 1e-4
    assert r["artifact"][0].endswith(".pte") and Path(r["artifact"][0]).stat().st_size == r["artifact_bytes"]
    low = res["meta"]["executorch_lowering"]["fp32"]
    assert low["delegate_calls"] >= 1 and "convolution" not in low["non_delegated_ops"]
    assert res["meta"]["ratios"][r["name"]]["vs_project_fp32_p50"] > 0
