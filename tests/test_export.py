"""Export toolchain (issue 5): bundle contents, parity gate, atomic writes, runtime vs torch on REAL inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export_fixtures import real_user, sample_noise, tiny_bundle
from umask.export.families.umask import exporter
from umask.runtime.core.bundle import MANIFEST, SIGNATURE_FILE, BundleError, sha256_file, verify_bundle
from umask.runtime.families.umask.session import Session

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bundle() -> tuple[Path, Path]:
    return tiny_bundle()


@pytest.fixture(scope="module")
def model(bundle):
    from umask.train.models.umask.trainer import load_model

    return load_model(bundle[0], ema=True)[0]


def test_manifest_lists_every_file_with_sha256_and_parity(bundle) -> None:
    _, b = bundle
    m = json.loads((b / MANIFEST).read_text())
    on_disk = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()} - {MANIFEST, SIGNATURE_FILE}
    assert set(m["files"]) == on_disk and (b / SIGNATURE_FILE).is_file()     # signed, the signature unlisted
    for rel, info in m["files"].items():
        assert sha256_file(b / rel) == info["sha256"] and (b / rel).stat().st_size == info["size"]
    assert set(m["artifacts"]) == {"fp32", "fp16", "int8-qdq", "int8-dynamic"}
    for p, arts in m["artifacts"].items():
        for net in ("dit", "profile_mlp"):
            e = arts[net]
            assert e["status"] == "ok", e
            assert e["parity"]["rel_max"] <= exporter.TOLERANCES[p]["rel_max"]
            assert [i["name"] for i in e["inputs"]][:1] and e["inputs"][0]["shape"][0] == "batch"
        assert arts["maskgen"]["file"] == "onnx/fp32/maskgen.onnx"
    dit = m["artifacts"]["fp32"]["dit"]
    assert [i["name"] for i in dit["inputs"]] == ["x_t", "x_obs", "mask", "t", "h_u", "task"]
    assert dit["opset"] == 18 and m["artifacts"]["fp32"]["maskgen"]["parity"]["mask_agreement"] == 1.0
    assert len(m["diffusion"]["alphas_cumprod"]) == m["diffusion"]["num_train_steps"]
    assert m["model"]["x_scale"] == [10.0] * 22
    assert m["tensorrt"]["status"] == "skipped" and "tensorrt" in m["tensorrt"]["reason"]
    assert m["llm"]["status"] == "absent" and m["sbert"]["status"] == "present"
    assert m["featurization"]["window"] == {"context": 12, "horizon": 4, "short_horizon": 2, "cold_max_active": 4}
    # fp16 keeps explicit casts and fp32 norms; int8 QDQ holds QuantizeLinear nodes; sizes shrink
    import onnx

    g16 = onnx.load(str(b / "onnx/fp16/dit.onnx")).graph
    assert any(n.op_type == "Cast" for n in g16.node)
    ln = [n for n in g16.node if n.op_type == "LayerNormalization"]
    assert ln and all(n.name for n in ln)
    q = onnx.load(str(b / "onnx/int8-qdq/dit.onnx")).graph
    assert any(n.op_type == "QuantizeLinear" for n in q.node)
    assert not any("adaLN" in n.name and n.op_type == "QuantizeLinear" for n in q.node)
    sizes = {p: m["files"][f"onnx/{p}/dit.onnx"]["size"] for p in m["artifacts"]}
    assert sizes["fp16"] < sizes["fp32"] and sizes["int8-dynamic"] < sizes["fp32"]
    # the int8 SBERT: cosine-gated (>= 0.99 to torch on the verify texts) and about 4x smaller
    s8 = m["sbert"]["int8"]
    assert s8["status"] == "ok" and s8["parity"]["min_cosine"] >= 0.99, s8
    assert m["files"][s8["file"]]["size"] < 0.4 * m["files"][m["sbert"]["file"]]["size"]


def test_parity_gate_refuses_and_says_by_how_much(bundle, tmp_path, monkeypatch) -> None:
    ckpt, _ = bundle
    monkeypatch.setitem(exporter.TOLERANCES, "int8-dynamic", {"rel_max": 1e-9, "completion_mae": 1e-9})
    m = exporter.export_bundle(ckpt, tmp_path / "b", precisions=["fp32", "int8-dynamic"], gguf_dir=None,
                               max_windows=4, tensorrt=False)
    e = m["artifacts"]["int8-dynamic"]["dit"]
    assert e["status"] == "rejected" and e["file"] is None
    assert "rel max diff" in e["reason"] and "by " in e["reason"] and "x" in e["reason"]
    assert not (tmp_path / "b" / "onnx" / "int8-dynamic" / "dit.onnx").exists()
    with pytest.raises(BundleError, match="no usable int8-dynamic dit"):
        Session.open(tmp_path / "b", precision="int8-dynamic", allow_unsigned=True)   # exported unsigned here
    # fp32 beyond its tolerance: the whole export fails, nothing is left behind
    monkeypatch.setitem(exporter.TOLERANCES, "fp32", {"rel_max": -1.0, "completion_mae": 1.0})
    with pytest.raises(exporter.ParityError, match="fp32/dit"):
        exporter.export_bundle(ckpt, tmp_path / "c", precisions=["fp32"], gguf_dir=None, max_windows=2, tensorrt=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_interrupted_export_leaves_no_loadable_bundle(bundle, tmp_path, monkeypatch) -> None:
    ckpt, good = bundle
    out = tmp_path / "bundle"
    shutil.copytree(good, out)                              # an older complete bundle at the destination
    before = (out / MANIFEST).read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt("simulated kill during the export")

    monkeypatch.setattr(exporter, "signature", boom)
    with pytest.raises(KeyboardInterrupt):
        exporter.export_bundle(ckpt, out, precisions=["fp32"], gguf_dir=None, max_windows=2, tensorrt=False)
    assert (out / MANIFEST).read_bytes() == before         # the old bundle is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]   # no temp dir left
    verify_bundle(out)
    # a half-written bundle (temp dir with the .partial marker) is refused
    half = tmp_path / "half"
    shutil.copytree(good, half)
    (half / ".partial").write_text("x")
    with pytest.raises(BundleError, match="interrupted"):
        Session.open(half)


def test_tampered_and_truncated_bundles_are_refused(bundle, tmp_path) -> None:
    _, good = bundle
    t = tmp_path / "tampered"
    shutil.copytree(good, t)
    p = t / "onnx/fp32/profile_mlp.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"profile_mlp.onnx: sha256 .* \(modified\)"):
        Session.open(t)
    tr = tmp_path / "truncated"
    shutil.copytree(good, tr)
    q = tr / "onnx/fp32/dit.onnx"
    q.write_bytes(q.read_bytes()[:1000])
    with pytest.raises(BundleError, match="truncated"):
        Session.open(tr)
    gone = tmp_path / "missing"
    shutil.copytree(good, gone)
    (gone / "catalog/llmapp_app.csv").unlink()
    with pytest.raises(BundleError, match="missing"):
        Session.open(gone)
    (gone / MANIFEST).unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        Session.open(gone)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-qdq", "int8-dynamic"])
def test_runtime_matches_torch_on_real_sample(bundle, model, precision: str) -> None:
    """Session.complete (numpy sampler, ONNX of this precision) vs the torch model on the same REAL
    history, mask and noise: within the manifest's completion tolerance."""
    from umask.train.diffusion import make_sampler, model_denoise_fn
    from umask.train.models.umask.profile_encoder import SentenceEncoder

    _, b = bundle
    s = Session.open(b, precision=precision)
    tol = s.manifest["tolerances"][precision]["completion_mae"]
    enc = SentenceEncoder()
    for user, task in ((5, "long_term"), (7, "short_term"), (4, "cold_start")):
        ev = real_user(user)
        c = s.complete(ev, task, seed=3, n_samples=2, steps=6)
        w = c.window
        text = s.profile(w)["text"]
        with torch.no_grad():
            emb = torch.from_numpy(enc.encode([text]))
            h_u = model.profile(emb, torch.ones(1, dtype=torch.bool))
            batch = {"x0": torch.from_numpy(w.x[None]), "avail": torch.from_numpy(w.avail[None]),
                     "task": torch.tensor([w.task_id]), "e_pos": torch.from_numpy(w.e_pos[None])}
            _, hard, _ = model.evidence(batch, h_u, None, deterministic=True)
        assert ((hard[0, 0].numpy() > 0.5) == c.mask).mean() >= 0.999, "mask generator differs from torch"
        hard = torch.from_numpy(c.mask[None, None].astype(np.float32))   # same evidence for the DiT comparison
        np.testing.assert_allclose(c.h_u, h_u[0].numpy(), atol=0.05 if precision.startswith("int8") else 2e-3)
        x_obs = model._scale(batch["x0"]) * hard
        fn = model_denoise_fn(model.dit, x_obs, hard, h_u, batch["task"])
        smp = make_sampler("ddim", model.schedule)
        acc = sum(smp.sample(fn, x_obs, hard, 6, noise=torch.from_numpy(sample_noise(tuple(x_obs.shape), 3, i)))
                  for i in range(2))
        ref = (acc / 2 / model.x_scale.reshape(1, -1, 1, 1, 1))[0].numpy()
        ref = np.where(hard[0].numpy() > 0.5, w.x, ref)
        tgt = np.broadcast_to(w.target > 0.5, ref.shape)
        diff = float(np.abs(ref - c.x)[tgt].mean())
        assert diff <= tol, (precision, user, task, diff, tol)
        if precision == "fp32":
            assert float(np.abs(ref - c.x)[tgt].max()) < 1e-4
