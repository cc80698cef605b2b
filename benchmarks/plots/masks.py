"""Figures 8 and 9 analogues: the learned task evidence masks and the user-cluster view (SYNTHETIC users).

``python -m umask.bench.plots.masks --ckpt artifacts/train/small_cpu/ckpt --users 200 --seed 0 \
    --out benchmarks/results/plots`` writes::

    task_masks.png / task_masks.json   Fig. 8 analogue: what each task's mask generator reveals
    clusters.png   / clusters.json     Fig. 9 analogue: F_pat -> t-SNE -> k-means vs. simulator archetypes

Everything is computed on SYNTHETIC users of the calibrated simulator (train/simulator.py), the same
population the training run used when ``--users`` / ``--seed`` equal the run's ``n_users`` /
``sim_seed`` (the JSON records whether the population fingerprint matches the checkpoint's).

Checkpoint (``--ckpt``): a step directory (``.../ckpt/step_000250``), a checkpoint root holding a
``latest`` pointer (``.../ckpt``) or a run directory holding ``ckpt/``. The EMA weights are used
(``--raw-weights`` for the optimizer's weights).

Window and mask (choices of this script, documented, not from the paper):

* Every user gets ONE window, the last one that lies wholly inside the training days (start =
  train_end - T; for the 7-day simulator week and T = 288: slots 192..479, context = days 3-4,
  horizon = day 5). It is a real training window (start is a multiple of the training stride).
  The four tasks see the same x0; only ``avail`` differs (dataset.py): short/long-term = the whole
  context, cold-start = the <= 20 most recent active context slots, imputation = the non-hidden
  coordinates of the context (the training generator's hidden pattern for that item).
* The mask is the EVALUATION mask of ``UMask.complete``: eval mode, reference-bank statistics, no
  Gumbel noise (deterministic top-k of log pi). The soft mask is the relaxation (unnumbered, after eq. 20) of that same
  deterministic score (zero Gumbel noise, sum = kappa). ``probs`` is pi (sum 1 over the available
  coordinates); it is shown as n_avail * pi (1 = uniform over the available coordinates).
* "Revealed" = the hard mask (evidence handed to the DiT). Fractions are over all context
  coordinates (slots x 16 layout cells); "of available" fractions divide by ``avail`` instead.
* Layout cells (h, w) are PER USER (the user's 16 most visited 500 m cells, Hilbert ordered,
  runtime/tessellation.py), so the spatial map averages layout slots, not places of the city.

Cluster view: F_pat (eq. 5: learned per-phase weighting of the daily phase profile of the
coordinate tokens; ``features["F_pat"]``) of each user's short-term window (avail = the whole
context; F_pat does not depend on the task otherwise), z-scored per dimension, t-SNE to 2-D (sklearn,
``random_state = --seed``), k-means (k = 5, ``random_state = --seed``) on the 2-D embedding (what the
figure shows). The adjusted Rand index (ARI) against the simulator archetypes is reported for that
clustering and, for reference, for k-means on the z-scored F_pat itself, and for two controls run
through the same pipeline: F_pat of a RANDOMLY INITIALIZED model of the same config (what the
architecture gives without training) and a hand-made feature (the user's hour-of-day activity
profile over the context). Mask density per cluster = k / n_avail of the deterministic mask, per task.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.gridspec import GridSpec, GridSpecFromSubplotSpec
from umask.runtime.core.errors import InputError
from umask.train.models.umask.data import (
    UserData,
    UserWindowDataset,
    build_profile_table,
    collate,
    population_fingerprint,
    users_from_events,
)
from umask.train.models.umask.dit import TASKS
from umask.train.common.checkpoints import resolve_checkpoint
from umask.train.models.umask.model import UMask, UMaskConfig
from umask.train.data.user_windows import user_splits

log = logging.getLogger(__name__)

SYNTH = "synthetic users (simulator)"
TASK_COLORS = {"short_term": "#1f77b4", "long_term": "#ff7f0e", "cold_start": "#2ca02c", "imputation": "#d62728"}
ARCH_ORDER = ("commuter", "explorer", "night", "homebody", "sparse")
ARCH_MARKERS = {"commuter": "o", "explorer": "^", "night": "s", "homebody": "D", "sparse": "X"}
ARCH_COLORS = {"commuter": "#4c72b0", "explorer": "#dd8452", "night": "#55a868", "homebody": "#c44e52",
               "sparse": "#8172b3"}
CLUSTER_CMAP = plt.get_cmap("tab10")


# -----------------------------------------------------------------------------
# Checkpoint and population
# -----------------------------------------------------------------------------

def load_checkpoint(path: str | Path, *, ema: bool = True) -> tuple[UMask, dict[str, Any], Path, int, str]:
    """(model in eval mode, run config, checkpoint dir, step, which weights)."""
    from safetensors.torch import load_file

    ck = resolve_checkpoint(path)
    config = json.loads((ck / "config.json").read_text())
    fname = "ema.safetensors" if ema and (ck / "ema.safetensors").is_file() else "model.safetensors"
    model = UMask(UMaskConfig.from_dict(config["model"]))
    model.load_state_dict(load_file(str(ck / fname), device="cpu"))
    model.eval()
    step = -1
    if (ck / "state.json").is_file():
        step = int(json.loads((ck / "state.json").read_text()).get("step", -1))
    elif ck.name.startswith("step_"):
        step = int(ck.name.split("_", 1)[1])
    return model, config, ck, step, ("EMA" if fname.startswith("ema") else "raw")


def synthetic_population(n_users: int, seed: int, days: int = 7,
                         data_dir: str | Path | None = None) -> tuple[list[UserData], list[str]]:
    """The simulator's SYNTHETIC users featurized exactly as ``dataset.simulated_users`` does, plus
    each user's ground-truth archetype (from the simulator's per-user meta)."""
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.train.simulator import (
        DEFAULT_DATA_DIR,
        TSINGHUA_DIR,
        SimulatorConfig,
        simulate,
    )

    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    catalog = load_llmapp_catalog(root / TSINGHUA_DIR if (root / TSINGHUA_DIR).is_dir() else root)
    events, meta = simulate(SimulatorConfig(n_users=n_users, days=days, seed=seed), catalog, data_dir,
                            progress=False)
    users = users_from_events(events, catalog)
    arch = {int(m["user_id"]): str(m["archetype"]) for m in meta}
    return users, [arch[int(u.user)] for u in users]


def last_train_windows(users: Sequence[UserData], T: int) -> np.ndarray:
    """(n_users * n_tasks, 4) rows (user, start, task, end): each user's last window wholly inside the
    training days, once per task (row = user * n_tasks + task)."""
    rows = []
    for ui, u in enumerate(users):
        sp = user_splits(u.tensor.T, u.tensor.slots_per_day)["train"]
        start = sp.t1 - T
        if start < sp.t0:
            raise InputError(f"user {u.user}: training days ({sp.t1 - sp.t0} slots) are shorter than T={T}")
        rows.extend((ui, start, t, sp.t1) for t in range(len(TASKS)))
    return np.array(rows, np.int64)


# -----------------------------------------------------------------------------
# Mask generator outputs
# -----------------------------------------------------------------------------

@torch.no_grad()
def mask_outputs(model: UMask, ds: UserWindowDataset, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Deterministic evaluation masks of every item of ``ds`` (context part only) and the features."""
    ctx = model.cfg.window.context
    mg = model.maskgen
    H, W = mg.cfg.H, mg.cfg.W
    out: dict[str, list[np.ndarray]] = {k: [] for k in (
        "hard", "avail", "soft", "probs_rel", "k", "ratio", "n_avail", "F_pat", "h_b", "gamma", "beta",
        "rho_tau", "task", "activity")}
    for b0 in range(0, len(ds), batch_size):
        batch = collate([ds[i] for i in range(b0, min(b0 + batch_size, len(ds)))])
        avail = batch["avail"]
        h_u = model.user_repr(batch)
        x_in = model._scale(batch["x0"]) * avail
        mo = mg(x_in, avail, h_u, batch["task"], batch["e_pos"], use_bank=True, relax=True)
        n_av = mo.features["n_avail"]
        B = avail.shape[0]
        probs_rel = (mo.probs * n_av[:, None]).reshape(B, -1, H, W)
        out["hard"].append(mo.hard[:, 0, :ctx].numpy().astype(np.uint8))
        out["avail"].append(avail[:, 0, :ctx].numpy().astype(np.uint8))
        out["soft"].append(mo.soft[:, 0, :ctx].numpy().astype(np.float32))
        out["probs_rel"].append(probs_rel[:, :ctx].numpy().astype(np.float32))
        out["k"].append(mo.k.numpy())
        out["ratio"].append(mo.ratio.numpy())
        out["n_avail"].append(n_av.numpy())
        for key, feat in (("F_pat", "F_pat"), ("h_b", "h_b"), ("gamma", "gamma_b"), ("beta", "beta"),
                          ("rho_tau", "rho_tau")):
            out[key].append(mo.features[feat].numpy())
        out["task"].append(batch["task"].numpy())
        # per-slot activity of the (unscaled) context, for the hand-made control feature
        out["activity"].append(batch["x0"][:, :, :ctx].abs().mean(dim=(1, 3, 4)).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


# -----------------------------------------------------------------------------
# Statistics
# -----------------------------------------------------------------------------

def _f(x: Any) -> float:
    v = float(x)
    return v if math.isfinite(v) else 0.0


def _lst(a: np.ndarray, nd: int = 6) -> list:
    return np.round(np.nan_to_num(np.asarray(a, np.float64)), nd).tolist()


def task_mask_stats(mo: dict[str, np.ndarray], n_users: int, slot_hours: float, rho_init: Sequence[float],
                    rho_learned: Sequence[float]) -> dict[str, Any]:
    """Per-task numbers behind the Fig. 8 panels (averaged over users with n_avail > 0)."""
    nt = len(TASKS)
    ctx = mo["hard"].shape[1]
    res: dict[str, Any] = {}
    for ti, name in enumerate(TASKS):
        sel = np.arange(n_users) * nt + ti
        hard = mo["hard"][sel].astype(np.float64)              # (U, ctx, H, W)
        avail = mo["avail"][sel].astype(np.float64)
        n_av, k = mo["n_avail"][sel], mo["k"][sel].astype(np.float64)
        ok = n_av > 0
        cells = hard.shape[2] * hard.shape[3]
        temporal = hard.sum((2, 3)).mean(0) / cells           # fraction of all coordinates of the slot
        temporal_avail = avail.sum((2, 3)).mean(0) / cells
        temporal_of_avail = hard.sum((0, 2, 3)) / np.maximum(avail.sum((0, 2, 3)), 1.0)
        spatial = hard.mean((0, 1))                             # (H, W)
        spatial_avail = avail.mean((0, 1))
        spatial_of_avail = hard.sum((0, 1)) / np.maximum(avail.sum((0, 1)), 1.0)
        on = avail > 0.5
        soft_vals = mo["soft"][sel][on]
        prel = mo["probs_rel"][sel][on]
        density = k[ok] / n_av[ok]
        # when in the context the evidence sits: mean lag (hours before the context end) of the revealed
        # coordinates, and the share of them in the last 6 h of the context
        lag_h = (ctx - np.arange(ctx) - 0.5) * slot_hours
        rev_t = hard.sum((0, 2, 3))
        last6 = lag_h <= 6.0
        # entropy of pi relative to uniform over the available coordinates (1 = uniform)
        ent = []
        for i in np.flatnonzero(ok):
            p = mo["probs_rel"][sel[i]][mo["avail"][sel[i]] > 0].astype(np.float64) / n_av[i]
            p = p[p > 0]
            ent.append(-(p * np.log(p)).sum() / math.log(n_av[i]) if n_av[i] > 1 else 1.0)
        res[name] = {
            "n_users_with_evidence_candidates": int(ok.sum()),
            "temporal_revealed": _lst(temporal), "temporal_avail": _lst(temporal_avail),
            "temporal_revealed_of_avail": _lst(temporal_of_avail),
            "spatial_revealed": _lst(spatial), "spatial_avail": _lst(spatial_avail),
            "spatial_revealed_of_avail": _lst(spatial_of_avail),
            "n_avail_mean": _f(n_av.mean()), "k_mean": _f(k.mean()),
            "density_k_over_navail": {"mean": _f(density.mean()) if ok.any() else 0.0,
                                      "std": _f(density.std()) if ok.any() else 0.0,
                                      "min": _f(density.min()) if ok.any() else 0.0,
                                      "max": _f(density.max()) if ok.any() else 0.0},
            "ratio_effective": {"mean": _f(mo["ratio"][sel][ok].mean()) if ok.any() else 0.0,
                                "std": _f(mo["ratio"][sel][ok].std()) if ok.any() else 0.0},
            "gamma_b": {"mean": _f(mo["gamma"][sel].mean()), "std": _f(mo["gamma"][sel].std())},
            "rho_tau_learned": _f(rho_learned[ti]), "rho_init": _f(rho_init[ti]),
            "beta_tau_temporal_weight": _f(mo["beta"][sel][0]),
            "revealed_fraction_of_context": _f(hard.mean()),
            "avail_fraction_of_context": _f(avail.mean()),
            "revealed_mean_lag_h": _f((rev_t * lag_h).sum() / max(rev_t.sum(), 1.0)),
            "revealed_share_last_6h": _f(rev_t[last6].sum() / max(rev_t.sum(), 1.0)),
            "avail_share_last_6h": _f(avail.sum((0, 2, 3))[last6].sum() / max(avail.sum(), 1.0)),
            "pi_entropy_rel_uniform_mean": _f(np.mean(ent)) if ent else 0.0,
            "soft_mask_quantiles": dict(zip(("q05", "q25", "q50", "q75", "q95"),
                                            _lst(np.quantile(soft_vals, [.05, .25, .5, .75, .95]))
                                            if soft_vals.size else [0.0] * 5)),
            "soft_mask_mean": _f(soft_vals.mean()) if soft_vals.size else 0.0,
            "n_pi_quantiles": dict(zip(("q05", "q25", "q50", "q75", "q95"),
                                       _lst(np.quantile(prel, [.05, .25, .5, .75, .95]))
                                       if prel.size else [0.0] * 5)),
        }
    return res


def _embed_and_cluster(feat: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """z-score -> t-SNE (2-D) -> k-means on the embedding; also k-means on the z-scored features.
    Returns (embedding, clusters on the embedding, clusters on the features, perplexity)."""
    from sklearn.cluster import KMeans
    from sklearn.manifold import TSNE

    x = np.asarray(feat, np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
    n = x.shape[0]
    perp = float(min(30.0, max(1.0, (n - 1) / 3.0)))
    emb = TSNE(n_components=2, perplexity=perp, init="pca", learning_rate="auto", random_state=seed,
               max_iter=1000).fit_transform(x) if n > 2 else np.c_[x[:, :1], x[:, 1:2] if x.shape[1] > 1 else 0 * x[:, :1]]
    k = min(k, n)
    cl_emb = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(emb)
    cl_feat = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    return emb, cl_emb, cl_feat, perp


def _ari_spread(feat: np.ndarray, arch: np.ndarray, k: int, seeds: Sequence[int]) -> dict[str, Any]:
    """ARI (t-SNE + k-means on the embedding, and k-means on the features) for several random states."""
    from sklearn.metrics import adjusted_rand_score

    a_emb, a_feat = [], []
    for s in seeds:
        _, ce, cf, _ = _embed_and_cluster(feat, k, int(s))
        a_emb.append(float(adjusted_rand_score(arch, ce)))
        a_feat.append(float(adjusted_rand_score(arch, cf)))
    return {"random_states": [int(s) for s in seeds], "ari_tsne_kmeans": a_emb, "ari_kmeans_on_feature": a_feat,
            "ari_tsne_kmeans_mean": _f(np.mean(a_emb)), "ari_tsne_kmeans_std": _f(np.std(a_emb)),
            "ari_kmeans_on_feature_mean": _f(np.mean(a_feat)), "ari_kmeans_on_feature_std": _f(np.std(a_feat))}


def _hour_profile(activity: np.ndarray, slot_hours: float, ctx_start_hour: float) -> np.ndarray:
    """(U, ctx) per-slot activity -> (U, 24) mean activity per hour of day (hand-made control feature)."""
    hod = ((ctx_start_hour + np.arange(activity.shape[1]) * slot_hours) % 24).astype(int)
    prof = np.zeros((activity.shape[0], 24))
    for h in range(24):
        m = hod == h
        if m.any():
            prof[:, h] = activity[:, m].mean(1)
    return prof


# -----------------------------------------------------------------------------
# Figures
# -----------------------------------------------------------------------------

def _subtitle(info: dict[str, Any]) -> str:
    return (f"{SYNTH} - SYNTHETIC data, {info['n_users']} users, sim seed {info['sim_seed']}"
            f"{'' if info['population_matches_checkpoint'] else ' (NOT the training population)'}\n"
            f"checkpoint: {info['checkpoint']} (step {info['step']}, {info['weights']} weights); "
            f"window: slots {info['window_start']}..{info['window_end'] - 1} (context {info['context']} "
            f"+ horizon {info['horizon']}), deterministic eval mask")


def _lag_ticks(ax: Any, ctx: int, slot_hours: float) -> None:
    total_h = ctx * slot_hours
    step_h = 6 if total_h > 24 else (1 if total_h <= 6 else 2)
    hrs = np.arange(0, total_h + 1e-9, step_h)
    ax.set_xticks(ctx - hrs / slot_hours - 0.5)
    ax.set_xticklabels([f"-{h:g}h" if h else "0h" for h in hrs], fontsize=8)


def plot_task_masks(stats: dict[str, Any], example: dict[str, Any], info: dict[str, Any], path: Path) -> None:
    ctx, slot_h = info["context"], info["slot_hours"]
    H, W = info["H"], info["W"]
    fig = plt.figure(figsize=(17, 21))
    gs = GridSpec(4, 4, figure=fig, height_ratios=[1.0, 0.85, 1.55, 1.0], hspace=0.42, wspace=0.32,
                  top=0.925, bottom=0.04, left=0.06, right=0.97)
    fig.suptitle("Fig. 8 analogue - learned evidence masks per task, " + SYNTH, fontsize=15, fontweight="bold")
    fig.text(0.5, 0.945, _subtitle(info), ha="center", va="center", fontsize=9.5, color="0.25")

    # (a) temporal profile
    ax = fig.add_subplot(gs[0, :3])
    x = np.arange(ctx)
    for name in TASKS:
        s = stats[name]
        ax.plot(x, s["temporal_revealed"], color=TASK_COLORS[name], lw=1.6,
                label=f"{name}: revealed ({s['revealed_fraction_of_context']:.3f} of context)")
        ax.plot(x, s["temporal_avail"], color=TASK_COLORS[name], lw=0.9, ls=":", alpha=0.9)
    ax.plot([], [], color="0.3", ls=":", lw=0.9, label="dotted: available (avail) per slot")
    _lag_ticks(ax, ctx, slot_h)
    ax.set_xlim(-0.5, ctx - 0.5)
    ax.set_ylim(0, 1.38)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel("context slot (time before the forecast origin / end of the context)")
    ax.set_ylabel("fraction of the slot's layout cells")
    ax.set_title(f"(a) temporal profile: revealed coordinates per slot, mean over {info['n_users']} users",
                 fontsize=11, loc="left")
    ax.legend(fontsize=8, loc="upper left", ncol=3, framealpha=0.9)
    ax.grid(alpha=0.3)

    # budget ratio per task
    ax = fig.add_subplot(gs[0, 3])
    xi = np.arange(len(TASKS))
    dens = [stats[n]["density_k_over_navail"]["mean"] for n in TASKS]
    sd = [stats[n]["density_k_over_navail"]["std"] for n in TASKS]
    ax.bar(xi, dens, yerr=sd, color=[TASK_COLORS[n] for n in TASKS], alpha=0.85, capsize=4,
           label="k / n_avail (mean +- sd over users)")
    ax.scatter(xi, [stats[n]["rho_tau_learned"] for n in TASKS], marker="_", s=700, linewidths=2.5,
               color="k", zorder=3, label="learned base ratio rho_tau")
    ax.scatter(xi, [stats[n]["rho_init"] for n in TASKS], marker="x", s=45, color="#ffd700", zorder=4,
               label="rho_init (budget prior)")
    for i, v in enumerate(dens):
        ax.text(i, v / 2, f"{v:.3f}", ha="center", va="center", fontsize=8.5, color="white", fontweight="bold")
    ax.set_xticks(xi)
    ax.set_xticklabels([n.replace("_", "\n") for n in TASKS], fontsize=8.5)
    ax.set_ylim(0, 1.38)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("budget ratio")
    ax.set_title("(d) budget ratio per task", fontsize=11, loc="left")
    ax.legend(fontsize=7.5, loc="upper left", framealpha=0.95, markerscale=0.5)
    ax.grid(axis="y", alpha=0.3)

    # (b) spatial maps
    for ti, name in enumerate(TASKS):
        ax = fig.add_subplot(gs[1, ti])
        m = np.asarray(stats[name]["spatial_revealed"]).reshape(H, W)
        lo_, hi_ = float(m.min()), float(m.max())
        hi_ = hi_ if hi_ > lo_ else lo_ + 1e-6
        im = ax.imshow(m, cmap="viridis", vmin=lo_, vmax=hi_)
        for h in range(H):
            for w in range(W):
                ax.text(w, h, f"{m[h, w]:.3f}", ha="center", va="center", fontsize=8,
                        color="white" if m[h, w] < lo_ + 0.6 * (hi_ - lo_) else "black")
        ax.set_xticks(range(W))
        ax.set_yticks(range(H))
        ax.set_xlabel("w")
        ax.set_ylabel("h")
        ax.set_title(f"(b) {name}: revealed per layout cell", fontsize=10, loc="left", color=TASK_COLORS[name])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    pos = gs[1, 0].get_position(fig)
    fig.text(0.06, pos.y0 - 0.032, "(b) fraction of the context's coordinates of layout cell (h, w) that are revealed, "
             "mean over users; cells are per-user layout slots (16 most visited 500 m cells, Hilbert ordered);\n"
             "color scale per panel (min..max of that task)", fontsize=8.5, color="0.3", va="top")

    # (c) joint time x cell maps for one user
    sub = GridSpecFromSubplotSpec(len(TASKS), 1, subplot_spec=gs[2, :], hspace=0.55)
    cmap = ListedColormap(["#f2f2f2", "#9ecae1", "#08306b"])
    for ti, name in enumerate(TASKS):
        ax = fig.add_subplot(sub[ti])
        img = np.asarray(example["maps"][name])              # (cells, ctx) in {0, 1, 2}
        ax.imshow(img, aspect="auto", cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
        e = example["tasks"][name]
        ax.set_ylabel("cell h*W+w", fontsize=8)
        ax.set_yticks(range(0, img.shape[0], max(1, img.shape[0] // 4)))
        ax.tick_params(labelsize=7.5)
        _lag_ticks(ax, ctx, slot_h)
        ax.set_title(f"(c) {name}: user {example['user_id']} ({example['archetype']}, SYNTHETIC) - "
                     f"k = {e['k']} of n_avail = {e['n_avail']} (ratio {e['density']:.3f})",
                     fontsize=9.5, loc="left", color=TASK_COLORS[name])
        if ti == len(TASKS) - 1:
            ax.set_xlabel("context slot (time before the forecast origin)")
        if ti == 0:
            handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="0.5") for c in cmap.colors]
            ax.legend(handles, ["not available", "available, not revealed", "revealed (evidence)"],
                      loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=8.5, frameon=False)

    # (d) value distributions: soft mask and n * pi
    ax = fig.add_subplot(gs[3, :2])
    data = [np.asarray(example["soft_values"][n]) for n in TASKS]
    _violin(ax, data, [TASK_COLORS[n] for n in TASKS])
    ax.set_xticks(range(1, len(TASKS) + 1))
    ax.set_xticklabels(TASKS, fontsize=9)
    ax.set_ylabel("soft mask value (relaxation after eq. 20)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("(d) soft mask on the available coordinates (all users; sample of "
                 f"{example['violin_sample']} per task)", fontsize=10.5, loc="left")
    ax.grid(axis="y", alpha=0.3)

    ax = fig.add_subplot(gs[3, 2:])
    for name in TASKS:
        hst = example["npi_hist"][name]
        edges = np.asarray(hst["edges"])
        cnt = np.asarray(hst["density"])
        ax.stairs(cnt, edges, color=TASK_COLORS[name], lw=1.6, label=name)
    ax.axvline(0.0, color="0.3", ls="--", lw=1)
    ax.text(0.02, 0.97, "0 = uniform over the available coordinates", transform=ax.transAxes, fontsize=8,
            va="top", color="0.3")
    ax.set_xlabel("log10(n_avail * pi)   (sampling probability relative to uniform)")
    ax.set_ylabel("density")
    ax.set_title("(d) sampling distribution pi on the available coordinates (all users)", fontsize=10.5,
                 loc="left")
    ax.legend(fontsize=8.5)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _violin(ax: Any, data: list[np.ndarray], colors: list[str]) -> None:
    ok = [i for i, d in enumerate(data) if d.size > 1 and np.ptp(d) > 0]
    if ok:
        parts = ax.violinplot([data[i] for i in ok], positions=[i + 1 for i in ok], showmedians=True,
                              widths=0.8)
        for body, i in zip(parts["bodies"], ok):
            body.set_facecolor(colors[i])
            body.set_alpha(0.6)
    for i, d in enumerate(data):
        if d.size and i not in ok:
            ax.scatter([i + 1], [float(d.mean())], color=colors[i])
        if d.size:
            ax.text(i + 1.33, float(np.median(d)), f"median {np.median(d):.2f}\nmean {d.mean():.2f}",
                    fontsize=7.5, va="center")


def plot_clusters(cl: dict[str, Any], info: dict[str, Any], path: Path) -> None:
    emb = np.asarray(cl["tsne"])
    clusters = np.asarray(cl["cluster"])
    arch = np.asarray(cl["archetype"])
    k = int(clusters.max()) + 1 if clusters.size else 0
    fig = plt.figure(figsize=(16, 13))
    gs = GridSpec(2, 2, figure=fig, hspace=0.3, wspace=0.22, top=0.875, bottom=0.06, left=0.06, right=0.97)
    fig.suptitle("Fig. 9 analogue - users clustered by the mask generator's pattern feature F_pat, " + SYNTH,
                 fontsize=14, fontweight="bold")
    stab = cl.get("stability", {})
    line = (f"ARI(k-means on t-SNE, archetype) = {cl['ari']:.3f} (NMI {cl['nmi']:.3f})"
            + (f", {stab['ari_tsne_kmeans_mean']:.3f} +- {stab['ari_tsne_kmeans_std']:.3f} over "
               f"{len(stab['random_states'])} random states" if stab else "")
            + f"; k-means on z-scored F_pat: {cl['ari_kmeans_on_fpat']:.3f}")
    ctrl = cl.get("controls") or {}
    if ctrl:
        c0, c1 = ctrl["init_model_fpat"], ctrl["hour_of_day_activity"]
        line += ("\ncontrols, same pipeline (mean +- sd over random states): F_pat of an UNTRAINED (init) model "
                 f"ARI = {c0['stability']['ari_tsne_kmeans_mean']:.3f} +- {c0['stability']['ari_tsne_kmeans_std']:.3f}; "
                 f"hour-of-day activity profile ARI = {c1['stability']['ari_tsne_kmeans_mean']:.3f} +- "
                 f"{c1['stability']['ari_tsne_kmeans_std']:.3f}")
    fig.text(0.5, 0.925, _subtitle(info) + "\n" + line, ha="center", va="center", fontsize=9.5, color="0.25")
    arch_names = [a for a in ARCH_ORDER if a in set(arch)] + sorted(set(arch) - set(ARCH_ORDER))

    ax = fig.add_subplot(gs[0, 0])
    for a in arch_names:
        m = arch == a
        ax.scatter(emb[m, 0], emb[m, 1], c=[CLUSTER_CMAP(c % 10) for c in clusters[m]],
                   marker=ARCH_MARKERS.get(a, "o"), s=36, edgecolors="k", linewidths=0.4)
    hc = [plt.Line2D([], [], ls="", marker="o", color=CLUSTER_CMAP(c % 10), markersize=8,
                     label=f"cluster {c} (n={int((clusters == c).sum())})") for c in range(k)]
    ha = [plt.Line2D([], [], ls="", marker=ARCH_MARKERS.get(a, "o"), color="0.5", markeredgecolor="k",
                     markersize=8, label=f"{a}") for a in arch_names]
    ax.legend(handles=hc + ha, fontsize=8, loc="best", ncol=2, framealpha=0.85,
              title="color: k-means cluster, marker: archetype", title_fontsize=8)
    ax.set_title(f"(a) t-SNE of F_pat, colored by k-means cluster (k={k})", fontsize=11, loc="left")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")

    ax = fig.add_subplot(gs[0, 1])
    for a in arch_names:
        m = arch == a
        ax.scatter(emb[m, 0], emb[m, 1], color=ARCH_COLORS.get(a, "0.5"), marker=ARCH_MARKERS.get(a, "o"), s=36,
                   edgecolors="k", linewidths=0.4, label=f"{a} (n={int(m.sum())})")
    ax.legend(fontsize=8.5, loc="best", framealpha=0.85, title="simulator archetype (ground truth, SYNTHETIC)",
              title_fontsize=8)
    ax.set_title("(b) same embedding, colored by the simulator archetype", fontsize=11, loc="left")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")

    sub = GridSpecFromSubplotSpec(2, 1, subplot_spec=gs[1, 0], hspace=0.12, height_ratios=[1.0, 0.8])
    dens = cl["density_per_cluster"]
    width = 0.8 / len(TASKS)
    xk = np.arange(k)
    ax = fig.add_subplot(sub[0])
    ax2 = fig.add_subplot(sub[1], sharex=ax)
    for ti, name in enumerate(TASKS):
        vals = np.array([dens[str(c)][name]["mean"] for c in range(k)])
        sds = [dens[str(c)][name]["std"] for c in range(k)]
        off = xk + (ti - (len(TASKS) - 1) / 2) * width
        ax.bar(off, vals, width, yerr=sds, capsize=2, color=TASK_COLORS[name], alpha=0.85, label=name,
               error_kw={"lw": 0.8})
        pop = cl["density_population"][name]
        ax2.bar(off, 100.0 * (vals / pop - 1.0) if pop > 0 else 0 * vals, width, color=TASK_COLORS[name],
                alpha=0.85)
    ax.set_ylabel("k / n_avail (mean +- sd)")
    ax.set_ylim(0, 1.18)
    ax.set_title("(c) mask density per cluster and task", fontsize=11, loc="left")
    ax.legend(fontsize=8.5, ncol=4, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    plt.setp(ax.get_xticklabels(), visible=False)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_ylabel("vs. all users of the task (%)")
    ax2.set_xticks(range(k))
    ax2.set_xticklabels([f"cluster {c}\n(n={int((clusters == c).sum())})" for c in range(k)], fontsize=8.5)
    ax2.grid(axis="y", alpha=0.3)
    ax2.text(0.01, 0.95, "relative difference of the cluster's mean density from the task's population mean",
             transform=ax2.transAxes, fontsize=7.5, va="top", color="0.3")

    ax = fig.add_subplot(gs[1, 1])
    tab = np.array([[int(((clusters == c) & (arch == a)).sum()) for a in arch_names] for c in range(k)])
    ax.imshow(tab, cmap="Blues", aspect="auto")
    for c in range(k):
        for j in range(len(arch_names)):
            ax.text(j, c, str(tab[c, j]), ha="center", va="center", fontsize=10,
                    color="white" if tab[c, j] > 0.6 * max(tab.max(), 1) else "black")
    ax.set_xticks(range(len(arch_names)))
    ax.set_xticklabels(arch_names, fontsize=9)
    ax.set_yticks(range(k))
    ax.set_yticklabels([f"cluster {c}" for c in range(k)], fontsize=9)
    ax.set_title("(d) users per (k-means cluster, archetype)", fontsize=11, loc="left")
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -----------------------------------------------------------------------------
# Driver
# -----------------------------------------------------------------------------

def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")


def _display_path(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def run(ckpt: str | Path, n_users: int = 200, seed: int = 0, out: str | Path = "benchmarks/results/plots", *,
        n_clusters: int = 5, batch_size: int = 16, ema: bool = True, example_user: int | None = None,
        controls: bool = True, stability_seeds: int = 5, profile_source: str | None = None, data_dir: str | Path | None = None,
        violin_sample: int = 20000) -> dict[str, Any]:
    """Compute both figures and JSONs; returns {"task_masks": ..., "clusters": ...} (the JSON bodies)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, config, ck, step, weights = load_checkpoint(ckpt, ema=ema)
    wcfg = model.cfg.window
    mcfg = model.maskgen.cfg
    users, archetypes = synthetic_population(n_users, seed, data_dir=data_dir)
    fp = population_fingerprint(users)
    fp_ck = config.get("data", {}).get("fingerprint")
    if fp != fp_ck:
        log.warning("population fingerprint %s differs from the checkpoint's %s: not the training population",
                    fp, fp_ck)
    C, _, H, W = users[0].tensor.shape
    if (C, H, W) != (mcfg.channels, mcfg.H, mcfg.W):
        raise InputError(f"users have (C, H, W) = {(C, H, W)}, the model {(mcfg.channels, mcfg.H, mcfg.W)}")
    src = profile_source or config.get("data", {}).get("profile_source") or config.get("train", {}).get(
        "profile_source", "template")
    profiles = None
    if model.cfg.use_profile and src != "none":
        profiles = build_profile_table(users, src, cache_dir=config.get("train", {}).get("sbert_cache"))
    rows = last_train_windows(users, wcfg.T)
    ds = UserWindowDataset(users, wcfg, rows, profiles=profiles, data_seed=int(config.get("train", {}).get("seed", 0)))
    mo = mask_outputs(model, ds, batch_size)
    U, nt = len(users), len(TASKS)
    slot_hours = users[0].tensor.slot_seconds / 3600.0
    spd = users[0].tensor.slots_per_day
    w_start = int(rows[0, 1])
    info = {"checkpoint": _display_path(ck), "step": step, "weights": weights, "n_users": U, "sim_seed": seed,
            "population_fingerprint": fp, "checkpoint_population_fingerprint": fp_ck,
            "population_matches_checkpoint": fp == fp_ck, "window_start": w_start, "window_end": w_start + wcfg.T,
            "context": wcfg.context, "horizon": wcfg.horizon, "slot_hours": slot_hours, "H": H, "W": W,
            "mask_mode": model.cfg.mask_mode, "profile_source": src if profiles is not None else "none",
            "data": "SYNTHETIC: calibrated simulator (train/simulator.py)", "label": SYNTH}
    if model.cfg.mask_mode != "learned":
        log.warning("mask_mode=%s: the figures show the mask generator's learned mask, which this model does "
                    "not use for evidence", model.cfg.mask_mode)

    # ---------------- Fig. 8 ----------------
    rho_learned = model.maskgen.rho.detach().numpy()
    stats = task_mask_stats(mo, U, slot_hours, mcfg.rho_init, rho_learned)
    if example_user is None:  # first commuter (else first user) with cold-start evidence candidates
        cand = [u for u in range(U) if mo["n_avail"][u * nt + TASKS.index("cold_start")] > 0] or list(range(U))
        pref = [u for u in cand if archetypes[u] == "commuter"]
        example_user = (pref or cand)[0]
    eu = int(example_user)
    if not 0 <= eu < U:
        raise InputError(f"--example-user must lie in [0, {U}), got {eu}")
    rng = np.random.default_rng(seed)
    example: dict[str, Any] = {"user_index": eu, "user_id": int(users[eu].user), "archetype": archetypes[eu],
                               "maps": {}, "tasks": {}, "soft_values": {}, "npi_hist": {},
                               "violin_sample": violin_sample}
    all_lnp = []
    for ti, name in enumerate(TASKS):
        i = eu * nt + ti
        img = (mo["avail"][i].astype(np.int64) + mo["hard"][i].astype(np.int64))       # 0 / 1 / 2
        example["maps"][name] = img.reshape(wcfg.context, H * W).T.tolist()              # (cells, ctx)
        na = float(mo["n_avail"][i])
        example["tasks"][name] = {"k": int(mo["k"][i]), "n_avail": int(na),
                                  "density": float(mo["k"][i] / na) if na > 0 else 0.0,
                                  "ratio": float(mo["ratio"][i])}
        sel = np.arange(U) * nt + ti
        on = mo["avail"][sel] > 0
        sv = mo["soft"][sel][on]
        if sv.size > violin_sample:
            sv = rng.choice(sv, violin_sample, replace=False)
        example["soft_values"][name] = sv
        p = mo["probs_rel"][sel][on]
        all_lnp.append(np.log10(np.maximum(p, 1e-12)))
    lo = min([float(np.quantile(a, 0.001)) for a in all_lnp if a.size] or [-3.0])
    hi = max([float(np.quantile(a, 0.999)) for a in all_lnp if a.size] or [1.0])
    edges = np.linspace(min(lo, -0.5), max(hi, 0.5), 61)
    for name, a in zip(TASKS, all_lnp):
        cnt, _ = np.histogram(np.clip(a, edges[0], edges[-1]), bins=edges, density=a.size > 0)
        example["npi_hist"][name] = {"edges": _lst(edges), "density": _lst(cnt)}
    # a few example users: one per archetype
    few = {}
    for a in ARCH_ORDER:
        idx = [u for u in range(U) if archetypes[u] == a]
        if idx:
            u = idx[0]
            few[a] = {"user_index": u, "user_id": int(users[u].user),
                      **{name: {"k": int(mo["k"][u * nt + ti]), "n_avail": int(mo["n_avail"][u * nt + ti]),
                                "ratio": _f(mo["ratio"][u * nt + ti])} for ti, name in enumerate(TASKS)}}
    plot_task_masks(stats, example, info, out / "task_masks.png")
    ex_json = {k: v for k, v in example.items() if k != "soft_values"}
    ex_json["soft_value_quantiles_sample"] = {
        n: _lst(np.quantile(v, [.05, .25, .5, .75, .95])) if len(v) else [0.0] * 5
        for n, v in example["soft_values"].items()}
    tm = {"figure": "task_masks.png", "info": info, "tasks": list(TASKS), "per_task": stats,
          "example_user": ex_json, "few_users_one_per_archetype": few,
          "notes": [("revealed = the deterministic evaluation hard mask (UMask.complete: bank statistics, "
                     "no Gumbel noise)"),
                    ("temporal/spatial fractions are over all context coordinates; *_of_avail divide by the "
                     "available ones"),
                    "n_pi = n_avail * pi (1 = uniform)",
                    "maps: 0 = not available, 1 = available not revealed, 2 = revealed; rows = cells h*W+w"]}
    _write_json(out / "task_masks.json", tm)

    # ---------------- Fig. 9 ----------------
    st = TASKS.index("short_term")
    sel_st = np.arange(U) * nt + st
    F_pat = mo["F_pat"][sel_st]
    emb, cl_emb, cl_feat, perp = _embed_and_cluster(F_pat, n_clusters, seed)
    arch = np.asarray(archetypes)
    ari = float(adjusted_rand_score(arch, cl_emb))
    nmi = float(normalized_mutual_info_score(arch, cl_emb))
    dens_pc: dict[str, Any] = {}
    for c in range(int(cl_emb.max()) + 1):
        uc = np.flatnonzero(cl_emb == c)
        dens_pc[str(c)] = {"n_users": int(uc.size),
                           "archetypes": {a: int((arch[uc] == a).sum()) for a in sorted(set(arch))}}
        for ti, name in enumerate(TASKS):
            ii = uc * nt + ti
            na = mo["n_avail"][ii]
            ok = na > 0
            d = mo["k"][ii][ok] / na[ok]
            dens_pc[str(c)][name] = {"mean": _f(d.mean()) if d.size else 0.0, "std": _f(d.std()) if d.size else 0.0,
                                     "n": int(ok.sum())}
    cl: dict[str, Any] = {
        "figure": "clusters.png", "info": info, "feature": "F_pat (mask generator features, eq. 5) of the "
        "short_term window (avail = whole context), z-scored per dimension", "feature_dim": int(F_pat.shape[1]),
        "tsne_params": {"perplexity": perp, "init": "pca", "random_state": seed},
        "kmeans": {"k": int(cl_emb.max()) + 1, "on": "2-D t-SNE embedding", "random_state": seed, "n_init": 10},
        "ari": ari, "nmi": nmi,
        "ari_kmeans_on_fpat": float(adjusted_rand_score(arch, cl_feat)),
        "nmi_kmeans_on_fpat": float(normalized_mutual_info_score(arch, cl_feat)),
        "archetype_counts": {a: int((arch == a).sum()) for a in sorted(set(arch))},
        "density_per_cluster": dens_pc,
        "density_population": {n: stats[n]["density_k_over_navail"]["mean"] for n in TASKS},
        "user_id": [int(u.user) for u in users], "archetype": archetypes,
        "cluster": cl_emb.tolist(), "cluster_kmeans_on_fpat": cl_feat.tolist(), "tsne": _lst(emb, 4),
    }
    seeds = [seed + i for i in range(max(1, stability_seeds))]
    cl["stability"] = _ari_spread(F_pat, arch, n_clusters, seeds)
    if controls:
        ctrl: dict[str, Any] = {}
        torch.manual_seed(seed)
        init = UMask(model.cfg).eval()
        init.x_scale.copy_(model.x_scale)
        mo0 = mask_outputs(init, UserWindowDataset(users, wcfg, rows[sel_st], profiles=profiles,
                                                   data_seed=int(config.get("train", {}).get("seed", 0))), batch_size)
        _, c0, c0f, _ = _embed_and_cluster(mo0["F_pat"], n_clusters, seed)
        ctrl["init_model_fpat"] = {"what": f"F_pat of a randomly initialized model of the same config "
                                           f"(torch seed {seed}), same pipeline",
                                   "ari": float(adjusted_rand_score(arch, c0)),
                                   "ari_kmeans_on_feature": float(adjusted_rand_score(arch, c0f)),
                                   "stability": _ari_spread(mo0["F_pat"], arch, n_clusters, seeds)}
        day_h = spd * slot_hours
        ctx_start_h = ((w_start % spd) * slot_hours) % day_h
        prof = _hour_profile(mo["activity"][sel_st], slot_hours, ctx_start_h)
        _, c1, c1f, _ = _embed_and_cluster(prof, n_clusters, seed)
        ctrl["hour_of_day_activity"] = {"what": "hand-made: mean |x0| per hour of day over the context, same "
                                                "pipeline", "ari": float(adjusted_rand_score(arch, c1)),
                                        "ari_kmeans_on_feature": float(adjusted_rand_score(arch, c1f)),
                                        "stability": _ari_spread(prof, arch, n_clusters, seeds)}
        cl["controls"] = ctrl
    plot_clusters(cl, info, out / "clusters.png")
    cl["elapsed_s"] = round(time.perf_counter() - t0, 2)
    _write_json(out / "clusters.json", cl)
    return {"task_masks": tm, "clusters": cl}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umask.bench.plots.masks", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="checkpoint step dir, ckpt root (with 'latest') or run dir")
    p.add_argument("--users", type=int, default=200, help="simulated (SYNTHETIC) users (default 200)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed; also t-SNE / k-means random_state")
    p.add_argument("--out", default="benchmarks/results/plots")
    p.add_argument("--clusters", type=int, default=5, help="k-means clusters (default 5)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--example-user", type=int, default=None, help="user index for panel (c)")
    p.add_argument("--raw-weights", action="store_true", help="use model.safetensors instead of the EMA weights")
    p.add_argument("--no-controls", action="store_true", help="skip the ARI controls (init model, hand-made)")
    p.add_argument("--stability-seeds", type=int, default=5,
                   help="t-SNE / k-means random states for the ARI spread (seed, seed+1, ...; default 5)")
    p.add_argument("--profile-source", choices=("template", "none"), default=None,
                   help="profile embeddings (default: as the checkpoint's run)")
    p.add_argument("--num-threads", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, ns.num_threads))
    res = run(ns.ckpt, ns.users, ns.seed, ns.out, n_clusters=ns.clusters, batch_size=ns.batch_size,
              ema=not ns.raw_weights, example_user=ns.example_user, controls=not ns.no_controls,
              stability_seeds=ns.stability_seeds, profile_source=ns.profile_source)
    tm, cl = res["task_masks"], res["clusters"]
    print(f"[{SYNTH}] checkpoint {tm['info']['checkpoint']} step {tm['info']['step']}")
    for name in TASKS:
        s = tm["per_task"][name]
        print(f"  {name:11s} k/n_avail {s['density_k_over_navail']['mean']:.3f} +- "
              f"{s['density_k_over_navail']['std']:.3f}  revealed {s['revealed_fraction_of_context']:.3f} of context"
              f"  mean lag {s['revealed_mean_lag_h']:.1f} h  last-6h share {s['revealed_share_last_6h']:.2f}"
              f"  H(pi)/H(U) {s['pi_entropy_rel_uniform_mean']:.3f}")
    print(f"  ARI(k-means on t-SNE of F_pat, archetype) = {cl['ari']:.3f} (NMI {cl['nmi']:.3f}); "
          f"k-means on F_pat: {cl['ari_kmeans_on_fpat']:.3f}")
    st_ = cl["stability"]
    print(f"  over random states {st_['random_states']}: ARI {st_['ari_tsne_kmeans_mean']:.3f} +- "
          f"{st_['ari_tsne_kmeans_std']:.3f} (k-means on F_pat {st_['ari_kmeans_on_feature_mean']:.3f} +- "
          f"{st_['ari_kmeans_on_feature_std']:.3f})")
    for k, v in cl.get("controls", {}).items():
        s2 = v["stability"]
        print(f"  control {k}: ARI {v['ari']:.3f}; over random states {s2['ari_tsne_kmeans_mean']:.3f} +- "
              f"{s2['ari_tsne_kmeans_std']:.3f} (k-means on feature {s2['ari_kmeans_on_feature_mean']:.3f})")
    print(f"  wrote {Path(ns.out) / 'task_masks.png'}, task_masks.json, clusters.png, clusters.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
