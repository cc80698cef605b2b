"""The on-device session of a U-STS-LLM bundle (numpy + onnxruntime, no torch)::

    from umask.runtime.session import Session
    with Session.open("artifacts/bundles/ustsllm", precision="int8-qdq") as s:
        day = s.forecast(history, first_slot=3600)        # (288, cells) raw -> (144, cells) raw
        full = s.impute(values, mask, first_slot=3888)    # (288, cells) raw + mask (True = missing) -> raw

Inputs and outputs are raw per-cell values (the units of the training grid's CSV). The session scales
them with the bundle's statistics (the training grid's per-cell mean / floored std, its weekday / weekend
slot-of-day profiles and functional graph; runtime/families/ustsllm/stats.py), runs the exported network
and scales back. For a grid other than the training grid (zero-shot, any cell count) pass ``stats=`` fitted
on that grid with the run's profile recipe (``fit_grid_stats(values, train_end, slots_per_day, first_weekday,
profile_decay, profile_statistic)``, both recorded in the manifest's ``checkpoint``). ``first_slot``: the slot
index of the first row counted from the grid's slot 0, a midnight of weekday ``stats.first_weekday``
(Milan: Friday 2013-11-01), which gives the time-of-day / weekday / day-type inputs. A batch is given with a leading axis: (n, slots, cells), first_slot (n,).

A bundle exported with ``--a2-gate`` carries per-cell alphas (manifest ``gate.impute``): ``impute`` then returns
``other + alpha_c (network - other)`` per cell c, other being the named A2 row (lowrank_interpolation or
profile_lowrank_interpolation) computed here from the statistics. The alphas belong to the training grid's cells,
so they apply only with the bundle's own statistics; with ``stats=`` (another grid) or ``gated=False`` the network
alone answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.bundle import (ARTIFACT, JSON, MAP, OBJ, BundleError, read_verified,
                                       register_manifest_schema)
from umask.runtime.core.errors import InputError
from umask.runtime.core.gridcli import missing_mask, standardized, window_batch
from umask.runtime.engines.ort import inference_session, resolve_providers, session_options
from umask.runtime.families.umask.grid_prior import gate
from umask.runtime.families.ustsllm.stats import A2_GATE_OTHERS, GUIDE_PRIORS, GridStats, prior_channel, time_inputs
from umask.runtime.session import FamilySession

FAMILY = "ustsllm"
TASKS = ("forecast", "impute")
FEEDS = ("x", "mask", "prior", "tod", "dow", "graph")

register_manifest_schema(
    FAMILY,
    {"model": OBJ({"net": JSON, "tasks": JSON}, extra=JSON), "grid": JSON, "stats": JSON,
     "artifacts": MAP(MAP(ARTIFACT), max_items=16)},
    {"parity": JSON, "checkpoint": JSON, "tensorrt": JSON, "llm": JSON, "gate": JSON},
)


class Session(FamilySession):
    """See the module docstring; build with :meth:`open`."""

    family = FAMILY

    def __init__(self, root: Path, manifest: dict[str, Any], precision: str, providers: Sequence[str] | None,
                 threads: int) -> None:
        self.root, self.manifest, self.precision = root, manifest, precision
        arts = manifest["artifacts"]
        if precision not in arts:
            raise InputError(f"precision {precision!r}: {root} holds {sorted(arts)}")
        tasks = manifest["model"]["tasks"]
        self.length = {t: int(tasks[t]["length"]) for t in TASKS}
        self.target = {t: int(tasks[t]["target"]) for t in TASKS}
        self.stats = GridStats.from_dict(manifest["stats"], f"{root}/manifest.json stats")
        # the impute task's prior channel (USTSConfig.guide_prior; bundles before the option: the profile)
        self.guide_prior = str(manifest["model"]["net"].get("guide_prior", "grid_prior"))
        if self.guide_prior not in GUIDE_PRIORS:
            raise BundleError(f"{root}/manifest.json: model.net.guide_prior {self.guide_prior!r} is unknown to this "
                              f"runtime {GUIDE_PRIORS}")
        self.gate = self._read_gate(manifest.get("gate") or {}, f"{root}/manifest.json")
        self.providers, self.providers_missing = resolve_providers(providers)
        self.threads = int(threads)
        opts = session_options(threads=self.threads)
        self._ort = {}
        for t in TASKS:
            entry = arts[precision].get(t)
            if not entry or not entry.get("file"):
                raise BundleError(f"{root}/manifest.json: artifacts.{precision}.{t} has no file")
            sess = inference_session(read_verified(root, entry["file"], manifest), opts, self.providers)
            names = [i.name for i in sess.get_inputs()]
            if sorted(names) != sorted(FEEDS):
                raise BundleError(f"{root}/{entry['file']}: inputs {names}, this runtime feeds {list(FEEDS)}")
            self._ort[t] = sess

    def _read_gate(self, g: Any, where: str) -> tuple[str, np.ndarray] | None:
        """(other row, (cells,) alphas) of the manifest's ``gate.impute``, or None without a gate."""
        if not isinstance(g, dict) or set(g) - {"impute"}:
            raise BundleError(f"{where}: gate must be an object with at most an impute entry, got {str(g)[:80]}")
        d = g.get("impute")
        if d is None:
            return None
        other = d.get("other") if isinstance(d, dict) else None
        try:
            alphas = np.asarray(d.get("alphas"), np.float64) if isinstance(d, dict) else np.zeros(0)
        except (TypeError, ValueError):
            alphas = np.zeros(0)
        if other not in A2_GATE_OTHERS or alphas.shape != (self.stats.n_cells,) or not np.all(
                (alphas >= 0) & (alphas <= 1)):
            raise BundleError(f"{where}: gate.impute must name other in {A2_GATE_OTHERS} and give "
                              f"{self.stats.n_cells} alphas in [0, 1]")
        return str(other), alphas

    @classmethod
    def open(cls, bundle: str | Path, *, precision: str = "fp32", providers: Sequence[str] | None = None,
             threads: int = 1, verify: bool = True, trusted_keys: Any = None, allow_unsigned: bool = False,
             **_: Any) -> Session:
        """Verify ``bundle`` (signature by a trusted key unless ``allow_unsigned``; every file's sha256) and
        load the two networks of ``precision`` (fp32 | fp16 | int8-qdq) on ``providers``."""
        return cls.open_verified(bundle, precision=precision, providers=providers, threads=threads, verify=verify,
                                 trusted_keys=trusted_keys, allow_unsigned=allow_unsigned)

    def describe(self) -> dict[str, Any]:
        return {"family": FAMILY, "bundle": str(self.root), "precision": self.precision, "providers": self.providers,
                "threads": self.threads, "cells": self.stats.n_cells, "slots_per_day": self.stats.slots_per_day,
                "history": self.length["forecast"] - self.target["forecast"], "horizon": self.target["forecast"],
                "window": self.length["impute"], "grid": self.manifest.get("grid"),
                "a2_gate": None if self.gate is None else self.gate[0]}

    def close(self) -> None:
        self._ort = {}

    # ------------------------------------------------------------------ requests
    def _prepare(self, values: Any, name: str, length: int, stats: GridStats | None, first_slot: Any
                 ) -> tuple[np.ndarray, bool, GridStats, np.ndarray]:
        if not self._ort:
            raise InputError("the session is closed")
        st = self.stats if stats is None else stats
        if not isinstance(st, GridStats):
            raise InputError(f"stats must be a GridStats (fit_grid_stats), got {type(st).__name__}")
        if st.slots_per_day != self.stats.slots_per_day:
            raise InputError(f"stats: {st.slots_per_day} slots a day; the network was trained with "
                             f"{self.stats.slots_per_day}")
        v, single, first = window_batch(values, name, st.n_cells, (length, length), first_slot)
        return v, single, st, first

    def _run(self, task: str, z: np.ndarray, mask: np.ndarray, st: GridStats, first: np.ndarray,
             gated: bool = False) -> np.ndarray:
        tod, dow = time_inputs(first, st)
        x = np.where(mask > 0, 0.0, z)
        prior = prior_channel(st, task, x, mask > 0, first, self.guide_prior)
        feeds = {"x": x.astype(np.float32), "mask": mask.astype(np.float32), "prior": prior.astype(np.float32),
                 "tod": tod, "dow": dow, "graph": st.graph.astype(np.float32)}
        y = self._ort[task].run(None, feeds)[0].astype(np.float64)
        if not gated:
            return y
        other, alphas = self.gate
        row = prior if other == self.guide_prior else prior_channel(st, task, x, mask > 0, first, other)
        return gate(y, row, alphas)

    def forecast(self, history: Any, *, first_slot: Any = 0, stats: GridStats | None = None) -> np.ndarray:
        """The next day (horizon slots) after ``history`` (history slots x cells, raw), raw units."""
        L, S = self.length["forecast"] - self.target["forecast"], self.target["forecast"]
        v, single, st, first = self._prepare(history, "history", L, stats, first_slot)
        if not np.all(np.isfinite(v)):
            raise InputError("history: every value must be finite (use impute() for gaps)")
        z = np.concatenate([standardized(st, v, "history"), np.zeros((v.shape[0], S, v.shape[2]))], 1)
        mask = np.zeros_like(z)
        mask[:, L:] = 1.0
        out = st.inverse(self._run("forecast", z, mask, st, first))
        return out[0] if single else out

    def impute(self, values: Any, mask: Any, *, first_slot: Any = 0, stats: GridStats | None = None,
               gated: bool = True) -> np.ndarray:
        """``values`` (window slots x cells, raw; missing entries NaN or anything) completed where ``mask`` is
        True; observed entries are returned unchanged. A gated bundle's per-cell gate applies with the bundle's own
        statistics unless ``gated=False`` (module doc)."""
        T = self.length["impute"]
        v, single, st, first = self._prepare(values, "values", T, stats, first_slot)
        m = missing_mask(mask, values, v, single)
        z = standardized(st, np.where(m, 0.0, v), "values", ~m)
        use_gate = bool(gated) and self.gate is not None and stats is None
        pred = st.inverse(self._run("impute", z, m.astype(np.float64), st, first, use_gate))
        out = np.where(m, pred, v)
        return out[0] if single else out


def run_main(argv: Sequence[str] | None = None) -> int:
    """``umask run --bundle DIR --values FILE.csv [--task forecast|impute] [--first-slot N]`` (runtime/core/gridcli.py)."""
    from umask.runtime.core.gridcli import grid_run_main

    return grid_run_main(argv, Session, "umask run (ustsllm bundle)")


__all__ = ["Session", "run_main", "FAMILY"]
