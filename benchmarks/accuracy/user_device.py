"""PROTOCOL B through the DEVICE path: an exported bundle scored by the runtime `Session`, next to its torch
checkpoint, on exactly the same windows (issue 10 deliver 5; docs/PROTOCOL.md B).

    python -m umask.bench.accuracy.user_device --bundle artifacts/bundles/umask_prior \\
        --ckpt artifacts/train/umask_prior_blend/ckpt/latest --users 50 --seeds 0 \\
        --out benchmarks/results/v2_user_umask_device.json

* **Windows.** The protocol-B harness (:mod:`umask.bench.accuracy.user`: ``evaluate_population`` /
  ``iter_batches``, the same SYNTHETIC simulator populations, splits, B4 masks and REAL one-day sample)
  hands every batch to every model: the torch checkpoint (``user_umask.UMaskPredictor``, the harness's
  own U-MASK adapter) and one :class:`SessionPredictor` per precision. Every row therefore scores the
  same windows, and the scoring code is the harness's.
* **Device path.** :class:`SessionPredictor` turns each window into the runtime's `Window` (the
  harness's featurized context in the model's ``context + horizon`` frame, ``avail`` / ``target`` as
  ``UMaskPredictor.model_batch``, the window's ``ProfileStats`` for the template profile) and calls
  ``Session.complete_window``: template text -> SBERT ONNX -> profile MLP ONNX -> mask generator ONNX ->
  the numpy sampler over the DiT ONNX of that precision, with the bundle's sampler defaults (a prior
  model: ``first_x0``, the x0 estimate at t = N-1, mean of 2 draws; the harness's ``point="auto"``).
  A prior model's prior is `umask.runtime.families.umask.prior.window_prior` over the harness's user
  tensor, the function training and the torch adapter call (``Session.window_prior`` builds the same
  from raw events on a phone; tests/test_umask_device.py checks the two agree).
* **What differs from torch by design:** the sampler noise (numpy ``default_rng`` vs torch's generator,
  so the fp32 row measures the noise floor too), SBERT as ONNX, and the precision of the DiT / profile
  MLP. The mask generator is fp32 in every bundle.
* **Output.** v2 rows (``artifact`` torch / onnx-fp32 / onnx-fp16 / onnx-int8-qdq / onnx-int8-dynamic),
  the relative gap to the torch row of the same metric in ``notes``, and ``meta.gate``: the largest
  |gap| per artifact over the headline metrics against the issue's 1 % bar.
* ``--merge-seeds MODEL SEED0.json SEED1.json ... OUT.json``: mean and spread over simulator seeds.
* ``--merge PART.json ... OUT.json`` joins part files of one bundle scored on disjoint protocols (two
  processes on a shared CPU, e.g. ``--tasks B1,B2 --no-real`` and ``--tasks B3,B4``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.accuracy import user as ue
from umask.bench.accuracy import user_umask as uu
from umask.bench.accuracy.user_v2 import _atomic_json, _git_commit, aggregate
from umask.runtime.core.errors import InputError
from umask.runtime.core.history import TASK_NAMES, Window
from umask.runtime.families.umask.checks import task_defaults
from umask.runtime.families.umask.prior import window_prior
from umask.runtime.families.umask.session import Session

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "v2_user_umask_device.json"
ARTIFACT = {"fp32": "onnx-fp32", "fp16": "onnx-fp16", "int8-qdq": "onnx-int8-qdq", "int8-dynamic": "onnx-int8-dynamic"}
OWN_NOISE = "torch-own-noise"      # the harness's torch adapter with its own torch generator (noise floor)
GATE = 0.01                       # issue 10: the int8 artifact within 1 % of torch on every headline metric


def headline(metric: str) -> bool:
    """The issue's headline metrics: all-entry RMSE / MAE per group, app Recall@3, location Acc@1, B3 NDCG@3."""
    return metric.startswith(("rmse_all/", "mae_all/", "ndcg@3/")) or metric in ("app_recall@3", "location_acc@1")


def window_seed(base: int, task_id: int, user: int, index: int, max_seed: int) -> int:
    """The request seed of one window (the Session draws sample i's noise from SeedSequence([seed, i]))."""
    return int(np.random.SeedSequence([int(base), int(task_id), int(user), int(index)]).generate_state(1)[0]) % max_seed


