"""Deployment facts in the bundle (issue 15): golden I/O + the self-test on open, TensorRT version / compute capability.

The golden part runs on the tiny U-MASK bundle (real export of tests/export_fixtures.py) and on a
minimal one-MatMul family bundle written by the generic bundle writer; the TensorRT part runs with
TensorRT absent (the facts providers of `umask.runtime.engines.trt_facts` are replaced).
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from export_fixtures import edited_bundle, tiny_bundle
from umask.runtime.core import golden as gd
from umask.runtime.core.bundle import MANIFEST, BundleError, ManifestError, read_manifest, sha256_file, verify_bundle
from umask.runtime.engines import trt_facts
from umask.runtime.session import Session


@pytest.fixture(scope="module")
def bundle() -> Path:
    return tiny_bundle()[1]


def test_every_onnx_file_has_hashed_golden_io(bundle: Path) -> None:
    m = verify_bundle(bundle)
    onnx_files = sorted(r for r in m["files"] if r.endswith(".onnx"))
    assert onnx_files and sorted(m["golden"]) == onnx_files
    for rel, e in m["golden"].items():
        assert e["status"] == "ok" and e["file"] == gd.golden_file(rel), e
        assert m["files"][e["file"]]["sha256"] == sha256_file(bundle / e["file"])    # listed and hashed
        ins, outs = gd.unpack((bundle / e["file"]).read_bytes(), e["file"])
        sig = m["artifacts"]["fp32"].get(Path(rel).stem) if rel.startswith("onnx/fp32/") else None
        if sig and "inputs" in sig:
            assert list(ins) == [i["name"] for i in sig["inputs"]]
        assert all(np.isfinite(v).all() for v in outs.values() if v.dtype.kind == "f")
    # precision classes read from the graphs themselves
    assert m["golden"]["onnx/int8-qdq/dit.onnx"]["precision"] == "int8"
    assert m["golden"]["onnx/int8-dynamic/dit.onnx"]["precision"] == "int8"
    assert m["golden"]["onnx/fp16/dit.onnx"]["precision"] == "fp16"
    assert m["golden"]["onnx/fp32/dit.onnx"]["precision"] == "fp32"
    # derived inputs are deterministic per path (a re-export writes the same inputs)
    spec = m["artifacts"]["fp32"]["dit"]["inputs"]
    a, b = gd.derive_inputs(spec, "onnx/fp32/dit.onnx"), gd.derive_inputs(spec, "onnx/fp32/dit.onnx")
    assert all(np.array_equal(a[k], b[k]) for k in a) and a["x_t"].shape[0] == 1


@pytest.mark.parametrize("precision", ["fp32", "int8-qdq"])
def test_self_test_on_open_passes_and_reports(bundle: Path, precision: str) -> None:
    with Session.open(bundle, precision=precision, self_test=True) as s:
        rep = s.self_test_report
    assert {f"onnx/{precision}/dit.onnx", "onnx/fp32/maskgen.onnx"} <= set(rep)
    for fig in rep.values():
        assert fig["ok"] and fig["outputs"] and "CPUExecutionProvider" in fig["providers"]
        assert all(v.get("rel_max", 0.0) <= fig["tolerance_rel_max"] for v in fig["outputs"].values())


def test_self_test_names_artifact_and_difference(bundle: Path, tmp_path: Path) -> None:
    m = read_manifest(bundle)
    rel = "onnx/fp32/dit.onnx"
    ins, outs = gd.unpack((bundle / m["golden"][rel]["file"]).read_bytes(), rel)
    bad = {k: v + np.float32(0.5) for k, v in outs.items()}       # a wrong engine would be off like this
    b = edited_bundle(tmp_path / "b", add_files={m["golden"][rel]["file"]: gd.pack(ins, bad)})
    Session.open(b, precision="fp32").close()                      # without the self-test it opens
    with pytest.raises(gd.SelfTestError, match=r"onnx/fp32/dit.onnx: self-test: output 'x0' differs .* by max \|d\| = 0\.5"):
        Session.open(b, precision="fp32", self_test=True)
    with pytest.raises(BundleError):                               # SelfTestError is a BundleError (exit 6)
        Session.open(b, precision="fp32", self_test=True)
    # other precisions do not load that file: their self-test passes
    Session.open(b, precision="int8-qdq", self_test=True).close()
    # an edited golden file without re-signing: refused by its sha256 like any file
    c = tmp_path / "c"
    shutil.copytree(bundle, c)
    (c / m["golden"][rel]["file"]).write_bytes(gd.pack(ins, bad))
    with pytest.raises(BundleError, match="modified"):
        Session.open(c, precision="fp32", self_test=True)


def test_golden_schema_is_strict(bundle: Path, tmp_path: Path) -> None:
    rel = "onnx/fp32/dit.onnx"

    def unknown_key(m):  # noqa: ANN001
        m["golden"][rel]["tolerance"] = 1.0

    def unlisted(m):  # noqa: ANN001
        m["golden"]["onnx/fp32/nothere.onnx"] = dict(m["golden"][rel])

    def bad_precision(m):  # noqa: ANN001
        m["golden"][rel]["precision"] = "int4"

    for i, (edit, msg) in enumerate([(unknown_key, "unknown key 'tolerance'"), (unlisted, "not listed in files"),
                                     (bad_precision, "does not match")]):
        with pytest.raises(ManifestError, match=msg):
            edited_bundle(tmp_path / f"b{i}", manifest_edit=edit)


def test_old_bundle_without_golden_cannot_self_test(bundle: Path, tmp_path: Path) -> None:
    m = read_manifest(bundle)
    gfiles = [e["file"] for e in m["golden"].values()]

    def drop(mm):  # noqa: ANN001
        del mm["golden"]
        for f in gfiles:
            del mm["files"][f]

    b = tmp_path / "old"
    shutil.copytree(bundle, b)
    shutil.rmtree(b / gd.GOLDEN_DIR)
    mm = json.loads((b / MANIFEST).read_text())
    drop(mm)
    (b / MANIFEST).write_text(json.dumps(mm))
    (b / "manifest.sig").unlink()
    Session.open(b, allow_unsigned=True).close()
    with pytest.raises(gd.SelfTestError, match="no golden I/O"):
        Session.open(b, allow_unsigned=True, self_test=True)


def _matmul_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0, "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
                           helper.make_node("Gather", ["table", "idx"], ["e"], name="emb", axis=0)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
                           helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
                           helper.make_tensor_value_info("e", TensorProto.FLOAT, ["batch", 2])],
                          [w, numpy_helper.from_array(np.array([[1, 2], [3, 4]], np.float32), "table")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_generic_writer_takes_exporter_inputs_or_derives_them(tmp_path: Path) -> None:
    from umask.export.bundle import GOLDEN_INPUTS_KEY, write_bundle

    real = {"x": np.ones((5, 4), np.float32) * np.arange(5, dtype=np.float32)[:, None],
            "idx": np.array([1, 0, 1, 1, 0], np.int64)}

    def build(tmp: Path) -> dict:
        (tmp / "nets").mkdir()
        _matmul_onnx(tmp / "nets" / "a.onnx")
        _matmul_onnx(tmp / "nets" / "b.onnx")
        return {"nets": ["a", "b"], GOLDEN_INPUTS_KEY: {"nets/a.onnx": real}}

    m = write_bundle(tmp_path / "fam", build, family="edgetest")
    assert GOLDEN_INPUTS_KEY not in m and set(m["golden"]) == {"nets/a.onnx", "nets/b.onnx"}
    assert m["golden"]["nets/a.onnx"]["inputs"] == "exporter" and m["golden"]["nets/b.onnx"]["inputs"] == "derived"
    verify_bundle(tmp_path / "fam")                                  # golden files listed and hashed
    ins, outs = gd.unpack((tmp_path / "fam" / m["golden"]["nets/a.onnx"]["file"]).read_bytes(), "a")
    assert np.array_equal(ins["x"], real["x"][:1]) and np.array_equal(ins["idx"], real["idx"][:1])
    np.testing.assert_allclose(outs["y"], real["x"][:1] @ (np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0),
                               rtol=1e-6)
    ins_b, _ = gd.unpack((tmp_path / "fam" / m["golden"]["nets/b.onnx"]["file"]).read_bytes(), "b")
    assert ins_b["idx"].tolist() == [1] and ins_b["x"].shape == (1, 4)   # ones for indices, batch 1
    from umask.runtime.engines.ort import self_test

    rep = self_test(tmp_path / "fam", m)
    assert set(rep) == {"nets/a.onnx", "nets/b.onnx"}
    with pytest.raises(ValueError, match="not ONNX files"):
        write_bundle(tmp_path / "bad", lambda t: {**build(t), GOLDEN_INPUTS_KEY: {"nets/zz.onnx": real}},
                     family="edgetest")


def test_compare_rules() -> None:
    ref = {"y": np.array([[1.0, 2.0]], np.float32), "k": np.array([3], np.int64)}
    assert gd.compare({"y": ref["y"] + 1e-5, "k": ref["k"]}, ref, artifact="a", precision="fp32")["ok"]
    with pytest.raises(gd.SelfTestError, match="shape"):
        gd.compare({"y": ref["y"][0], "k": ref["k"]}, ref, artifact="a", precision="fp32")
    with pytest.raises(gd.SelfTestError, match="not finite"):
        gd.compare({"y": ref["y"] * np.nan, "k": ref["k"]}, ref, artifact="a", precision="int8")
    with pytest.raises(gd.SelfTestError, match="100.000% of the entries differ"):
        gd.compare({"y": ref["y"], "k": ref["k"] + 1}, ref, artifact="a", precision="fp32")
    # an int8 graph may move by a few %, an fp32 one may not
    assert gd.compare({"y": ref["y"] * 1.02, "k": ref["k"]}, ref, artifact="a", precision="int8")["ok"]
    with pytest.raises(gd.SelfTestError, match="tolerance 0.001 for fp32"):
        gd.compare({"y": ref["y"] * 1.02, "k": ref["k"]}, ref, artifact="a", precision="fp32")
    # -inf by design (a log-prior of a never-seen category): pinned exactly, the finite part within tolerance
    lp = {"s": np.array([[-np.inf, 0.5, -1.0]], np.float32)}
    assert gd.compare({"s": lp["s"] + np.float32(1e-5)}, lp, artifact="a", precision="fp32")["ok"]
    with pytest.raises(gd.SelfTestError, match="where that is not finite"):
        gd.compare({"s": np.array([[-30.0, 0.5, -1.0]], np.float32)}, lp, artifact="a", precision="fp32")


def test_golden_writer_keeps_infinite_outputs_and_skips_nan() -> None:
    from umask.export.bundle import _usable

    assert _usable([np.array([-np.inf, 1.0], np.float32), np.array([3])])
    assert not _usable([np.array([np.nan, 1.0], np.float32)])


# ---------------------------------------------------------------------------------------------
# TensorRT facts (TensorRT absent: the providers are replaced)
# ---------------------------------------------------------------------------------------------
def _device(monkeypatch, version, cc) -> None:  # noqa: ANN001
    monkeypatch.setattr(trt_facts, "tensorrt_version", lambda: version)
    monkeypatch.setattr(trt_facts, "compute_capability", lambda device=0: cc)
    monkeypatch.setattr(trt_facts, "gpu_name", lambda device=0: None if cc is None else "Test GPU")


def test_engine_facts_refused_on_mismatch(monkeypatch) -> None:  # noqa: ANN001
    entry = {"status": "built", "file": "trt/dit.fp16.b1.engine", "tensorrt_version": "10.3.0",
             "compute_capability": "8.7"}
    _device(monkeypatch, "10.3.0", "8.7")
    assert trt_facts.check_engine_facts(entry, where="b/trt/dit") == {"tensorrt_version": "10.3.0",
                                                                      "compute_capability": "8.7"}
    _device(monkeypatch, "10.0.1", "8.7")
    with pytest.raises(trt_facts.EngineMismatchError, match=r"b/trt/dit: .*TensorRT 10.3.0 != this device's 10.0.1"):
        trt_facts.check_engine_facts(entry, where="b/trt/dit")
    _device(monkeypatch, "10.3.0", "9.0")
    with pytest.raises(trt_facts.EngineMismatchError, match=r"compute capability 8.7 != this device's 9.0"):
        trt_facts.check_engine_facts(entry, where="b/trt/dit")
    _device(monkeypatch, None, None)
    with pytest.raises(trt_facts.EngineMismatchError, match="TensorRT is not importable"):
        trt_facts.check_engine_facts(entry, where="b/trt/dit")
    _device(monkeypatch, "10.3.0", "8.7")
    with pytest.raises(trt_facts.EngineMismatchError, match="does not record"):     # an older manifest
        trt_facts.check_engine_facts({"status": "built", "file": "trt/x.engine"}, where="b/trt/x")
    # the section's facts serve engines that do not repeat them
    assert trt_facts.check_engine_facts({"status": "built"}, where="x", section=entry)
    assert issubclass(trt_facts.EngineMismatchError, BundleError)


def test_builder_records_facts_and_manifest_schema(monkeypatch, bundle: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from umask.export import tensorrt as et

    fake = types.SimpleNamespace(__version__="10.3.0")
    _device(monkeypatch, "10.3.0", "8.7")
    assert et.engine_facts(fake) == {"tensorrt_version": "10.3.0", "compute_capability": "8.7", "gpu_name": "Test GPU"}
    # with a tensorrt module but no CUDA device: skipped, saying why (no engine without its capability)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    _device(monkeypatch, "10.3.0", None)
    e = et.build_engines({"fp32": {}}, {}, tmp_path / "trt")
    assert e["status"] == "skipped" and "compute capability" in e["reason"] and e["tensorrt_version"] == "10.3.0"
    # the manifest schema takes the facts and refuses a malformed capability / an unknown key
    eng = b"\x00engine"

    def built(m):  # noqa: ANN001
        m["tensorrt"] = {"status": "built", "tensorrt_version": "10.3.0", "compute_capability": "8.7",
                         "gpu_name": "Orin", "engines": {"fp16/dit": {
                             "status": "built", "file": "trt/dit.fp16.b1.engine", "batch": 1, "precision": "fp16",
                             "network": "dit", "tensorrt_version": "10.3.0", "compute_capability": "8.7",
                             "gpu_name": "Orin"}}}

    b = edited_bundle(tmp_path / "ok", add_files={"trt/dit.fp16.b1.engine": eng}, manifest_edit=built)
    m = verify_bundle(b)
    _device(monkeypatch, "10.3.0", "8.6")
    with pytest.raises(trt_facts.EngineMismatchError, match=r"trt/dit.fp16.b1.engine: .*8.7 != this device's 8.6"):
        trt_facts.load_engine(b, m, "fp16/dit")

    def bad_cc(m):  # noqa: ANN001
        built(m)
        m["tensorrt"]["compute_capability"] = "sm_87"

    def extra(m):  # noqa: ANN001
        built(m)
        m["tensorrt"]["engines"]["fp16/dit"]["int8_calibrator"] = "x"

    for name, edit, msg in (("cc", bad_cc, "does not match"), ("extra", extra, "unknown key 'int8_calibrator'")):
        with pytest.raises(ManifestError, match=msg):
            edited_bundle(tmp_path / name, add_files={"trt/dit.fp16.b1.engine": eng}, manifest_edit=edit)


def test_cli_self_test_flags(bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    from test_verify_cli import events_csv
    from umask.cli import main

    monkeypatch.setenv(pc_env(), str(tmp_path / "cache"))
    assert main(["verify", str(bundle), "--self-test"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["self_test"] == "passed"
    m = read_manifest(bundle)
    rel = "onnx/fp32/profile_mlp.onnx"
    ins, outs = gd.unpack((bundle / m["golden"][rel]["file"]).read_bytes(), rel)
    bad = edited_bundle(tmp_path / "bad", add_files={m["golden"][rel]["file"]: gd.pack(ins, {k: -v - 3 for k, v in
                                                                                           outs.items()})})
    assert main(["verify", str(bad), "--self-test"]) == gd.SelfTestError.exit_code == 6
    err = capsys.readouterr().err
    assert "profile_mlp.onnx: self-test: output 'h_u' differs" in err and len(err.strip().splitlines()) == 1
    hist = str(events_csv(tmp_path / "e.csv"))
    run = ["run", "--history", hist, "--task", "short", "--steps", "1", "--self-test"]
    assert main(run + ["--bundle", str(bundle)]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["slots"]
    assert main(run + ["--bundle", str(bad)]) == 6 and "self-test" in capsys.readouterr().err
    assert main(run + ["--bundle", str(bundle), "--precision", "auto"]) == 0


def pc_env() -> str:
    from umask.runtime.engines.precision_choice import ENV_CACHE_DIR

    return ENV_CACHE_DIR
