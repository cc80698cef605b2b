"""The benchmarked request: the REAL-sample history, the runtime Session call that serves it, and its metrics.

`SessionPipe` is the one request path of the latency harness and the steps sweep: it calls the
runtime's own ``Session.complete`` (runtime/families/umask/session.py) on whatever network backend
the Session was opened with (onnxruntime, torch reference, TensorRT), so a runtime change is timed
as it ships. `RealSample` is the Tsinghua 6-user one-day sample as a device sees it (histories
before "now", featurized truths of the next slots); the task metric is the short-term MAE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PRECISIONS = ("fp32", "fp16", "int8_qdq", "int8_dynamic")
BUNDLE_PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8_qdq": "int8-qdq", "int8_dynamic": "int8-dynamic"}
NETS = {"dit": "denoiser_step", "maskgen": "mask_generator", "profile_mlp": "profile_mlp", "sbert": "profile_encoder"}


@dataclass(frozen=True)
class RequestSpec:
    """The benchmarked request: one REAL-sample user, short-term prediction at ``hour`` (local)."""

    user_index: int = 0                    # index into the sorted users of the real sample
    hour: int = 18                         # "now" = this hour of the sample's day
    task: str = "short_term"
    sampler: str = "ddim"
    steps: int = 10
    n_samples: int = 2
    seed: int = 0
    metric_hours: tuple[int, ...] = (12, 18)   # task metric: every user of the sample at these hours

    def describe(self) -> str:
        return (f"REAL Tsinghua sample user #{self.user_index}, {self.task} at {self.hour:02d}:00 of its day, "
                f"{self.sampler} {self.steps} steps x {self.n_samples} samples, seed {self.seed}; raw history -> "
                "the runtime Session.complete (window, profile text, SBERT, profile MLP, mask generator, numpy "
                "sampler) on the row's network backend -> prediction of the target slots")


@dataclass
class RealSample:
    """The real one-day sample as a device sees it: catalog, grid, per-user events."""

    catalog: Any
    fcfg: Any
    grid: Any
    cells: Any
    events: dict[int, Any]
    day0: int

    @classmethod
    def load(cls, data_dir: Path | None = None) -> RealSample:
        from umask.runtime.core.catalog import load_llmapp_catalog
        from umask.runtime.core.events import read_llmapp_sample
        from umask.runtime.core.featurize import FeatureConfig
        from umask.runtime.core.tessellation import CityGrid, station_cells

        from umask.export.families.umask.exporter import DEFAULT_DATA, SAMPLE_FILE

        root = Path(data_dir) if data_dir is not None else DEFAULT_DATA
        catalog = load_llmapp_catalog(root)
        ev = read_llmapp_sample(root / SAMPLE_FILE)
        fcfg = FeatureConfig()
        grid = CityGrid.from_stations(catalog.stations, fcfg.cell_m)
        cells = station_cells(catalog.stations, grid)
        users = {int(u): ev.for_user(int(u)) for u in np.unique(ev.user).tolist()}
        day0 = int(ev.ts.min()) // 86400 * 86400
        return cls(catalog, fcfg, grid, cells, users, day0)

    def history(self, user_index: int, hour: int) -> tuple[Any, int]:
        """(events before now, now_ts) of the ``user_index``-th user at ``hour``."""
        u = sorted(self.events)[user_index]
        ev = self.events[u]
        now = self.day0 + hour * 3600
        return ev.take(ev.ts < now), now

    def truth(self, user_index: int, window: Any) -> np.ndarray:
        """(C, Th, H, W) featurized truth of the window's target slots, in the window's layout."""
        from umask.runtime.core.featurize import featurize_user

        u = sorted(self.events)[user_index]
        t0, t1 = window.target_slots
        ss = window.slot_seconds
        day0 = window.window_start_ts // 86400 * 86400              # featurize_user starts at a midnight
        off = (window.window_start_ts - day0) // ss
        tens, _ = featurize_user(self.events[u], self.catalog, window.layout, self.fcfg, day0, off + t1)
        return tens.dense(off + t0, off + t1)




class SessionPipe:
    """One request through a runtime `Session`: ``pipe(hist, now, profile_text)`` -> (prediction (C, Th, H, W)
    on the featurized scale, clipped; window). ``profile_text`` None: the Session writes the profile itself
    (template, or its LLM when opened with ``profile_source="llm"``); ``before`` runs first (e.g. clear an
    LLM's memo so every request generates). The stage timings of every call land in ``stage_s``.

    ``embedding_cached`` (default True): "profile cached" means the profile AND its embedding are cached, as
    a device serves them: the profile changes only when it is refreshed (docs/edge_speed.md, refresh
    policy), and the Session keeps the SBERT embedding of each profile text in its own LRU cache, so a
    request with an unchanged profile never runs SBERT. The SBERT encoder is timed on its own
    (``profile_encoder`` rows) and in every ``request_profile_generated`` row (new text, so False there)."""

    def __init__(self, session: Any, req: RequestSpec, *, before: Callable[[], None] | None = None,
                 embedding_cached: bool = True) -> None:
        self.s, self.req, self.before = session, req, before
        self.embedding_cached = bool(embedding_cached)
        self.stage_s: list[dict[str, float]] = []

    def __call__(self, hist: Any, now: int, profile_text: str | None = None, *,
                 steps: int | None = None) -> tuple[np.ndarray, Any]:
        if self.before is not None:
            self.before()
        if not self.embedding_cached:
            self.s.clear_embedding_cache()
        c = self.s.complete(hist, self.req.task, steps=steps or self.req.steps, sampler=self.req.sampler,
                            seed=self.req.seed, n_samples=self.req.n_samples, now_ts=now, text=profile_text)
        self.stage_s.append(dict(c.timings))
        return self.s.target_prediction(c), c.window


def request_inputs(session: Any, sample: RealSample, req: RequestSpec) -> tuple[Any, int, Any, str]:
    """(history, now_ts, window, cached profile text) of the benchmarked request: the Session's window of
    ``req.task`` and its template profile (the text a device caches)."""
    from umask.runtime.families.umask.profile_text import template_profile

    hist, now = sample.history(req.user_index, req.hour)
    w = session.window(hist, req.task, now_ts=now)
    return hist, now, w, template_profile(w.stats) if w.stats is not None else "no profile"


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    return float(((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)).min())


def component_metric(net: str, got: np.ndarray, ref: np.ndarray) -> tuple[str, float]:
    """The per-network task metric of a row: DiT relative max error, mask agreement, cosine."""
    if net == "dit":
        return "rel_max_err", max_abs_diff(got, ref) / max(1.0, float(np.abs(ref).max()))
    if net == "maskgen":
        return "mask_agreement", float((np.asarray(got) == np.asarray(ref)).mean())
    return "min_cosine", _cos(got, ref)


def request_metric(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> dict[str, float]:
    """Short-term MAE on the featurized scale over all entries and over active (truth != 0) entries."""
    p = np.concatenate([np.ravel(x) for x in preds]).astype(np.float64)
    t = np.concatenate([np.ravel(x) for x in truths]).astype(np.float64)
    act = t != 0
    return {"mae": float(np.abs(p - t).mean()),
            "active_mae": float(np.abs(p - t)[act].mean()) if act.any() else float("nan"),
            "n_entries": int(t.size), "n_active": int(act.sum())}




__all__ = ["PRECISIONS", "BUNDLE_PRECISION", "NETS", "RequestSpec", "RealSample", "SessionPipe", "request_inputs",
           "component_metric", "request_metric", "max_abs_diff"]