class SameNoiseSampler:
    """A torch sampler that ignores its generator and starts draw i of window j from the noise the Session
    draws for that window (``default_rng(SeedSequence([seed_j, i]))``): the torch row then sees exactly the
    onnx rows' start noise, so its gap to them is the export's alone. `UMask.complete` calls ``sample``
    once per draw, in order; `begin` sets the batch's window seeds and resets the draw counter."""

    def __init__(self, sampler: Any) -> None:
        self.sampler, self.seeds, self.draw = sampler, [], 0

    def begin(self, seeds: Sequence[int]) -> None:
        self.seeds, self.draw = list(seeds), 0

    def sample(self, fn: Any, x_obs: Any, mask: Any, steps: int, **_: Any) -> Any:
        import torch

        shape = (1, *x_obs.shape[1:])
        z = np.concatenate([np.random.default_rng(np.random.SeedSequence([s, self.draw])).standard_normal(
            shape, dtype=np.float32) for s in self.seeds])
        self.draw += 1
        return self.sampler.sample(fn, x_obs, mask, steps, noise=torch.from_numpy(z).to(x_obs))


class SameNoiseTorch:
    """The harness's torch adapter (``user_umask.UMaskPredictor``) with the Session's per-window noise."""

    def __init__(self, pred: Any, seed: int, max_seed: int) -> None:
        self.pred, self.seed, self.max_seed = pred, int(seed), int(max_seed)
        self.sampler = SameNoiseSampler(pred.sampler)
        pred.sampler = self.sampler

    def attach_population(self, pop: ue.UserPopulation) -> None:
        self.pred.attach_population(pop)

    def __call__(self, batch: ue.TaskBatch) -> np.ndarray:
        task_id = TASK_NAMES.index(uu.TASK_OF[batch.task])
        self.sampler.begin([window_seed(self.seed, task_id, u, k, self.max_seed)
                            for u, k in zip(batch.users.tolist(), batch.window_index.tolist())])
        return self.pred(batch)

    def info(self) -> dict[str, Any]:
        return {**self.pred.info(), "noise": "the Session's numpy draws of each window (as the onnx rows)"}


class PerTaskTorch:
    """One torch adapter per distinct per-task sampler configuration of the bundle (``diffusion.defaults``
    with ``by_task`` overrides, e.g. the short-term request's single draw), so the torch row runs exactly
    the request the Session runs for each task."""

    def __init__(self, make: Callable[[dict[str, Any]], Any], defaults: dict[str, Any]) -> None:
        self.by_task: dict[str, Any] = {}
        made: dict[tuple[int, int], Any] = {}
        for t in TASK_NAMES:
            d = task_defaults(defaults, t)
            key = (int(d.get("n_samples", 2)), int(d.get("steps", 10)))
            if key not in made:
                made[key] = make(d)
            self.by_task[t] = made[key]
        self._unique = list(made.values())

    def attach_population(self, pop: ue.UserPopulation) -> None:
        for p in self._unique:
            p.attach_population(pop)

    def __call__(self, batch: ue.TaskBatch) -> np.ndarray:
        return self.by_task[uu.TASK_OF[batch.task]](batch)

    def info(self) -> dict[str, Any]:
        first = self._unique[0].info()
        return {**first, "per_task": {t: p.info().get("point_forecast") for t, p in self.by_task.items()}}

    @property
    def config(self) -> dict[str, Any]:
        first = self._unique[0]
        return getattr(first, "pred", first).config          # through a SameNoiseTorch


