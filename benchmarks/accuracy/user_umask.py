"""U-MASK checkpoints as PROTOCOL B predictors, scored next to every baseline in one table.

Adapter
-------
:func:`umask_predictor` (``ckpt_dir`` -> :class:`UMaskPredictor`, a ``user_eval.Predictor``) turns a
``user_eval.TaskBatch`` into the batch dict the model was trained on (train/dataset.py) and runs
``UMask.complete``:

* **Window.** The model has ONE fixed window of ``T = context + horizon`` slots (small: 192 + 96 =
  288). Forecasting tasks (B1, B2, B3 and the real-sample check): the 192-slot context goes to slots
  ``[0, 192)``, the target follows at ``[192, 192 + Th)`` (B1: 4 slots; B2/B3: 96); the horizon region
  is never available. B4: the 192-slot completion window goes to ``[0, 192)``; the horizon region is
  neither available nor read (as in training). A batch whose context length differs from the model's
  ``context`` (or whose horizon exceeds the model's ``horizon``, or whose completion window is not
  ``context`` slots long) is rejected with an ``InputError`` naming both sizes.
* **Protocol windows vs the model's window** (:func:`window_fit`, checked before any population is
  built). PROTOCOL B needs 192 context slots (2 days); a model whose context region is shorter
  (the ``tiny`` config: 12 + 4) cannot be scored as the protocol says, and ``main`` refuses it in
  one line naming the checkpoint, its config and window, and how to train one that fits
  (``--config small``, or ``--set 'window={"context":192,"horizon":96}'``). A target longer than
  the model's horizon (B2/B3: 96 slots) is refused with no way around it. ``--context-slots N``
  scores such a model anyway, as a NON-protocol smoke test (:meth:`UMaskPredictor.fit_context`):
  forecasting windows keep their protocol targets but the model sees only the last N context slots
  (N <= its context; zero, unavailable slots in front); B4 completes the 192-slot window in
  consecutive N-slot chunks (N = its context, dividing 192). The baselines see the protocol
  context; every row's ``dataset`` then says "non-protocol context N" and carries
  ``context_override``.
* **Evidence.** ``avail`` = the batch's ``avail`` (B3: the <= 20 visible active slots, all cells;
  B4: the not-hidden (t, h, w); real sample: the in-day slots before the target). ``x0`` holds
  ``x_context`` there and zeros elsewhere; the model reads only ``x0 * avail``.
* **Task token.** B1 -> short_term, B2 -> long_term, B3 -> cold_start, B4 -> imputation (the real
  sample is B1).
* **User.** ``e_pos`` is passed through (its width must equal the model's ``poi_dim``). The profile
  embedding is built as in training (train/dataset.build_profile_table): ``TaskBatch.profiles[i]``
  (B1/B2/B4: training-days ``ProfileStats``; B3: recomputed from the visible slots only; real:
  events before the target) -> the same template text (runtime/profile_text) -> the frozen SBERT
  (train/profile_encoder.SentenceEncoder with the on-disk cache) -> the model's own ProfileMLP
  inside ``UMask.user_repr``. A window without ``ProfileStats`` gets ``profile_present = False``
  (the MLP's learned "no profile" embedding). Models trained without U-SCOPE ignore all of it.
* **Sampling.** ``UMask.complete(batch, sampler, steps, n_samples, seed)``: the mean of
  ``n_samples`` clamped completions (DDIM, eta = 0, by default; 10 steps, 2 samples), on the
  featurized scale (``complete`` divides the model-space ``x_scale`` back out). The mask is the
  model's deterministic evaluation mask (learned: hard top-k with bank statistics; random: a seeded
  subset of avail with the base budget; none: all of avail). Each batch's generator seed is
  ``SeedSequence([seed, task, first user, first window index, first start, n])``: deterministic for
  a given batch, different noise across batches.
* **Output.** The target slots of the completion, clipped to the featurized domain (traffic and
  app >= 0, location in [0, 1]; ``clip=False`` turns this off). B4: every observed coordinate is
  returned exactly as given (``x_context`` where ``avail``); only hidden coordinates are scored.

Evaluation (``main``)
---------------------
::

    python -m umask.bench.accuracy.user_umask --ckpt artifacts/train/umask_small/ckpt/latest --name umask \\
        [--ckpt ... --name ...] --users 100 --seed 0 --b1-every 4 \\
        --out benchmarks/results/user_umask.json

* **The population is the data the checkpoints were trained on.** A run trained on a user data file
  (``umask train umask --data FILE``: a Tsinghua trace, LLMApp CSV or official layout, or an
  app-only log; recorded as ``config.train.data``) is scored on that file, or on ``--trace FILE``
  (``umask eval B1 --ckpt RUN --data FILE``): :func:`trace_population` reads and featurizes it as
  the trainer does (layout and profile statistics from the training days only), the fingerprint
  says whether it is exactly the training data, splits per PROTOCOL B (last day test, the day
  before validation), the rows say ``dataset = "user data: ..."`` and list the users under
  ``data``, and the real sample is not scored. Only a simulator-trained run is scored on the
  simulator:
* The SYNTHETIC population is ``user_eval.simulated_population(--population-users, --seed)``; the
  default population size is the checkpoints' training ``n_users`` (300), so with the same simulator
  seed the evaluated users ARE the training users (checked: the population fingerprint must equal the
  checkpoint's), whose validation / test days were never seen in training (training windows lie wholly
  inside days 1-5). ``--users N`` keeps the first N of them (sorted user ids; the simulator shuffles
  archetypes, so this is an unbiased subset). Baselines and every checkpoint are scored on exactly the
  same windows.
* ``--b1-every K`` keeps the B1 windows whose target hour h (= the window index, targets start every
  hour of the test day) satisfies ``h % K == --b1-offset`` (default offset 2: 02:00, 06:00, ..., 22:00
  for K = 4), for ALL models alike; B2/B3/B4 and the real sample are complete.
* The real 6-user one-day sample (``user_eval.evaluate_real_sample``) is scored with the same
  checkpoints (zero-shot: trained on simulated users only) next to its one-day baselines (simulator
  populations only).
* Writes ``--out`` (JSON ``{"meta": ..., "rows": [user_eval rows]}``, U-MASK rows carrying
  ``samples``, ``steps``, ``sampler``, ``seeds``, ``checkpoint`` and ``training``) and the markdown
  next to it.
* ``--diagnostics N`` runs :func:`evidence_diagnostics` on the first N users' B2 and B4 test windows
  instead (does the DiT's x0-prediction use the evidence, per diffusion timestep?)::

    python -m umask.bench.accuracy.user_umask --ckpt ... --name umask --diagnostics 32 \
        --out benchmarks/results/user_umask_diagnostics.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from umask.bench.accuracy import user as ue
from umask.bench.accuracy.user_tasks import TASK_OF
from umask.runtime.core.errors import InputError
from umask.train.common.checkpoints import resolve_checkpoint
from umask.train.diffusion import make_sampler
from umask.train.models.umask.dit import TASKS as MODEL_TASKS

log = logging.getLogger(__name__)

DEFAULT_OUT = "benchmarks/results/user_umask.json"
SUMMARY_METRICS = (("mae", "MAE"), ("active_mae", "act. MAE"), ("rmse", "RMSE"), ("active_rmse", "act. RMSE"))


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------
def training_info(ckpt: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """What the rows report about a checkpoint's training: steps, wall time, the equivalent command."""
    tr, mo = config["train"], config["model"]
    state = json.loads((ckpt / "state.json").read_text()) if (ckpt / "state.json").is_file() else {}
    step = int(state.get("step", -1))
    elapsed = None
    run_dir = ckpt.parent.parent
    mfile = run_dir / "metrics.jsonl"
    if mfile.is_file():
        for line in mfile.read_text().splitlines():
            rec = json.loads(line)
            if "elapsed_s" in rec and int(rec.get("step", -1)) <= step:
                elapsed = float(rec["elapsed_s"])
    return {"checkpoint_step": step, "train_steps": tr["steps"], "train_seconds": None if elapsed is None
            else round(elapsed, 1), "batch_size": tr["batch_size"], "lr": tr["lr"],
            "mask_mode": mo["mask_mode"], "use_profile": mo["use_profile"],
            "dit_conditioning": mo["dit_conditioning"], "config": tr["model"],
            "data": {k: config["data"].get(k) for k in ("source", "n_users", "sim_seed", "fingerprint")},
            "command": train_command(config)}


