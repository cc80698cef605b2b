"""The latency harness in its short mode on this device, and Jetson energy per inference.

Writes ``latency_<tag>.json/.csv/.md`` (and ``energy_<tag>.json`` on a Jetson) under the device
output folder (conftest.py). Its CPU rows must be the harness's: same schema, and -- when the
committed benchmarks/results/latency_cpu.json was measured on the same bundle (same ONNX files, or
the same export when the committed file predates the fingerprint) -- the same CPU
configurations with the same parity figures (parity is deterministic; latency is not compared).
"""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import numpy as np
import pytest

import power

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "results" / "latency_cpu.json"
SAMPLE = ROOT / "data" / "tsinghua_app_usage" / "app_usage_trace_sample_llmapp.csv.gz"


def _tag() -> str:
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        pass
    return re.sub(r"[^a-z0-9]+", "_", (gpu or f"cpu_{platform.machine()}").lower()).strip("_")


def _key(r: dict) -> tuple:
    return (r["component"], r["engine"], r["precision"], r["provider"], r["threads"], r["spinning"], r["batch"])


@pytest.fixture(scope="module")
def quick_rows(bundle_dir: Path, device_out: Path) -> dict:
    pytest.importorskip("torch", reason="the harness's torch fp32 reference needs torch on this device")
    from umask.bench.latency import cli

    out = device_out / f"latency_{_tag()}.json"
    assert cli.main(["--bundle", str(bundle_dir), "--quick", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_quick_harness_rows(quick_rows: dict) -> None:
    import onnxruntime as ort

    from umask.bench.latency.rows import validate_row

    rows = quick_rows["rows"]
    for r in rows:
        validate_row(r)
    eps = [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]
    have = {(r["component"], r["provider"]) for r in rows if r["engine"] == "onnxruntime"}
    for ep in eps:
        assert ("denoiser_step", ep) in have, f"no denoiser row on {ep}"
    try:
        import torch

        if torch.cuda.is_available():
            assert any(r["engine"] == "torch" and r["device"] == "cuda" for r in rows)
    except ImportError:
        pass
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001
        assert any(s.startswith("TensorRT:") for s in quick_rows["skipped"])


def test_cpu_rows_match_the_committed_harness_rows(quick_rows: dict) -> None:
    if not COMMITTED.is_file():
        pytest.skip(f"no committed {COMMITTED.name} to compare with")
    full = json.loads(COMMITTED.read_text())
    fa, fb = full["meta"].get("bundle_onnx_sha256"), quick_rows["meta"].get("bundle_onnx_sha256")
    same = (fa == fb) if fa and fb else full["meta"].get("bundle_created") == quick_rows["meta"].get("bundle_created")
    if not same:
        pytest.skip(f"{COMMITTED.name} was measured on another bundle export "
                    f"({full['meta'].get('bundle_created')} vs {quick_rows['meta'].get('bundle_created')})")
    cpu = lambda rows: {_key(r): r for r in rows if r["device"] == "cpu" and r["engine"] != "llama.cpp"}  # noqa: E731
    a, b = cpu(quick_rows["rows"]), cpu(full["rows"])
    assert set(a) == set(b), {"only here": sorted(set(a) - set(b)), "only committed": sorted(set(b) - set(a))}
    assert list(a[next(iter(a))]) == list(b[next(iter(b))])          # same schema, same order
    for k in a:
        pa, pb = a[k]["parity"] or {}, b[k]["parity"] or {}
        if pa.get("max_abs_diff") is not None and pb.get("max_abs_diff") is not None:
            assert pa["max_abs_diff"] == pytest.approx(pb["max_abs_diff"], rel=1e-5, abs=1e-7), k


def test_energy_per_inference_on_jetson(bundle_dir: Path, device_out: Path) -> None:
    src = power.available()
    if src is None:
        pytest.skip("no tegrastats or jtop: not a Jetson (power not measured)")
    import onnxruntime as ort

    from umask.runtime.core.events import read_llmapp_sample
    from umask.runtime.families.umask.session import Session

    eps = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in ort.get_available_providers()]
    s = Session.open(bundle_dir, providers=eps or ["CPUExecutionProvider"], precision="fp32")
    ev = read_llmapp_sample(SAMPLE)
    u = np.unique(ev.user)[0]
    e = ev.for_user(int(u))
    now = int(e.ts.min()) // 86400 * 86400 + 18 * 3600
    hist = e.take(e.ts < now)
    s.predict_short(hist, now_ts=now)                          # warm-up (engine build, allocations)
    n = 20
    with power.PowerMonitor(interval_ms=100) as pm:
        for _ in range(n):
            s.predict_short(hist, now_ts=now)
    rep = pm.report
    assert rep is not None and rep.n_samples >= 2, f"{src} gave {rep.n_samples if rep else 0} power samples"
    assert rep.energy_j is not None and rep.energy_j > 0
    out = {"device": _tag(), "session": s.report(), "power": rep.to_dict(n_requests=n),
           "request": "predict_short, REAL sample user, 18:00, bundle defaults"}
    (device_out / f"energy_{_tag()}.json").write_text(json.dumps(out, indent=2, default=str) + "\n")


def test_tegrastats_parsing_and_energy_integral() -> None:
    orin = ("RAM 2380/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,0%@729] EMC_FREQ 0% "
            "GR3D_FREQ 12% cpu@45.5C VDD_IN 4321mW/4300mW VDD_CPU_GPU_CV 560mW/560mW VDD_SOC 1361mW/1361mW")
    p = power.parse_tegrastats(orin)
    assert p["total_rail"] == "VDD_IN" and p["total_mw"] == 4321 and p["freq_pct"]["GR3D_FREQ"] == 12
    assert "RAM" not in p["rails_mw"] and p["rails_mw"]["VDD_SOC"] == 1361
    nano = "RAM 1500/3956MB (lfb 4x2MB) CPU [5%@1479] EMC_FREQ 3%@1600 GR3D_FREQ 0%@76 POM_5V_IN 2914/2900 POM_5V_GPU 0/0"
    q = power.parse_tegrastats(nano)
    assert q["total_rail"] == "POM_5V_IN" and q["total_mw"] == 2914
    other = power.parse_tegrastats("GPU 100/100 CPU 200/200")
    assert other["total_rail"] == "sum of rails" and other["total_mw"] == 300
    assert power.parse_tegrastats("no rails here")["total_mw"] is None
    # 2 W for 3 s + a ramp 2 W -> 4 W over 1 s = 6 J + 3 J
    assert power.energy_joules([0, 1, 2, 3, 4], [2000, 2000, 2000, 2000, 4000]) == pytest.approx(9.0)
    rep = power.PowerReport("tegrastats", "VDD_IN", 5, 4.0, 2400.0, 9.0)
    assert rep.per_inference(3) == pytest.approx(3.0) and rep.per_inference(0) is None
    with pytest.raises(ValueError):
        power.energy_joules([0, 2, 1], [1, 1, 1])