class SessionPredictor:
    """A harness ``Predictor`` over a runtime `Session` (see the module docstring)."""

    def __init__(self, session: Session, seed: int = 0, *, sampler: str | None = None, steps: int | None = None,
                 n_samples: int | None = None) -> None:
        """``sampler`` / ``steps`` / ``n_samples``: a request configuration instead of the bundle's defaults
        (None: the defaults, per task)."""
        self.session, self.seed = session, int(seed)
        self.request = {k: v for k, v in (("sampler", sampler), ("steps", steps), ("n_samples", n_samples))
                        if v is not None}
        self.population: ue.UserPopulation | None = None

    def attach_population(self, pop: ue.UserPopulation) -> None:
        """The population whose windows are scored (a prior model reads each user's tensor from it)."""
        self.population = pop

    def window(self, batch: ue.TaskBatch, i: int) -> tuple[Window, np.ndarray | None]:
        """Window ``i`` of ``batch`` as the runtime's `Window` (+ its prior for a prior model)."""
        s, spec = self.session, self.session.spec
        _n, C, Tc, H, W = batch.x_context.shape
        if Tc != spec.context or batch.horizon > (spec.context if batch.target_offset == 0 else spec.horizon):
            raise InputError(f"{batch.task}: a {Tc}-slot context with a {batch.horizon}-slot target does not fit the "
                             f"bundle's {spec.context} + {spec.horizon} window")
        task = uu.TASK_OF[batch.task]
        x = np.zeros((C, spec.T, H, W), np.float32)
        avail = np.zeros((1, spec.T, H, W), np.float32)
        target = np.zeros_like(avail)
        x[:, :Tc], avail[:, :Tc] = batch.x_context[i], batch.avail[i]
        x *= avail
        if batch.target_offset == 0:
            target[:, :Tc] = ~np.asarray(batch.avail[i])
            tslots = (0, Tc)
        else:
            tslots = (Tc, Tc + batch.horizon)
            target[:, tslots[0]:tslots[1]] = 1.0
        u, c0 = int(batch.users[i]), int(batch.context_starts[i])
        pop = self.population
        if pop is None:
            raise InputError("SessionPredictor: attach_population(pop) first (layouts and prior histories)")
        f = pop.features[u]
        ss = pop.cfg.slot_seconds
        w0 = int(batch.start_ts) + c0 * ss
        w = Window(task, TASK_NAMES.index(task), x, avail, target, np.asarray(batch.e_pos[i], np.float32),
                   batch.profiles[i], f.layout, w0, w0 + Tc * ss, ss, tslots)
        prior = None
        if s.prior_kind != "none":
            prior = (window_prior(f.tensor, c0, x, avail, w.task_id, spec.context, s.prior_kind)
                     * f.tensor.channels.present[:, None, None, None]).astype(np.float32)
        return w, prior

    def __call__(self, batch: ue.TaskBatch) -> np.ndarray:
        out = []
        for i in range(batch.n):
            w, prior = self.window(batch, i)
            seed = window_seed(self.seed, w.task_id, int(batch.users[i]), int(batch.window_index[i]),
                               self.session.limits.max_seed)
            c = self.session.complete_window(w, prior=prior, seed=seed, **self.request)
            out.append(c.x[:, batch.target_slice])
        return ue.clip_domain(np.stack(out), batch)

    def info(self) -> dict[str, Any]:
        s = self.session
        d = s.defaults
        point = ("first_x0: x0 estimate at t = N-1" if int(d.get("steps", 10)) == 1 else
                 f"mean of {d.get('n_samples')} {d.get('sampler')} samples, {d.get('steps')} steps")
        return {"seeds": [self.seed], "samples": int(d.get("n_samples", 1)), "steps": int(d.get("steps", 10)),
                "sampler": str(d.get("sampler")), "point_forecast": point + f" (mean of {d.get('n_samples')} draws)"
                + (f"; prior {s.prior_kind}" if s.prior_kind != "none" else ""),
                "device": f"runtime Session, precision {s.precision}, numpy sampler, onnxruntime "
                          f"{s.report()['providers']}"}


