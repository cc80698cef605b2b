"""int8 that pays (issue 15): pre-processing, S8S8 QDQ per channel, calibration methods, per-layer errors and
float islands, the CPU's int8 flags, and the runtime's measured per-machine precision choice.

Real inputs: the tiny exported U-MASK DiT (tests/export_fixtures.py) on real-sample windows of
data/tsinghua_app_usage built by the exporter's own window code.
"""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import onnx
import pytest

from export_fixtures import tiny_bundle
from umask.runtime.engines import precision_choice as pc
from umask.runtime.engines.ort import cpu_int8_caps, inference_session
from umask.runtime.session import Session

X86_VNNI = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512bw\n"
X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_AVXVNNI = "flags\t\t: sse2 avx2 avx_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp i8mm\n"


def test_cpu_int8_caps_from_cpuinfo_flags() -> None:
    v = cpu_int8_caps(X86_VNNI)
    assert v["vnni"] and v["avx512_vnni"] and v["int8_dot"] and not v["reduce_range"]
    a = cpu_int8_caps(X86_AVX2)
    assert not a["vnni"] and not a["int8_dot"] and a["reduce_range"]      # u8s8 saturation cure on non-VNNI x86
    assert cpu_int8_caps(X86_AVXVNNI)["avx_vnni"] and not cpu_int8_caps(X86_AVXVNNI)["reduce_range"]
    r = cpu_int8_caps(ARM)
    assert r["arm_dotprod"] and r["arm_i8mm"] and r["int8_dot"] and not r["reduce_range"] and not r["vnni"]
    here = cpu_int8_caps()
    assert set(here) == set(v) and all(isinstance(x, (bool, list)) for x in here.values())


@pytest.fixture(scope="module")
def dit_case(tmp_path_factory):
    """(fp32 DiT ONNX path, calibration feeds, evaluation feeds) on real-sample windows."""
    import torch

    from umask.export.families.umask import exporter as ex
    from umask.train.models.umask.trainer import load_model

    torch.set_num_threads(1)
    ckpt, b = tiny_bundle()
    model = load_model(ckpt, ema=True)[0].eval()
    w = ex.real_windows(model, ex.DEFAULT_DATA, max_windows=8)
    feeds = ex.dit_feeds(model, ex.torch_inputs(model, w, None))
    return b / "onnx/fp32/dit.onnx", feeds[::2], feeds[1::2], tmp_path_factory.mktemp("int8")


def _rel(path: Path, ref: Path, feeds) -> float:  # noqa: ANN001
    a, r = inference_session(path), inference_session(ref)
    worst = 0.0
    for f in feeds:
        x, y = a.run(None, f)[0], r.run(None, f)[0]
        worst = max(worst, float(np.abs(x - y).max() / max(1.0, np.abs(y).max())))
    return worst


def test_qdq_preprocessed_s8s8_per_channel_each_calibration(dit_case) -> None:  # noqa: ANN001
    from umask.export import precision as prec

    src, calib, evals, tmp = dit_case
    made = {}
    for method in prec.CALIBRATION_METHODS:
        dst = tmp / f"dit.{method}.onnx"
        made[method] = dst
        meta = prec.to_int8_qdq(src, dst, calib, method=method)
        assert meta["calibration"] == method and method.lower() in meta["method"].lower()
        pre = meta["pre_process"]
        assert pre["nodes_after"] < pre["nodes_before"]                    # the optimizer did fold / fuse
        assert not dst.with_name(dst.stem + ".pre.onnx").exists()           # its temp file is gone
        g = onnx.load(str(dst)).graph
        inits = {i.name: i for i in g.initializer}
        zps = [inits[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
               and n.input[2] in inits]
        assert zps and all(z.data_type == onnx.TensorProto.INT8 for z in zps)      # signed activations and weights
        per_channel = [inits[n.input[1]] for n in g.node if n.op_type == "DequantizeLinear"
                       and n.input[1] in inits and len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1]
        assert per_channel                                                  # weight scales per output channel
        rel = _rel(dst, src, evals)                                         # held-out windows
        assert np.isfinite(rel) and (rel < 0.25 or method != "minmax")      # MinMax within the export's gate; the
        # others are compared, not gated (Entropy clips outliers this tiny random model relies on: rel ~0.8)
    # three different calibrations: quantize_static's own Entropy (128 bins -> 128) would equal MinMax byte for byte
    assert len({p.read_bytes() for p in made.values()}) == 3


def test_layer_errors_and_worst_layers_kept_float(dit_case) -> None:  # noqa: ANN001
    from umask.export import precision as prec

    src, calib, evals, tmp = dit_case
    q = tmp / "dit.mm.onnx"
    base = prec.to_int8_qdq(src, q, calib)
    rows = prec.layer_errors(src, q, evals[:2])
    sq = [r["qdq_sqnr_db"] for r in rows if r["qdq_sqnr_db"] is not None]
    assert len(sq) >= 4 and sq == sorted(sq)                                  # worst (lowest SQNR) first
    assert all(r["xmodel_sqnr_db"] is None or np.isfinite(r["xmodel_sqnr_db"]) for r in rows)
    worst = prec.worst_nodes(rows, 2)
    assert len(worst) == 2
    kept = prec.to_int8_qdq(src, tmp / "dit.keep.onnx", calib, keep_float=worst)
    assert sorted(kept["kept_float"]) == sorted(worst) and kept["quantized_nodes"] == base["quantized_nodes"] - 2
    g = onnx.load(str(tmp / "dit.keep.onnx")).graph
    producers = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.name in worst:           # no DequantizeLinear feeds a float-kept node's inputs
            assert not any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear"
                           for i in n.input), n.name
    assert _rel(tmp / "dit.keep.onnx", src, evals) < 0.25


