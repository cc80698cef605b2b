"""FatsMB + repeat / co-occurrence prior: the gains fitted on top of a trained FatsMB run.

    python -m umask.train.models.fatsmb.prior artifacts/fatsmb/seed0            # writes prior_diffusion.json, prior_ae.json
    python -m umask.train.models.fatsmb.prior RUN --repeat-decays 0.9,0.99,0.999   # the repeat decay chosen on validation

DEVIATION from paper 003, on purpose (see `umask.runtime.families.fatsmb.prior` for the why and the
features; docs/families/fatsmb.md): the item scores are

    score_b(j) = a_b * decoder(z)_j + sum_f g_{b,f} * x_f(j)

where z is the latent of the full model (z_0 of the guided sampler, ``prior_diffusion.json``) or of
the autoencoder alone (z_b, ``prior_ae.json``, the ablation that tells whether diffusion adds
anything once the prior is there). Encoder, denoiser and decoder stay frozen (the checkpoint of the
three stages); only the (n_behaviors x (F + 1)) non-negative gains are fitted: the feature gains on
training-split queries with time-respecting counts, best validation Recall@10 kept
(`umask.train.baselines.repeat_prior`, the same fit as the blend baseline), then the scale a of the
decoder's logits on validation (see :func:`fit_prior` for why not jointly).
The tables are rebuilt from the training split of the run's data file (deterministic), so a run
folder only stores the gains.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from umask.runtime.families.fatsmb.prior import PriorConfig, PriorTables
from umask.train.baselines import repeat_prior as rp
from umask.train.baselines.seqrec import selection_score
from umask.train.common.checkpoints import atomic_json
from umask.train.common.config import add_dataclass_args, dataclass_from_args
from umask.train.models.fatsmb import trainer
from umask.train.models.fatsmb.data import ProtocolC, load_protocol_c
from umask.train.models.fatsmb.model import FatsMB

log = logging.getLogger(__name__)
MODES = ("diffusion", "ae")
SCALE_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)   # a: weight of the decoder's logits, chosen on validation


def tables_for(data: ProtocolC, cfg: PriorConfig | dict | None = None) -> PriorTables:
    """The prior's count tables: the TRAINING sequences only (never a validation / test target). ``cfg``: a
    PriorConfig, or a fit's ``prior_config`` dict (the feature settings the gains were fitted with)."""
    if isinstance(cfg, dict):
        cfg = PriorConfig(**cfg)
    return PriorTables.build(data.train, data.n_items, data.n_behaviors, cfg)


def fit_prior_decays(model: FatsMB, meta: dict, data: ProtocolC, *, mode: str, cfg: rp.GainFitConfig,
                     decays: Sequence[float]) -> dict:
    """:func:`fit_prior` once per repeat decay (`PriorConfig.repeat_decay`, the weight of an older occurrence of an
    item in the user's history), keeping the fit with the best validation metric (ties: the first listed). Long
    per-user histories of few items (the mobile variant: 20 app categories) want a long memory; the blend baseline
    with the decay chosen the same way (``blend_longmem``) showed it."""
    fits = {float(d): fit_prior(model, meta, data, mode=mode, cfg=cfg,
                                tables=tables_for(data, PriorConfig(repeat_decay=float(d)))) for d in decays}
    key = f"val_{data.val_metric}"
    best = max(fits, key=lambda d: (fits[d][key], -list(fits).index(d)))
    fit = fits[best]
    fit["repeat_decay_grid"] = {str(d): f[key] for d, f in fits.items()}
    return fit


def _base(model: FatsMB, z: torch.Tensor):
    return lambda rows: model.decoder(z[torch.from_numpy(np.asarray(rows))]).detach()