def score_population(pop: ue.UserPopulation, torch_preds: Mapping[str, Any], sessions: Mapping[str, Session],
                     tasks: Sequence[str], *, real: bool, command: str, seed: int = 0,
                     windows: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Harness rows of the torch predictors (name -> predictor) and one SessionPredictor per precision on
    ``pop``'s windows (``windows``: the harness's optional per-task window subset, every model alike)."""
    models: dict[str, Any] = dict(torch_preds)
    for p, s in sessions.items():
        models[ARTIFACT[p]] = SessionPredictor(s, seed)
    for m in models.values():
        m.attach_population(pop)
    info = {name: m.info() for name, m in models.items()}
    if real:
        return ue.evaluate_real_sample(models, population=pop, model_info=info, command=command)
    return ue.evaluate_population(pop, models, tasks=tasks, model_info=info, command=command, windows=windows)


def _gap(v: float, ref: float) -> float:
    return (v - ref) / abs(ref) if ref else (0.0 if v == ref else float("inf"))


def with_gaps(rows: list[dict[str, Any]], model: str, notes: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Aggregated rows (model = artifact name) -> rows named ``model`` with ``artifact`` and, in ``notes``, the
    relative gap to the torch row of the same metric and to the onnx-fp32 row (same noise draws as every
    onnx row: the gap of the precision alone); and the gate summary: the largest headline |gap| per artifact."""
    def ref_of(name: str) -> dict[tuple[str, str, str], float]:
        return {(r["protocol"], r["data"], r["metric"]): r["value"] for r in rows if r["model"] == name}

    refs = {"torch": ref_of("torch"), "onnx-fp32": ref_of(ARTIFACT["fp32"])}
    gate: dict[str, Any] = {}
    out = []
    for r in rows:
        art, key = r["model"], (r["protocol"], r["data"], r["metric"])
        r = {**r, "model": model, "artifact": art, "kind": "ours", "family": "umask"}
        parts = [notes]
        for ref_name, ref in refs.items():
            t = ref.get(key)
            if art in ("torch", ref_name) or t is None:
                continue
            gap = _gap(r["value"], t)
            parts.append(f"vs {ref_name} on the same windows: {100 * gap:+.3f} % ({ref_name} {t:.6g})")
            if headline(r["metric"]):
                g = gate.setdefault(art, {}).setdefault(f"vs_{ref_name}", {"max_abs_gap": 0.0, "worst": None})
                if abs(gap) >= g["max_abs_gap"]:
                    g["max_abs_gap"], g["worst"] = abs(gap), f"{r['protocol']} {r['data']} {r['metric']}"
        r["notes"] = "; ".join(parts)
        if art != OWN_NOISE:                   # the noise-floor row goes to meta.gate only
            out.append(r)
    for per in gate.values():
        for g in per.values():
            g["within_1pct"] = g["max_abs_gap"] <= GATE
            g["max_abs_gap"] = round(g["max_abs_gap"], 6)
    return out, gate


def merge(parts: Sequence[Path], out: Path, command: str) -> dict[str, Any]:
    """One result file from part files of the same bundle run on disjoint protocols (e.g. B1,B2 and B3,B4 +
    real in two processes): rows concatenated, gates merged (the largest gap per artifact and reference)."""
    docs = [json.loads(Path(p).read_text()) for p in parts]
    keys = [(d["meta"]["bundle"], d["meta"]["checkpoint"]) for d in docs]
    if len(set(keys)) != 1:
        raise InputError(f"--merge: the parts score different bundles / checkpoints: {sorted(set(keys))}")
    seen = [(r["protocol"], r["data"], r["artifact"], r["metric"]) for d in docs for r in d["rows"]]
    if len(seen) != len(set(seen)):
        raise InputError("--merge: the parts overlap (the same protocol / metric in two parts)")
    gates: dict[str, Any] = {}
    for d in docs:
        g = d["meta"]["gate"]
        for art, per in [*g["per_artifact"].items(), ("noise_floor", {k: v for k, v in g["noise_floor"].items()
                                                                          if k.startswith("vs_")})]:
            for ref, v in per.items():
                cur = gates.setdefault(art, {}).get(ref)
                if cur is None or v["max_abs_gap"] > cur["max_abs_gap"]:
                    gates[art][ref] = v
    meta = {**docs[0]["meta"], "command": command, "parts": [{"file": str(p), "command": d["meta"]["command"],
                                                              "wall_seconds": d["meta"]["wall_seconds"]}
                                                             for p, d in zip(parts, docs)],
            "wall_seconds": round(sum(d["meta"]["wall_seconds"] for d in docs), 1)}
    meta["gate"] = {**docs[0]["meta"]["gate"], "per_artifact": {k: v for k, v in gates.items() if k != "noise_floor"},
                    "noise_floor": {"what": docs[0]["meta"]["gate"]["noise_floor"].get("what"),
                                    **gates.get("noise_floor", {})}}
    doc = {"meta": meta, "rows": [r for d in docs for r in d["rows"]]}
    _atomic_json(out, doc)
    return doc


