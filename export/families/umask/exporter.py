"""Checkpoint -> verified bundle directory (the export stage of docs/DESIGN.md).

``export_bundle(ckpt, out, precisions=...)``:

1. load the checkpoint (EMA weights) with ``trainer.load_model``; every shape comes from its config;
2. build REAL calibration / parity windows: the shipped Tsinghua sample (data/tsinghua_app_usage,
   6 users, one day), cut at several "now" times and all four tasks by the RUNTIME's own
   ``history.build_window`` (what the device will feed), h_u from the torch template -> SBERT ->
   ProfileMLP path, DiT inputs at several diffusion timesteps;
3. export fp32 ONNX (DiT step, mask generator, profile MLP, SBERT + tokenizer.json), then fp16 /
   int8 QDQ / int8 dynamic of the DiT step and the profile MLP (export/precision.py). The mask
   generator stays fp32 in every bundle (its output is a discrete top-k mask: its -1e9 logits
   overflow fp16 and quantization noise reorders near-tied scores); SBERT ships fp32;
4. parity gate (`TOLERANCES`, one place): each artifact is run by onnxruntime on the parity
   windows next to torch fp32; an artifact beyond its tolerance is NOT written (fp32: the export
   fails) and the log and manifest say by how much. Task metric: the full clamped DDIM completion
   with the runtime's numpy sampler on the ONNX DiT vs the torch sampler on the torch DiT, same
   start noise and mask (featurized scale, target coordinates), and the top-5 app agreement;
5. TensorRT engines when ``tensorrt`` imports (else one log line), GGUF files copied into ``llm/``;
6. the manifest's U-MASK sections (configs, I/O signatures, featurization, schedule, sampler
   defaults, tool versions, parity), ``"family": "umask"``;
7. the generic bundle writer (export/bundle.py ``write_bundle``) does the rest: a temp folder with a
   ``.partial`` marker, sha256 + size of every file, ``manifest.json`` last, ``manifest.sig`` (ed25519,
   ``sign_key=``), fsync, atomic rename.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from umask.export import precision as prec
from umask.export.errors import ExportError, ParityError  # noqa: F401 - re-exported
from umask.export.bundle import signature, tool_versions, write_bundle
from umask.export.families.umask import networks as om
from umask.runtime.core.bundle import sha256_file
from umask.runtime.core.catalog import load_llmapp_catalog
from umask.runtime.core.errors import InputError
from umask.runtime.core.events import read_llmapp_sample
from umask.runtime.core.featurize import ChannelLayout, FeatureConfig
from umask.runtime.core.history import TASK_NAMES, WindowSpec, build_window
from umask.runtime.families.umask.prior import PRIOR_SMOOTH_MINUTES, history_prior, prior_weight, slot_calendar
from umask.runtime.families.umask.profile_text import TEMPLATE_VERSION, template_profile
from umask.runtime.engines.ort import inference_session
from umask.runtime.engines.samplers import Schedule, make_sampler as np_sampler

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO_ROOT / "data" / "tsinghua_app_usage"
SAMPLE_FILE = "app_usage_trace_sample_llmapp.csv.gz"
CATALOG_FILES = ("llmapp_app.csv", "llmapp_category.csv", "llmapp_location.csv.gz")
DEFAULT_GGUF_DIR = REPO_ROOT / "artifacts" / "uscope" / "gguf"
DEFAULT_SBERT_CACHE = REPO_ROOT / "cache" / "onnx_sbert"
PARITY_TIMESTEPS = (999, 750, 500, 250, 50)
NOW_HOURS = (10, 14, 18, 22)
SAMPLER_DEFAULTS = {"sampler": "ddim", "steps": 10, "n_samples": 2}
PARITY_STEPS = 10
FAMILY = "umask"                      # the manifest's family (runtime/families, export/families)

# Parity tolerances, ONE place. rel_max = max|onnx - torch| / max(1, max|torch|) of the network's
# output on the parity windows (DiT: model-space x0 at 5 timesteps; maskgen: probs, plus exact
# mask agreement; profile MLP: h_u). completion_mae = mean abs difference of the full 10-step
# completion on the featurized scale over the target coordinates (the max is recorded too, not gated:
# a first run gated on the max and rejected fp16 / int8-dynamic DiTs on single outlier entries
# of 0.06 / 0.6 among ~750k target values whose MAE was 1e-5 / 5e-4). mask_agreement_min: fraction of equal
# evidence-mask entries (fp32 rounding can swap near-tied top-k scores; the budget k must be equal).
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"rel_max": 1e-4, "completion_mae": 1e-5, "mask_agreement_min": 0.999},
    "fp16": {"rel_max": 2e-2, "completion_mae": 1e-3},
    "int8-qdq": {"rel_max": 0.25, "completion_mae": 5e-3},
    "int8-dynamic": {"rel_max": 0.25, "completion_mae": 5e-3},
}




# A prior model's point estimator on the device: the DiT's x0 estimate at the first sampler step
# (t = N-1), the mean over 2 noise draws = UMask.complete(point="first_x0") = a 1-step DDIM (its one
# step lands on t = -1, where it returns that x0 estimate with the evidence clamped). The harness's
# "auto" point estimator for a prior model; one network evaluation per sample.
# The short-term request (the device's most frequent call) takes ONE draw: on the steps x draws sweep of the
# shipped model (benchmarks/results/v2_request_sweep.json, `python -m umask.bench.accuracy.request_sweep`) one
# x0 estimate is within 1 % of, or better than, the 50-step x 2-draw DDIM result on every B1 headline metric
# (SYNTHETIC and REAL), at one DiT evaluation instead of 100. The other tasks keep 2 draws: there one draw moved
# some location / traffic errors by more than 1 % (B3 location RMSE +4 %, MAE up to +14 %).
PRIOR_SAMPLER_DEFAULTS = {"sampler": "ddim", "steps": 1, "n_samples": 2, "by_task": {"short_term": {"n_samples": 1}}}


def sampler_defaults(model: Any) -> dict[str, Any]:
    """The manifest's ``diffusion.defaults``: `PRIOR_SAMPLER_DEFAULTS` for a prior model, else `SAMPLER_DEFAULTS`."""
    import copy

    return copy.deepcopy(SAMPLER_DEFAULTS if getattr(model.cfg, "prior", "none") == "none" else PRIOR_SAMPLER_DEFAULTS)


