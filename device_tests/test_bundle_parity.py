"""Parity of every artifact of the bundle on every execution provider, torch-free.

Reference: the fp32 ONNX file of the same network on the CPU execution provider, fed REAL windows
of the Tsinghua sample built by the runtime (Session.window / Session.embed). Tolerances: the
bundle's own (manifest ``tolerances``, relative max difference, the same figure the export gate
used against torch); fp32 on a GPU provider gets 1e-3 (TF32 / kernel differences). The mask
generator must give the same hard mask on >= 99.9 % of the coordinates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "tsinghua_app_usage" / "app_usage_trace_sample_llmapp.csv.gz"
NETS = ("dit", "maskgen", "profile_mlp", "sbert")
GPU_FP32_REL = 1e-3


def _eps() -> list[str]:
    return [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]


def _sess(path: Path, ep: str):  # noqa: ANN202
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=[ep] + (["CPUExecutionProvider"] if ep != "CPUExecutionProvider" else []))


def _cast(sess, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # noqa: ANN001
    conv = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}
    return {i.name: np.asarray(feed[i.name]).astype(conv.get(i.type, np.asarray(feed[i.name]).dtype))
            for i in sess.get_inputs()}


@pytest.fixture(scope="module")
def feeds(bundle_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Inputs of each network from 3 REAL users at 18:00 (short-term windows), runtime only."""
    from umask.runtime.core.events import read_llmapp_sample
    from umask.runtime.families.umask.profile_text import template_profile
    from umask.runtime.engines.samplers import Schedule
    from umask.runtime.families.umask.session import Session

    s = Session.open(bundle_dir, precision="fp32")
    ev = read_llmapp_sample(SAMPLE)
    wins, texts = [], []
    for u in np.unique(ev.user).tolist()[:3]:
        e = ev.for_user(u)
        now = int(e.ts.min()) // 86400 * 86400 + 18 * 3600
        w = s.window(e.take(e.ts < now), "short_term", now_ts=now)
        wins.append(w)
        texts.append(template_profile(w.stats) if w.stats is not None else "no profile")
    h_u = np.stack([s.embed(w) for w in wins]).astype(np.float32)
    man = s.manifest
    n_coords = int(np.prod(wins[0].avail.shape))
    mg = {"x": np.stack([w.x for w in wins]), "avail": np.stack([w.avail for w in wins]), "h_u": h_u,
          "task": np.array([w.task_id for w in wins], np.int64), "e_pos": np.stack([w.e_pos for w in wins]),
          "gumbel": np.zeros((len(wins), n_coords), np.float32)}
    ref_mg = _sess(bundle_dir / man["artifacts"]["fp32"]["maskgen"]["file"], "CPUExecutionProvider")
    hard = ref_mg.run(None, mg)[0].astype(np.float32)
    x_scale = np.asarray(man["model"]["x_scale"], np.float32).reshape(1, -1, 1, 1, 1)
    x0 = mg["x"] * x_scale
    sched = Schedule(np.asarray(man["diffusion"]["alphas_cumprod"], np.float32))
    a, sg = sched.alpha_sigma(500)
    z = np.random.default_rng(0).standard_normal(x0.shape, dtype=np.float32)
    out = {"maskgen": mg,
           "dit": {"x_t": (a * x0 + sg * z).astype(np.float32), "x_obs": (x0 * hard).astype(np.float32), "mask": hard,
                   "t": np.full((len(wins),), 500, np.int64), "h_u": h_u, "task": mg["task"]},
           "profile_mlp": {"emb": s.sbert(texts), "present": np.ones((len(wins),), np.float32)}}
    if man.get("sbert", {}).get("status") == "present":
        enc = s._tok.encode(texts[0])
        out["sbert"] = {"input_ids": np.array([enc.ids], np.int64), "attention_mask": np.array([enc.attention_mask], np.int64)}
    return out


def _artifacts(bundle_dir: Path) -> list[tuple[str, str, Path]]:
    man = json.loads((bundle_dir / "manifest.json").read_text())
    out = []
    for prec, arts in man["artifacts"].items():
        for net, a in arts.items():
            if a.get("status") == "ok" and a.get("file") and not a.get("shared"):
                out.append((prec, net, bundle_dir / a["file"]))
    if man.get("sbert", {}).get("status") == "present":
        out.append(("fp32", "sbert", bundle_dir / man["sbert"]["file"]))
    return out


@pytest.mark.parametrize("ep", _eps())
def test_every_artifact_on_every_provider(bundle_dir: Path, feeds, ep: str, device_out: Path) -> None:  # noqa: ANN001
    man = json.loads((bundle_dir / "manifest.json").read_text())
    tol = man.get("tolerances", {})
    report = []
    failures = []
    for prec, net, path in _artifacts(bundle_dir):
        if ep == "CPUExecutionProvider" and prec == "fp32":
            continue          # the reference itself (checked against torch by the export gate)
        ref_path = bundle_dir / (man["sbert"]["file"] if net == "sbert" else man["artifacts"]["fp32"][net]["file"])
        ref_s, s = _sess(ref_path, "CPUExecutionProvider"), _sess(path, ep)
        feed = feeds[net]
        ref = ref_s.run(None, _cast(ref_s, feed))[0].astype(np.float64)
        got = s.run(None, _cast(s, feed))[0].astype(np.float64)
        d = float(np.abs(got - ref).max())
        rel = d / max(1.0, float(np.abs(ref).max()))
        lim = GPU_FP32_REL if prec == "fp32" else float(tol.get(prec, {}).get("rel_max", 0.25))
        row = {"provider": ep, "provider_used": s.get_providers()[0], "precision": prec, "net": net,
               "max_abs_diff": d, "rel_max": rel, "tolerance_rel_max": lim}
        if net == "maskgen":
            agree = float((got == ref).mean())
            row["mask_agreement"] = agree
            if agree < 0.999:
                failures.append(f"{prec}/{net} on {ep}: mask agreement {agree:.5f} < 0.999")
        elif rel > lim:
            failures.append(f"{prec}/{net} on {ep}: rel max diff {rel:.3g} > {lim:.3g}")
        report.append(row)
    (device_out / f"parity_{ep}.json").write_text(json.dumps(report, indent=2) + "\n")
    assert not failures, failures
    if ep == "CPUExecutionProvider" and not report:
        pytest.skip("the bundle holds fp32 artifacts only: nothing to compare on the CPU provider")
