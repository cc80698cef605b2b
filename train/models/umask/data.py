"""Per-user training windows for the four U-MASK tasks (PROTOCOL B), as a plain torch Dataset.

One model with FIXED shapes serves every task, so every item is a window of the same length
``T = context + horizon`` slots (default 192 + 96 = 288 fifteen-minute slots, three days); a
config can shrink it (the tiny test config uses 12 + 4). Inside the window, slots ``[0, context)``
are the *context* region and ``[context, T)`` the *horizon* region. The tasks differ only in which
(t, h, w) coordinates are *available* as evidence (``avail``) and which are *targets*:

==============  =====================================================  ======================================
task            avail (may become evidence; the mask generator picks)  target (evaluated / in the loss)
==============  =====================================================  ======================================
short_term      every (t, h, w) of the context                         first ``short_horizon`` (4) horizon slots
long_term       every (t, h, w) of the context                         all ``horizon`` (96) horizon slots
cold_start      every (h, w) of the <= ``cold_max_active`` (20) most   all horizon slots
                recent *active* context slots (slots with any event,
                i.e. the location channel set), as PROTOCOL B3
imputation      the non-hidden (t, h, w) of the completion window       the hidden (t, h, w) of the completion
                = the context region; the horizon region is NOT         window; the horizon region is NOT
                available                                               a target (and not in the loss)
==============  =====================================================  ======================================

Each item is a dict (see `UserWindowDataset.__getitem__`): ``x0`` (C, T, H, W) float32, the whole
window as featurized (runtime/core/featurize.py channel layout); ``avail`` and ``target`` (1, T, H, W)
float32 0/1, tied across channels; ``task`` (index into dit.TASKS); ``e_pos`` (H, W, P+1) the
user's location embedding; ``user`` (the user's index in the dataset's user list, for the profile
embedding lookup); ``start`` (absolute slot of window slot 0); ``channel_present`` (C,) float32,
1 for a recorded channel and 0 for an ABSENT one (see below); when the dataset holds a
`ProfileTable`, ``profile_emb`` (D,) and ``profile_present`` (bool); and with ``WindowConfig.prior`` a
weighted kind ("blend", "task_blend", "horizon_blend", "smooth_blend"; set by UMaskConfig.prior; default "none":
no such key) ``prior`` (C, T, H, W) float32, the deterministic prior of `window_prior` (w x last available value +
(1 - w) x slot-of-day mean of the evidence-eligible history, w per task from the kind's `PRIOR_SHARES`; for
"smooth_blend" the mean is a kernel estimate, `PRIOR_SMOOTH_MINUTES`; never a target value). `collate` stacks them.

**Absent channels** (app-only logs, runtime/core/usage_log.py: no location, and no traffic without a
bytes column). ``avail`` / ``target`` are tied across channels, so the absence is per channel:
``channel_present`` is 0 there, x0 holds zeros there, and the loss multiplies the per-channel
squared error by it (train/models/umask/model.py), so an absent channel is neither evidence (its
values are zero, never real) nor target (never in the loss). With the location absent every event
is in layout cell (0, 0) (runtime/core/featurize.py), so ``avail`` and ``target`` are also zero
outside that cell: the empty cells are not evidence the mask budget could be spent on and not
targets. `users_from_trace` routes an app-only log to ``read_usage_log`` by its header.

Choices (all documented assumptions: the paper does not specify them; its data set and protocol
against this project's are compared in docs/paper_notes.md §10):

* **Splits.** Per user by whole days (train/data/user_windows.user_splits): on the simulator's 7-day
  week, train = days 1-5 (slots 0..479), validation = day 6 (480..575), test = day 7 (576..671).
* **Training windows lie WHOLLY inside the training days** (window start s in [0, train_end - T],
  stride ``train_stride`` = 4 slots by default, every task at every start). This is stricter than
  "the target lies in the training days": x0 is also the diffusion input (noised) outside the
  target, so a window reaching into day 6 would feed validation data to the model even where no
  loss is taken. With T = 288 there are 49 starts per user (s = 0, 4, ..., 192) x 4 tasks.
* **Validation windows** (early stopping only): target start s = val_start, val_start +
  ``val_stride`` (default = horizon, so one window per task and user on the 7-day week), the window
  begins at s - context (reaching back into training days for context, as PROTOCOL A1 allows). The
  validation imputation window ends at s + horizon (its completion window covers the last
  ``context`` slots up to there). Slots at or beyond the split's end are never read: they stay
  zero in x0 and are neither available nor target, so no test-day data is loaded.
* **Imputation masks** follow PROTOCOL A2/B4's recipe (p ~ U(0.70, 0.80) first, then
  ``rng.random((context, H, W)) < p``, True = hidden), but from a TRAINING generator
  ``default_rng([IMPUTE_SALT, data_seed, epoch, index])`` that changes every epoch; it is never
  the evaluation stream ``default_rng(1000 + i)`` (a different SeedSequence entropy). Validation
  items use epoch 0, so their masks are fixed.
* **Cold start.** avail = all cells of the most recent <= 20 active context slots; the rest of the
  context is "unobserved" (zero avail). x0 keeps the real values there (it is the true joint
  tensor; nothing of it is evidence and nothing is in the loss there).
* **Lazy dense.** Users are kept as sparse tensors; each item calls ``tensor.dense(t0, t1)`` for
  its window only (about 0.4 MB float32 at the default shape).
* **Determinism.** An item is a pure function of (index, epoch, data_seed). `StepBatchSampler`
  turns a global step into its batch (epoch permutation from ``seed + epoch``, DistributedSampler
  style rank sharding), so a resumed run sees exactly the batches an uninterrupted run would.

Population helpers: `simulated_users` (calibrated simulator -> featurize with the profile
statistics and layout fit on the training days only), `users_from_trace`, `save_users` /
`load_users` (one ``.npz``, no pickle), `build_profile_table` (U-SCOPE template profile ->
frozen SBERT, with the encoder's on-disk cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from umask.runtime.core.errors import InputError
from umask.runtime.core.featurize import (DAY_SECONDS, NOTHING_ABSENT, FeatureConfig, ProfileStats,
                                          SparseBehaviorTensor)
from umask.runtime.families.umask.prior import (  # noqa: F401 (re-exported)
    CAL_DIM, PRIOR_WEIGHT, PRIORS, blend_prior, history_tod_sums, slot_calendar, window_prior)
from umask.train.models.umask.dit import TASKS
from umask.train.data.user_windows import user_splits

log = logging.getLogger(__name__)

IMPUTE_SALT = 0x1A7E_5EED          # first word of the training imputation-mask SeedSequence
USERS_FORMAT = 1                   # save_users / load_users file layout version
SHORT, LONG, COLD, IMPUTE = (TASKS.index(t) for t in ("short_term", "long_term", "cold_start", "imputation"))


# -----------------------------------------------------------------------------
# Window configuration
# -----------------------------------------------------------------------------

@dataclass(frozen=True)
class WindowConfig:
    """Window layout shared by the data and the model (T = context + horizon is the model's T)."""

    context: int = 192                      # 2 days of 15-min slots (PROTOCOL B)
    horizon: int = 96                       # 1 day
    short_horizon: int = 4                  # B1 target: 1 hour
    cold_max_active: int = 20               # B3 history cut
    hide_range: tuple[float, float] = (0.70, 0.80)   # B4 / A2 hiding probability range
    train_stride: int = 4                   # slots between training window starts
    val_stride: int | None = None           # slots between validation target starts (None: horizon)
    tasks: tuple[str, ...] = TASKS          # tasks to draw windows for
    prior: str = "none"                     # a weighted kind of prior.PRIORS: items carry ``prior`` (`window_prior`); set by UMaskConfig.prior
    calendar: bool = False                  # items carry ``cal`` (T, CAL_DIM) (`slot_calendar`); UMaskConfig.dit_calendar

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.prior not in PRIORS:
            raise InputError(f"prior must be one of {PRIORS}, got {self.prior!r}")
        object.__setattr__(self, "hide_range", tuple(float(v) for v in self.hide_range))
        if self.context < 1 or self.horizon < 1:
            raise InputError(f"context and horizon must be >= 1, got {self.context}, {self.horizon}")
        if not 1 <= self.short_horizon <= self.horizon:
            raise InputError(f"short_horizon must lie in [1, horizon={self.horizon}], got {self.short_horizon}")
        if self.cold_max_active < 0:
            raise InputError("cold_max_active must be >= 0")
        lo, hi = self.hide_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise InputError(f"hide_range must satisfy 0 <= lo <= hi <= 1, got {self.hide_range}")
        if self.train_stride < 1 or (self.val_stride is not None and self.val_stride < 1):
            raise InputError("strides must be >= 1")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise InputError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")

    @property
    def T(self) -> int:
        return self.context + self.horizon

    @property
    def task_ids(self) -> tuple[int, ...]:
        return tuple(TASKS.index(t) for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hide_range"], d["tasks"] = list(self.hide_range), list(self.tasks)
        if self.prior == "none":      # the default leaves no trace: configs / bundles as before the option
            del d["prior"]
        if not self.calendar:
            del d["calendar"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"WindowConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


# -----------------------------------------------------------------------------
# Users
# -----------------------------------------------------------------------------

@dataclass(eq=False)
class UserData:
    """What training needs of one featurized user (a `UserFeatures` has the same attributes)."""

    user: int
    tensor: SparseBehaviorTensor        # (C, T_total, H, W)
    e_pos: np.ndarray                   # (H, W, P+1) float32
    profile: ProfileStats | None = None  # from the training days only

    @classmethod
    def from_features(cls, uf: Any) -> UserData:
        return cls(int(uf.user), uf.tensor, np.asarray(uf.e_pos, np.float32), getattr(uf, "profile", None))

    @property
    def absent(self) -> frozenset[str]:
        """Channels the user's data does not record (the tensor's ``absent``)."""
        return self.tensor.absent


def _history_end(start_ts: int, n_slots: int, slot_seconds: int) -> int:
    """Local time where the training days end (validation + test = the last two days)."""
    days = n_slots * slot_seconds // DAY_SECONDS
    if days < 3:
        raise InputError(f"need >= 3 whole days for train/val/test, got {days}")
    return start_ts + (days - 2) * DAY_SECONDS


def users_from_events(events: Any, catalog: Any, feature_cfg: FeatureConfig | None = None, *,
                      absent: frozenset[str] = NOTHING_ABSENT) -> list[UserData]:
    """Featurize an EventLog; layout and profile statistics are fit on the training days only.
    ``absent``: channels the log does not record (``UsageLog.absent``)."""
    feature_cfg = feature_cfg or FeatureConfig()
    from umask.runtime.core.featurize import day_span, featurize_population

    start, n_slots = day_span(events.ts, feature_cfg.slot_seconds)
    fit_end = _history_end(start, n_slots, feature_cfg.slot_seconds)
    pop = featurize_population(events, catalog, feature_cfg, fit_end_ts=fit_end, absent=absent)
    return [UserData.from_features(pop[u]) for u in sorted(pop)]


def simulated_users(n_users: int, seed: int = 0, *, days: int = 7, feature_cfg: FeatureConfig | None = None,
                    data_dir: str | Path | None = None, progress: bool = False) -> list[UserData]:
    """SYNTHETIC users of the calibrated simulator (deterministic given the seed), featurized."""
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.train.simulator import DEFAULT_DATA_DIR, TSINGHUA_DIR, SimulatorConfig, simulate

    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    catalog = load_llmapp_catalog(root / TSINGHUA_DIR if (root / TSINGHUA_DIR).is_dir() else root)
    events, _ = simulate(SimulatorConfig(n_users=n_users, days=days, seed=seed), catalog, data_dir,
                         progress=progress)
    return users_from_events(events, catalog, feature_cfg)


def simulated_population(parts: Sequence[tuple[int, int]], *, days: int = 7,
                         feature_cfg: FeatureConfig | None = None) -> list[UserData]:
    """SYNTHETIC users of several simulator runs, one list: ``parts`` = ((seed, n_users), ...).

    The simulator draws a population per (seed, n_users), so 50 users of seed 0 are not the first
    50 of 200 users of seed 0; a population that must contain an evaluation population (e.g. the 50
    users of seed 0 the shipped model was trained on) therefore names it as its own part. User ids
    are renumbered ``part index * 1_000_000 + id`` so they stay unique."""
    out: list[UserData] = []
    for k, (seed, n) in enumerate(parts):
        if n <= 0:
            raise InputError(f"population part {k}: n_users must be > 0, got {n}")
        for u in simulated_users(int(n), int(seed), days=days, feature_cfg=feature_cfg):
            out.append(UserData(k * 1_000_000 + int(u.user), u.tensor, u.e_pos, u.profile))
    return out


def users_from_trace(path: str | Path, catalog_dir: str | Path | None = None,
                     feature_cfg: FeatureConfig | None = None, *, app_only: bool | None = None) -> list[UserData]:
    """Read a trace (official layout, e.g. the simulator's ``App_usage_trace.synthetic.txt.gz``) and featurize.

    ``app_only``: the file is an app-only ``time,app[,bytes]`` log (runtime/core/usage_log.py; its
    absent channels go to the featurization and onto every user's tensor); None (default) decides
    by the file's first line (``looks_like_usage_log``)."""
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.runtime.core.events import read_trace
    from umask.runtime.core.usage_log import looks_like_usage_log, read_usage_log
    from umask.train.simulator import DEFAULT_DATA_DIR, TSINGHUA_DIR

    cat_dir = Path(catalog_dir) if catalog_dir is not None else DEFAULT_DATA_DIR / TSINGHUA_DIR
    if app_only is None:
        app_only = looks_like_usage_log(path)
    if app_only:
        usage = read_usage_log(path)
        log.info("%s: app-only log, absent channels %s (carried on every user's tensor)", path, sorted(usage.absent))
        return users_from_events(usage.events, load_llmapp_catalog(cat_dir), feature_cfg, absent=usage.absent)
    return users_from_events(read_trace(path), load_llmapp_catalog(cat_dir), feature_cfg)


def save_users(path: str | Path, users: Sequence[UserData], meta: dict[str, Any] | None = None) -> Path:
    """All users in one ``.npz`` (plain arrays; text as uint8 JSON; loadable with allow_pickle=False)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [u.tensor.key.astype(np.int64) for u in users]
    offsets = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int64)
    profiles = [u.profile.to_dict() if u.profile is not None else None for u in users]
    arrays = {
        "format": np.array(USERS_FORMAT, np.int64),
        "user": np.array([u.user for u in users], np.int64),
        "shape": np.array([u.tensor.shape for u in users], np.int64).reshape(-1, 4),
        "start_ts": np.array([u.tensor.start_ts for u in users], np.int64),
        "slot_seconds": np.array([u.tensor.slot_seconds for u in users], np.int64),
        "offsets": offsets,
        "key": np.concatenate(keys) if keys else np.zeros(0, np.int64),
        "values": (np.concatenate([u.tensor.values for u in users]) if users else np.zeros(0)).astype(np.float32),
        "e_pos": np.stack([u.e_pos for u in users]).astype(np.float32),
        "profiles_json": np.frombuffer(json.dumps(profiles).encode(), np.uint8),
        "meta_json": np.frombuffer(json.dumps(meta or {}).encode(), np.uint8),
    }
    if any(u.tensor.absent for u in users):   # only then, so complete populations save as before
        arrays["absent_json"] = np.frombuffer(json.dumps([sorted(u.tensor.absent) for u in users]).encode(), np.uint8)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_users(path: str | Path) -> tuple[list[UserData], dict[str, Any]]:
    """Inverse of `save_users`: (users, meta)."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) != USERS_FORMAT:
            raise InputError(f"{path}: users file format {int(z['format'])}, expected {USERS_FORMAT}")
        profiles = json.loads(z["profiles_json"].tobytes().decode())
        meta = json.loads(z["meta_json"].tobytes().decode())
        absent = json.loads(z["absent_json"].tobytes().decode()) if "absent_json" in z.files else None
        off = z["offsets"]
        out = []
        for i, u in enumerate(z["user"].tolist()):
            lo, hi = int(off[i]), int(off[i + 1])
            t = SparseBehaviorTensor(tuple(z["shape"][i].tolist()), int(z["start_ts"][i]), int(z["slot_seconds"][i]),
                                     z["key"][lo:hi], z["values"][lo:hi],
                                     frozenset(absent[i]) if absent is not None else NOTHING_ABSENT)
            prof = ProfileStats.from_dict(profiles[i]) if profiles[i] is not None else None
            out.append(UserData(int(u), t, z["e_pos"][i].astype(np.float32), prof))
    return out, meta


def channel_rms(users: Sequence[UserData], split: str = "train") -> np.ndarray:
    """(C,) root mean square per channel over every (t, h, w) of the users' ``split`` days (default
    the training days only, PROTOCOL "scalers are fit on the training period"). Exact, from the
    sparse entries. A user without a location counts cell (0, 0) only (the one cell its windows
    train on); absent channels have RMS 0."""
    C = users[0].tensor.C
    sq = np.zeros(C, np.float64)
    count = 0
    for u in users:
        sp = user_splits(u.tensor.T, u.tensor.slots_per_day)[split]
        c, _, _, _, v = u.tensor.coords(sp.t0, sp.t1)
        sq += np.bincount(c, weights=v.astype(np.float64) ** 2, minlength=C)
        count += sp.n_slots * (1 if "location" in u.tensor.absent else u.tensor.H * u.tensor.W)
    return np.sqrt(sq / max(count, 1)).astype(np.float32)


def population_fingerprint(users: Sequence[UserData]) -> str:
    """sha256 (16 hex) over every user's id, tensor and e_pos: detects a changed data set on resume."""
    h = hashlib.sha256()
    for u in users:
        h.update(np.array([u.user, *u.tensor.shape, u.tensor.start_ts], np.int64).tobytes())
        if u.tensor.absent:   # complete tensors hash as before
            h.update(("absent:" + ",".join(sorted(u.tensor.absent))).encode())
        h.update(u.tensor.key.astype(np.int64).tobytes())
        h.update(u.tensor.values.astype(np.float32).tobytes())
        h.update(np.ascontiguousarray(u.e_pos, np.float32).tobytes())
    return h.hexdigest()[:16]


# -----------------------------------------------------------------------------
# Profile embeddings (U-SCOPE: template profile -> frozen SBERT; ProfileMLP lives in the model)
# -----------------------------------------------------------------------------

@dataclass(eq=False)
class ProfileTable:
    """Frozen SBERT embedding per user index: emb (N, D) float32, present (N,) bool; for an LLM source
    also the texts (N,) and the generation info (llm_profiles.llm_profile_texts)."""

    emb: np.ndarray
    present: np.ndarray
    source: str = "template"
    texts: list[str] | None = None
    info: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.emb = np.ascontiguousarray(self.emb, np.float32)
        self.present = np.asarray(self.present, bool)
        if self.emb.ndim != 2 or self.present.shape != (self.emb.shape[0],):
            raise InputError(f"ProfileTable: emb (N, D) and present (N,), got {self.emb.shape}, {self.present.shape}")

    @property
    def dim(self) -> int:
        return self.emb.shape[1]


def build_profile_table(users: Sequence[UserData], source: str = "template", *,
                        cache_dir: str | Path | None = None, encoder: Any = None, llm_cache: str | Path | None = None,
                        generator: Any = None, generator_id: str | None = None) -> ProfileTable:
    """profile_encoder.profile_embeddings over the users' ProfileStats (training-days statistics).

    ``source``: a profile spec (runtime profile_text.parse_profile_spec): ``template``, ``none`` (zeros /
    present=False without loading SBERT: U-MASK without U-SCOPE) or ``llm:MODEL.gguf[+LORA.gguf]`` (one
    text per user from the profiling LLM, llm_profiles.llm_profile_texts, cached in ``llm_cache``; the
    LLM loads only when a text is missing). Tests pass ``source="llm"`` with a ``generator`` (prompt ->
    text) and its ``generator_id`` instead of GGUF files. With ``cache_dir`` repeated runs skip the SBERT
    model entirely (its on-disk cache)."""
    from umask.runtime.families.umask.profile_text import ProfileSource, ProfileSpec, parse_profile_spec
    from umask.train.models.umask.profile_encoder import SentenceEncoder, profile_embeddings

    spec = ProfileSpec(ProfileSource.LLM) if source == "llm" else parse_profile_spec(source)
    if spec.source is ProfileSource.NONE:
        emb, present = profile_embeddings([u.profile for u in users], "none", encoder=encoder)
        return ProfileTable(emb, present, "none")
    if any(u.profile is None for u in users):
        raise InputError("profile source needs ProfileStats for every user")
    encoder = encoder or SentenceEncoder(cache_dir=cache_dir)
    if spec.source is not ProfileSource.LLM:
        emb, present = profile_embeddings([u.profile for u in users], source, encoder=encoder)
        return ProfileTable(emb, present, source)
    from umask.train.models.umask.llm_profiles import user_llm_texts

    texts, info = user_llm_texts(users, spec, generator=generator, generator_id=generator_id, cache_dir=llm_cache)
    emb, present = profile_embeddings([u.profile for u in users], "llm", encoder=encoder, texts=texts)
    return ProfileTable(emb, present, source, texts=texts, info=info)


# -----------------------------------------------------------------------------
# Windows
# -----------------------------------------------------------------------------

# one row per item: (user index, window start slot, task id, end limit slot)
_COLS = 4


def train_windows(users: Sequence[UserData], cfg: WindowConfig) -> np.ndarray:
    """(n, 4) int64 rows (user, start, task, end_limit): windows wholly inside the training days."""
    rows = []
    for ui, u in enumerate(users):
        sp = user_splits(u.tensor.T, u.tensor.slots_per_day)["train"]
        for s in range(sp.t0, sp.t1 - cfg.T + 1, cfg.train_stride):
            rows.extend((ui, s, t, sp.t1) for t in cfg.task_ids)
    return np.array(rows, np.int64).reshape(-1, _COLS)


def required_train_windows(users: Sequence[UserData], cfg: WindowConfig) -> np.ndarray:
    """:func:`train_windows`, or an InputError that says how many days the users would need when there is none."""
    rows = train_windows(users, cfg)
    if not len(rows) and users:
        spd = users[0].tensor.slots_per_day
        need = -(-cfg.T // spd)                                           # whole days one window spans
        days = max(u.tensor.T for u in users) // spd
        raise InputError(f"no training window: a window spans {cfg.T} slots ({cfg.T / spd:g} days of {spd} slots) "
                         f"and must lie wholly inside the training days, which are all but the last two "
                         f"(validation, test); the longest user has {days} whole days, so per-user training "
                         f"needs at least {need + 2} days")
    return rows


def val_windows(users: Sequence[UserData], cfg: WindowConfig, split: str = "val") -> np.ndarray:
    """(n, 4) rows for the validation (or test) day: target starts at the split start (stride val_stride)."""
    stride = cfg.val_stride or cfg.horizon
    rows = []
    for ui, u in enumerate(users):
        sp = user_splits(u.tensor.T, u.tensor.slots_per_day)[split]
        for s in range(sp.t0, sp.t1 - cfg.horizon + 1, stride):
            for t in cfg.task_ids:
                # forecasting tasks: target region starts at s; imputation: completion window ends at s + horizon
                start = s - cfg.context if t != IMPUTE else s + cfg.horizon - cfg.context
                if start >= 0:
                    rows.append((ui, start, t, sp.t1))
    return np.array(rows, np.int64).reshape(-1, _COLS)


def imputation_hidden(cfg: WindowConfig, H: int, W: int, data_seed: int, epoch: int, index: int) -> tuple[float, np.ndarray]:
    """(p, hidden (context, H, W) bool) from the TRAINING generator (never the evaluation seeds)."""
    rng = np.random.default_rng([IMPUTE_SALT, int(data_seed), int(epoch), int(index)])
    p = float(rng.uniform(*cfg.hide_range))
    return p, rng.random((cfg.context, H, W)) < p


# The deterministic prior (UMaskConfig.prior = "blend") lives in the runtime, which builds it on the
# device from the user's history exactly as here (DESIGN rule 2): runtime/families/umask/prior.py.


class UserWindowDataset(Dataset):
    """Map-style dataset over window rows; ``ds[i]`` or ``ds[(i, epoch)]`` -> item dict (see module doc)."""

    def __init__(self, users: Sequence[UserData], cfg: WindowConfig, windows: np.ndarray | None = None, *,
                 profiles: ProfileTable | None = None, data_seed: int = 0) -> None:
        if not users:
            raise InputError("no users")
        self.users = list(users)
        self.cfg = cfg
        self.windows = required_train_windows(self.users, cfg) if windows is None else np.asarray(windows, np.int64)
        if self.windows.ndim != 2 or self.windows.shape[1] != _COLS:
            raise InputError(f"windows must be (n, {_COLS}) rows, got {self.windows.shape}")
        shapes = {(u.tensor.C, u.tensor.H, u.tensor.W) for u in self.users}
        if len(shapes) != 1:
            raise InputError(f"users disagree on (C, H, W): {sorted(shapes)}")
        self.C, self.H, self.W = shapes.pop()
        if profiles is not None and profiles.emb.shape[0] != len(self.users):
            raise InputError(f"profile table has {profiles.emb.shape[0]} rows for {len(self.users)} users")
        self.profiles = profiles
        self.data_seed = int(data_seed)

    def __len__(self) -> int:
        return len(self.windows)

    def item(self, index: int, epoch: int = 0) -> dict[str, Any]:
        cfg = self.cfg
        ui, w0, task, end = (int(v) for v in self.windows[index])
        u = self.users[ui]
        T, ctx = cfg.T, cfg.context
        t1 = min(w0 + T, end, u.tensor.T)
        n_real = t1 - w0                                                   # slots read from the tensor
        x0 = np.zeros((self.C, T, self.H, self.W), np.float32)
        x0[:, :n_real] = u.tensor.dense(w0, t1)
        present = u.tensor.channels.present                               # (C,) 0 on absent channels
        avail = np.zeros((1, T, self.H, self.W), np.float32)
        target = np.zeros_like(avail)
        if task == SHORT:
            avail[:, :ctx] = 1.0
            target[:, ctx:ctx + cfg.short_horizon] = 1.0
        elif task == LONG:
            avail[:, :ctx] = 1.0
            target[:, ctx:] = 1.0
        elif task == COLD:
            active = u.tensor.active_slots(w0, min(w0 + ctx, t1))
            keep = active[max(0, len(active) - cfg.cold_max_active):] if cfg.cold_max_active > 0 else active[:0]
            avail[:, keep - w0] = 1.0
            target[:, ctx:] = 1.0
        elif task == IMPUTE:
            _, hidden = imputation_hidden(cfg, self.H, self.W, self.data_seed, epoch, index)
            avail[0, :ctx] = ~hidden
            target[0, :ctx] = hidden
        else:  # pragma: no cover - rows are built from cfg.task_ids
            raise InputError(f"unknown task id {task}")
        avail[:, n_real:] = 0.0                                            # never beyond the split's end
        target[:, n_real:] = 0.0
        if u.tensor.absent:
            x0 *= present[:, None, None, None]                             # absent: zeros, never real values
            if "location" in u.tensor.absent:                              # every event is in cell (0, 0)
                avail[..., 1:] = 0.0
                avail[..., 1:, :] = 0.0
                target[..., 1:] = 0.0
                target[..., 1:, :] = 0.0
        out: dict[str, Any] = {
            "x0": torch.from_numpy(x0), "avail": torch.from_numpy(avail), "target": torch.from_numpy(target),
            "task": task, "e_pos": torch.from_numpy(np.ascontiguousarray(u.e_pos, np.float32)),
            "user": ui, "start": w0, "channel_present": torch.from_numpy(present),
        }
        if cfg.prior != "none":
            out["prior"] = torch.from_numpy(window_prior(u.tensor, w0, x0, avail, task, ctx, cfg.prior)
                                            * present[:, None, None, None])
        if cfg.calendar:
            out["cal"] = torch.from_numpy(slot_calendar(u.tensor.start_ts, u.tensor.slot_seconds, w0, T))
        if self.profiles is not None:
            out["profile_emb"] = torch.from_numpy(self.profiles.emb[ui])
            out["profile_present"] = bool(self.profiles.present[ui])
        return out

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            return self.item(int(key[0]), int(key[1]))
        return self.item(int(key))


def collate(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack item dicts into a batch: tensors stacked, ints -> long (B,), bools -> bool (B,)."""
    out: dict[str, torch.Tensor] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        if isinstance(vals[0], torch.Tensor):
            out[k] = torch.stack(vals)
        elif isinstance(vals[0], bool):
            out[k] = torch.tensor(vals, dtype=torch.bool)
        else:
            out[k] = torch.tensor(vals, dtype=torch.long)
    return out


# -----------------------------------------------------------------------------
# Deterministic, resumable, rank-sharded batch order
# -----------------------------------------------------------------------------

class StepBatchSampler(Sampler):
    """Infinite batch sampler: step -> list of (index, epoch) keys, a pure function of the step.

    Epoch e is a permutation of all items from ``torch.Generator().manual_seed(seed + e)`` (as
    torch's DistributedSampler), padded by wrap-around to a multiple of ``world`` and sharded
    ``perm[rank::world]``; each rank takes ``batch_size`` consecutive keys per step and drops the
    incomplete last batch of an epoch. Iteration starts at ``start_step`` (the resume cursor).
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, rank: int = 0, world: int = 1,
                 start_step: int = 0, shuffle: bool = True) -> None:
        if batch_size < 1 or world < 1 or not 0 <= rank < world:
            raise InputError(f"bad batch_size/rank/world: {batch_size}, {rank}, {world}")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.rank, self.world, self.start_step, self.shuffle = int(rank), int(world), int(start_step), shuffle
        self.per_rank = math.ceil(self.n / self.world)
        self.steps_per_epoch = self.per_rank // self.batch_size
        if self.steps_per_epoch < 1:
            raise InputError(f"{self.n} items are too few for batch size {batch_size} x {world} processes")
        self._cache: tuple[int, list[int]] | None = None

    def epoch_indices(self, epoch: int) -> list[int]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        if self.shuffle:
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        else:
            perm = list(range(self.n))
        total = self.per_rank * self.world
        perm = (perm * math.ceil(total / self.n))[:total]
        idx = perm[self.rank:total:self.world]
        self._cache = (epoch, idx)
        return idx

    def cursor(self, step: int) -> dict[str, int]:
        """The data position of global ``step`` (0-based): epoch and batch within the epoch."""
        epoch, b = divmod(int(step), self.steps_per_epoch)
        return {"epoch": epoch, "batch_in_epoch": b}

    def batch(self, step: int) -> list[tuple[int, int]]:
        c = self.cursor(step)
        idx = self.epoch_indices(c["epoch"])
        b = c["batch_in_epoch"] * self.batch_size
        return [(i, c["epoch"]) for i in idx[b:b + self.batch_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


__all__ = ["WindowConfig", "UserData", "users_from_events", "simulated_users", "users_from_trace", "save_users",
           "load_users", "channel_rms", "population_fingerprint", "ProfileTable", "build_profile_table", "train_windows",
           "val_windows", "imputation_hidden", "history_tod_sums", "blend_prior", "window_prior", "PRIORS",
           "CAL_DIM", "slot_calendar",
           "PRIOR_WEIGHT", "UserWindowDataset", "collate", "StepBatchSampler", "IMPUTE_SALT"]