def fit_prior(model: FatsMB, meta: dict, data: ProtocolC, *, mode: str, cfg: rp.GainFitConfig,
              tables: PriorTables | None = None, scale_grid: Sequence[float] = SCALE_GRID) -> dict:
    """Fit the prior's gains on the training split (no neural part: the same fit as the blend baseline),
    then choose the one scale a of the frozen decoder's logits on validation (``scale_grid``; a = 0 is
    the blend itself, ties go to the smaller a). Returns the fit record.

    Why two steps and not a joint fit: on training-split queries the decoder's logits are in-sample
    (stage 1 trained on exactly those targets), so a joint fit trusted them (a ~ 0.7) and validation
    Recall@10 fell to 0.13, below the prior alone (0.17); see docs/families/fatsmb.md."""
    tables = tables or tables_for(data)
    st, w = int(meta["sampling"]["steps"]), float(meta["sampling"]["guidance"])
    val = (data.val.prefixes, data.val.item, data.val.behavior)
    key = f"val_{data.val_metric}"                                 # Taobao: val_recall@10
    fit = rp.fit_gains(tables, rp.training_queries(data.train, cfg.last_positions), val, base_train=None,
                       base_val=None, cfg=cfg, behaviors=data.behaviors, val_metric=data.val_metric)
    z_val = trainer.query_latent(model, data.val.prefixes, data.val.behavior, mode=mode, steps=st, w=w, seed=0)
    fval = rp.features(tables, data.val.prefixes)
    grid = {}
    for a in scale_grid:
        fit["scale"] = [float(a)] * tables.n_behaviors
        s = rp.prior_scores(rp.head_from(fit), tables, fval, data.val.behavior, _base(model, z_val))
        grid[str(a)] = selection_score(s, data.val.item, data.val_metric)
        log.info("prior (%s): decoder scale a=%s %s %.4f", mode, a, key, grid[str(a)])
    a_best = max(scale_grid, key=lambda a: (grid[str(a)], -a))
    fit.update({"scale": [float(a_best)] * tables.n_behaviors, "scale_grid": grid, f"{key}_prior_only": fit[key],
                key: grid[str(a_best)], "mode": mode, "sampling": {"steps": st, "guidance": w}})
    return fit


def score(model: FatsMB, meta: dict, fit: dict, tables: PriorTables, prefixes, target_behavior: np.ndarray) -> np.ndarray:
    """Scores (N, n_items) of the model + prior (the same numbers the exported bundle gives, up to ONNX numerics)."""
    tb = np.asarray(target_behavior, np.int64)
    z = trainer.query_latent(model, prefixes, tb, mode=fit["mode"], steps=fit["sampling"]["steps"],
                             w=fit["sampling"]["guidance"], seed=0)
    return rp.prior_scores(rp.head_from(fit), tables, rp.features(tables, prefixes), tb, _base(model, z))


def load_fit(run: str | Path, mode: str = "diffusion") -> dict | None:
    p = Path(run) / f"prior_{mode}.json"
    return json.loads(p.read_text()) if p.exists() else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.train.models.fatsmb.prior", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="trained FatsMB run folder (config.json + model.safetensors)")
    p.add_argument("--modes", default="diffusion,ae", help="latents to fit the prior on: diffusion, ae")
    p.add_argument("--repeat-decays", default="0.9",
                   help="comma list of PriorConfig.repeat_decay values; the best on validation is kept (default: 0.9 only)")
    add_dataclass_args(p, rp.GainFitConfig)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    cfg = dataclass_from_args(rp.GainFitConfig, ns)
    model, meta = trainer.load(ns.run)
    data = load_protocol_c(meta["data"], max_users=meta["train"].get("max_users") or None)
    decays = [float(x) for x in ns.repeat_decays.split(",") if x]
    for mode in ns.modes.split(","):
        t = time.time()
        fit = fit_prior_decays(model, meta, data, mode=mode, cfg=cfg, decays=decays)
        fit["seconds"] = round(time.time() - t, 1)
        atomic_json(Path(ns.run) / f"prior_{mode}.json", fit)
        log.info("%s: prior (%s) %s %.4f at step %d, scale %s", ns.run, mode, fit["val_metric"],
                 fit["val_" + fit["val_metric"]], fit["best_step"], fit["scale"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
