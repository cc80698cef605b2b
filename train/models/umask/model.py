"""U-MASK: U-SCOPE profile -> user/task evidence mask -> shared DiT completion, trained jointly.

Composition (Algorithm 1 of the paper; line by line against this code in docs/paper_notes.md §7):

1. ``h_u = ProfileMLP(SBERT(y_u))`` (eq. 24; the frozen SBERT embedding comes with the batch as
   ``profile_emb`` / ``profile_present``, see train/models/umask/data.py). ``use_profile=False``
   ("U-MASK without U-SCOPE") gives every user the ProfileMLP's learned "no profile" embedding.
2. ``MaskGenerator(x0 * avail, avail, h_u, task, E_pos)`` -> evidence mask M inside ``avail``
   (eqs. 5-18; straight-through in training, hard top-k at evaluation) and the behaviour
   representation h_b. ``mask_mode="random"`` replaces M by a uniformly random subset of ``avail``
   with the same base budget (k = round(rho_tau * n_avail), rho_tau = the config's ``rho_init``;
   paper Table 9 "random mask" ablation); ``mask_mode="none"`` reveals every available coordinate.
   The generator still runs in those modes (for h_b of the InfoNCE term), so only the mask differs.
3. DiT x0-prediction on ``x_t = q_sample(x0, t, eps)`` with evidence ``x_obs = x0 * M``
   (``dit_conditioning=False`` -> the "DiT without conditioning" baseline, e_u = 0).

Loss (eqs. 19-20; how each term differs from the paper's: docs/paper_notes.md §4; weights in
`UMaskConfig`):

    L = L_diff + w_nce * L_InfoNCE + w_budget * L_budget

* ``L_diff`` (eq. 19): per window b, the channel-mean squared x0 error averaged over its TARGET
  coordinates, plus ``w_context`` (0.1) times the same error averaged over its non-evidence
  context coordinates (available but not chosen by the mask: the DiT must also reconstruct the
  history it was denied, a masked-autoencoder signal; smaller so the task target dominates); then
  the mean over windows. Per-window normalization makes a 4-slot short-term target count as much as
  a 96-slot long-term one. The context weight uses the HARD mask (detached): with the
  straight-through mask the mask generator could otherwise lower the loss by shrinking the region
  the loss is taken over. Evidence coordinates carry no loss (the sampler clamps them).
* ``L_InfoNCE`` (eq. 20): symmetric (CLIP-style) InfoNCE between z_u = norm(W_u h_u) and
  z_b = norm(W_b h_b) of the same window against the other windows of the batch (in-batch
  negatives), temperature ``nce_temperature`` = 0.1 (a common contrastive default; unknown in the
  paper). Other windows of the SAME user are removed from the negatives (they are not negatives).
  Ties the semantic profile to actual behaviour (what makes h_u useful for cold start). Off when
  ``use_profile`` is False (h_u is then constant). Under DDP the negatives are the local batch.
* ``L_budget`` (``budget_mode``; learned mode only). The paper's eq. 13 makes rho_tau learnable and
  adds no budget term; with a loss that only rewards completion the optimum is "reveal everything".
  - "pin" (models v1-v4): mean (r_b - rho_init_tau)^2 of the effective ratio r_b. Keeps budgets near
    the configured base ratios while letting reliability move them per user. It pins the budget,
    and so does the optimizer: Adam moves a parameter by about lr per step, so at lr 2e-4 a run of
    1,600 steps can move rho's logit by at most ~0.3.
  - "free": eq. 13 as written, no budget term; rho_tau is learned from the completion loss alone.
  - "price": w_budget * mean r_b, a constant price per revealed fraction of the available evidence
    (the Lagrangian of an evidence budget): the learned budget stops where one more revealed
    coordinate lowers the completion loss by less than the price.
  ``budget_lr_scale`` multiplies the learning rate of rho_tau's logit (``UMask.lr_scales``), so a
  learned budget can actually move within a fine-tuning run.

Data scale (an assumption of this implementation, not from the paper). The runtime featurization
puts values in [0, 1] and the tensors are sparse: the training-day RMS of an entry is ~0.05, so under
unit-variance diffusion noise the signal would vanish at almost every timestep. The model therefore
works on ``x * x_scale`` (a persistent (C,) buffer saved with the weights; 1 / RMS of the training
days, see `scale_from_rms`): "global" = one factor for all channels (keeps the featurization's
relative channel weights), "channel" = per channel with the RMS floored at 0.25 x the global RMS,
"none" = 1. Only multiplicative, so zeros stay zeros and "observed zero" keeps its meaning. The
loss is taken in the scaled space; `complete` returns the original scale. An exported DiT needs
``x_scale`` (it is in the state dict) to be fed the same inputs.

Timesteps (``t_power``). With uniform training timesteps the DiT can read most targets straight out
of ``x_t``: under the "global" scale a location entry (value ~22 in model space) is still visible at
t ~ 950, so ~95 % of training steps are plain denoising and the network learned to ignore the
evidence it needs at the sampler's first step (t = 999; benchmarks/results/user_umask_diagnostics.md).
``t_power`` > 1 draws t towards high noise (`diffusion.HighNoiseSchedule`, the Milan trainer's
choice); with ``data_scale="none"`` the entries also drown in noise much earlier. The two together
are the "v2" recipe in the README.

Prior (``prior="blend"``, opt-in; issue "U-MASK that wins"). The default "none" leaves every path as
it was (no extra input, no config key). With "blend" every item carries a deterministic prior
(data.window_prior: 0.5 x the last available value + 0.5 x the user's slot-of-day mean of the
evidence-eligible history, never a target value) which enters the DiT as C more input channels;
the DiT's output becomes ``prior + residual`` off the evidence, the residual being the zero-
initialized final layer (adaLN-Zero), so an untrained model completes with exactly the prior and
training learns only what the prior misses. The loss is unchanged (x0 loss on the targets, eqs. 19 /
32). ``complete(point="first_x0")`` gives the x0 prediction at t = N-1 averaged over the noise draws
(one DiT call each) as a point estimate for RMSE. ``prior="task_blend"`` is the same prior with the last
value share chosen per task on the validation day (runtime/families/umask/prior.TASK_PRIOR_WEIGHTS: 0.1
for day-ahead windows, 0.3 for short-term and imputation); ``"horizon_blend"`` keeps 0.5 for short-term and
imputation and 0.1 day-ahead (PRIOR_SHARES; v7); ``"smooth_blend"`` (v9) makes the slot-of-day mean a kernel
estimate (sums and counts smoothed around the clock with a 3-hour Gaussian, prior.SMOOTH_MINUTES) with the shares
SMOOTH_PRIOR_WEIGHTS. The on-device Session builds the same prior from the raw history
(runtime/families/umask/prior.history_prior).

Trainer duties (train/models/umask/trainer.py): after each optimizer step
``maskgen.update_bank(out.features)`` and ``maskgen.update_fisher(task, a_tau.grad, avail)`` (the
forward calls ``retain_grad`` on ``features["a_tau"]`` so the gradient of the loss w.r.t. the
projected features is there after ``backward``); both come back through ``aux["mask_out"]``.

Evaluation: `UMask.complete` draws ``n_samples`` completions with a clamped sampler and returns
their mean (the PROTOCOL point forecast); the mask is the deterministic hard top-k (bank
statistics, no Gumbel noise) for "learned", a seeded random subset for "random", avail for "none".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from umask.runtime.core.errors import InputError
from umask.train.models.umask.data import CAL_DIM, PRIORS, WindowConfig
from umask.train.diffusion import HighNoiseSchedule, VPSchedule, model_denoise_fn
from umask.train.models.umask.dit import DIT_CONFIGS, TASKS, DiT, DiTConfig, dit_config
from umask.train.models.umask.mask_generator import MASKGEN_CONFIGS, MaskGenConfig, MaskGenerator, MaskOutput, maskgen_config
from umask.train.models.umask.profile_encoder import SBERT_DIM, ProfileMLP

MASK_MODES = ("learned", "random", "none")
BUDGET_MODES = ("pin", "free", "price")
DATA_SCALES = ("global", "channel", "none")
POINT_ESTIMATES = ("mean", "first_x0", "median")   # UMask.complete(point=...)
CHANNEL_SCALE_FLOOR = 0.25   # "channel": rms_c is floored at this fraction of the global rms


def _tuplify(d: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to tuples (patch, rho_init, ...), so configs compare equal after a round trip."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


@dataclass(frozen=True)
class UMaskConfig:
    name: str = "custom"
    dit: str = "tiny"                                           # DIT_CONFIGS name
    dit_overrides: dict[str, Any] = field(default_factory=dict)  # T is always window.T
    maskgen: str = "tiny"                                       # MASKGEN_CONFIGS name
    maskgen_overrides: dict[str, Any] = field(default_factory=dict)
    window: WindowConfig = field(default_factory=WindowConfig)
    # U-SCOPE profile MLP (eq. 24): SBERT dim -> h_u (= the DiT's cond_dim)
    sbert_dim: int = SBERT_DIM
    profile_hidden: int | None = None
    profile_dropout: float = 0.0
    # ablation flags
    use_profile: bool = True          # False: "U-MASK without U-SCOPE" (h_u = the 'none' embedding)
    mask_mode: str = "learned"        # "learned" | "random" (same base budget) | "none" (reveal all avail)
    dit_conditioning: bool = True     # False: "DiT without conditioning" (e_u = 0)
    # loss (eqs. 19-20)
    w_context: float = 0.1
    w_nce: float = 0.1
    nce_temperature: float = 0.1
    nce_dim: int = 64
    w_budget: float = 0.1
    # L_budget form (see "L_budget" above): "pin" (v1-v4) | "free" (eq. 13, no term) | "price" (w_budget * r_b)
    budget_mode: str = "pin"
    # LR multiplier of the base-budget logit rho_tau (eq. 13), so a learned budget can move in a short run
    budget_lr_scale: float = 1.0
    # diffusion
    num_train_steps: int = 1000
    schedule: str = "cosine"
    # training-timestep bias (diffusion.HighNoiseSchedule): 1 = uniform t; 2 = P(t >= 900) 0.32.
    # Sampling is unchanged (same betas). See "Timesteps" above.
    t_power: float = 1.0
    # data scaling inside the model (see `UMask.set_data_scale`): "global" | "channel" | "none"
    data_scale: str = "global"
    # deterministic prior the DiT learns the residual of (see "Prior" above): "none" | "blend" | "task_blend" |
    # "horizon_blend" | "smooth_blend" (runtime/families/umask/prior.PRIOR_SHARES, PRIOR_SMOOTH_MINUTES).
    # Mirrored into window.prior, so the data set adds the item's ``prior``.
    prior: str = "none"
    # extra DiT inputs (issue "U-MASK that wins"; all off by default: configs, checkpoints and exported
    # graphs of earlier models are unchanged). dit_calendar: the slot calendar (data.slot_calendar:
    # slot of day, weekday, weekend) as a token term, mirrored into window.calendar so items carry
    # ``cal``; dit_epos: the POI embedding E_pos as a token term (eq. 33); dit_hb: the mask generator's
    # h_b in the DiT condition (eq. 19's F_{b,tau}; see docs/paper_notes.md §9.2).
    dit_calendar: bool = False
    dit_epos: bool = False
    dit_hb: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dit_overrides", _tuplify(dict(self.dit_overrides)))
        object.__setattr__(self, "maskgen_overrides", _tuplify(dict(self.maskgen_overrides)))
        if isinstance(self.window, dict):
            object.__setattr__(self, "window", WindowConfig.from_dict(self.window))
        if self.dit not in DIT_CONFIGS or self.maskgen not in MASKGEN_CONFIGS:
            raise InputError(f"unknown dit/maskgen config {self.dit!r}/{self.maskgen!r}")
        if self.mask_mode not in MASK_MODES:
            raise InputError(f"mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}")
        if self.prior not in PRIORS:
            raise InputError(f"prior must be one of {PRIORS}, got {self.prior!r}")
        if self.window.prior != self.prior or self.window.calendar != self.dit_calendar:
            object.__setattr__(self, "window", replace(self.window, prior=self.prior, calendar=self.dit_calendar))
        if self.data_scale not in DATA_SCALES:
            raise InputError(f"data_scale must be one of {DATA_SCALES}, got {self.data_scale!r}")
        if self.t_power <= 0:
            raise InputError(f"t_power must be > 0, got {self.t_power}")
        if self.budget_mode not in BUDGET_MODES:
            raise InputError(f"budget_mode must be one of {BUDGET_MODES}, got {self.budget_mode!r}")
        if self.budget_lr_scale <= 0:
            raise InputError(f"budget_lr_scale must be > 0, got {self.budget_lr_scale}")
        if self.nce_temperature <= 0 or min(self.w_context, self.w_nce, self.w_budget) < 0:
            raise InputError("nce_temperature must be > 0 and loss weights >= 0")
        d, m = self.dit_config(), self.maskgen_config()
        if (d.channels, d.T, d.H, d.W, d.cond_dim) != (m.channels, m.T, m.H, m.W, m.cond_dim):
            raise InputError(f"DiT and mask generator shapes differ: {(d.channels, d.T, d.H, d.W, d.cond_dim)} "
                             f"vs {(m.channels, m.T, m.H, m.W, m.cond_dim)}")

    def dit_config(self) -> DiTConfig:
        kw = {**self.dit_overrides, "T": self.window.T}
        kw["use_user_cond"] = self.dit_conditioning
        return dit_config(self.dit, **kw)

    def maskgen_config(self) -> MaskGenConfig:
        return maskgen_config(self.maskgen, **{**self.maskgen_overrides, "T": self.window.T})

    def with_data(self, channels: int, H: int, W: int, poi_dim: int) -> UMaskConfig:
        """Adapt the tensor shapes (C, H, W) and E_pos width to a data set."""
        return replace(self, dit_overrides={**self.dit_overrides, "channels": channels, "H": H, "W": W},
                       maskgen_overrides={**self.maskgen_overrides, "channels": channels, "H": H, "W": W,
                                          "poi_dim": poi_dim})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window"] = self.window.to_dict()
        for k in ("dit_overrides", "maskgen_overrides"):
            d[k] = {kk: list(v) if isinstance(v, tuple) else v for kk, v in d[k].items()}
        if self.prior == "none":      # the default leaves no trace (configs, bundles and fingerprints as before)
            del d["prior"]
        for k in ("dit_calendar", "dit_epos", "dit_hb"):
            if not d[k]:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UMaskConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"UMaskConfig: unknown keys {sorted(unknown)}")
        d = dict(d)
        if isinstance(d.get("window"), dict):
            d["window"] = WindowConfig.from_dict(d["window"])
        return cls(**d)


# Sizes are assumptions: the paper does not state them (docs/paper_notes.md §1).
# T = context + horizon for every task.
UMASK_CONFIGS: dict[str, UMaskConfig] = {
    # unit tests: T = 12 + 4 = 16 slots, ~0.15 M parameters
    "tiny": UMaskConfig(name="tiny", dit="tiny", maskgen="tiny",
                        window=WindowConfig(context=12, horizon=4, short_horizon=2, cold_max_active=4),
                        profile_hidden=64, nce_dim=16),
    # this 2-core CPU: PROTOCOL windows (192 + 96 = 288 slots, 288 DiT tokens), d=128, depth 4
    "small": UMaskConfig(name="small", dit="small", maskgen="small", window=WindowConfig(), profile_hidden=384),
    # a GPU: DiT-S width at depth 12, larger mask generator and bank
    "base": UMaskConfig(name="base", dit="base", maskgen="base", window=WindowConfig(), profile_hidden=768,
                        nce_dim=128),
}


def umask_config(name: str, **overrides: Any) -> UMaskConfig:
    if name not in UMASK_CONFIGS:
        raise KeyError(f"unknown U-MASK config {name!r}; choose from {sorted(UMASK_CONFIGS)}")
    return replace(UMASK_CONFIGS[name], **overrides)


def scale_from_rms(rms: torch.Tensor, mode: str) -> torch.Tensor:
    """(C,) per-channel RMS of the training days -> (C,) multiplicative scale for ``mode``.
    The global RMS is the root of the mean square over all channels (= of all entries)."""
    rms = torch.as_tensor(rms, dtype=torch.float32)
    if mode == "none":
        return torch.ones_like(rms)
    g = rms.pow(2).mean().sqrt().clamp_min(1e-6)
    if mode == "global":
        return torch.full_like(rms, float(1.0 / g))
    if mode == "channel":
        return 1.0 / torch.maximum(rms, CHANNEL_SCALE_FLOOR * g)
    raise InputError(f"data_scale must be one of {DATA_SCALES}, got {mode!r}")


def random_mask(avail: torch.Tensor, ratio: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random subset of ``avail`` (B, 1, T, H, W) with k_b = round(ratio_b * n_b) ones (>= 1 if n_b > 0)."""
    a = avail.flatten(1) > 0.5                                            # (B, N)
    n = a.sum(1).to(torch.float32)
    k = torch.round(ratio.to(torch.float32) * n)
    k = torch.minimum(torch.maximum(k, (n > 0).to(k.dtype)), n)
    u = torch.rand(a.shape, generator=generator, dtype=torch.float32).to(avail.device)
    u = torch.where(a, u, torch.full_like(u, 2.0))                        # unavailable rank last
    rank = torch.argsort(torch.argsort(u, dim=1), dim=1)
    return ((rank < k[:, None].to(rank.device)) & a).to(avail.dtype).reshape(avail.shape)


