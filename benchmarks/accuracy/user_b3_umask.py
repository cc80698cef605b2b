"""U-MASK cold start by retrieval on the PROTOCOL v2 B3 cut (paper section 7.1.2); scored by ``user_b3``.

Per window (see ``user_b3``'s docstring for the rows):

1. h_u from what is known (eq. 24): the template profile of the user's 20 source-domain slots ->
   SBERT -> the checkpoint's ProfileMLP. Apps as the source: the profile is built with the
   location channel absent (no place is known). Places as the source: every event's app is replaced
   by one fixed app before profiling, so the app sentences are the same for every user and carry
   nothing (a decision: the template has no "no apps" form).
2. The other users' h_u from the same source domain at the same slots of day over their training
   days; the k most cosine-similar are retrieved (`runtime/families/umask/retrieval.cosine_top_k`).
   A cold user with no event in its 20 slots has no profile: every other user is "retrieved".
3. The 2-day context is filled with the retrieved users' mean slot-of-day table (training days, all
   channels, their places carried over by POI mix), the user's own source slots overwrite their
   part, and the whole context is evidence; the checkpoint completes the next day (cold-start task
   token, x0 at t = N-1) and the items are ranked by expected engagement of the target domain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from umask.runtime.core.featurize import ProfileStats, encode_app_counts, profile_statistics
from umask.runtime.core.tessellation import station_cells
from umask.runtime.families.umask import retrieval as rt
from umask.bench.accuracy import user_tasks as ut
from umask.bench.accuracy.user_b3 import Bank, Case
from umask.bench.accuracy.user_scoring import app_engagement, location_engagement
from umask.bench.accuracy.user_umask import umask_predictor
from umask.bench.accuracy.user_umask_v2 import PriorOnly

VARIANTS = ("retrieval", "no_retrieval", "retrieval_prior_only")
BATCH = 16


class UMaskColdStart:
    """The shipped (prior) U-MASK as a v2 B3 recommender, with and without retrieval by h_u."""

    def __init__(self, ckpt: str, k: int = rt.DEFAULT_K) -> None:
        self.pred = umask_predictor(ckpt, n_samples=1, point="first_x0")
        self.prior_only = PriorOnly(self.pred)
        self.k = int(k)
        self.shrink = 1.0      # < 1: the retrieved users' table shrunk towards every other user's (user_b3.Bank)
        self.last_fallbacks = 0
        self._bank_h: dict[tuple[int, str, tuple[int, ...]], np.ndarray] = {}

    # -- h_u from a source-domain slice --
    def profile(self, pop: ut.UserPopulation, u: int, source: str, keep_slot: Any) -> ProfileStats | None:
        """U-SCOPE statistics of user u's events in the slots where ``keep_slot(slot)`` holds, source domain only."""
        f, ev = pop.features[u], pop.events[u]
        slot = (ev.ts - f.tensor.start_ts) // f.tensor.slot_seconds
        ev = ev.take(keep_slot(slot))
        if len(ev) == 0:
            return None
        if source == "app":
            return profile_statistics(ev, pop.catalog, None, pop.cfg, absent=frozenset({"location"}))
        ev = dataclasses.replace(ev, app=np.full_like(ev.app, pop.catalog.apps.app_ids[0]))
        return profile_statistics(ev, pop.catalog, f.layout, pop.cfg,
                                  cells=station_cells(pop.catalog.stations, f.layout.grid), absent=f.tensor.absent)

    @torch.no_grad()
    def h_u(self, profiles: Sequence[ProfileStats | None]) -> np.ndarray:
        """(n, d) h_u of the checkpoint's ProfileMLP (eq. 24) for template profiles (None: 'no profile')."""
        emb, present = self.pred.profile_inputs(list(profiles))
        batch = {"x0": torch.zeros(len(profiles), 1), "profile_emb": torch.from_numpy(emb),
                 "profile_present": torch.from_numpy(present)}
        return self.pred.model.user_repr(batch).float().numpy()

    def bank_h(self, bank: Bank, source: str, tods: np.ndarray) -> np.ndarray:
        """(N, d) every user's h_u from its source domain at slots of day ``tods`` over its training days."""
        key = (id(bank), source, tuple(int(t) for t in tods))
        if key not in self._bank_h:
            pop, spd, tset = bank.pop, bank.pop.slots_per_day, np.asarray(tods)
            profs = [self.profile(pop, v, source, lambda s: (s < pop.train_end) & np.isin(s % spd, tset))
                     for v in bank.users]
            h = self.h_u(profs)
            h[[p is None for p in profs]] = 0.0                                  # nothing to compare
            self._bank_h = {k: v for k, v in self._bank_h.items() if k[0] == id(bank)}
            self._bank_h[key] = h
        return self._bank_h[key]

    def retrieve(self, bank: Bank, case: Case, prof: ProfileStats | None, h: np.ndarray) -> list[int] | None:
        if prof is None:
            return None
        hb = self.bank_h(bank, case.window.source, case.tods)
        got = rt.cosine_top_k(h, hb, self.k, exclude=np.array([v == case.user for v in bank.users]))
        return None if got is None else [bank.users[i] for i in got[0]]

    @torch.no_grad()
    def h_b(self, bank: Bank, cs: Sequence[Case]) -> np.ndarray:
        """(n, d) the mask generator's behaviour vector h_b of each window's own source slots only (no retrieval)."""
        out = []
        for i in range(0, len(cs), BATCH):
            chunk = cs[i:i + BATCH]
            profs = [self.profile(bank.pop, c.user, c.window.source,
                                  lambda s, c=c: (s >= c.window.history[0]) & (s < c.window.history[1])) for c in chunk]
            mb = self.pred.model_batch(self.batch(bank, chunk, [self.window(bank, c, None) for c in chunk], profs))
            model = self.pred.model
            _, _, mo = model.evidence(mb, model.user_repr(mb), None, deterministic=True)
            out.append(mo.features["h_b"].float().numpy())
        return np.concatenate(out)

    def bank_hb(self, bank: Bank, source: str) -> np.ndarray:
        """(N, d) every user's mean h_b over its training-day windows of the same cut (days 2-5)."""
        from umask.bench.accuracy.user_b3 import cases

        key = (id(bank), "h_b", source, ())
        if key not in self._bank_h:
            self.pred.attach_population(bank.pop)
            cs = cases(bank.pop, source, "train")
            hb = self.h_b(bank, cs)
            users = np.array([c.user for c in cs])
            self._bank_h[key] = np.stack([hb[users == v].mean(axis=0) for v in bank.users])
        return self._bank_h[key]

    # -- the DiT's window --
    def window(self, bank: Bank, case: Case, neighbours: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(x (C, Tc, H, W), avail (1, Tc, H, W)): retrieved users' table + own source slots (see the docstring);
        ``neighbours`` None: only the own source slots."""
        pop, u, w = bank.pop, case.user, case.window
        C, _, H, W = pop.features[u].tensor.shape
        ch, spd, Tc, HW = pop.channels, pop.slots_per_day, self.pred.window.context, H * W
        c0 = w.target[0] - Tc
        L = w.history[1] - w.history[0]
        x = np.zeros((C, Tc, HW))
        avail = np.zeros((Tc, HW), bool)
        avail[-L:] = True
        if neighbours is not None:
            x = bank.neighbour_table(neighbours, u, self.shrink)[:, (c0 + np.arange(Tc)) % spd]   # (C, Tc, HW)
            avail[:] = True
        if w.source == "location":
            x[ch.location_index, -L:] = case.hist.reshape(L, HW)
        else:                           # apps carry no place: spread over the layout by the expected presence
            filled = bank.filled[u].astype(np.float64)
            dist = np.clip(x[ch.location_index, -L:], 0.0, None) * filled              # (L, HW)
            tot = dist.sum(axis=1, keepdims=True)
            uniform = np.broadcast_to(filled / max(filled.sum(), 1.0), dist.shape)
            dist = np.where(tot > 0, dist / np.maximum(tot, 1e-12), uniform)
            x[ch.apps, -L:] = encode_app_counts(case.hist[:, :, None] * dist[:, None, :]).transpose(1, 0, 2)
        return x.reshape(C, Tc, H, W).astype(np.float32), avail.reshape(1, Tc, H, W)

    def batch(self, bank: Bank, cs: Sequence[Case], windows: Sequence[tuple[np.ndarray, np.ndarray]],
              profiles: Sequence[ProfileStats | None]) -> ut.TaskBatch:
        pop, Tc = bank.pop, self.pred.window.context
        Th = cs[0].window.target[1] - cs[0].window.target[0]
        H, W = windows[0][0].shape[2:]
        starts = np.array([c.window.target[0] for c in cs], np.int64)
        return ut.TaskBatch(
            task="B3", task_name="B3 v2 cross-domain cold start", split=cs[0].window.split, dataset=pop.dataset,
            x_context=np.stack([x for x, _ in windows]), avail=np.stack([a for _, a in windows]),
            context_starts=starts - Tc, starts=starts, horizon=Th, target_offset=Tc,
            eval_mask=np.ones((len(cs), 1, Th, H, W), bool),
            e_pos=np.stack([pop.features[c.user].e_pos for c in cs]).astype(np.float32),
            users=np.array([c.user for c in cs], np.int64), window_index=np.array([c.window.index for c in cs]),
            profiles=list(profiles), channels=pop.channels, slots_per_day=pop.slots_per_day, start_ts=pop.start_ts)

    def scores(self, out: np.ndarray, cs: Sequence[Case], channels: Any) -> list[np.ndarray]:
        """Item scores of each window's target domain from a completed day (n, C, Th, H, W)."""
        app, loc = app_engagement(out, channels), location_engagement(out, channels)
        return [app[i] if c.window.target_domain == "app" else loc[i] for i, c in enumerate(cs)]

    def run(self, bank: Bank, cs: Sequence[Case], variants: Sequence[str] | None = None) -> dict[str, list[np.ndarray]]:
        """{variant: item scores per window} for the windows ``cs`` (one source domain)."""
        self.pred.attach_population(bank.pop)
        out: dict[str, list[np.ndarray]] = {v: [] for v in (VARIANTS if variants is None else variants)}
        self.last_fallbacks = 0
        for i in range(0, len(cs), BATCH):
            chunk = cs[i:i + BATCH]
            profs = [self.profile(bank.pop, c.user, c.window.source,
                                  lambda s, c=c: (s >= c.window.history[0]) & (s < c.window.history[1])) for c in chunk]
            h = self.h_u(profs)
            nbs = []
            for c, p, hi in zip(chunk, profs, h):
                nb = self.retrieve(bank, c, p, hi)
                if nb is None:
                    self.last_fallbacks += 1
                    nb = [v for v in bank.users if v != c.user]
                nbs.append(nb)
            with_r = self.batch(bank, chunk, [self.window(bank, c, nb) for c, nb in zip(chunk, nbs)], profs)
            ch = bank.pop.channels
            if "retrieval" in out:
                out["retrieval"] += self.scores(self.pred(with_r), chunk, ch)
            if "no_retrieval" in out:
                without = self.batch(bank, chunk, [self.window(bank, c, None) for c in chunk], profs)
                out["no_retrieval"] += self.scores(self.pred(without), chunk, ch)
            if "retrieval_prior_only" in out:
                out["retrieval_prior_only"] += self.scores(self.prior_only(with_r), chunk, ch)
        return out

    def notes(self) -> dict[str, str]:
        k = self.k
        return {
            "retrieval": f"U-MASK cold start (paper 7.1.2): h_u from the 20 source slots (template -> SBERT -> "
                         f"ProfileMLP), the k = {k} other users with the closest h_u (same source domain, same slots "
                         f"of day, training days; shrink {self.shrink:g} towards every other user) fill the 2-day "
                         "context (places by POI mix), own source slots on top, "
                         "all evidence; ranked by the completed day's expected engagement (x0 at t = N-1, 1 draw)",
            "no_retrieval": "ablation: the same model with only the user's own 20 source-domain slots as evidence",
            "retrieval_prior_only": "ablation: the cold-start blend prior of the retrieval-filled window alone (no "
                                    "network)",
        }

    def info(self) -> dict[str, Any]:
        return {**self.pred.info(), "k": self.k, "shrink": self.shrink, "place_temperature": rt.PLACE_TEMPERATURE}