def test_precision_rule_and_record(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    assert pc.decide({"fp32": 10.0, "int8-qdq": 11.0, "int8-dynamic": 9.5})[0] == "fp32"     # 0.95 x: not enough
    assert pc.decide({"fp32": 10.0, "int8-qdq": 6.0, "int8-dynamic": 8.0})[0] == "int8-qdq"
    assert pc.decide({"fp32": 10.0})[0] == "fp32"
    monkeypatch.setenv(pc.ENV_CACHE_DIR, str(tmp_path))
    b = tiny_bundle()[1]
    from umask.runtime.core.bundle import verify_bundle

    m = verify_bundle(b)
    calls = []

    def fake(root, manifest, precisions, **kw):  # noqa: ANN001
        calls.append((tuple(precisions), kw["threads"]))
        return {p: (12.4 if p.startswith("int8") else 11.4) for p in precisions}   # issue 15's figures

    monkeypatch.setattr(pc, "measure", fake)
    c = pc.choose_precision(b, m, threads=1)
    assert c["precision"] == "fp32" and c["measured"] and "not faster" in c["reason"]
    assert c["facts"]["cpu_int8"] == cpu_int8_caps()
    rec = json.loads((tmp_path / pc.RECORD_FILE).read_text())
    assert rec[c["key"]]["precision"] == "fp32"
    again = pc.choose_precision(b, m, threads=1)                              # recorded: not measured again
    assert again["precision"] == "fp32" and not again["measured"] and len(calls) == 1
    pc.choose_precision(b, m, threads=2)                                      # another configuration: measured
    assert len(calls) == 2 and calls[-1][1] == 2 and set(calls[0][0]) == {"fp32", "int8-qdq", "int8-dynamic"}


def test_auto_precision_writes_nothing_without_a_cache_dir(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    """Privacy (issue 11): no $UMASK_CACHE_DIR -> no file anywhere (HOME included); the choice lives in the process."""
    monkeypatch.delenv(pc.ENV_CACHE_DIR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert pc.record_path() is None
    b = tiny_bundle()[1]
    from umask.runtime.core.bundle import verify_bundle

    m = verify_bundle(b)
    calls = []
    monkeypatch.setattr(pc, "measure", lambda root, manifest, precisions, **kw: calls.append(1) or
                        {p: (12.4 if p.startswith("int8") else 11.4) for p in precisions})
    monkeypatch.setattr(pc, "_MEMO", {})
    c = pc.choose_precision(b, m, threads=3)
    assert c["measured"] and c["record"] is None and c["precision"] == "fp32"
    again = pc.choose_precision(b, m, threads=3)
    assert not again["measured"] and again["precision"] == "fp32" and len(calls) == 1
    assert not any(tmp_path.rglob("*"))


def test_session_auto_precision_measured_on_golden_inputs(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.setenv(pc.ENV_CACHE_DIR, str(tmp_path))
    b = tiny_bundle()[1]
    with Session.open(b, precision="auto") as s:
        ch = s.precision_choice
        assert s.precision == ch["precision"] in pc.CANDIDATES and ch["measured"]
        assert set(ch["measured_ms"]) == {"fp32", "int8-qdq", "int8-dynamic"}
        assert all(v > 0 for v in ch["measured_ms"].values())
        fast = ch["measured_ms"]
        want = pc.decide(fast)[0]
        assert ch["precision"] == want
    with Session.open(b, precision="auto") as s2:
        assert not s2.precision_choice["measured"] and s2.precision == ch["precision"]


def test_accuracy_gate_from_the_device_scorer_and_auto_honours_it(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    """The committed device-scorer result of the shipped model becomes the manifest's accuracy_gate (int8 QDQ
    failed the 1 % headline gate there, int8 dynamic passed within one event); precision=auto then never
    measures or picks a failed precision, even when it would be the fastest."""
    from umask.export.precision import accuracy_gate_section
    from umask.runtime.core.bundle import verify_bundle
    from umask.runtime.core.errors import InputError

    res = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "v2_user_umask_device.json"
    doc = json.loads(res.read_text())
    gate = accuracy_gate_section(res, doc["meta"]["checkpoint"])
    per = gate["per_precision"]
    resol = doc["meta"]["gate"]["resolution"]["per_artifact"]
    for art, prec in (("onnx-int8-qdq", "int8-qdq"), ("onnx-int8-dynamic", "int8-dynamic"), ("onnx-fp16", "fp16")):
        assert per[prec]["pass"] == resol[art]["within_1pct_or_one_event"]
    with pytest.raises(InputError, match="not the exported"):
        accuracy_gate_section(res, tmp_path / "other_ckpt")
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    with pytest.raises(InputError, match="not a device-scorer result"):
        accuracy_gate_section(bad)

    b = tiny_bundle()[1]
    m = dict(verify_bundle(b))
    m["accuracy_gate"] = {"per_precision": {"int8-qdq": {"pass": False, "max_abs_gap": 0.014, "worst": "B1 app"},
                                            "int8-dynamic": {"pass": True, "max_abs_gap": 0.002}}}
    monkeypatch.delenv(pc.ENV_CACHE_DIR, raising=False)
    monkeypatch.setattr(pc, "_MEMO", {})
    seen = []
    fast = {"fp32": 10.0, "int8-qdq": 5.0, "int8-dynamic": 8.5}          # int8 QDQ would be the fastest
    monkeypatch.setattr(pc, "measure", lambda root, manifest, precisions, **kw: seen.append(tuple(precisions)) or
                        {p: fast[p] for p in precisions})
    c = pc.choose_precision(b, m, threads=1)
    assert seen == [("fp32", "int8-dynamic")] and c["precision"] == "int8-dynamic"
    assert "int8-qdq failed the accuracy gate" in c["reason"]