class UMask(nn.Module):
    """ProfileMLP (eq. 24) -> MaskGenerator (eqs. 5-18) -> DiT (eqs. 28-35), jointly trained (eqs. 19-20)."""

    # config fields that shape only the training loss (a warm start may change them; loop.warm_start)
    TRAINING_ONLY_FIELDS = ("w_context", "w_nce", "nce_temperature", "w_budget", "budget_mode", "budget_lr_scale",
                            "t_power")
    # config fields a warm start may change although they change the inputs, because the weights are the same
    # network (the state dict must still match): "blend" <-> "task_blend" changes only the prior's values
    WARM_START_FIELDS = ("prior",)

    def __init__(self, cfg: UMaskConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Inference policy, not architecture (kept out of the config, so runs and warm starts still match):
        # task ids whose deterministic evidence is EVERY available coordinate instead of the learned mask.
        # Set from a shipped folder's ``inference.all_evidence_tasks`` (ship.py) where a measurement showed
        # the learned mask discarding evidence that helps (docs/families/umask.md, Table 9 in 3 seeds).
        self.all_evidence_tasks: frozenset[int] = frozenset()
        dcfg, mcfg = cfg.dit_config(), cfg.maskgen_config()
        self.profile = ProfileMLP(cfg.sbert_dim, dcfg.cond_dim, cfg.profile_hidden, cfg.profile_dropout)
        self.maskgen = MaskGenerator(mcfg)
        self.dit = DiT(dcfg, use_prior=cfg.prior != "none", cal_dim=CAL_DIM if cfg.dit_calendar else 0,
                       poi_dim=mcfg.poi_dim if cfg.dit_epos else 0, hb_dim=mcfg.d_hidden if cfg.dit_hb else 0)
        self.nce_u = nn.Linear(dcfg.cond_dim, cfg.nce_dim)   # InfoNCE projection heads (eq. 20)
        self.nce_b = nn.Linear(mcfg.d_hidden, cfg.nce_dim)
        self.register_buffer("rho_prior", torch.tensor(mcfg.rho_init, dtype=torch.float32), persistent=False)
        self.register_buffer("x_scale", torch.ones(dcfg.channels))   # saved: see "Data scale" above
        self.schedule = (VPSchedule(cfg.num_train_steps, cfg.schedule) if cfg.t_power == 1.0
                         else HighNoiseSchedule(cfg.num_train_steps, cfg.schedule, cfg.t_power))
        self.last_mask_out: MaskOutput | None = None   # set by a training forward (see forward)

    @torch.no_grad()
    def set_data_scale(self, rms: torch.Tensor) -> torch.Tensor:
        """Set ``x_scale`` from the (C,) training-day RMS per channel (mode = cfg.data_scale)."""
        self.x_scale.copy_(scale_from_rms(rms, self.cfg.data_scale).to(self.x_scale))
        return self.x_scale

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.x_scale.reshape(1, -1, 1, 1, 1).to(x.dtype)

    def prior_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The batch's ``prior`` in model space (None without the prior option)."""
        if self.cfg.prior == "none":
            return None
        if "prior" not in batch:
            raise InputError(f"UMaskConfig.prior={self.cfg.prior!r}: the batch needs 'prior' (B, C, T, H, W) "
                             "(data.window_prior; the data set adds it when window.prior is set)")
        return self._scale(batch["prior"].to(batch["x0"].dtype))

    def dit_extras(self, batch: dict[str, torch.Tensor], mo: MaskOutput) -> dict[str, torch.Tensor]:
        """Keyword inputs of the optional DiT terms (calendar, E_pos, h_b); {} for a default model."""
        cfg, out = self.cfg, {}
        if cfg.dit_calendar:
            if "cal" not in batch:
                raise InputError("UMaskConfig.dit_calendar: the batch needs 'cal' (B, T, CAL_DIM) (data.slot_calendar)")
            out["cal"] = batch["cal"].to(batch["x0"].dtype)
        if cfg.dit_epos:
            out["e_pos"] = batch["e_pos"].to(batch["x0"].dtype)
        if cfg.dit_hb:
            out["h_b"] = mo.features["h_b"]
        return out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def lr_scales(self) -> dict[str, float]:
        """Parameter name -> learning-rate multiplier (read by ``loop.make_optimizer``): rho_tau's logit."""
        return {"maskgen.rho_logit": self.cfg.budget_lr_scale} if self.cfg.budget_lr_scale != 1.0 else {}

    # ---- pieces ----
    def user_repr(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """h_u (B, cond_dim): eq. 24 from the batch's SBERT embedding, or the 'none' embedding."""
        B = batch["x0"].shape[0]
        if not self.cfg.use_profile or "profile_emb" not in batch:
            return self.profile(None, batch_size=B)
        present = batch.get("profile_present")
        return self.profile(batch["profile_emb"].to(batch["x0"].dtype), present)

    def evidence(self, batch: dict[str, torch.Tensor], h_u: torch.Tensor, generator: torch.Generator | None,
                 *, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, MaskOutput]:
        """(mask used by the DiT, hard 0/1 mask, mask generator output)."""
        x0, avail, task = self._scale(batch["x0"]), batch["avail"], batch["task"]
        x_in = x0 * avail                                                  # nothing outside avail is seen
        if deterministic:   # evaluation: bank statistics, no Gumbel noise, no relaxation
            mo = self.maskgen(x_in, avail, h_u, task, batch["e_pos"], use_bank=True, relax=False)
        else:
            mo = self.maskgen(x_in, avail, h_u, task, batch["e_pos"], generator=generator)
        if self.cfg.mask_mode == "learned":
            if deterministic and self.all_evidence_tasks:
                every = torch.isin(task, torch.tensor(sorted(self.all_evidence_tasks), device=task.device))
                every = every.view(-1, *([1] * (avail.dim() - 1)))
                return torch.where(every, avail, mo.mask), torch.where(every, avail, mo.hard), mo
            return mo.mask, mo.hard, mo
        if self.cfg.mask_mode == "random":
            m = random_mask(avail, self.rho_prior[task], generator)
            return m, m, mo
        return avail, avail, mo

    # ---- training loss (eqs. 19-20) ----
    def forward(self, batch: dict[str, torch.Tensor], schedule: VPSchedule | None = None, *,
                generator: torch.Generator | None = None,
                aux: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, parts). Draws t, eps, Gumbel noise and random masks from ``generator``.
        ``aux`` (a dict) receives ``mask_out`` (for update_bank / update_fisher)."""
        cfg = self.cfg
        sched = schedule or self.schedule
        avail, target, task = batch["avail"], batch["target"], batch["task"]
        x0 = self._scale(batch["x0"])                                         # model space
        B = x0.shape[0]
        h_u = self.user_repr(batch)                                            # eq. 24
        mask, hard, mo = self.evidence(batch, h_u, generator)                  # eqs. 5-18
        a_tau = mo.features.get("a_tau")
        if self.training and cfg.mask_mode == "learned" and a_tau is not None and a_tau.requires_grad:
            a_tau.retain_grad()                                                # eq. 7: dL/da_tau for update_fisher

        t = sched.sample_t(B, generator, x0.device)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0)
        x_t = sched.q_sample(x0, t, noise)                                     # eq. 31
        prior = self.prior_input(batch)                                        # None unless cfg.prior
        extras = self.dit_extras(batch, mo)                                    # {} unless dit_calendar/epos/hb
        if prior is None:
            pred = self.dit(x_t, x0 * mask, mask, t, h_u, task, **extras)      # eqs. 19 / 32, x0-prediction
        else:
            pred = self.dit(x_t, x0 * mask, mask, t, h_u, task, prior, **extras)  # prior + residual

        # eq. 19: per-window target error + w_context * non-evidence context error
        # absent channels (data.py ``channel_present`` 0, app-only logs) are never in the loss: the
        # per-channel error is multiplied by channel_present * C / n_present (all present: exactly 1)
        cp = batch.get("channel_present")                                     # (B, C) or None
        sq = (pred - x0) ** 2 if cp is None else (pred - x0) ** 2 * (cp * (cp.shape[1] / cp.sum(
            1, keepdim=True).clamp_min(1.0))).to(x0.dtype)[:, :, None, None, None]  # (B, C, T, H, W)
        err = sq.mean(1, keepdim=True)                                        # (B, 1, T, H, W)
        ctx_w = avail * (1.0 - hard.detach())
        tgt_b = (err * target).flatten(1).sum(1) / target.flatten(1).sum(1).clamp_min(1.0)
        ctx_b = (err * ctx_w).flatten(1).sum(1) / ctx_w.flatten(1).sum(1).clamp_min(1.0)
        diff = (tgt_b + cfg.w_context * ctx_b).mean()

        # eq. 20: InfoNCE between h_u and h_b of the same window, in-batch negatives
        zero = x0.new_zeros(())
        nce = zero
        if cfg.use_profile and cfg.w_nce > 0 and B > 1:
            zu = F.normalize(self.nce_u(h_u), dim=-1)
            zb = F.normalize(self.nce_b(mo.features["h_b"]), dim=-1)
            logits = zu @ zb.t() / cfg.nce_temperature                        # (B, B)
            user = batch["user"]
            eye = torch.eye(B, dtype=torch.bool, device=x0.device)
            logits = logits.masked_fill((user[:, None] == user[None, :]) & ~eye, float("-inf"))
            labels = torch.arange(B, device=x0.device)
            nce = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))

        budget = zero
        if cfg.mask_mode == "learned" and cfg.w_budget > 0 and cfg.budget_mode == "pin":
            budget = ((mo.ratio - self.rho_prior[task]) ** 2).mean()
        elif cfg.mask_mode == "learned" and cfg.budget_mode == "price":
            budget = mo.ratio.mean()                                          # a price per revealed fraction

        total = diff + cfg.w_nce * nce + cfg.w_budget * budget
        with torch.no_grad():
            n_av = avail.flatten(1).sum(1)
            parts: dict[str, torch.Tensor] = {
                "loss": total.detach(), "diff": diff.detach(), "target": tgt_b.mean(), "context": ctx_b.mean(),
                "nce": nce.detach(), "budget": budget.detach(),
                "evidence_ratio": (hard.flatten(1).sum(1) / n_av.clamp_min(1.0)).mean(),
            }
            rho = self.maskgen.rho
            for i, name in enumerate(TASKS):
                sel = task == i
                parts[f"rho/{name}"] = rho[i]                                  # eq. 13's learned base ratio
                if bool(sel.any()):
                    parts[f"target/{name}"] = tgt_b[sel].mean()
        if aux is not None:
            aux["mask_out"] = mo
            aux["mask"] = hard.detach()
        # for the trainer (DDP may copy keyword arguments, so ``aux`` is not reliable through a wrapper)
        self.last_mask_out = mo if self.training else None
        return total, parts

    def loss(self, batch: dict[str, torch.Tensor], schedule: VPSchedule | None = None,
             **kw: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eqs. 19-20; same as calling the module (use the module / DDP wrapper call when training)."""
        return self(batch, schedule, **kw)

    # ---- evaluation ----
    @torch.no_grad()
    def complete(self, batch: dict[str, torch.Tensor], sampler: Any, steps: int, n_samples: int = 1,
                 seed: int = 0, *, return_mask: bool = False,
                 point: str = "mean") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Mean of ``n_samples`` clamped completions (B, C, T, H, W): the point forecast (PROTOCOL).

        ``sampler``: a diffusion.DDIMSampler / DPMSolverPP2MSampler over this model's schedule.
        Only ``x0 * avail`` is read (targets never leak). Equals x0 exactly on the evidence mask.
        ``point="first_x0"``: the deterministic-ish point estimate instead: the DiT's x0 prediction at
        the sampler's first step (t = N-1, one network call per draw; ``steps`` is then ignored),
        averaged over the ``n_samples`` noise draws. ``point="median"``: the per-entry median of the
        ``n_samples`` clamped samples (the point estimate for an absolute error: MAE). With ``cfg.prior``
        the batch carries ``prior``."""
        if n_samples < 1:
            raise InputError("n_samples must be >= 1")
        if point not in POINT_ESTIMATES:
            raise InputError(f"point must be one of {POINT_ESTIMATES}, got {point!r}")
        was_training = self.training
        self.eval()
        try:
            g = torch.Generator().manual_seed(int(seed))
            h_u = self.user_repr(batch)
            _, hard, mo = self.evidence(batch, h_u, g, deterministic=True)
            x_obs = self._scale(batch["x0"] * batch["avail"]) * hard          # model space
            prior = self.prior_input(batch)
            extras = self.dit_extras(batch, mo)
            if prior is None and not extras:
                fn = model_denoise_fn(self.dit, x_obs, hard, h_u, batch["task"])
            else:
                pr = () if prior is None else (prior,)
                fn = model_denoise_fn(lambda *a: self.dit(*a, *pr, **extras), x_obs, hard, h_u, batch["task"])
            n_steps = 1 if point == "first_x0" else steps                    # 1 DDIM step to t=-1 = x0_hat(N-1)
            if point == "median":
                draws = torch.stack([sampler.sample(fn, x_obs, hard, n_steps, generator=g) for _ in range(n_samples)])
                acc = torch.quantile(draws, 0.5, dim=0) * n_samples       # (B, C, T, H, W); / n_samples below
            else:
                acc = torch.zeros_like(x_obs)
                for _ in range(n_samples):
                    acc += sampler.sample(fn, x_obs, hard, n_steps, generator=g)
            mean = acc / n_samples / self.x_scale.reshape(1, -1, 1, 1, 1).to(acc.dtype)
            mean = torch.where(hard.expand_as(mean) > 0.5, batch["x0"], mean)   # exact evidence
        finally:
            self.train(was_training)
        return (mean, hard) if return_mask else mean

__all__ = ["MASK_MODES", "BUDGET_MODES", "DATA_SCALES", "POINT_ESTIMATES", "scale_from_rms", "UMaskConfig", "UMASK_CONFIGS", "umask_config", "random_mask", "UMask"]