def event_counts(users: int, seeds: Sequence[int], tasks: Sequence[str], windows: Mapping[str, Any] | None,
                 real: bool, population_users: int) -> dict[tuple[str, str, str], int]:
    """(protocol, data, metric) -> how many events a discrete headline metric averages over on these windows
    (target slots with activity for app_recall@3 / location_acc@1, ranked users for ndcg@3): a property of
    the ground truth, so counted with the harness's all-zero predictor (no network)."""
    counts: dict[tuple[str, str, str], int] = {}

    def add(rows: Sequence[Mapping[str, Any]]) -> None:
        for r in rows:
            data, proto, m = "synthetic" if r["synthetic"] else "real", r["task_id"], r["metrics"]
            for k, v in (m.get("events") or {}).items():
                if k.startswith("n_slots/"):
                    key = (proto, data, k.split("/", 1)[1])
                    counts[key] = counts.get(key, 0) + int(v)
            for dom, rk in (m.get("ranking") or {}).items():
                key = (proto, data, f"ndcg@3/{dom}")
                counts[key] = counts.get(key, 0) + int(rk["n_users_ranked"])

    zero = {"all_zero": ue.predict_all_zero}
    for sd in seeds if tasks else ():
        pop = uu.subset_population(ue.simulated_population(population_users, sd), users)
        add(ue.evaluate_population(pop, zero, tasks=tasks, windows=windows))
    if real:
        add(ue.evaluate_real_sample(zero))
    return counts


def gate_with_resolution(doc: dict[str, Any], counts: Mapping[tuple[str, str, str], int]) -> dict[str, Any]:
    """Per artifact: the headline gaps to torch again, each discrete metric's one-event step (1 / (n x |torch|):
    one flipped slot or user) and ``within_1pct_or_one_event`` (every |gap| <= max(1 %, one event));
    ``flips``: the discrete metrics whose gap exceeds 1 %, with their gap in events."""
    ref = {(r["protocol"], r["data"], r["metric"]): r["value"] for r in doc["rows"] if r["artifact"] == "torch"}
    out: dict[str, Any] = {}
    for r in doc["rows"]:
        key = (r["protocol"], r["data"], r["metric"])
        t = ref.get(key)
        if r["artifact"] == "torch" or t is None or not headline(r["metric"]):
            continue
        gap = _gap(r["value"], t)
        n = counts.get(key)
        step = 1.0 / (n * abs(t)) if n and t else None
        g = out.setdefault(r["artifact"], {"within_1pct_or_one_event": True, "over_1pct": []})
        if abs(gap) > GATE:
            ok = bool(n) and abs(r["value"] - t) * n <= 1.0 + 1e-3      # values are rounded to 6 decimals
            g["within_1pct_or_one_event"] &= ok
            g["over_1pct"].append({"metric": " ".join(key), "gap": round(gap, 6), "events": n,
                                   "gap_in_events": None if not n else round(abs(r["value"] - t) * n, 2),
                                   "one_event_step": None if step is None else round(step, 6)})
    return out


