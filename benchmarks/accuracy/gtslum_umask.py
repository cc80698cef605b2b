"""The U-MASK family's recommendation on PROTOCOL D's windows (issue 14): the shipped per-user U-MASK
(`checkpoints/umask_small`) ranks the next hour's app categories from a short-term completion.

    python -m umask.bench.accuracy.gtslum --only umask --umask checkpoints/umask_small \\
        --out benchmarks/results/v2_gtslum.json          # merges the rows; every other row is kept as it is

Per D window (user u, target hour starting at t; `umask.train.models.gtslum.data.windows`):

* **Completion.** The protocol-B harness's B1 window of the same user and hour (`user.iter_batches`,
  task B1 on the synthetic test day, B1-real on the real sample): the 192 slots (2 days) before t as
  evidence, the next 4 slots (1 hour) as target, completed by the harness's own U-MASK adapter
  (`user_umask.umask_predictor`, task token short_term). The model sees only events before t, like
  every other D model.
* **Point estimator.** The bundle's short-term default: the DiT's x0 estimate at the sampler's first step
  (t = N-1), ONE noise draw (`point="first_x0"`, `n_samples=1`; the shipped model has the `blend`
  prior, for which the harness's `point="auto"` is the same estimator), clipped at >= 0 on the app
  channels; adapter seed 0.
* **Ranking.** The expected engagement of category k over the target hour = the sum of the predicted
  app channel k (featurized scale: log1p(records) / log1p(60)) over the 4 target slots and every
  cell of the user's 4 x 4 layout. Exact ties (e.g. several categories predicted 0) are broken by the
  global popularity the popularity baseline uses, then by category index (`rank_scores`).
* **Category mapping.** U-MASK's app channels are ``channel_names(catalog)[1:K+1]`` of the
  featurization it was trained with (runtime/core/featurize.py: ``app:<category>`` in the catalog's
  category order); D's categories are ``Users.category_names`` (the same LLMApp catalog through
  `gtslum.data`). `category_mapping` matches them BY NAME and refuses any mismatch (different K,
  a name on one side only, duplicates) or a checkpoint whose channel count is not K + 2. Today the two
  lists are identical, so the map is the identity; it is checked on every run, not assumed.
* **Diagnostic** (meta, not a row): ``diagnostic_context_frequency`` ranks by the same 2-day evidence the
  model reads (the app channels of the 192 context slots summed per category), to tell what the
  completion adds to its own window.
* **Users.** The B harness leaves out a user without any event in the training days (no layout); such a
  user's D windows would fall back to popularity and are counted in the row notes (0 on the protocol's
  populations, checked at run time).

The shipped model was trained on simulator seed 0's 50 users (their days 1-5): the seed-0 windows are
its training users' unseen test day; seeds 1 and 2 are users it never saw. The real sample is zero-shot.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.errors import InputError
from umask.runtime.core.featurize import channel_names
from umask.train.models.gtslum import data as gd

log = logging.getLogger(__name__)

DEFAULT_CKPT = "checkpoints/umask_small"
MODEL = "umask_small"
POINT_NOTE = ("U-MASK short-term completion (B1 window: 192 context slots before the target hour -> 4 slots), "
              "point estimator: x0 estimate at t = N-1, 1 noise draw (the bundle's short-term default); "
              "categories ranked by the predicted app channel summed over the 4 slots and all cells "
              "(ties: popularity, then index)")


def category_mapping(umask_channels: Sequence[str], d_categories: Sequence[str], n_model_channels: int) -> np.ndarray:
    """(K,) for each D category index k, the index (0-based, inside the app slice) of U-MASK's channel for it.

    ``umask_channels``: the featurization's channel names (["traffic", "app:<name>" x K, "location"]);
    ``n_model_channels``: the checkpoint's C. Raises InputError on any mismatch."""
    names = list(umask_channels)
    apps = [n[4:] for n in names if n.startswith("app:")]
    if len(names) != len(apps) + 2 or names[0] != "traffic" or names[-1] != "location":
        raise InputError(f"U-MASK channel names must be ['traffic', 'app:<category>' x K, 'location'], got {names}")
    if n_model_channels != len(names):
        raise InputError(f"the U-MASK checkpoint has C = {n_model_channels} channels, its featurization gives "
                         f"{len(names)} (K = {len(apps)} app categories): not the same category space")
    d = list(d_categories)
    for side, lst in (("U-MASK", apps), ("protocol D", d)):
        if len(set(lst)) != len(lst):
            raise InputError(f"{side} category names are not unique: {lst}")
    if len(apps) != len(d) or set(apps) != set(d):
        raise InputError(f"category mismatch: U-MASK app channels ({len(apps)}) and protocol D categories ({len(d)}) "
                         f"differ: only U-MASK {sorted(set(apps) - set(d))}, only D {sorted(set(d) - set(apps))}")
    where = {n: i for i, n in enumerate(apps)}
    return np.array([where[n] for n in d], np.int64)