def train_command(config: Mapping[str, Any]) -> str:
    """The trainer CLI that reproduces ``config`` (options at their defaults are left out)."""
    from umask.train.models.umask.trainer import TrainConfig

    tr, d = config["train"], TrainConfig()
    args = ["python", "-m", "umask.train.models.umask.trainer", "--config", tr["model"]]
    for key, flag in (("steps", "--steps"), ("warmup", "--warmup"), ("batch_size", "--batch-size"), ("lr", "--lr"),
                      ("eval_every", "--eval-every"), ("eval_batches", "--eval-batches"),
                      ("ckpt_every", "--ckpt-every"), ("n_users", "--n-users"), ("sim_seed", "--sim-seed"),
                      ("seed", "--seed"), ("num_threads", "--num-threads")):
        if tr.get(key) != getattr(d, key) or key in ("steps", "n_users", "sim_seed"):
            args += [flag, str(tr.get(key))]
    ov = dict(tr.get("model_overrides") or {})
    if ov.pop("use_profile", True) is False:
        args.append("--no-profile")
    if "mask_mode" in ov:
        args += ["--mask-mode", str(ov.pop("mask_mode"))]
    if ov.pop("dit_conditioning", True) is False:
        args.append("--no-dit-conditioning")
    for k, v in ov.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    if tr.get("data"):
        args += ["--data", str(tr["data"])]
    args += ["--out", str(tr["out"])]
    return shlex.join(args)