def merge_seeds(files: Sequence[Path], out: Path, command: str, model: str) -> dict[str, Any]:
    """One result file over simulator seeds from single-seed files of one bundle (each `merge`d or direct):
    every synthetic (protocol, artifact, metric) value becomes the mean over the files' seeds with the
    population std as ``spread``; real-sample rows are taken from the file that has them; gaps and the gate
    are recomputed (`with_gaps`)."""
    docs = [json.loads(Path(p).read_text()) for p in files]
    seeds = [sd for d in docs for sd in d["meta"]["seeds"]]
    if len(set(seeds)) != len(seeds) or len({d["meta"]["bundle"] for d in docs}) != 1:
        raise InputError(f"--merge-seeds: the files must score one bundle on distinct seeds, got seeds {seeds}")
    vals: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    real: list[dict[str, Any]] = []
    for d in docs:
        for r in d["rows"]:
            if r["data"] == "real":
                real.append({**r, "model": r["artifact"]})
            else:
                vals.setdefault((r["protocol"], r["artifact"], r["metric"]), []).append(r)
    rows = []
    for (proto, art, metric), rs in sorted(vals.items()):
        if len(rs) != len(docs):
            raise InputError(f"--merge-seeds: {proto} {art} {metric} is in {len(rs)} of {len(docs)} files")
        v = [r["value"] for r in rs]
        rows.append({**rs[0], "model": art, "value": round(float(np.mean(v)), 6), "spread": round(float(np.std(v)), 6),
                     "seeds": sorted(seeds), "n_windows": sum(int(r["n_windows"]) for r in rs),
                     "dataset": rs[0]["dataset"].replace(" x 1 seeds", f" x {len(seeds)} seeds")})
    notes = docs[0]["rows"][0]["notes"].split("; vs ")[0]
    out_rows, gate = with_gaps(rows + real, model, notes)
    meta = {**docs[0]["meta"], "command": command, "seeds": sorted(seeds),
            "files": [{"file": str(p), "command": d["meta"]["command"]} for p, d in zip(files, docs)],
            "spread": "population std over simulator seeds (null for the real sample)"}
    nf = docs[0]["meta"]["gate"].get("noise_floor", {})
    meta["gate"] = {"bar": docs[0]["meta"]["gate"]["bar"], "per_artifact": gate,
                    "noise_floor": {**nf, "seeds": docs[0]["meta"]["seeds"]}}
    doc = {"meta": meta, "rows": out_rows}
    _atomic_json(out, doc)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--merge-seeds"]:      # --merge-seeds MODEL FILE... OUT
        model, *files, out = argv[1:]
        doc = merge_seeds([Path(p) for p in files], Path(out),
                          shlex.join(["python", "-m", "umask.bench.accuracy.user_device", *argv]), model)
        print(json.dumps(doc["meta"]["gate"]["per_artifact"], indent=1))
        return 0
    if argv[:1] == ["--resolution"]:       # --resolution FILE USERS SEEDS TASKS B1_EVERY B1_OFFSET POP_USERS
        path, users, seeds, tasks, every, offset, n_pop = argv[1:8]
        tasks_t = tuple(t for t in tasks.split(",") if t and t != "none")
        windows = {"B1": {i for i in range(96) if i % int(every) == int(offset)}} if int(every) > 1 else None
        counts = event_counts(int(users), [int(x) for x in seeds.split(",")], tasks_t, windows, True, int(n_pop))
        doc = json.loads(Path(path).read_text())
        doc["meta"]["gate"]["resolution"] = {
            "what": "discrete metrics (app_recall@3, location_acc@1: per target slot; ndcg@3: per user) move in steps "
                    "of one event; a gap above 1 % that is at most one event is a single flipped slot / user",
            "events": {" ".join(k): v for k, v in sorted(counts.items())},
            "per_artifact": gate_with_resolution(doc, counts), "command": shlex.join(["python", "-m",
                                                                                      "umask.bench.accuracy.user_device",
                                                                                      *argv])}
        _atomic_json(Path(path), doc)
        print(json.dumps(doc["meta"]["gate"]["resolution"]["per_artifact"], indent=1))
        return 0
    if argv[:1] == ["--merge"]:
        *parts, out = argv[1:]
        doc = merge([Path(p) for p in parts], Path(out),
                    shlex.join(["python", "-m", "umask.bench.accuracy.user_device", *argv]))
        print(json.dumps(doc["meta"]["gate"], indent=1))
        return 0
    ap = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user_device", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="exported bundle directory (export of --ckpt)")
    ap.add_argument("--ckpt", required=True, help="the torch checkpoint the bundle was exported from")
    ap.add_argument("--precisions", default="fp32,fp16,int8-qdq,int8-dynamic")
    ap.add_argument("--users", type=int, default=50, help="SYNTHETIC users (the first N of the training population)")
    ap.add_argument("--population-users", type=int, default=None,
                    help="simulated population size (default: the checkpoint's training n_users)")
    ap.add_argument("--seeds", default="0", help="comma-separated simulator seeds")
    ap.add_argument("--tasks", default="B1,B2,B3,B4")
    ap.add_argument("--b1-every", type=int, default=1, help="keep B1 windows with index %% K == --b1-offset")
    ap.add_argument("--b1-offset", type=int, default=2)
    ap.add_argument("--no-real", action="store_true", help="skip the REAL 6-user sample (B1)")
    ap.add_argument("--trusted-keys", default=None, help="public key(s) that signed the bundle")
    ap.add_argument("--allow-unsigned", action="store_true")
    ap.add_argument("--no-noise-floor", action="store_true",
                    help=f"skip the {OWN_NOISE} reference (torch with its own generator; meta only)")
    ap.add_argument("--model-name", default=None, help="rows' model name (default umask_prior_<kind> / umask_device)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(1)
    command = shlex.join(["python", "-m", "umask.bench.accuracy.user_device", *argv])
    precisions = [p for p in args.precisions.split(",") if p]
    tasks = tuple(t.strip().upper() for t in args.tasks.split(",") if t.strip() and t.strip().lower() != "none")
    if not set(tasks) <= set(ue.TASKS):
        ap.error(f"--tasks must be a subset of {','.join(ue.TASKS)} (or 'none': the real sample only)")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    t0 = time.perf_counter()
    sessions = {p: Session.open(args.bundle, precision=p, profile_source="template", trusted_keys=args.trusted_keys,
                                allow_unsigned=args.allow_unsigned) for p in precisions}
    dflt = sessions[precisions[0]].defaults

    def torch_adapter(d: dict[str, Any]) -> Any:
        return uu.umask_predictor(args.ckpt, n_samples=int(d.get("n_samples", 2)), steps=int(d.get("steps", 10)),
                                  seed=0, point="auto")

    max_seed = sessions[precisions[0]].limits.max_seed
    # per task: the torch row runs the request the Session runs (by_task defaults), with the Session's noise
    torch_pred = PerTaskTorch(lambda d: SameNoiseTorch(torch_adapter(d), 0, max_seed), dflt)
    torch_preds = {"torch": torch_pred}
    if not args.no_noise_floor:
        torch_preds[OWN_NOISE] = PerTaskTorch(torch_adapter, dflt)
    n_pop = args.population_users or int(torch_pred.config.get("train", {}).get("n_users") or args.users)
    windows = None
    if args.b1_every > 1:
        windows = {"B1": {i for i in range(96) if i % args.b1_every == args.b1_offset}}
    runs = {}
    for sd in seeds if tasks else ():
        pop = uu.subset_population(ue.simulated_population(n_pop, sd), args.users)
        runs[sd] = score_population(pop, torch_preds, sessions, tasks, real=False, command=command, windows=windows)
        log.info("seed %d: %d rows, %.0f s", sd, len(runs[sd]), time.perf_counter() - t0)
    point = torch_pred.info()["point_forecast"]
    ds = (f"sim {args.users} users x {len(seeds)} seeds, v2 B windows (device scoring)"
          + (f", B1 every {args.b1_every}th target hour" if windows else ""))
    rows = aggregate(runs, dataset=ds, data="synthetic", command=command) if runs else []
    if not args.no_real:
        real = score_population(ue.real_population(), torch_preds, sessions, ("B1-real",), real=True, command=command)
        rows += aggregate({0: real}, dataset="tsinghua sample 6 users 1 day, in-day context (B1-real, device scoring)",
                          data="real", command=command)
    notes = f"point estimator: {point}; bundle {args.bundle}"
    kind = sessions[precisions[0]].prior_kind
    rows, gate = with_gaps(rows, args.model_name or ("umask_prior_" + kind if kind != "none" else "umask_device"), notes)
    doc = {"meta": {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
                    "wall_seconds": round(time.perf_counter() - t0, 1), "bundle": args.bundle, "checkpoint": args.ckpt,
                    "precisions": precisions, "seeds": seeds, "users_per_seed": args.users, "point_estimator": point,
                    "gate": {"bar": f"|artifact - torch| / |torch| <= {GATE:.0%} on every headline metric",
                             "per_artifact": {k: v for k, v in gate.items() if k != OWN_NOISE},
                             "noise_floor": {"what": f"{OWN_NOISE}: the torch model with the harness's own torch "
                                                     "generator (other start noise) vs torch with the Session's noise",
                                             **gate.get(OWN_NOISE, {})}},
                    "spread": "population std over simulator seeds (null for one seed and for the real sample)",
                    "notes": "same windows for every row (the protocol-B harness); torch = user_umask.UMaskPredictor "
                             "started from the Session's numpy noise of each window (SameNoiseTorch), onnx-* = runtime "
                             "Session.complete_window of that precision"},
           "rows": rows}
    _atomic_json(Path(args.out), doc)
    log.info("wrote %s: %d rows in %.0f s; gate %s", args.out, len(rows), doc["meta"]["wall_seconds"], gate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
