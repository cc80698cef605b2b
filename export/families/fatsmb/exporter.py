"""FatsMB run -> verified bundle: encoder, denoiser, decoder as ONNX (fp32 and int8 QDQ) + the item table.

    from umask.export.families import exporter
    exporter("fatsmb")("artifacts/fatsmb/seed0", "artifacts/bundles/fatsmb")
    python -m umask.export.families.fatsmb.exporter artifacts/fatsmb/seed0 artifacts/bundles/fatsmb

Networks (`torch.onnx.export` through `umask.export.onnx_export.export_module`, batch axis
dynamic): ``encoder`` (items, behaviors (N, max_len) int64 -> z (N, d)), ``denoiser`` (z_t, t, z_null,
b -> x0 (N, d)), ``decoder`` (z (N, d) -> scores (N, n_items); the 55k x d item table is inside it).
``items.npz`` maps dense ids to raw item and category ids. int8: `umask.export.precision.to_int8_qdq`
(weight MatMul / Gemm only, per-channel S8S8), calibrated on validation queries of the training data.

Rule 3 (docs/DESIGN.md): before the bundle is written, each network runs in onnxruntime on real
inputs (the first ``parity_queries`` validation queries) and is compared with torch; the whole
request (`umask.runtime.families.fatsmb.session.Pipeline` over the ONNX files) is compared with the
torch sampler on the same start noise (top-10 overlap). A precision beyond its tolerance is not
written (fp32: max |diff| of z_0 <= 1e-3 and top-10 overlap >= 0.99; int8: top-10 overlap >= 0.6;
the int8 accuracy itself is measured by the protocol-C scorer, not assumed from this gate).
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from umask.export import precision as prec
from umask.export.bundle import signature, write_bundle
from umask.export.errors import ExportError
from umask.export.onnx_export import OPSET, export_module
from umask.runtime.engines.ort import inference_session
from umask.runtime.families.fatsmb.session import Pipeline
from umask.train.models.fatsmb import prior as prior_fit
from umask.train.models.fatsmb import trainer
from umask.train.models.fatsmb.data import load_protocol_c
from umask.train.models.fatsmb.model import FatsMB

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "int8-qdq")
TOL = {"fp32": {"z0_max_abs": 1e-3, "top10_overlap": 0.99}, "int8-qdq": {"top10_overlap": 0.6}}


class EncoderStep(nn.Module):
    input_names, output_names = ["items", "behaviors"], ["z"]

    def __init__(self, m: FatsMB) -> None:
        super().__init__()
        self.enc = m.encoder

    def forward(self, items, behaviors):
        return self.enc(items, behaviors)


class DenoiserStep(nn.Module):
    input_names, output_names = ["z_t", "t", "z_null", "b"], ["x0"]

    def __init__(self, m: FatsMB) -> None:
        super().__init__()
        self.den = m.denoiser

    def forward(self, z_t, t, z_null, b):
        return self.den(z_t, t, z_null, b)


class DecoderStep(nn.Module):
    input_names, output_names = ["z"], ["scores"]

    def __init__(self, m: FatsMB) -> None:
        super().__init__()
        self.dec = m.decoder

    def forward(self, z):
        return self.dec(z)


def _torch_pipeline(model: FatsMB, meta: dict) -> Pipeline:
    """The request math over the torch networks (the parity reference)."""
    t = lambda f: (lambda *xs: f(*(torch.from_numpy(np.asarray(x)) for x in xs)).detach().numpy())  # noqa: E731
    sched = trainer.VPSchedule(model.cfg.diffusion_steps, model.cfg.schedule)
    return Pipeline(t(model.encoder), t(model.denoiser), t(model.decoder), n_items=model.n_items,
                    n_behaviors=model.n_behaviors, max_len=model.cfg.max_len, d=model.cfg.d,
                    alphas_cumprod=sched.alphas_cumprod.numpy())


def _ort_pipeline(files: dict[str, Path], like: Pipeline) -> Pipeline:
    sess = {n: inference_session(str(p)) for n, p in files.items()}
    run = lambda n: (lambda *xs: sess[n].run(None, dict(zip([i.name for i in sess[n].get_inputs()], xs)))[0])  # noqa: E731
    return Pipeline(run("encoder"), run("denoiser"), run("decoder"), n_items=like.n_items, n_behaviors=like.n_behaviors,
                    max_len=like.max_len, d=like.d, alphas_cumprod=like.sampler.schedule.alphas_cumprod)


def _request_parity(ref: Pipeline, got: Pipeline, queries, steps: int, w: float) -> dict[str, float]:
    """z_0 difference and top-10 overlap of the FINAL scores (decoder + prior when there is one)."""
    z_diff, overlap, top1 = 0.0, [], []
    for (items, behs), b in queries:
        noise = np.random.default_rng(0).standard_normal((1, ref.d)).astype(np.float32)
        za = ref.latent(items, behs, b, steps=steps, guidance=w, noise=noise)
        zb = got.latent(items, behs, b, steps=steps, guidance=w, noise=noise)
        z_diff = max(z_diff, float(np.max(np.abs(za - zb))))
        sa = ref.finish(np.asarray(ref.decoder(za), np.float32)[0], items, behs, b)
        sb = got.finish(np.asarray(got.decoder(zb), np.float32)[0], items, behs, b)
        overlap.append(len(set(np.argsort(-sa)[:10]) & set(np.argsort(-sb)[:10])) / min(10, len(sa)))
        top1.append(float(np.argmax(sa) == np.argmax(sb)))
    # with a small catalog (the mobile variant: 20 app categories) top-10 overlap is weak evidence, so the
    # top-1 agreement is recorded too (not gated: the scorer measures the accuracy of each precision)
    return {"z0_max_abs": z_diff, "top10_overlap": float(np.mean(overlap)), "top1_match": float(np.mean(top1)),
            "queries": len(queries)}


def export_bundle(ckpt: str | Path, out: str | Path, *, precisions: Sequence[str] = PRECISIONS, parity_queries: int = 32,
                  calibration_queries: int = 64, sign_key: Any = None, passphrase: bytes | None = None,
                  prior: bool = True) -> dict[str, Any]:
    """Export the run folder ``ckpt`` (written by the FatsMB trainer) to the bundle ``out``; returns the manifest.
    ``prior``: ship the repeat / co-occurrence prior when the run has ``prior_diffusion.json``
    (`umask.train.models.fatsmb.prior`): ``prior.npz`` (tables of the training split) + the gains."""
    t_start = time.perf_counter()
    precisions = prec.check_precisions(precisions, PRECISIONS)
    torch.set_num_threads(1)
    model, meta = trainer.load(ckpt)
    data = load_protocol_c(meta["data"], max_users=meta["train"].get("max_users") or None)
    if data.n_items != model.n_items:
        raise ExportError(f"{ckpt}: model has {model.n_items} items, its data {meta['data']} gives {data.n_items}")
    steps, w = int(meta["sampling"]["steps"]), float(meta["sampling"]["guidance"])
    ref = _torch_pipeline(model, meta)
    fit = prior_fit.load_fit(ckpt, "diffusion") if prior else None
    # model selection metric: Taobao recall@10, the mobile variant ndcg@10 (20 items; `ProtocolC.val_metric`)
    run_metric = meta.get("validation", {}).get("val_metric", "recall@10")
    fit_metric = (fit or {}).get("val_metric", "recall@10")
    tables = prior_fit.tables_for(data, fit.get("prior_config")) if fit else None
    if fit:
        if fit["sampling"] != {"steps": steps, "guidance": w}:
            raise ExportError(f"{ckpt}/prior_diffusion.json was fitted with sampling {fit['sampling']}, the run has "
                              f"steps {steps}, w {w}")
        ref.prior = (tables, np.asarray(fit["gains"], np.float32), np.asarray(fit["scale"], np.float32))
    val = data.val
    queries = [((val.prefixes[i][0], val.prefixes[i][1]), int(val.behavior[i])) for i in range(min(parity_queries, len(val)))]
    # real encoder / denoiser / decoder inputs for calibration and goldens
    n_cal = min(calibration_queries, len(val))
    enc_in = [ref.tokens(*val.prefixes[i]) for i in range(n_cal)]
    zb, zn = trainer.latents(model, val.prefixes[:n_cal], val.behavior[:n_cal])
    rng = np.random.default_rng(0)
    ts = rng.integers(0, model.cfg.diffusion_steps, n_cal)
    sched = trainer.VPSchedule(model.cfg.diffusion_steps, model.cfg.schedule)
    z_t = sched.q_sample(zb, torch.from_numpy(ts), torch.from_numpy(rng.standard_normal(zb.shape).astype(np.float32)))
    den_feeds = [{"z_t": z_t[i:i + 1].numpy(), "t": ts[i:i + 1].astype(np.int64), "z_null": zn[i:i + 1].numpy(),
                  "b": val.behavior[i:i + 1].astype(np.int64)} for i in range(n_cal)]
    enc_feeds = [{"items": a, "behaviors": b} for a, b in enc_in]
    dec_feeds = [{"z": zb[i:i + 1].numpy()} for i in range(n_cal)]
    feeds = {"encoder": enc_feeds, "denoiser": den_feeds, "decoder": dec_feeds}

    def build(tmp: Path) -> dict[str, Any]:
        wrappers = {"encoder": EncoderStep(model), "denoiser": DenoiserStep(model), "decoder": DecoderStep(model)}
        artifacts: dict[str, dict[str, Any]] = {}
        parity: dict[str, Any] = {}
        fp32 = {}
        for name, mod in wrappers.items():
            path = tmp / "fp32" / f"{name}.onnx"
            ex = tuple(torch.from_numpy(v) for v in feeds[name][0].values())
            export_module(mod.eval(), ex, path)
            fp32[name] = path
        for p in precisions:
            files = dict(fp32)
            conv = {}
            if p == "int8-qdq":
                for name in ("encoder", "denoiser", "decoder"):
                    dst = tmp / "int8-qdq" / f"{name}.onnx"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    conv[name] = prec.to_int8_qdq(fp32[name], dst, feeds[name], pre_process=False)   # symbolic shape inference fails on the attention reshapes
                    files[name] = dst
            got = _ort_pipeline(files, ref)
            got.prior = ref.prior
            net = {}
            for name in ("encoder", "denoiser", "decoder"):
                sess = inference_session(str(files[name]))
                diffs = []
                for f in feeds[name][:8]:
                    o = sess.run(None, f)[0]
                    r = wrappers[name](*(torch.from_numpy(v) for v in f.values())).detach().numpy()
                    diffs.append(float(np.max(np.abs(o - r))))
                net[name] = {"max_abs": max(diffs)}
            req = _request_parity(ref, got, queries, steps, w)
            parity[p] = {"networks": net, "request": req}
            bad = [k for k, lim in TOL[p].items() if (req[k] > lim if k.endswith("max_abs") else req[k] < lim)]
            if bad:
                raise ExportError(f"{p}: parity beyond tolerance {TOL[p]}: {req}")
            artifacts[p] = {n: {"file": str(files[n].relative_to(tmp)), "parity": net[n], "opset": OPSET,
                                **({"conversion": conv[n]} if n in conv else {}),
                                **{k: v for k, v in signature(files[n]).items() if k in ("inputs", "outputs")}}
                            for n in ("encoder", "denoiser", "decoder")}
            log.info("%s parity: %s", p, parity[p])
        buf = io.BytesIO()
        cats = data.category_ids[data.item_category] if data.has_categories else data.item_category
        np.savez(buf, item_ids=data.item_ids.astype(np.int64), item_category=cats.astype(np.int64))
        (tmp / "items.npz").write_bytes(buf.getvalue())
        extra: dict[str, Any] = {}
        if fit:
            buf = io.BytesIO()
            np.savez(buf, **tables.arrays())
            (tmp / "prior.npz").write_bytes(buf.getvalue())
            extra["prior"] = {"file": "prior.npz", "gains": fit["gains"], "scale": fit["scale"],
                              "features": fit["features"], "config": fit["prior_config"], "mode": fit["mode"],
                              f"validation_{fit_metric}": fit[f"val_{fit_metric}"],
                              "form": "scale[b] * decoder(z) + sum_f gains[b, f] * features_f (log1p counts)"}
        return {**extra, "model": {"n_items": model.n_items, "n_behaviors": model.n_behaviors, "behaviors": list(data.behaviors),
                          "d": model.cfg.d, "max_len": model.cfg.max_len, "config": meta["model"]},
                "diffusion": {"alphas_cumprod": [float(a) for a in ref.sampler.schedule.alphas_cumprod], "steps": steps,
                              "guidance": w, "sampler": "ddim (eta 0), trailing timesteps, x0 prediction",
                              "noise": "z_T = numpy default_rng(seed).standard_normal((1, d))",
                              "guidance_form": "uncond + w * (cond - uncond) = paper eq. 17 with w = 1 + omega"},
                "items": {"file": "items.npz", "keys": ["item_ids", "item_category"]},
                "artifacts": artifacts, "parity": parity, "tolerances": TOL,
                "checkpoint": {"run": str(ckpt), "validation_metric": run_metric,
                               "validation": meta.get("validation", {}).get(f"val_{run_metric}")},
                "golden_inputs": {f"fp32/{n}.onnx": feeds[n][0] for n in ("encoder", "denoiser", "decoder")}}

    return write_bundle(out, build, family="fatsmb", started=t_start, sign_key=sign_key, passphrase=passphrase)



def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.export.families.fatsmb.exporter", description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt", help="FatsMB run folder")
    p.add_argument("out", help="bundle folder to write")
    p.add_argument("--precisions", default="fp32,int8-qdq")
    p.add_argument("--sign-key", default=None, help="ed25519 private key file (unsigned when omitted)")
    p.add_argument("--no-prior", action="store_true", help="leave the repeat / co-occurrence prior out")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    export_bundle(ns.ckpt, ns.out, precisions=ns.precisions.split(","), sign_key=ns.sign_key, prior=not ns.no_prior)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