def rank_scores(engagement: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """(n, K) engagement and (K,) popularity -> (n, K) scores whose descending order is: engagement, ties by
    popularity, then by category index (the order `gtslum.trainer.rank_metrics` reads with a stable sort)."""
    n, K = engagement.shape
    out = np.zeros((n, K))
    for i, e in enumerate(engagement):
        order = np.lexsort((np.arange(K), -pop, -e))             # last key first: engagement, popularity, index
        out[i, order] = np.arange(K, 0, -1)
    return out


def app_engagement(pred: np.ndarray, apps: slice) -> np.ndarray:
    """(n, C, Th, H, W) completion -> (n, K) predicted app channel summed over the target slots and cells."""
    return np.asarray(pred, np.float64)[:, apps].sum(axis=(2, 3, 4))


def predictor(ckpt: str | Path = DEFAULT_CKPT, *, seed: int = 0) -> Any:
    """The harness's U-MASK adapter with the bundle's short-term request defaults (x0 at t = N-1, 1 draw)."""
    import torch

    from umask.bench.accuracy.user_umask import umask_predictor

    torch.set_num_threads(1)
    return umask_predictor(ckpt, n_samples=1, point="first_x0", seed=seed)


def umask_scores(pred: Any, pop: Any, users: gd.Users, wins: Sequence[gd.Window]) -> tuple[np.ndarray, dict[str, Any]]:
    """(n, K) ranking scores of the D windows ``wins`` (D category order) and diagnostics.

    ``pop``: the protocol-B population of the same users (``user.simulated_population`` / ``real_population``)."""
    from umask.bench.accuracy import user as ue
    from umask.train.data import user_windows as uw
    from umask.train.models.gtslum import trainer as gt

    K = users.n_categories
    cmap = category_mapping(channel_names(pop.catalog), users.category_names, int(pred.C))
    pop_share = gd.popularity(users)
    real = not users.synthetic
    task, split = ("B1-real", "day") if real else ("B1", "test")
    slot = pop.cfg.slot_seconds
    want: dict[int, dict[int, int]] = defaultdict(dict)          # user -> target start slot -> D window row
    for i, w in enumerate(wins):
        rel = w.target_ts - pop.start_ts
        if rel % slot:
            raise InputError(f"D window user {w.user} target {w.target_ts} is not on the B slot grid")
        want[w.user][rel // slot] = i
    eng = np.full((len(wins), K), np.nan)
    ctx = np.zeros((len(wins), K))          # diagnostic: the same 2-day evidence, summed per category
    missing = [u for u in want if u not in pop.features]
    pred.attach_population(pop)
    for u in sorted(set(want) - set(missing)):
        starts = want[u]
        # the B1 windows' indices whose target starts at a D target (real: positions in REAL_TARGET_STARTS)
        index_of = ({s: i for i, s in enumerate(ue.REAL_TARGET_STARTS)} if real else
                    {w.target[0]: w.index for w in uw.short_term_windows(pop.features[u].tensor, split)})
        idx = {index_of[s] for s in starts if s in index_of}
        for batch in ue.iter_batches(pop, task, split, batch_size=32, users=[u], windows={task: idx}):
            out = pred(batch.model_view())                          # (n, C, 4, H, W)
            e = app_engagement(out, batch.channels.apps)[:, cmap]    # (n, K) in D's category order
            c = app_engagement(batch.x_context, batch.channels.apps)[:, cmap]
            for j, s in enumerate(batch.starts):
                row = starts.get(int(s))
                if row is not None:
                    eng[row], ctx[row] = e[j], c[j]
    unmatched = [i for i in range(len(wins)) if np.isnan(eng[i, 0]) and wins[i].user not in missing]
    if unmatched:
        w = wins[unmatched[0]]
        raise InputError(f"{len(unmatched)} D windows have no B1 window (first: user {w.user}, target {w.target_ts})")
    fallback = np.isnan(eng[:, 0])
    eng[fallback] = pop_share                                    # users the B harness left out: popularity
    top = np.sort(eng, axis=1)[:, ::-1]
    truth = np.stack([w.truth for w in wins])
    diag = {"metrics": gt.rank_metrics(rank_scores(eng, pop_share), truth),
            "diagnostic_context_frequency": gt.rank_metrics(rank_scores(ctx, pop_share), truth),
            "windows": len(wins), "fallback_windows_no_layout": int(fallback.sum()),
            "tied_at_rank_5_or_10": int(((top[:, 4] == top[:, 5]) | (top[:, 9] == top[:, 10])).sum()),
            "category_map_identity": bool((cmap == np.arange(K)).all())}
    return rank_scores(eng, pop_share), diag


def score_populations(ckpt: str | Path, seeds: Sequence[int], n_users: int, *, real: bool = True
                      ) -> tuple[dict[str, dict[int, dict[str, float]]], dict[str, int], dict[str, Any]]:
    """Score the U-MASK rows: {"synthetic"/"real": {seed: metrics}}, window counts, diagnostics."""
    from umask.bench.accuracy import user as ue
    from umask.train.models.gtslum import trainer as gt

    pred = predictor(ckpt)
    scored: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    n_win: dict[str, int] = defaultdict(int)
    diag: dict[str, Any] = {}
    for seed in seeds:
        t0 = time.perf_counter()
        users = gd.synthetic_users(n_users, seed)
        wins = gd.windows(users, "test")
        sc, d = umask_scores(pred, ue.simulated_population(n_users, seed), users, wins)
        scored["synthetic"][seed] = gt.rank_metrics(sc, np.stack([w.truth for w in wins]))
        n_win["synthetic"] += len(wins)
        diag[f"seed{seed}"] = {**d, "seconds": round(time.perf_counter() - t0, 1)}
        log.info("umask seed %d: %s %s", seed, scored["synthetic"][seed], diag[f"seed{seed}"])
    if real:
        users = gd.real_users()
        wins = gd.windows(users, "test")
        sc, d = umask_scores(pred, ue.real_population(), users, wins)
        scored["real"][0] = gt.rank_metrics(sc, np.stack([w.truth for w in wins]))
        n_win["real"] = len(wins)
        diag["real"] = d
    return scored, n_win, {"checkpoint": str(ckpt), "point_forecast": POINT_NOTE, "by_population": diag}


__all__ = ["DEFAULT_CKPT", "MODEL", "POINT_NOTE", "category_mapping", "rank_scores", "app_engagement", "predictor",
           "umask_scores", "score_populations"]