def prior_note(model: Any) -> dict[str, Any]:
    """``parity_inputs.prior`` of a prior model (free-form: the strict schema's ``model`` section has no
    prior key; the session reads the kind from ``model.umask.prior`` and the point estimator from
    ``diffusion.defaults``)."""
    kind = getattr(model.cfg, "prior", "none")
    if kind == "none":
        return {}
    weights = {t: prior_weight(kind, i) for i, t in enumerate(TASK_NAMES)}
    return {"prior": {"kind": kind, "weight_last_value": weights, "smooth_minutes": PRIOR_SMOOTH_MINUTES[kind],
                      "function":
                      "umask.runtime.families.umask.prior.history_prior (= train data.window_prior)",
                      "point": "first_x0", "point_note": "x0 estimate at t = N-1, mean of 2 noise draws "
                      "(diffusion.defaults: ddim, 1 step, 2 samples)", "dit_input": "prior (B, C, T, H, W) model space"}}


# ------------------------------------------------------------------------------------------------
# Calibration / parity windows (REAL sample, runtime featurization)
# ------------------------------------------------------------------------------------------------
def real_windows(model: Any, data_dir: Path, *, max_windows: int | None = None) -> list[Any]:
    """Windows of the real sample at NOW_HOURS for every user, cycling the four tasks."""
    return [w for w, _ in real_windows_with_history(model, data_dir, max_windows=max_windows)]


def real_windows_with_history(model: Any, data_dir: Path, *, max_windows: int | None = None) -> list[tuple[Any, Any]]:
    """`real_windows` as (window, the history it was built from) pairs (a prior model's prior reads it)."""
    catalog = load_llmapp_catalog(data_dir)
    events = read_llmapp_sample(data_dir / SAMPLE_FILE)
    w = model.cfg.window
    spec = WindowSpec(w.context, w.horizon, w.short_horizon, w.cold_max_active)
    out = []
    i = 0
    for u in np.unique(events.user).tolist():
        ev = events.for_user(u)
        day = int(ev.ts.min()) // 86400 * 86400
        for h in NOW_HOURS:
            now = day + h * 3600
            hist = ev.take(ev.ts < now)
            if len(hist) < 5:
                continue
            task = TASK_NAMES[i % len(TASK_NAMES)]
            i += 1
            try:
                out.append((build_window(hist, catalog, FeatureConfig(), spec, task, now_ts=now), hist))
            except InputError as e:
                log.debug("skip window user %d %02d:00 %s: %s", u, h, task, e)
    if max_windows is not None:
        out = out[:max_windows]
    if not out:
        raise ExportError(f"no calibration windows could be built from {data_dir}")
    return out


def window_priors(model: Any, pairs: Sequence[tuple[Any, Any]], catalog: Any) -> np.ndarray | None:
    """(n, C, T, H, W) prior of each (window, history) pair with the runtime's own function (what the
    Session feeds the DiT), or None for a model without a prior."""
    if getattr(model.cfg, "prior", "none") == "none":
        return None
    ctx = model.cfg.window.context
    kind = model.cfg.prior
    return np.stack([history_prior(ev, catalog, FeatureConfig(), w, ctx, kind) for w, ev in pairs]).astype(np.float32)