# ------------------------------------------------------------------------------------------------
# The adapter
# ------------------------------------------------------------------------------------------------
class UMaskPredictor:
    """``user_eval.Predictor`` over a trained :class:`UMask` (see the module docstring)."""

    def __init__(self, model: Any, config: Mapping[str, Any] | None = None, *, sampler: str = "ddim",
                 steps: int = 10, n_samples: int = 2, seed: int = 0, profile_source: str = "template",
                 sbert_cache: str | Path | None = None, encoder: Any = None, clip: bool = True,
                 checkpoint: str | Path | None = None, profile_generator: Any = None,
                 context_slots: int | None = None, point: str = "auto") -> None:
        if point not in ("auto", "mean", "first_x0", "median"):
            raise InputError(f"point must be 'auto', 'mean', 'first_x0' or 'median', got {point!r}")
        if profile_source not in ("template", "none", "llm"):
            raise InputError(f"profile_source must be 'template', 'none' or 'llm', got {profile_source!r}")
        if (profile_source == "llm") != (profile_generator is not None):
            raise InputError("profile_source 'llm' needs a profile_generator (x_u -> profile text) and only it uses one")
        if steps < 1 or n_samples < 1:
            raise InputError("steps and n_samples must be >= 1")
        self.model = model.eval()
        self.config = dict(config or {})
        self.sampler_name, self.steps, self.n_samples, self.seed = sampler, int(steps), int(n_samples), int(seed)
        self.sampler = make_sampler(sampler, model.schedule)
        self.profile_source = profile_source
        self.profile_generator = profile_generator     # U-SCOPE LLM (runtime/llm.LlamaProfiler) for "llm"
        self.sbert_cache = sbert_cache
        self._encoder = encoder
        self.clip = clip
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        dcfg, mcfg = model.cfg.dit_config(), model.cfg.maskgen_config()
        self.C, self.H, self.W, self.poi_dim = dcfg.channels, dcfg.H, dcfg.W, mcfg.poi_dim
        self.window = model.cfg.window
        if context_slots is not None and not 1 <= int(context_slots) <= self.window.context:
            raise InputError(f"--context-slots {context_slots}: must lie in [1, {self.window.context}] (the model's "
                             f"context region)")
        self.context_slots = None if context_slots is None else int(context_slots)   # non-protocol override
        # UMaskConfig.prior (e.g. "blend"): the network learns a residual over a deterministic prior that
        # every batch must carry (train/models/umask/data.window_prior), built from the user's own tensor
        self.prior = str(getattr(model.cfg, "prior", "none"))
        # "auto": the x0 estimate at the first step for a prior model (its residual is what was trained to be
        # right on average), the mean of samples otherwise
        self.point = ("first_x0" if self.prior != "none" else "mean") if point == "auto" else point
        self.population: ue.UserPopulation | None = None

    def attach_population(self, pop: ue.UserPopulation) -> None:
        """The population whose windows are scored: a prior model reads each user's tensor from it."""
        self.population = pop

    # -- profile embeddings, as train/dataset.build_profile_table --
    @property
    def uses_profile(self) -> bool:
        trained = self.config.get("data", {}).get("profile_source", "template")
        return bool(self.model.cfg.use_profile) and self.profile_source != "none" and trained != "none"

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from umask.train.models.umask.profile_encoder import SentenceEncoder

            self._encoder = SentenceEncoder(cache_dir=self.sbert_cache)
        return self._encoder

    def profile_inputs(self, profiles: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(n, D) SBERT embeddings of the template profiles and (n,) present flags (None -> absent)."""
        from umask.train.models.umask.profile_encoder import profile_embeddings

        n, dim = len(profiles), int(self.model.cfg.sbert_dim)
        emb = np.zeros((n, dim), np.float32)
        present = np.array([p is not None for p in profiles], bool)
        if present.any():
            e, ok = profile_embeddings([p for p in profiles if p is not None], self.profile_source,
                                       encoder=self.encoder, generator=self.profile_generator)
            if e.shape[1] != dim:
                raise InputError(f"SBERT gives {e.shape[1]}-d embeddings, the model's ProfileMLP expects {dim}")
            emb[present] = e
            present[present] = ok
        return emb, present

    # -- TaskBatch -> model batch --
    def check(self, batch: ue.TaskBatch) -> None:
        w = self.window
        _n, C, Tc, H, W = batch.x_context.shape
        if (C, H, W) != (self.C, self.H, self.W):
            raise InputError(f"batch tensors are (C, H, W) = {(C, H, W)}, the model was trained on "
                             f"{(self.C, self.H, self.W)}")
        if batch.e_pos.shape[-1] != self.poi_dim:
            raise InputError(f"batch e_pos has width {batch.e_pos.shape[-1]}, the model's poi_dim is {self.poi_dim}")
        if batch.task not in TASK_OF:
            raise InputError(f"unknown task {batch.task!r}; known: {sorted(TASK_OF)}")
        where = f"the model's window is {w.T} = {w.context} context + {w.horizon} horizon slots"
        if batch.target_offset == 0:
            if Tc != w.context or batch.horizon != Tc:
                raise InputError(f"{batch.task}: a {Tc}-slot completion window (target {batch.horizon} slots) does "
                                 f"not fit: it must be exactly the context region ({where})")
        elif batch.target_offset != Tc:
            raise InputError(f"{batch.task}: target_offset {batch.target_offset} must be 0 (completion) or Tc = {Tc}")
        elif Tc != w.context or batch.horizon > w.horizon:
            raise InputError(f"{batch.task}: context {Tc} slots + target {batch.horizon} slots does not fit ({where}; "
                             f"the context must be exactly {w.context} slots and the target at most {w.horizon})")

    def model_batch(self, batch: ue.TaskBatch) -> dict[str, torch.Tensor]:
        """The training-layout batch dict (x0, avail, target, task, e_pos[, profile_emb, profile_present])."""
        self.check(batch)
        w = self.window
        n, C, Tc, H, W = batch.x_context.shape
        x0 = np.zeros((n, C, w.T, H, W), np.float32)
        avail = np.zeros((n, 1, w.T, H, W), np.float32)
        target = np.zeros_like(avail)
        x0[:, :, :Tc] = batch.x_context
        avail[:, :, :Tc] = batch.avail
        x0 *= avail                                              # nothing outside avail (already zero there)
        if batch.target_offset == 0:
            target[:, :, :Tc] = ~np.asarray(batch.avail)
        else:
            target[:, :, Tc:Tc + batch.horizon] = 1.0
        out = {"x0": torch.from_numpy(x0), "avail": torch.from_numpy(avail), "target": torch.from_numpy(target),
               "task": torch.full((n,), MODEL_TASKS.index(TASK_OF[batch.task]), dtype=torch.long),
               "e_pos": torch.from_numpy(np.array(batch.e_pos, np.float32))}
        if self.uses_profile:
            emb, present = self.profile_inputs(batch.profiles)
            out["profile_emb"] = torch.from_numpy(emb)
            out["profile_present"] = torch.from_numpy(present)
        if self.prior != "none":
            out["prior"] = torch.from_numpy(self.prior_inputs(batch, x0, avail))
        if getattr(self.model.cfg, "dit_calendar", False):
            out["cal"] = torch.from_numpy(self.calendar_inputs(batch))
        return out

    def calendar_inputs(self, batch: ue.TaskBatch) -> np.ndarray:
        """(n, T, CAL_DIM) `slot_calendar` of each window (its slots' time of day and weekday; no data)."""
        from umask.train.models.umask.data import slot_calendar

        if self.population is None:
            raise InputError("this checkpoint takes the slot calendar (dit_calendar): the scorer must attach the "
                             "evaluated population (UMaskPredictor.attach_population)")
        out = []
        for u, start in zip(batch.users, batch.context_starts):
            tensor = self.population.features[int(u)].tensor
            out.append(slot_calendar(tensor.start_ts, tensor.slot_seconds, int(start), self.window.T))
        return np.stack(out).astype(np.float32)

    def prior_inputs(self, batch: ue.TaskBatch, x0: np.ndarray, avail: np.ndarray) -> np.ndarray:
        """(n, C, T, H, W) `window_prior` of each window (the user's history before its start, as trained),
        zero on the channels the user's data does not have."""
        from umask.train.models.umask.data import window_prior

        if self.population is None:
            raise InputError(f"this checkpoint was trained with prior={self.prior!r}: the scorer must attach the "
                             "evaluated population (UMaskPredictor.attach_population) so the prior can be built")
        task = MODEL_TASKS.index(TASK_OF[batch.task])
        out = []
        for i, (u, start) in enumerate(zip(batch.users, batch.context_starts)):
            tensor = self.population.features[int(u)].tensor
            pr = window_prior(tensor, int(start), x0[i], avail[i], task, self.window.context, self.prior)
            out.append(pr * tensor.channels.present[:, None, None, None])
        return np.stack(out).astype(np.float32)

    def batch_seed(self, batch: ue.TaskBatch) -> int:
        ent = [self.seed, MODEL_TASKS.index(TASK_OF[batch.task]), int(batch.users[0]), int(batch.window_index[0]),
               int(batch.starts[0]) % 2**32, batch.n]
        return int(np.random.SeedSequence(ent).generate_state(1)[0])

    def fit_context(self, batch: ue.TaskBatch) -> tuple[ue.TaskBatch, int]:
        """The ``--context-slots N`` override (NON-protocol; see :func:`window_fit`) -> (batch, chunks).

        Forecasting: the model sees only the last N context slots (zero-padded in front, not
        available, up to its context region). B4: the completion window is cut into Tc / N
        consecutive N-slot windows (N = the model's context), each completed on its own (chunks > 1).
        Without the override the batch is returned as it is (chunks = 1)."""
        n_ctx = self.context_slots
        if n_ctx is None:
            return batch, 1
        w, Tc = self.window, batch.Tc
        if batch.target_offset == 0:                                       # B4: completion in N-slot chunks
            if n_ctx != w.context or Tc % n_ctx:
                raise InputError(f"{batch.task}: --context-slots {n_ctx} must equal the model's context "
                                 f"({w.context} slots) and divide the {Tc}-slot completion window")
            k = Tc // n_ctx

            def cut(a: np.ndarray) -> np.ndarray:                         # (n, X, Tc, H, W) -> (n k, X, N, H, W)
                n, X, _, H, W = a.shape
                return np.ascontiguousarray(a.reshape(n, X, k, n_ctx, H, W).transpose(0, 2, 1, 3, 4, 5)
                                            .reshape(n * k, X, n_ctx, H, W))

            offs = np.tile(np.arange(k) * n_ctx, batch.n)
            rep = np.repeat
            return dataclasses.replace(
                batch, x_context=cut(np.asarray(batch.x_context)), avail=cut(np.asarray(batch.avail)),
                context_starts=rep(batch.context_starts, k) + offs, starts=rep(batch.starts, k) + offs,
                horizon=n_ctx, eval_mask=cut(np.asarray(batch.eval_mask)), e_pos=rep(batch.e_pos, k, axis=0),
                users=rep(batch.users, k), window_index=rep(batch.window_index, k),
                profiles=[p for p in batch.profiles for _ in range(k)],
                truth=None if batch.truth is None else cut(np.asarray(batch.truth))), k
        if n_ctx > Tc:
            raise InputError(f"{batch.task}: --context-slots {n_ctx} exceeds the batch's {Tc}-slot context")
        pad = w.context - n_ctx
        x = np.zeros((batch.n, batch.x_context.shape[1], w.context, *batch.x_context.shape[3:]), np.float32)
        av = np.zeros((batch.n, 1, w.context, *batch.avail.shape[3:]), bool)
        x[:, :, pad:] = batch.x_context[:, :, Tc - n_ctx:]
        av[:, :, pad:] = batch.avail[:, :, Tc - n_ctx:]
        return dataclasses.replace(batch, x_context=x, avail=av, target_offset=w.context,
                                   context_starts=np.asarray(batch.context_starts) + (Tc - n_ctx) - pad), 1

    def __call__(self, batch: ue.TaskBatch) -> np.ndarray:
        batch, chunks = self.fit_context(batch)
        pred = self._complete(batch)
        if chunks > 1:                                                     # (n k, C, N, H, W) -> (n, C, N k, H, W)
            nk, C, N, H, W = pred.shape
            pred = pred.reshape(nk // chunks, chunks, C, N, H, W).transpose(0, 2, 1, 3, 4, 5).reshape(
                nk // chunks, C, chunks * N, H, W)
        return np.ascontiguousarray(pred, np.float32)

    def _complete(self, batch: ue.TaskBatch) -> np.ndarray:
        mb = self.model_batch(batch)
        device = next(self.model.parameters()).device
        mb = {k: v.to(device) for k, v in mb.items()}
        full = self.model.complete(mb, self.sampler, self.steps, self.n_samples, self.batch_seed(batch),
                                   point=self.point)
        full = full.float().cpu().numpy()
        sl = batch.target_slice
        pred = full[:, :, sl]
        if self.clip:
            pred = np.maximum(pred, 0.0)
            loc = batch.channels.location_index
            pred[:, loc] = np.minimum(pred[:, loc], 1.0)
        if batch.target_offset == 0:                             # observed coordinates: exactly the evidence
            pred = np.where(batch.avail, batch.x_context, pred)
        return np.ascontiguousarray(pred, np.float32)

    def info(self) -> dict[str, Any]:
        """``model_info`` entry for user_eval rows."""
        d: dict[str, Any] = {"seeds": [self.seed], "samples": self.n_samples, "steps": self.steps,
                             "sampler": self.sampler_name + (" (eta = 0)" if self.sampler_name == "ddim" else ""),
                             "point_forecast": (f"mean of {self.n_samples} samples" if self.point == "mean" else
                                                f"per-entry median of {self.n_samples} samples" if self.point == "median"
                                                else f"x0 estimate at the first step (t = N-1), mean of {self.n_samples} "
                                                "noise draws") + (f"; prior {self.prior}" if self.prior != "none" else ""),
                             "profile_input": (f"{self.profile_source} -> SBERT -> ProfileMLP" if self.uses_profile else "none")
                             + (f" (LLM {getattr(self.profile_generator, 'model_path', '')}"
                                f"{' + ' + str(self.profile_generator.lora_path) if getattr(self.profile_generator, 'lora_path', None) else ''})"
                                if self.profile_generator is not None else ""),
                             "output_clip": "traffic/app >= 0, location in [0, 1]" if self.clip else "none",
                             "prior": self.prior}
        if self.context_slots is not None:
            d["context_slots"] = self.context_slots
        if self.checkpoint is not None:
            d["checkpoint"] = self.checkpoint
        if self.config.get("train"):
            d["training"] = training_info(Path(self.checkpoint), self.config) if self.checkpoint else {}
        return d


def umask_predictor(ckpt_dir: str | Path, *, sampler: str = "ddim", steps: int = 10, n_samples: int = 2,
                    seed: int = 0, profile_source: str = "template", sbert_cache: str | Path | None = "auto",
                    ema: bool = True, device: str = "cpu", clip: bool = True, encoder: Any = None,
                    profile_generator: Any = None, context_slots: int | None = None,
                    point: str = "auto") -> UMaskPredictor:
    """Load a checkpoint (EMA weights by default) as a ``user_eval.Predictor``.

    ``ckpt_dir``: a step directory, a ``best`` / ``latest`` pointer, a ``ckpt`` folder or a run folder.
    ``sbert_cache="auto"``: the checkpoint's training cache folder (a relative one from the current folder, where the
    trainer resolved it too: never inside the installed package).
    """
    from umask.train.models.umask.trainer import load_model

    ckpt = resolve_checkpoint(ckpt_dir)
    model, config = load_model(ckpt, ema=ema, device=device)
    if sbert_cache == "auto":
        c = config.get("train", {}).get("sbert_cache")
        sbert_cache = None if not c else Path(c)          # relative: to the current folder, as the trainer wrote it
    return UMaskPredictor(model, config, sampler=sampler, steps=steps, n_samples=n_samples, seed=seed,
                          profile_source=profile_source, sbert_cache=sbert_cache, clip=clip, encoder=encoder,
                          checkpoint=ckpt, profile_generator=profile_generator, context_slots=context_slots,
                          point=point)


# ------------------------------------------------------------------------------------------------
# Populations and the B1 subset
# ------------------------------------------------------------------------------------------------
def subset_population(pop: ue.UserPopulation, n_users: int | None) -> ue.UserPopulation:
    """The first ``n_users`` users (sorted ids) of a population (all when None or larger)."""
    users = pop.users
    if n_users is None or n_users >= len(users):
        return pop
    if n_users < 1:
        raise InputError("n_users must be >= 1")
    keep = users[:n_users]
    info = {**pop.info, "n_users_evaluated": len(keep),
            "evaluated_subset": f"first {len(keep)} of the {len(users)} featurized users (sorted user ids)"}
    return dataclasses.replace(pop, features={u: pop.features[u] for u in keep},
                               events={u: pop.events[u] for u in keep}, info=info)


def population_matches(pop: ue.UserPopulation, config: Mapping[str, Any]) -> bool:
    """True when ``pop`` (before subsetting) is exactly the checkpoint's training population."""
    from umask.train.models.umask.data import population_fingerprint

    fp = config.get("data", {}).get("fingerprint")
    return fp is not None and population_fingerprint([pop.features[u] for u in pop.users]) == fp


PROTOCOL_CONTEXT = 192                  # PROTOCOL B: 2 days of 15-minute context (user_windows.CONTEXT_SLOTS)
PROTOCOL_TARGET = {"B1": 4, "B2": 96, "B3": 96, "B4": 0}   # target slots after the context (B4: inside it)
PROTOCOL_WINDOW_SET = "--set 'window={\"context\":192,\"horizon\":96}'"


def window_fit(pred: UMaskPredictor, task: str, name: str = "umask") -> str | None:
    """None when ``pred`` can score ``task``, else the one-line reason (what it needs, how to get it).

    PROTOCOL B (``--context-slots`` unset): the model's context region must be the protocol's 192
    slots and its horizon must hold the target (B1: 4, B2/B3: 96 slots). With ``--context-slots N``
    (a NON-protocol smoke test, recorded in every row): forecasting needs N <= the model's context
    and the target within its horizon; B4 needs N = the model's context, dividing 192."""
    w, n_ctx = pred.window, pred.context_slots
    cfg = pred.config.get("train", {}).get("model") or pred.model.cfg.name
    where = (f"{task}: {name} (checkpoint {pred.checkpoint}, config {cfg!r}) has a {w.T}-slot window = {w.context} "
             f"context + {w.horizon} horizon slots")
    train_one = (f"train a protocol model with 'umask train umask --config small ...' or keep the config and add "
                 f"{PROTOCOL_WINDOW_SET} (192 context + 96 horizon slots)")
    need = PROTOCOL_TARGET[task]
    if need > w.horizon:
        return (f"{where}; PROTOCOL B {task} predicts {need} target slots, more than the horizon, so no "
                f"--context-slots override helps: {train_one}")
    if n_ctx is None:
        if w.context == PROTOCOL_CONTEXT:
            return None
        return (f"{where}; PROTOCOL B {task} needs {PROTOCOL_CONTEXT} context slots (2 days)"
                f"{f' + {need} target slots' if need else ' (the completion window)'}: {train_one}; or score this "
                f"model off-protocol with --context-slots {w.context} (recorded in every row)")
    if task == "B4" and (n_ctx != w.context or PROTOCOL_CONTEXT % n_ctx):
        return (f"{where}; B4 with --context-slots completes the 192-slot window in chunks of the model's context: "
                f"--context-slots must be {w.context} and divide 192")
    return None


def trace_population(path: str | Path, *, data_dir: str | Path | None = None) -> ue.UserPopulation:
    """The user's own data (a Tsinghua trace: the LLMApp CSV or the official layout, or an app-only
    ``time,app[,bytes]`` log) as a harness population, featurized exactly as ``umask train`` does
    (umask.train.models.umask.data.users_from_trace: the same readers, catalog and featurization,
    layout and profile statistics fit on the training days = every day but the last two).

    :func:`population_matches` then compares it with a checkpoint's training fingerprint (same users,
    same tensors). Splits per PROTOCOL B (user_windows.user_splits): last day test, the day before
    validation, the rest training."""
    from umask.bench.accuracy.user_tasks import _catalog, _split_events
    from umask.runtime.core.events import read_trace
    from umask.runtime.core.featurize import FeatureConfig, day_span, featurize_population
    from umask.runtime.core.usage_log import looks_like_usage_log, read_usage_log
    from umask.train.models.umask.data import _history_end

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--data {path}: no such file")
    if path.suffix == ".npz":
        raise InputError(f"--data {path}: a users .npz holds no raw events (the harness needs them: B3 profiles "
                         "from the visible slots); pass the trace it was made from")
    t0 = time.perf_counter()
    cfg = FeatureConfig()
    catalog = _catalog(data_dir)
    app_only = looks_like_usage_log(path)
    if app_only:
        usage = read_usage_log(path)
        events, absent = usage.events, usage.absent
    else:
        from umask.runtime.core.featurize import NOTHING_ABSENT

        events, absent = read_trace(path), NOTHING_ABSENT
    start, n_slots = day_span(events.ts, cfg.slot_seconds)
    fit_end = _history_end(start, n_slots, cfg.slot_seconds)     # refuses < 3 days in one line
    feats = featurize_population(events, catalog, cfg, fit_end_ts=fit_end, absent=absent)
    if not feats:
        raise InputError(f"--data {path}: no user has an event in the training days")
    left_out = sorted(set(np.unique(events.user).tolist()) - set(feats))
    per_user = _split_events(events)
    days = n_slots * cfg.slot_seconds // 86400
    info: dict[str, Any] = {
        "trace": str(path), "format": "app-only log" if app_only else "Tsinghua trace", "days": days,
        "n_users_evaluated": len(feats), "left_out_no_training_events": left_out, "fit_end_ts": fit_end,
        "splits": f"PROTOCOL B per user by whole days: day {days} test, day {days - 1} validation, days 1-{days - 2} "
                  "training",
        "featurize": (f"featurize_population(events, catalog, FeatureConfig(), fit_end_ts=start + {days - 2} days), "
                      "as umask.train.models.umask.data.users_from_trace (the trainer's featurization)"),
        "build_seconds": round(time.perf_counter() - t0, 2)}
    if absent:
        info["absent_channels"] = sorted(absent)
        info["absent_note"] = "absent channels are all-zero truths, scored as recorded for every model alike"
    dataset = f"user data: {path.name} ({len(feats)} users, {days} days; {info['format']})"
    return ue.UserPopulation(dataset, False, dict(sorted(feats.items())), {u: per_user[u] for u in feats}, catalog,
                             cfg, info)


def training_sources(preds: Mapping[str, UMaskPredictor]) -> dict[str, str | None]:
    """Each checkpoint's training data file (``config.train.data``; None = the simulator)."""
    return {n: (pr.config.get("train", {}).get("data") or None) for n, pr in preds.items()}


def resolve_trace(path: str) -> Path:
    """A recorded training data path: as given (relative to the working directory), else the repository's."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    q = ue.REPO_ROOT / p
    return q if q.is_file() else p


def b1_hours(every: int, offset: int) -> list[int]:
    if every < 1 or not 0 <= offset < every:
        raise InputError(f"need every >= 1 and 0 <= offset < every, got {every}, {offset}")
    return [h for h in range(24) if h % every == offset]


# ------------------------------------------------------------------------------------------------
# Diagnostics: does the DiT use the evidence?
# ------------------------------------------------------------------------------------------------
DIAG_TIMESTEPS = (999, 980, 950, 900, 500)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


@torch.no_grad()
def evidence_diagnostics(pred: UMaskPredictor, batch: ue.TaskBatch, timesteps: Sequence[int] = DIAG_TIMESTEPS,
                         seed: int = 0) -> list[dict[str, Any]]:
    """One-call x0-predictions of the DiT on ``batch`` (with truth), as in a training forward.

    For each t: x_t = q_sample(the TRUE window in model space, t, eps) (the diffusion input of training,
    so it contains the answer at low t), the model's evaluation evidence mask. Reports, over the target
    coordinates of the location channel, the correlation of the x0-prediction with the truth WITH the
    evidence and with the evidence removed (x_obs = 0, mask = 0), the mean |difference| the evidence
    makes (all channels, featurized scale), and the signal-to-noise ratio of a location entry of 1
    (x_scale * alpha_t / sigma_t). A model that forecasts from evidence needs corr > 0 at t near 999."""
    if batch.truth is None:
        raise InputError("diagnostics need a batch with truth")
    m = pred.model
    mb = pred.model_batch(batch.model_view())
    dev = next(m.parameters()).device
    mb = {k: v.to(dev) for k, v in mb.items()}
    x_true = mb["x0"].clone()
    sl = batch.target_slice
    x_true[:, :, sl] = torch.from_numpy(np.asarray(batch.truth, np.float32)).to(dev)
    g = torch.Generator().manual_seed(int(seed))
    h_u = m.user_repr(mb)
    _, hard, _ = m.evidence(mb, h_u, g, deterministic=True)
    scale = m.x_scale.reshape(1, -1, 1, 1, 1)
    xs = x_true * scale
    x_obs = mb["x0"] * mb["avail"] * scale * hard
    eps = torch.randn(xs.shape, generator=g, dtype=torch.float32).to(xs)
    loc = batch.channels.location_index
    tgt = np.broadcast_to(batch.eval_mask, batch.truth.shape)[:, loc]
    y = np.asarray(batch.truth)[:, loc][tgt]
    out = []
    for t in timesteps:
        tt = torch.full((batch.n,), int(t), dtype=torch.long, device=dev)
        x_t = m.schedule.q_sample(xs, tt, eps)
        p1 = (m.dit(x_t, x_obs, hard, tt, h_u, mb["task"]) / scale)[:, :, sl].cpu().numpy()
        p0 = (m.dit(x_t, torch.zeros_like(x_obs), torch.zeros_like(hard), tt, h_u, mb["task"]) / scale
              )[:, :, sl].cpu().numpy()
        a, s = m.schedule.alpha_sigma(int(t))
        e = np.broadcast_to(batch.eval_mask, p1.shape)
        q1 = p1[:, loc][tgt]
        out.append({"task": batch.task, "t": int(t), "snr_location_1": float(m.x_scale[loc]) * a / max(s, 1e-12),
                    "corr_with_evidence": _corr(q1, y), "corr_without_evidence": _corr(p0[:, loc][tgt], y),
                    "mean_abs_effect_of_evidence": float(np.abs(p1 - p0)[e].mean()),
                    "loc_pred_on_active": float(q1[y > 0].mean()) if (y > 0).any() else None,
                    "loc_pred_on_inactive": float(q1[y == 0].mean()) if (y == 0).any() else None,
                    "evidence_share_of_avail": float(hard.sum() / mb["avail"].sum().clamp_min(1.0))})
    full = pred(batch.model_view())[:, loc][tgt]
    out.append({"task": batch.task, "t": "complete()", "corr_with_evidence": _corr(full, y),
                "loc_pred_on_active": float(full[y > 0].mean()) if (y > 0).any() else None,
                "loc_pred_on_inactive": float(full[y == 0].mean()) if (y == 0).any() else None})
    return out


def diagnostics_markdown(diag: Mapping[str, Sequence[Mapping[str, Any]]], meta: Mapping[str, Any]) -> str:
    lines = ["# U-MASK diagnostics: does the DiT use the evidence? (SYNTHETIC)", "",
             f"Command: `{meta['command']}`.", "", meta["what"], "",
             ("| model | task | t | SNR of a location 1 | corr (with evidence) | corr (evidence removed) "
             "| mean abs effect of evidence | loc. pred on active | loc. pred on inactive | evidence / avail |"),
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v: Any, fmt: str = ".3f") -> str:
        return "-" if v is None else format(v, fmt)

    for name, rs in diag.items():
        for r in rs:
            lines.append(f"| {name} | {r['task']} | {r['t']} | {f(r.get('snr_location_1'), '.2f')} "
                         f"| {f(r.get('corr_with_evidence'))} | {f(r.get('corr_without_evidence'))} "
                         f"| {f(r.get('mean_abs_effect_of_evidence'), '.5f')} | {f(r.get('loc_pred_on_active'))} "
                         f"| {f(r.get('loc_pred_on_inactive'))} | {f(r.get('evidence_share_of_avail'))} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def summary_tables(rows: Sequence[Mapping[str, Any]]) -> str:
    """Compact per-task tables: one line per model, MAE / active MAE / RMSE / active RMSE per group
    (featurized scale); B3 adds NDCG@3 / Recall@3 for apps and locations."""
    lines: list[str] = []
    sections: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        sections.setdefault((r["dataset"], r["task"]), []).append(r)
    for (dataset, task), rs in sections.items():
        tag = ("USER DATA" if str(dataset).startswith("user data") else
               "SYNTHETIC" if rs[0].get("synthetic") else "REAL")
        lines += [f"#### {task} ({tag}; {rs[0]['n_windows']} windows, {rs[0]['n_users']} users)", ""]
        head = ["model"] + [f"{g} {m}" for g in ue.GROUPS for _, m in SUMMARY_METRICS]
        rank = "ranking" in rs[0]["metrics"]
        if rank:
            head += ["app NDCG@3", "app Recall@3", "loc NDCG@3", "loc Recall@3"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|---|" + "---:|" * (len(head) - 1))
        best = {}
        for g in ue.GROUPS:
            for k, _ in SUMMARY_METRICS:
                vals = [r["metrics"][g][k] for r in rs if r["metrics"][g][k] is not None]
                best[(g, k)] = min(vals) if vals else None
        for r in rs:
            cells = [r["model"]]
            for g in ue.GROUPS:
                for k, _ in SUMMARY_METRICS:
                    v = r["metrics"][g][k]
                    s = _f(v)
                    cells.append(f"**{s}**" if v is not None and v == best[(g, k)] else s)
            if rank:
                rk = r["metrics"]["ranking"]
                cells += [_f(rk["app"].get("ndcg@3")), _f(rk["app"].get("recall@3")),
                          _f(rk["location"].get("ndcg@3")), _f(rk["location"].get("recall@3"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def report(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    """The markdown file: header (models, training, settings), compact summaries, full user_eval tables."""
    user_data = str(meta.get("population", "simulator")).startswith("trace")
    intro = (f"The user's own data ({meta['population'][len('trace '):]}): U-MASK trained on its training days, "
             "evaluated on its unseen test day (the last one)." if user_data else None)
    out = ["# U-MASK vs baselines (PROTOCOL B" + (", NON-PROTOCOL context)" if meta.get("context_slots") else ")"),
           "", intro or ("SYNTHETIC main benchmark (calibrated simulator; U-MASK trained on the same simulated users' days 1-5, "
           "evaluated on their unseen test day 7) + REAL one-day 6-user sample (zero-shot: the checkpoints never "
           "saw real data)."), "Point forecast of every U-MASK row = mean of its samples (below).", "",
           f"Command: `{meta['command']}` (wall time {meta['wall_seconds']:.0f} s, 1 torch thread).", ""]
    out += ["## Settings", ""]
    for line in meta["settings"]:
        out.append(f"- {line}")
    out += ["", "## Models", "", ("| name | checkpoint | mask | U-SCOPE profile | DiT user cond. | train steps "
            "| train wall s | training command |"), "|---|---|---|---|---|---:|---:|---|"]
    for name, m in meta["models"].items():
        t = m.get("training", {})
        out.append(f"| {name} | `{m.get('checkpoint')}` | {t.get('mask_mode')} | {t.get('use_profile')} "
                   f"| {t.get('dit_conditioning')} | {t.get('checkpoint_step')} | {t.get('train_seconds')} "
                   f"| `{t.get('command')}` |")
    for name, note in meta.get("model_notes", {}).items():
        out.append(f"\n- {name}: {note}")
    out += ["", "## Summary (featurized scale; best per column in bold)", "", summary_tables(rows), "",
            "## Full tables (user_eval format, with raw-unit errors and B3 ranking)", "", ue.markdown_table(rows)]
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def _run_diagnostics(preds: Mapping[str, UMaskPredictor], pop: ue.UserPopulation, n: int, split: str, command: str,
                     out: Path) -> int:
    diag: dict[str, list[dict[str, Any]]] = {name: [] for name in preds}
    for task in ("B2", "B4"):
        batch = next(ue.iter_batches(pop, task, split, n))
        for name, pr in preds.items():
            diag[name] += evidence_diagnostics(pr, batch)
    meta = {"command": command, "n_windows_per_task": min(n, len(pop.users)),
            "what": (f"First {min(n, len(pop.users))} users' {split}-day B2 (long-term) and B4 (completion) windows. "
                     "One DiT call per timestep t on x_t = q_sample(true window in model space, t, eps) with the "
                     "model's evaluation evidence mask (this input contains the answer at low t: it is what training "
                     "sees); correlations are over the target coordinates of the location channel. 'complete()' is "
                     "the evaluated forecast (10 DDIM steps, 2 samples, as in user_umask.md).")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "diagnostics": diag}, indent=2) + "\n")
    md = diagnostics_markdown(diag, meta)
    out.with_suffix(".md").write_text(md)
    print(md, end="")
    return 0


def _profile_kwargs(spec: str) -> dict[str, Any]:
    """--profile SOURCE -> umask_predictor keyword arguments ("llm:MODEL.gguf[+LORA.gguf]" loads llama.cpp)."""
    from umask.runtime.families.umask.profile_text import parse_profile_spec, profile_generator

    ps = parse_profile_spec(spec)
    if ps.model is None:
        return {"profile_source": ps.source.value}
    return {"profile_source": "llm", "profile_generator": profile_generator(ps, n_threads=1)}


CONTEXT_OVERRIDE_NOTE = ("U-MASK sees only the last N context slots of each protocol window (zero, unobserved "
                         "slots in front up to its context region; B4: the 192-slot completion window in N-slot "
                         "chunks, each completed on its own); the baselines see the protocol context; targets, "
                         "masks and scoring are the protocol's")


def _mark_context_override(rows: list[dict[str, Any]], preds: Mapping[str, UMaskPredictor], n_ctx: int) -> None:
    """Every row says that its table is NOT PROTOCOL B's context (``--context-slots N``); one dataset
    text for all rows of a table, so U-MASK and the baselines stay in one section."""
    for r in rows:
        r["dataset"] = (f"{r['dataset']}; non-protocol context {n_ctx} (U-MASK sees the last {n_ctx} context "
                        f"slots, the baselines the protocol's {PROTOCOL_CONTEXT})")
        r["context_override"] = {"context_slots": n_ctx, "protocol_context": PROTOCOL_CONTEXT,
                                 "applies_to": sorted(preds), "note": CONTEXT_OVERRIDE_NOTE}


def _evaluation_trace(given: str | None, preds: Mapping[str, UMaskPredictor]) -> Path | None:
    """The user data file to evaluate on (``--trace``, else the checkpoints' own), None = the simulator."""
    if given is not None:
        return Path(given)
    recorded = training_sources(preds)
    if len(set(recorded.values())) > 1:
        raise InputError(f"the checkpoints were trained on different data ({recorded}); pass --trace FILE "
                         "(umask eval: --data FILE) to score them on one data set")
    src = next(iter(recorded.values()))
    if src is None:
        return None
    path = resolve_trace(src)
    if not path.is_file():
        raise InputError(f"the run was trained on {src}, which is not there (relative paths are read from the "
                         "working directory); pass the trace with --data FILE")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user_umask", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", action="append", default=[], help="checkpoint (step dir, ckpt/best, ckpt/latest, run "
                                                               "dir); repeatable")
    p.add_argument("--name", action="append", default=[], help="row name of the matching --ckpt")
    p.add_argument("--note", action="append", default=[], help="NAME=TEXT: a note printed for that model")
    p.add_argument("--users", type=int, default=None, help="evaluate the first N users of the population")
    p.add_argument("--population-users", type=int, default=None,
                   help="simulated population size (default: the checkpoints' training n_users, else 300)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed (use the checkpoints' --sim-seed)")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--tasks", default="B1,B2,B3,B4")
    p.add_argument("--b1-every", type=int, default=1, help="B1: keep target hours h with h %% K == offset")
    p.add_argument("--b1-offset", type=int, default=None,
                   help="B1: the kept residue (default 2 when --b1-every > 2, else 0)")
    p.add_argument("--sampler", default="ddim", choices=("ddim", "dpmpp_2m"))
    p.add_argument("--steps", type=int, default=10, help="sampler steps")
    p.add_argument("--samples", type=int, default=2, help="samples per window (their mean is the forecast)")
    p.add_argument("--sample-seed", type=int, default=0, help="sampling seed")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--data-dir", default=None, help="Tsinghua folder of the catalog and the real sample")
    p.add_argument("--trace", default=None, metavar="FILE",
                   help="evaluate on this user data file (LLMApp CSV / official trace / app-only log; default: the "
                        "data the checkpoints were trained on, the simulator only for simulator-trained runs)")
    p.add_argument("--context-slots", type=int, default=None, metavar="N",
                   help="NON-protocol: U-MASK sees only the last N context slots (B4: N-slot completion chunks), "
                        "for models whose window is shorter than PROTOCOL B's 192 slots; recorded in every row")
    p.add_argument("--diagnostics", type=int, default=0, metavar="N",
                   help="instead of the evaluation: evidence diagnostics on the first N users' B2 and B4 test windows")
    p.add_argument("--profile", action="append", default=[], metavar="NAME=SOURCE",
                   help="profile text source of model NAME: template (default), none, or llm:MODEL.gguf[+LORA.gguf] "
                        "(U-SCOPE profiling LLM via runtime/llm.LlamaProfiler, greedy)")
    p.add_argument("--point", default="auto", choices=("auto", "mean", "first_x0", "median"),
                   help="U-MASK point forecast: mean of --samples samples, their per-entry median (for MAE), or the x0 estimate "
                        "at the first step (auto: first_x0 for a prior model, mean otherwise)")
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(max(1, args.threads))
    if len(args.name) != len(args.ckpt):
        p.error("give one --name per --ckpt")
    tasks = tuple(t.strip().upper() for t in args.tasks.split(",") if t.strip())
    if not tasks or not set(tasks) <= set(ue.TASKS):
        p.error(f"--tasks must be a subset of {','.join(ue.TASKS)}")
    command = shlex.join(["python", "-m", "umask.bench.accuracy.user_umask", *argv])
    t0 = time.perf_counter()

    sources = dict(x.split("=", 1) for x in args.profile)
    if set(sources) - set(args.name):
        p.error(f"--profile names {sorted(set(sources) - set(args.name))} are not --name values")
    preds = {n: umask_predictor(c, sampler=args.sampler, steps=args.steps, n_samples=args.samples,
                                seed=args.sample_seed, context_slots=args.context_slots, point=args.point,
                                **_profile_kwargs(sources.get(n, "template")))
             for n, c in zip(args.name, args.ckpt)}
    for task in tasks:                                   # before any population is built: one line, what to do
        for n, pr in preds.items():
            why = window_fit(pr, task, n)
            if why is not None:
                raise InputError(why)
    trace = _evaluation_trace(args.trace, preds)
    train_users = {int(pr.config["train"]["n_users"]) for pr in preds.values()}
    train_seeds = {int(pr.config["train"]["sim_seed"]) for pr in preds.values()}
    pop_users = args.population_users or (train_users.pop() if len(train_users) == 1 else 300)
    if trace is not None:
        full = trace_population(trace, data_dir=args.data_dir)
        if "B3" in tasks and full.info.get("absent_channels"):   # the harness's visible-slot profiles need places
            raise InputError(f"B3 on {trace}: an app-only log (absent {full.info['absent_channels']}) is not supported "
                             "by the harness's cold-start profiles yet; B1, B2 and B4 are")
    else:
        full = ue.simulated_population(pop_users, args.seed, data_dir=args.data_dir)
    same = {n: population_matches(full, pr.config) for n, pr in preds.items()}
    for n, ok in same.items():
        if not ok:
            log.warning("%s: the evaluation population is NOT its training population (fingerprint differs)", n)
    pop = subset_population(full, args.users)
    for pr in preds.values():
        pr.attach_population(pop)
    if args.diagnostics:
        return _run_diagnostics(preds, pop, args.diagnostics, args.split, command, Path(args.out))
    model_info = {n: pr.info() for n, pr in preds.items()}
    notes = dict(x.split("=", 1) for x in args.note)
    for n in preds:
        model_info[n]["notes"] = (notes.get(n, "U-MASK checkpoint") + f" [same users as training: {same[n]}; "
                                  f"{args.steps} {args.sampler} steps, {args.samples} samples, seed {args.sample_seed}]")

    models: dict[str, ue.Predictor] = {} if args.no_baselines else dict(ue.v2_baseline_models(pop))
    models.update(preds)
    if args.b1_offset is None:   # the documented default 2 (02:00, 06:00, ...) needs every > 2
        args.b1_offset = 2 if args.b1_every > 2 else 0
    hours = b1_hours(args.b1_every, args.b1_offset)
    rows = ue.evaluate_population(pop, models, split=args.split, tasks=tasks, batch_size=args.batch_size,
                                  model_info=model_info, command=command,
                                  windows={"B1": set(hours)} if args.b1_every > 1 else None)
    for r in rows:
        if r["task_id"] == "B1" and args.b1_every > 1:
            r["window"] = {**r["window"], "subset": f"target hours {hours} of the {args.split} day "
                                                    f"(--b1-every {args.b1_every} --b1-offset {args.b1_offset}), "
                                                    f"{len(hours)} windows per user, all models alike"}
        if trace is not None:                            # the harness files non-simulator info as "real_sample"
            r["data"] = {**r.pop("real_sample", pop.info), "users": pop.users}
        if r["model"] in preds and "evaluated_subset" in pop.info:
            r["simulator" if trace is None else "data"]["evaluated_subset"] = pop.info["evaluated_subset"]
    if not args.no_real and trace is None:               # the real sample checks simulator-trained checkpoints
        real_pop = ue.real_population(data_dir=args.data_dir)
        for pr in preds.values():           # a prior / calendar model reads the real users' own tensors
            pr.attach_population(real_pop)  # (one day: the prior has no earlier history, only the in-day context)
        real_models: dict[str, ue.Predictor] = {} if args.no_baselines else dict(ue.real_baseline_models())
        real_models.update(preds)
        rows += ue.evaluate_real_sample(real_models, batch_size=args.batch_size, model_info=model_info,
                                        command=command, population=real_pop)
    if args.context_slots is not None:
        _mark_context_override(rows, preds, args.context_slots)
    elapsed = time.perf_counter() - t0

    if trace is None:
        population = (f"Population: simulator seed {args.seed}, {pop_users} users simulated "
                      f"({len(full.users)} featurized), evaluated: {pop.info.get('evaluated_subset', 'all')} "
                      f"= {len(pop.users)} users; split {args.split}.")
        same_text = (f"Same users as the checkpoints' training population (fingerprint): {same}; "
                     f"checkpoints' simulator seeds {sorted(train_seeds)}.")
    else:
        population = (f"Population: the user's data {trace} ({full.info['format']}, {full.info['days']} days, "
                      f"{len(full.users)} users featurized), evaluated: {pop.info.get('evaluated_subset', 'all')} "
                      f"= {len(pop.users)} users; {full.info['splits']}; split {args.split}. The real 6-user "
                      "sample is not scored (it checks simulator-trained checkpoints).")
        same_text = f"Same users and tensors as the checkpoints' training data (fingerprint): {same}."
    settings = [population, same_text,
                (f"B1 windows: {'all 24 target hours' if args.b1_every == 1 else f'target hours {hours} only (every {args.b1_every}th hour, for every model)'}; "
                f"B2/B3/B4 and the real sample: all windows."),
                (f"U-MASK sampling: {args.sampler}{' (eta = 0)' if args.sampler == 'ddim' else ''}, {args.steps} steps, "
                f"{args.samples} samples per window (mean = point forecast), sampling seed {args.sample_seed} "
                "(per batch: SeedSequence([seed, task, first user, first window, first start, n])); EMA weights; "
                "outputs clipped to the featurized domain (traffic/app >= 0, location in [0, 1]); B4 observed "
                "coordinates returned as given."),
                ("U-MASK windows: context at slots [0, 192) of the model's 288-slot window, target after it "
                "(B4: the 192-slot completion window at [0, 192)); avail = the batch's observed coordinates; "
                "profiles: TaskBatch.profiles -> template text -> SBERT -> the model's ProfileMLP (B3: from the "
                "visible slots only)."),
                f"Batch size {args.batch_size} windows; torch threads {args.threads}."]
    if args.context_slots is not None:
        settings.append(f"NON-PROTOCOL: --context-slots {args.context_slots}: {CONTEXT_OVERRIDE_NOTE}")
    meta = {"command": command, "wall_seconds": elapsed, "settings": settings,
            "population": "simulator" if trace is None else f"trace {trace}", "context_slots": args.context_slots,
            "models": {n: {"checkpoint": str(resolve_checkpoint(c)), **model_info[n]}
                       for n, c in zip(args.name, args.ckpt)},
            "model_notes": {n: notes[n] for n in preds if n in notes}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str) + "\n")
    md = report(rows, meta)
    out.with_suffix(".md").write_text(md)
    print(md, end="")
    print(f"\nwrote {out} and {out.with_suffix('.md')} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
