"""Peer runtimes in the latency harness (issue 15): the bundle's DiT ONNX in onnxruntime and OpenVINO, same run.

OpenVINO runs only where the isolated peers environment exists (bash scripts/peers_env.sh); without it
the row is skipped with the reason, and onnxruntime's rows still carry repetitions and the CPU's int8 flags.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from export_fixtures import tiny_bundle
from umask.bench.latency import et_program, peers
from umask.bench.latency.rows import REPETITION_KEYS, validate_row
from umask.runtime.engines.ort import cpu_int8_caps


def test_peers_without_environment_says_so(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(peers, "peers_python", lambda: None)
    monkeypatch.setattr(et_program, "et_python", lambda: None)      # ExecuTorch: tests/test_edge_peers_executorch.py
    res = peers.run(tiny_bundle()[1], ["fp32", "int8-qdq"], rounds=4, block=2, repetitions=2)
    assert {(r["engine"], r["precision"]) for r in res["rows"]} == {("onnxruntime", "fp32"), ("onnxruntime", "int8-qdq")}
    assert any("no peers environment" in s for s in res["skipped"])
    for r in res["rows"]:
        validate_row(r)
        assert set(r["repetitions"]) == set(REPETITION_KEYS) and r["cpu_int8"] == cpu_int8_caps()
        assert r["batch"] == 2 and r["latency_ms"]["p50"] > 0
    assert "| onnxruntime" in peers.markdown(res)


@pytest.mark.skipif(peers.peers_python() is None, reason="no peers environment (bash scripts/peers_env.sh)")
def test_openvino_runs_the_same_onnx_with_parity(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(et_program, "et_python", lambda: None)      # OpenVINO only here
    res = peers.run(tiny_bundle()[1], ["fp32"], rounds=4, block=2, repetitions=2)
    ov = [r for r in res["rows"] if r["engine"] == "openvino"]
    assert ov and ov[0]["parity"]["rel_max"] < 1e-3 and res["meta"]["ratios"][ov[0]["name"]]["vs_project_fp32_p50"] > 0
    for r in res["rows"]:
        validate_row(r)                                   # the latency harness's row schema


def test_latency_harness_runs_peers_in_the_same_run(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import json

    from umask.bench.latency import cli

    ckpt, b = tiny_bundle()
    out = tmp_path / "lat.json"
    assert cli.main(["--bundle", str(b), "--ckpt", str(ckpt), "--quick", "--no-metric", "--components", "denoiser_step",
                     "--engines", "onnxruntime", "--precisions", "fp32", "--peers", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    peer_rows = [r for r in res["rows"] if r["name"].endswith("/peers-run")]
    assert peer_rows and res["meta"]["peers"]["ratios"]
    for r in res["rows"]:
        validate_row(r)
    if peers.peers_python() is None:
        assert any("no peers environment" in s for s in res["skipped"])
    else:
        assert any(r["engine"] == "openvino" for r in peer_rows)