def torch_inputs(model: Any, windows: Sequence[Any], encoder: Any,
                 priors: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Stacked model inputs of the windows: x, avail, e_pos, task, emb, present, h_u, hard mask[, prior]."""
    texts = [template_profile(w.stats) if w.stats is not None else None for w in windows]
    emb = np.zeros((len(windows), model.cfg.sbert_dim), np.float32)
    present = np.array([t is not None for t in texts])
    if present.any() and encoder is not None:
        emb[present] = encoder.encode([t for t in texts if t is not None])
    else:
        present[:] = False
    b = {"x0": torch.from_numpy(np.stack([w.x for w in windows])),
         "avail": torch.from_numpy(np.stack([w.avail for w in windows])),
         "e_pos": torch.from_numpy(np.stack([w.e_pos for w in windows])),
         "task": torch.tensor([w.task_id for w in windows], dtype=torch.long),
         "profile_emb": torch.from_numpy(emb), "profile_present": torch.from_numpy(present.astype(np.float32))}
    with torch.no_grad():
        b["h_u"] = model.profile(b["profile_emb"], b["profile_present"] > 0.5) if model.cfg.use_profile \
            else model.profile(None, batch_size=len(windows))
        _, hard, mo = model.evidence({**b, "profile_present": b["profile_present"] > 0.5}, b["h_u"], None,
                                     deterministic=True)
    b["hard"] = hard
    b["h_b"] = mo.features["h_b"].detach()                                  # a dit_hb model's DiT input
    T = model.cfg.window.T                                                  # a dit_calendar model's: the device's calendar
    b["cal"] = torch.from_numpy(np.stack([slot_calendar(0, w.slot_seconds, w.window_start_ts // w.slot_seconds, T)
                                          for w in windows]))
    if priors is not None:
        b["prior"] = torch.from_numpy(priors)          # featurized scale, as the batch's "prior"
    return b


def dit_feeds(model: Any, b: dict[str, torch.Tensor], seed: int = 0) -> list[dict[str, np.ndarray]]:
    """DiT-step inputs at PARITY_TIMESTEPS (model space), one feed per timestep."""
    g = torch.Generator().manual_seed(seed)
    x0 = model._scale(b["x0"])
    x_obs = x0 * b["hard"]
    feeds = []
    for t in PARITY_TIMESTEPS:
        tt = torch.full((x0.shape[0],), t, dtype=torch.long)
        noise = torch.randn(x0.shape, generator=g)
        x_t = model.schedule.q_sample(x0, tt, noise)
        feeds.append({"x_t": x_t.numpy(), "x_obs": x_obs.numpy(), "mask": b["hard"].numpy(), "t": tt.numpy(),
                      "h_u": b["h_u"].numpy(), "task": b["task"].numpy(), **_extra_feeds(model, b)})
    return feeds


def _extra_feeds(model: Any, b: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The DiT step's optional feeds (networks.dit_extra_names): the model-space prior, the slot calendar,
    E_pos and the mask generator's h_b, as the Session builds them; {} for a plain model."""
    get = {"prior": lambda: model.prior_input(b), "cal": lambda: b["cal"], "e_pos": lambda: b["e_pos"],
           "h_b": lambda: b["h_b"]}
    return {n: get[n]().numpy().astype(np.float32) for n in om.dit_extra_names(model)}


# ------------------------------------------------------------------------------------------------
# Parity
# ------------------------------------------------------------------------------------------------
def _ort(path: Path) -> Any:
    return inference_session(path)          # CPU, one thread, spinning off (runtime/engines/ort.py)


def _rel(a: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    d = float(np.abs(a.astype(np.float64) - ref.astype(np.float64)).max()) if a.size else 0.0
    return d, d / max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)


def _check(name: str, precision: str, figures: dict[str, float]) -> None:
    tol = TOLERANCES[precision]
    over = []
    if "rel_max" in figures and figures["rel_max"] > tol["rel_max"]:
        over.append(f"rel max diff {figures['rel_max']:.3g} > {tol['rel_max']:.3g} "
                    f"(by {figures['rel_max'] - tol['rel_max']:.3g}, x{figures['rel_max'] / tol['rel_max']:.2f})")
    for key, what in (("completion_mae", "completion MAE"), ("first_x0_mae", "first-step x0 MAE")):
        if key in figures and figures[key] > tol["completion_mae"]:
            c = figures[key]
            over.append(f"{what} {c:.3g} > {tol['completion_mae']:.3g} "
                        f"(by {c - tol['completion_mae']:.3g}, x{c / tol['completion_mae']:.2f})")
    if "mask_agreement" in figures and figures["mask_agreement"] < tol.get("mask_agreement_min", 0.0):
        over.append(f"mask agreement {figures['mask_agreement']:.6f} < {tol['mask_agreement_min']}")
    if figures.get("k_equal") is False:
        over.append("evidence budgets k differ from torch")
    if over:
        raise ParityError(f"{precision}/{name}: parity gate: " + "; ".join(over))


def dit_parity(model: Any, path: Path, feeds: list[dict[str, np.ndarray]], b: dict[str, torch.Tensor],
               channels: ChannelLayout) -> dict[str, float]:
    sess = _ort(path)
    diffs, rels = [], []
    step = om.DiTStep(model).eval()
    for f in feeds:
        with torch.no_grad():
            ref = step(*(torch.from_numpy(f[k]) for k in step.input_names)).numpy()
        got = sess.run(None, f)[0]
        d, r = _rel(got, ref)
        diffs.append(d)
        rels.append(r)
    # task metric: full clamped DDIM completion, numpy sampler + ONNX vs torch sampler + torch, same noise
    from umask.train.diffusion import make_sampler, model_denoise_fn

    x_obs = model._scale(b["x0"]) * b["hard"]
    noise = torch.randn(x_obs.shape, generator=torch.Generator().manual_seed(1))
    pf = _extra_feeds(model, b)
    extra_t = [torch.from_numpy(pf[n]) for n in step.extra]
    net = (lambda *a: step(*a, *extra_t)) if pf else model.dit
    fn = model_denoise_fn(net, x_obs, b["hard"], b["h_u"], b["task"])
    sched = Schedule(model.schedule.alphas_cumprod.numpy())
    h_u, task, hard = b["h_u"].numpy(), b["task"].numpy(), b["hard"].numpy()

    def onnx_fn(x: np.ndarray, t: int) -> np.ndarray:
        return sess.run(None, {"x_t": x, "x_obs": x_obs.numpy(), "mask": hard, "h_u": h_u, "task": task,
                               "t": np.full((x.shape[0],), t, np.int64), **pf})[0]

    scale = model.x_scale.numpy().reshape(1, -1, 1, 1, 1)
    tgt = np.stack([w for w in b["target"]]) if "target" in b else None
    sel = np.broadcast_to(tgt > 0.5, x_obs.shape) if tgt is not None else np.ones(x_obs.shape, bool)

    def completion(steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(onnx, torch) clamped DDIM completions of ``steps`` steps, featurized scale, same start noise."""
        ref = make_sampler("ddim", model.schedule).sample(fn, x_obs, b["hard"], steps, noise=noise).numpy()
        got = np_sampler("ddim", sched).sample(onnx_fn, x_obs.numpy(), hard, steps, noise=noise.numpy())
        return got / scale, ref / scale

    g_f, r_f = completion(PARITY_STEPS)
    cdiff = np.abs(g_f - r_f)[sel]
    extra: dict[str, Any] = {}
    if "prior" in pf:   # a prior model's on-device default: the x0 estimate at t = N-1 (1 DDIM step), gated the same
        g1, r1 = completion(1)
        d1 = np.abs(g1 - r1)[sel]
        extra = {"first_x0_mae": float(d1.mean()) if d1.size else 0.0,
                 "first_x0_max_abs_diff": float(d1.max()) if d1.size else 0.0}
    apps = channels.apps
    top_g = np.argsort(-np.clip(g_f[:, apps], 0, None).sum(axis=(2, 3, 4)), axis=1)[:, :5]
    top_r = np.argsort(-np.clip(r_f[:, apps], 0, None).sum(axis=(2, 3, 4)), axis=1)[:, :5]
    agree = float(np.mean([len(set(a) & set(c)) / 5.0 for a, c in zip(top_g.tolist(), top_r.tolist())]))
    return {"max_abs_diff": float(max(diffs)), "rel_max": float(max(rels)),
            "completion_max_abs_diff": float(cdiff.max()) if cdiff.size else 0.0,
            "completion_mae": float(cdiff.mean()) if cdiff.size else 0.0, "app_top5_agreement": agree,
            "n_windows": int(x_obs.shape[0]), "timesteps": list(PARITY_TIMESTEPS), "completion_steps": PARITY_STEPS,
            **extra}


def maskgen_parity(model: Any, path: Path, b: dict[str, torch.Tensor]) -> dict[str, float]:
    sess = _ort(path)
    n = b["x0"].shape[0]
    feed = {"x": b["x0"].numpy(), "avail": b["avail"].numpy(), "h_u": b["h_u"].numpy(), "task": b["task"].numpy(),
            "e_pos": b["e_pos"].numpy(), "gumbel": np.zeros((n, model.cfg.maskgen_config().n_coords), np.float32)}
    outs = sess.run(None, feed)
    hard, probs, k = outs[:3]
    with torch.no_grad():
        ref = om.MaskGenStep(model)(*(torch.from_numpy(feed[k_]) for k_ in om.MaskGenStep.input_names))
    d, r = _rel(probs, ref[1].numpy())
    fig = {"max_abs_diff": d, "rel_max": r, "mask_agreement": float((hard == ref[0].numpy()).mean()),
           "k_equal": bool((k == ref[2].numpy()).all()), "n_windows": int(n)}
    if len(outs) > 4:                       # h_b for a dit_hb DiT: gated with the probabilities
        dh, rh = _rel(outs[4], ref[4].numpy())
        fig.update({"h_b_max_abs_diff": dh, "rel_max": max(r, rh)})
    return fig


def profile_parity(model: Any, path: Path, b: dict[str, torch.Tensor]) -> dict[str, float]:
    sess = _ort(path)
    feed = {"emb": b["profile_emb"].numpy(), "present": b["profile_present"].numpy()}
    got = sess.run(None, feed)[0]
    with torch.no_grad():
        ref = om.ProfileStep(model)(b["profile_emb"], b["profile_present"]).numpy()
    d, r = _rel(got, ref)
    cos = (got * ref).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
    return {"max_abs_diff": d, "rel_max": r, "min_cosine": float(cos.min()), "n_windows": int(got.shape[0])}


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
def sbert_onnx(dst: Path, cache_dir: Path | None) -> dict[str, Any]:
    """The SBERT ONNX file (export_onnx of the profiling issue), reused from ``cache_dir`` when the
    same encoder was exported before; the parity check runs again either way."""
    from umask.train.models.umask.profile_encoder import SentenceEncoder, export_onnx, onnx_parity

    enc = SentenceEncoder()
    key = enc.model_id.replace("/", "_").replace("@", "-")
    cached = cache_dir / f"{key}.onnx" if cache_dir is not None else None
    meta_p = cached.with_suffix(".json") if cached is not None else None
    if cached is not None and cached.is_file() and meta_p.is_file():
        meta = json.loads(meta_p.read_text())
        if meta.get("sha256") == sha256_file(cached):
            shutil.copyfile(cached, dst)
            meta["parity"] = onnx_parity(dst, enc)
            meta["reused_from_cache"] = True
            return meta
    meta = export_onnx(dst, encoder=enc)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        shutil.copyfile(dst, tmp)
        os.replace(tmp, cached)
        meta_p.write_text(json.dumps({k: v for k, v in meta.items() if k != "parity"}))
    return meta


SBERT_INT8_MIN_COSINE = 0.99   # issue 4: cosine parity with the torch encoder >= 0.99


def sbert_int8(src: Path, dst: Path, encoder: Any) -> dict[str, Any]:
    """Dynamic int8 of the SBERT ONNX file, gated on the cosine to the torch encoder over `VERIFY_TEXTS`
    (>= SBERT_INT8_MIN_COSINE); a rejected file is not written.

    Two candidates, smallest first, the first that passes the gate is kept:
    1. weight MatMuls + the 30522 x 384 token-embedding Gather (half of the file: 23 MB);
    2. weight MatMuls only, the embedding table in float (58 MB).
    Norms, softmax and the pooling stay float in both. Weights are signed int8 (U8S8 kernels) on CPUs
    with VNNI; without VNNI (`precision.cpu_int8_caps`) U8S8 pair sums saturate, and unsigned weights
    (U8U8) are the remedy that keeps the embedding table in 8 bits: measured on this project's 2-core
    AMD EPYC (AVX2, no VNNI), min cosine 0.9888 (S8), 0.9892 (S8, 7-bit weights), 0.9930 (U8U8).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from umask.train.models.umask.profile_encoder import onnx_parity

    dst.parent.mkdir(parents=True, exist_ok=True)
    caps = prec.cpu_int8_caps()
    # signed weights where VNNI exists (or on a non-x86 CPU: no /proc flags, no avx2), unsigned elsewhere
    weight_type = QuantType.QInt8 if caps["vnni"] or not caps["avx2"] else QuantType.QUInt8
    tried: list[str] = []
    parity: dict[str, Any] = {}
    for ops, what in ((["MatMul", "Gather"], "MatMul + embedding Gather"), (["MatMul"], "MatMul only")):
        with prec._quiet_root():
            quantize_dynamic(str(src), str(dst), op_types_to_quantize=ops, weight_type=weight_type,
                             per_channel=True)
        method = (f"onnxruntime.quantization.quantize_dynamic({what}, {weight_type.name} weights, per channel)")
        parity = onnx_parity(dst, encoder)
        tried.append(f"{what}: min cosine {parity['min_cosine']:.4f}")
        if parity["min_cosine"] >= SBERT_INT8_MIN_COSINE:
            return {"status": "ok", "file": dst.relative_to(dst.parents[2]).as_posix(), "parity": parity,
                    "tolerance": {"min_cosine": SBERT_INT8_MIN_COSINE}, "method": "; ".join([*tried[:-1], method])}
        dst.unlink()
    log.warning("int8/sbert rejected (%s < %.2f); int8 sessions use the fp32 SBERT", "; ".join(tried),
                SBERT_INT8_MIN_COSINE)
    return {"status": "rejected", "parity": parity, "tolerance": {"min_cosine": SBERT_INT8_MIN_COSINE},
            "method": "; ".join(tried)}


# ------------------------------------------------------------------------------------------------
# The export
# ------------------------------------------------------------------------------------------------
# The U-SCOPE pipeline's file names (train/uscope_pipeline.GGUF_NAMES): merged models per quant, the
# base model and the LoRA adapter (applied on the base, never on a merged model).
GGUF_MERGED = {"q8_0": "uscope-q8_0.gguf", "q4_k_m": "uscope-q4_k_m.gguf", "f16": "uscope-f16.gguf"}
GGUF_BASE, GGUF_LORA = "uscope-base-f16.gguf", "uscope-lora-f16.gguf"
LLM_QUANTS = (*GGUF_MERGED, "base+lora")


def select_gguf(gdir: Path | None, quant: str = "q8_0") -> dict[str, Any]:
    """The one LLM the bundle ships: the merged model of ``quant`` (q8_0 | q4_k_m | f16), or
    ``base+lora`` (the base GGUF plus the LoRA adapter GGUF, applied at load time). A bundle never
    carries both a merged model and the adapter (applying the adapter on a merged model would apply
    the fine-tuning twice). Returns the manifest's ``llm`` entry."""
    if quant not in LLM_QUANTS:
        raise InputError(f"llm_quant must be one of {LLM_QUANTS}, got {quant!r}")
    if gdir is None or not gdir.is_dir():
        return {"status": "absent", "files": [], "source": None if gdir is None else str(gdir),
                "note": f"no GGUF folder {gdir}; the runtime falls back to the template profile"}
    if quant == "base+lora":
        names, model, lora = [GGUF_BASE, GGUF_LORA], GGUF_BASE, GGUF_LORA
    else:
        names, model, lora = [GGUF_MERGED[quant]], GGUF_MERGED[quant], None
    missing = [n for n in names if not (gdir / n).is_file()]
    if missing:
        return {"status": "absent", "files": [], "source": str(gdir), "quant": quant,
                "note": f"{', '.join(missing)} not in {gdir}; the runtime falls back to the template profile"}
    return {"status": "present", "quant": quant, "files": [f"llm/{n}" for n in names], "source": str(gdir),
            "model": f"llm/{model}", "lora": None if lora is None else f"llm/{lora}"}


def export_bundle(ckpt: str | Path, out: str | Path, *, precisions: Sequence[str] = prec.PRECISIONS,
                  data_dir: str | Path | None = None, gguf_dir: str | Path | None = DEFAULT_GGUF_DIR,
                  sbert: bool = True, sbert_cache: str | Path | None = DEFAULT_SBERT_CACHE,
                  tensorrt: bool = True, max_windows: int | None = 24, llm_quant: str = "q8_0",
                  sign_key: Any = None, passphrase: bytes | None = None,
                  accuracy_gate: str | Path | None = None) -> dict[str, Any]:
    """Export ``ckpt`` (a step dir, a latest/best pointer, a ckpt folder or a run folder) to the bundle
    directory ``out``. Returns the manifest. ``sign_key``: an ed25519 private key (file or key object,
    ``python -m umask.export.signing keygen``) that signs the manifest (``manifest.sig``); None writes an
    unsigned bundle, which `Session.open` refuses unless the caller passes ``allow_unsigned=True``.
    ``accuracy_gate``: a device-scorer result of this checkpoint (benchmarks.accuracy.user_device), recorded
    as the manifest's ``accuracy_gate`` (`precision.accuracy_gate_section`; precision="auto" honours it).
    See the module docstring."""
    from umask.train.common.checkpoints import resolve_checkpoint
    from umask.train.models.umask.trainer import load_model

    t_start = time.perf_counter()
    precisions = prec.check_precisions(precisions)
    if llm_quant not in LLM_QUANTS:
        raise InputError(f"llm_quant must be one of {LLM_QUANTS}, got {llm_quant!r}")
    torch.set_num_threads(1)
    ckpt_dir = resolve_checkpoint(ckpt)
    model, config = load_model(ckpt_dir, ema=True)
    model.eval()
    data_dir = Path(data_dir) if data_dir is not None else DEFAULT_DATA
    catalog = load_llmapp_catalog(data_dir)
    dcfg, mcfg = model.cfg.dit_config(), model.cfg.maskgen_config()
    channels = ChannelLayout.for_catalog(catalog)
    poi = catalog.stations.poi.shape[1] + 1 if hasattr(catalog.stations, "poi") else None
    if channels.n_channels != dcfg.channels:
        raise ExportError(f"the model has {dcfg.channels} channels, the catalog {data_dir} gives "
                          f"{channels.n_channels} (K + 2)")
    if poi is not None and poi != mcfg.poi_dim:
        raise ExportError(f"the model's poi_dim is {mcfg.poi_dim}, the catalog gives {poi}")
    if (dcfg.H, dcfg.W) != (FeatureConfig().H, FeatureConfig().W):
        raise ExportError(f"the model's layout is {dcfg.H}x{dcfg.W}, FeatureConfig gives "
                          f"{FeatureConfig().H}x{FeatureConfig().W}")
    from umask.train.models.umask.dit import TASKS

    if tuple(TASKS) != TASK_NAMES:
        raise ExportError(f"runtime task order {TASK_NAMES} differs from the model's {TASKS}")

    gate = prec.accuracy_gate_section(accuracy_gate, ckpt) if accuracy_gate is not None else None

    def build(tmp: Path) -> dict[str, Any]:
        sections = _build(model, config, ckpt_dir, tmp, precisions, data_dir, catalog, channels, gguf_dir, sbert,
                          sbert_cache, tensorrt, max_windows, llm_quant)
        return {**sections, "accuracy_gate": gate} if gate is not None else sections

    return write_bundle(out, build, family=FAMILY, started=t_start, sign_key=sign_key, passphrase=passphrase)


def _build(model: Any, config: dict[str, Any], ckpt_dir: Path, tmp: Path, precisions: list[str], data_dir: Path,
           catalog: Any, channels: ChannelLayout, gguf_dir: str | Path | None, sbert: bool,
           sbert_cache: str | Path | None, tensorrt: bool, max_windows: int | None,
           llm_quant: str = "q8_0") -> dict[str, Any]:
    from tqdm.auto import tqdm

    dcfg, mcfg = model.cfg.dit_config(), model.cfg.maskgen_config()
    # --- catalog, tokenizer, SBERT ---
    (tmp / "catalog").mkdir()
    for f in CATALOG_FILES:
        shutil.copyfile(data_dir / f, tmp / "catalog" / f)
    fp32 = tmp / "onnx" / "fp32"
    fp32.mkdir(parents=True)
    encoder = None
    sbert_meta: dict[str, Any] = {"status": "absent", "note": "exported without SBERT (sbert=False): the runtime "
                                  "uses the profile MLP's learned 'no profile' embedding"}
    if sbert:
        from umask.train.models.umask.profile_encoder import SentenceEncoder, default_model_path

        encoder = SentenceEncoder()
        sbert_meta = sbert_onnx(fp32 / "sbert.onnx", Path(sbert_cache) if sbert_cache else None)
        (tmp / "tokenizer").mkdir()
        shutil.copyfile(default_model_path() / "tokenizer.json", tmp / "tokenizer" / "tokenizer.json")
        sbert_meta.update({"status": "present", "file": "onnx/fp32/sbert.onnx", "tokenizer": "tokenizer/tokenizer.json",
                           "signature": signature(fp32 / "sbert.onnx")})
        if sbert_meta["parity"]["min_cosine"] < 0.9999:
            raise ParityError(f"fp32/sbert: min cosine {sbert_meta['parity']['min_cosine']:.6f} < 0.9999")
        if any(p.startswith("int8") for p in precisions):   # the int8 sessions embed with an int8 SBERT
            sbert_meta["int8"] = sbert_int8(fp32 / "sbert.onnx", tmp / "onnx" / "int8" / "sbert.onnx", encoder)

    # --- real windows, torch reference inputs ---
    pairs = real_windows_with_history(model, data_dir, max_windows=max_windows)
    windows = [w for w, _ in pairs]
    b = torch_inputs(model, windows, encoder, window_priors(model, pairs, catalog))
    b["target"] = torch.from_numpy(np.stack([w.target for w in windows]))
    feeds = dit_feeds(model, b)

    # --- fp32 ---
    ex = om.example_inputs(model)
    mods = om.wrappers(model)
    artifacts: dict[str, dict[str, Any]] = {p: {} for p in precisions}
    paths: dict[str, dict[str, Path]] = {p: {} for p in precisions}
    for net in ("dit", "maskgen", "profile_mlp"):
        om.export_module(mods[net], ex[net], fp32 / f"{net}.onnx")
    par = {"dit": dit_parity(model, fp32 / "dit.onnx", feeds, b, channels),
           "maskgen": maskgen_parity(model, fp32 / "maskgen.onnx", b),
           "profile_mlp": profile_parity(model, fp32 / "profile_mlp.onnx", b)}
    for net, fig in par.items():
        _check(net, "fp32", fig)              # fp32 beyond tolerance: the export fails
        artifacts["fp32"][net] = {"file": f"onnx/fp32/{net}.onnx", "status": "ok", "parity": fig,
                                  "tolerance": TOLERANCES["fp32"], **signature(fp32 / f"{net}.onnx")}
        paths["fp32"][net] = fp32 / f"{net}.onnx"

    # --- fp16 / int8 of the DiT step and the profile MLP ---
    calib = {"dit": feeds, "profile_mlp": [{"emb": b["profile_emb"].numpy(), "present": b["profile_present"].numpy()}]}
    todo = [(p, n) for p in precisions if p != "fp32" for n in ("dit", "profile_mlp")]
    for p, net in tqdm(todo, desc="precisions", disable=not todo, leave=False):
        d = tmp / "onnx" / p
        d.mkdir(exist_ok=True)
        dst = d / f"{net}.onnx"
        src = fp32 / f"{net}.onnx"
        if p == "fp16":
            how = prec.to_fp16(src, dst)
        elif p == "int8-qdq":
            how = prec.to_int8_qdq(src, dst, calib[net])
        else:
            how = prec.to_int8_dynamic(src, dst)
        fig = dit_parity(model, dst, feeds, b, channels) if net == "dit" else profile_parity(model, dst, b)
        entry = {"file": f"onnx/{p}/{net}.onnx", "conversion": how, "parity": fig, "tolerance": TOLERANCES[p]}
        try:
            _check(net, p, fig)
        except ParityError as e:
            log.error("%s -- artifact NOT written", e)
            dst.unlink()
            artifacts[p][net] = {**entry, "file": None, "status": "rejected", "reason": str(e)}
            continue
        artifacts[p][net] = {**entry, "status": "ok", **signature(dst)}
        paths[p][net] = dst
    for p in precisions:     # shared fp32 networks every precision uses
        artifacts[p].setdefault("maskgen", {"shared": "fp32", "file": "onnx/fp32/maskgen.onnx", "status": "ok"})
    for p in list(paths):
        for d in (tmp / "onnx" / p,):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()

    # --- TensorRT ---
    trt_entry: dict[str, Any] = {"status": "disabled"}
    if tensorrt:
        from umask.export.tensorrt import build_engines

        sigs = {n: artifacts["fp32"][n] for n in ("dit", "maskgen", "profile_mlp")}
        trt_entry = build_engines(paths, sigs, tmp / "trt")

    # --- GGUF (profiling LLM) ---
    llm_entry = select_gguf(Path(gguf_dir) if gguf_dir else None, llm_quant)
    if llm_entry["status"] == "present":
        (tmp / "llm").mkdir()
        for f in llm_entry["files"]:
            shutil.copyfile(Path(llm_entry["source"]) / Path(f).name, tmp / f)
    else:
        log.warning("GGUF: %s; the bundle has no profiling LLM (template profiles on device)", llm_entry["note"])

    sched = model.schedule
    state = json.loads((ckpt_dir / "state.json").read_text()) if (ckpt_dir / "state.json").is_file() else {}
    fcfg = FeatureConfig()
    w = model.cfg.window
    # golden I/O from REAL windows (export/bundle.py write_goldens takes the first row of each feed): the DiT step
    # at t = 999 on the first parity window, the profile MLP on its profile embedding (maskgen and SBERT: derived)
    pm = {"emb": b["profile_emb"].numpy(), "present": b["profile_present"].numpy()}
    golden_inputs = {f"onnx/{p}/{n}.onnx": (feeds[0] if n == "dit" else pm)
                     for p in precisions for n in ("dit", "profile_mlp") if n in paths[p]}
    return {
        "golden_inputs": golden_inputs,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": {"path": str(ckpt_dir), "step": state.get("step"), "ema": True,
                       "training_data": config.get("data", {}).get("source")},
        "model": {"umask": model.cfg.to_dict(), "dit": asdict(dcfg), "maskgen": asdict(mcfg),
                  "x_scale": [float(v) for v in model.x_scale.tolist()], "tasks": list(TASK_NAMES),
                  "mask_mode": model.cfg.mask_mode, "use_profile": bool(model.cfg.use_profile),
                  "all_evidence_tasks": [TASK_NAMES[i] for i in sorted(model.all_evidence_tasks)],
                  "rho_init": list(mcfg.rho_init), "cond_dim": dcfg.cond_dim, "sbert_dim": model.cfg.sbert_dim,
                  "profile_source_trained": config.get("data", {}).get("profile_source", "template")},
        "featurization": {"feature_config": fcfg.to_dict(), "slot_seconds": fcfg.slot_seconds,
                          "window": WindowSpec(w.context, w.horizon, w.short_horizon, w.cold_max_active).to_dict(),
                          "channels": {"n_categories": channels.n_categories, "n_channels": channels.n_channels,
                                       "names": ["traffic"] + [f"app:{n}" for n in catalog.apps.category_names]
                                       + ["location"]},
                          "tessellation": {"kind": "per-user anchor layout on CityGrid.from_stations(catalog)",
                                           "cell_m": fcfg.cell_m, "H": fcfg.H, "W": fcfg.W, "poi_dim": mcfg.poi_dim},
                          "catalog": {"id_space": catalog.id_space, "loader": "load_llmapp_catalog",
                                      "files": [f"catalog/{f}" for f in CATALOG_FILES]},
                          "scales": {"traffic": "log1p(bytes)/20", "app": "log1p(records)/log1p(60)",
                                     "location": "0/1", "model_space": "x * x_scale"},
                          "events_csv": "time,app_id,base_id,bytes (runtime/history.py)",
                          "profile_template_version": TEMPLATE_VERSION},
        "diffusion": {"num_train_steps": sched.num_train_steps, "schedule": sched.schedule,
                      "alphas_cumprod": [float(v) for v in sched.alphas_cumprod.tolist()],
                      "prediction": "x0", "clamp": "eq. 35, fixed evidence noise", "defaults": sampler_defaults(model)},
        "sbert": sbert_meta,
        "artifacts": artifacts,
        "tolerances": TOLERANCES,
        "parity_inputs": {"data": f"{data_dir.name} (REAL sample, {len(windows)} windows at "
                                  f"{list(NOW_HOURS)} h, four tasks, runtime build_window)",
                          "dit_timesteps": list(PARITY_TIMESTEPS), **prior_note(model)},
        "tensorrt": trt_entry,
        "llm": llm_entry,
        "versions": tool_versions(),
    }


def int8_layer_report(ckpt: str | Path, bundle: str | Path, *, data_dir: str | Path | None = None,
                      max_windows: int | None = 24, top: int = 12) -> list[dict[str, Any]]:
    """Where the int8 QDQ DiT of ``bundle`` loses accuracy: `precision.layer_errors` (onnxruntime's
    qdq_loss_debug: per quantized activation, SQNR inside the QDQ graph and against the fp32 graph) on the
    export's own REAL-sample parity feeds (prior, calendar, E_pos, h_b included), worst ``top`` first::

        python -c "from umask.export.families.umask.exporter import int8_layer_report as r; import json; \\
                   print(json.dumps(r('CKPT', 'BUNDLE'), indent=1))"
    """
    from umask.train.common.checkpoints import resolve_checkpoint
    from umask.train.models.umask.profile_encoder import SentenceEncoder
    from umask.train.models.umask.trainer import load_model

    torch.set_num_threads(1)
    model, _ = load_model(resolve_checkpoint(ckpt), ema=True)
    model.eval()
    data_dir = Path(data_dir) if data_dir is not None else DEFAULT_DATA
    pairs = real_windows_with_history(model, data_dir, max_windows=max_windows)
    b = torch_inputs(model, [w for w, _ in pairs], SentenceEncoder(), window_priors(model, pairs,
                                                                                    load_llmapp_catalog(data_dir)))
    root = Path(bundle)
    return prec.layer_errors(root / "onnx/fp32/dit.onnx", root / "onnx/int8-qdq/dit.onnx", dit_feeds(model, b))[:top]


__all__ = ["TOLERANCES", "ExportError", "ParityError", "export_bundle", "real_windows", "real_windows_with_history",
           "window_priors", "torch_inputs", "dit_feeds", "sampler_defaults", "int8_layer_report", "signature"]
