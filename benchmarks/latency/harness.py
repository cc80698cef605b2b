"""Latency harness: every artifact of a bundle on every available engine, one row per configuration.

One command::

    python -m umask.bench.latency.harness --bundle artifacts/bundles/small \\
        --out benchmarks/results/latency_cpu.json [--quick]

Rows (benchmarks/latency/rows.py) follow onnxruntime's benchmark tooling and ``trtexec``; the
measurement (time-based warm-up, samples, burn-in, peak RSS) is benchmarks/latency/timing.py; the
machine metadata benchmarks/latency/machine.py; the command line benchmarks/latency/cli.py.

Every request row times the runtime's OWN ``Session`` (runtime/families/umask/session.py) on a
network backend (runtime/engines/backends.py): there is no second copy of the request path here.

* ``torch`` eager fp32: the reference, `TorchBackend` (benchmarks/latency/backends.py) over the
  checkpoint named in the bundle manifest (or ``--ckpt``), on the CPU and on CUDA when torch sees it.
* ``onnxruntime`` fp32 / fp16 / int8-QDQ / int8-dynamic: the runtime's `OrtBackend` over each ONNX
  file of the bundle on each available execution provider.
* ``tensorrt``: the bundle's native engines (`TensorRTBackend`, TensorRT 10 Python API, torch CUDA
  buffers), only where ``import tensorrt`` works and CUDA is present; otherwise one skip line.
* ``llama.cpp``: each GGUF quant of the profiling LLM, when ``llama_cpp`` imports and the files exist:
  prompt tokens/s, generation tokens/s and time to first token.

Components (the ``component`` column): ``denoiser_step`` (one DiT call), ``mask_generator``,
``profile_encoder`` (SBERT, one profile text), ``profile_mlp``, ``llm_profile`` (LLM profile
generation) and the full on-device request ``request_profile_cached`` (``Session.complete`` from the
raw history with the cached profile text: window -> SBERT -> h_u -> mask -> sampling) and
``request_profile_generated`` (the same with the LLM writing the profile first).

With the same seed every backend draws the same start noise (the Session's sampler), so the request
parity (max abs diff vs the torch-backed Session) compares like with like. The request's task metric
is the short-term (next 1 h) MAE against the REAL events of the Tsinghua 6-user one-day sample
(featurized scale), over every user x ``RequestSpec.metric_hours``.

Outputs: ``--out`` JSON ``{"meta": ..., "rows": [...], "skipped": [...]}``, the same rows flattened
in ``.csv`` and a markdown summary ``.md`` next to it. Latency on a shared machine is meaningless:
the meta records the 1-min load average before and after; ``--max-load L`` waits until it is below L.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.latency.cases import llm_cases, ort_cases, tensorrt_cases, torch_cases
from umask.bench.latency.machine import git_commit, load_average, machine_info, versions, wait_for_quiet
from umask.bench.latency.request import (BUNDLE_PRECISION, NETS, PRECISIONS, RealSample, RequestSpec, SessionPipe,
                                         component_metric, max_abs_diff, request_inputs, request_metric)
from umask.bench.latency.rows import (COMPONENTS, Case, bundle_fingerprint, repo_relative, request_ratios, run_case,
                                      shapes_of, total_bytes)
from umask.bench.latency.timing import FULL_TIMING, Timing, TimingConfig, burn_in

log = logging.getLogger(__name__)

DEFAULT_OUT = "benchmarks/results/latency_cpu.json"
REFERENCE = "torch eager fp32, same inputs"


@dataclass
class HarnessConfig:
    bundle: Path | None = None
    ckpt: Path | None = None
    out: Path = Path(DEFAULT_OUT)
    quick: bool = False
    threads: tuple[int, ...] = (1,)
    spinning: tuple[bool, ...] = (False,)
    batch: int = 1
    precisions: tuple[str, ...] = PRECISIONS
    providers: tuple[str, ...] | None = None            # None: every available one
    components: tuple[str, ...] = COMPONENTS
    engines: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt", "llama.cpp")
    gguf: tuple[Path, ...] = ()
    llm_request_quant: str = "q8_0"
    llm_max_tokens: int = 192
    request: RequestSpec = field(default_factory=RequestSpec)
    # an extra torch eager request at another sampler configuration (the paper's many-step sampler), timed in
    # the same run: the speed-up of the shipped few-evaluation request is stated against it as well
    reference_request: RequestSpec | None = None
    timing: TimingConfig = FULL_TIMING
    metric: bool = True                                 # compute the request task metric over the sample
    data_dir: Path | None = None
    peers: bool = False                                 # peer runtimes on the DiT step (benchmarks/latency/peers.py)


class Harness:
    """Builds every configuration (`Case`) of a run and measures them."""

    def __init__(self, cfg: HarnessConfig) -> None:
        from umask.runtime.core.bundle import verify_bundle

        if cfg.bundle is None:
            raise ValueError("give --bundle: every row runs the runtime Session or a network of the bundle "
                             "(export one with `umask export`)")
        self.cfg = cfg
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.manifest: dict[str, Any] = verify_bundle(cfg.bundle)
        self.vers = versions()
        self._torch_ready = False

    # -- sessions --
    def open_session(self, prec: str, *, backend: Any = None, providers: Sequence[str] = ("CPUExecutionProvider",),
                     threads: int = 1, spinning: bool = False, **kw: Any) -> Any:
        """The runtime U-MASK Session of the bundle at ``prec`` (our precision name) on ``backend``
        (default: the runtime's onnxruntime backend on ``providers``)."""
        from umask.runtime.families.umask.session import Session

        kw.setdefault("profile_source", "template")
        return Session.open(self.cfg.bundle, providers=list(providers), threads=threads, allow_spinning=spinning,
                            precision=BUNDLE_PRECISION[prec], backend=backend, llm_threads=threads, **kw)

    def bundle_files(self, prec: str, with_llm: bool = False) -> list[Path]:
        """The files a ``prec`` Session loads (networks + tokenizer [+ the GGUF files])."""
        from umask.runtime.families.umask.session import bundle_networks

        b, man = self.cfg.bundle, self.manifest
        files = list(bundle_networks(b, man, BUNDLE_PRECISION[prec]).values())
        tok = man.get("sbert", {}).get("tokenizer")
        if tok and (b / tok).is_file():
            files.append(b / tok)
        if with_llm:
            files += [b / f for f in man.get("llm", {}).get("files", [])]
        return files

    # -- the torch reference --
    def _load_torch(self) -> None:
        if self._torch_ready:
            return
        import torch

        from umask.bench.accuracy.user_umask import resolve_checkpoint
        from umask.bench.latency.backends import TorchBackend
        from umask.train.models.umask.profile_encoder import SentenceEncoder
        from umask.train.models.umask.trainer import load_model

        torch.set_num_threads(max(self.cfg.threads))
        self.ckpt = resolve_checkpoint(self.cfg.ckpt or Path(self.manifest["checkpoint"]["path"]))
        self.model, self.config = load_model(self.ckpt, ema=True)
        self.encoder = SentenceEncoder()
        self.sample = RealSample.load(self.cfg.data_dir)
        self.torch_backend = TorchBackend(self.model, self.encoder, "cpu")
        self.torch_session = self.open_session("fp32", backend=self.torch_backend)
        self.torch_pipe = SessionPipe(self.torch_session, self.cfg.request)
        if not (self.torch_session.use_profile and self.torch_session.sbert_file):
            self.notes.append("requests use the profile MLP's 'no profile' embedding (model without U-SCOPE or "
                              "bundle without SBERT)")
        self._build_inputs()
        self._torch_ready = True

    def _build_inputs(self) -> None:
        """Component inputs from the benchmarked request's REAL window (tiled to the batch size), built by
        the torch-backed Session; the torch reference output of each network."""
        s, tb, B = self.torch_session, self.torch_backend, self.cfg.batch
        self.hist, self.now, w, self.text = request_inputs(s, self.sample, self.cfg.request)
        self.window = w
        tile = lambda a: np.ascontiguousarray(np.repeat(np.asarray(a)[None], B, axis=0))  # noqa: E731
        feeds: dict[str, dict[str, np.ndarray]] = {}
        present = np.ones((B,), np.float32)
        emb = s.sbert([self.text]) if s.sbert_file else np.zeros((1, s.sbert_dim), np.float32)
        feeds["profile_mlp"] = {"emb": np.repeat(emb, B, 0), "present": present}
        h_u = tb.run("profile_mlp", feeds["profile_mlp"])[0]
        task = np.full((B,), w.task_id, np.int64)
        feeds["maskgen"] = {"x": tile(w.x), "avail": tile(w.avail), "h_u": h_u, "task": task, "e_pos": tile(w.e_pos),
                            "gumbel": np.zeros((B, s.n_coords), np.float32)}
        mg = tb.run("maskgen", feeds["maskgen"])
        hard = mg[0]
        x0 = feeds["maskgen"]["x"] * s.x_scale
        x_obs = (x0 * hard).astype(np.float32)
        a, sig = s.schedule.alpha_sigma(999)
        z = np.random.default_rng(0).standard_normal(x_obs.shape, dtype=np.float32)
        feeds["dit"] = {"x_t": (a * x0 + sig * z).astype(np.float32), "x_obs": x_obs, "mask": hard,
                        "t": np.full((B,), 999, np.int64), "h_u": h_u, "task": task}
        if s.dit_extra:          # a prior model's DiT also takes its prior / calendar / E_pos / h_b (the Session's feeds)
            from umask.runtime.families.umask.prior import dit_extra_feeds

            prior = s.window_prior(self.hist, w)
            h_b = np.asarray(mg[4])[0] if len(mg) > 4 else None
            extra = dit_extra_feeds(s.dit_extra, w, prior, h_b, s.x_scale)
            feeds["dit"].update({k: np.ascontiguousarray(np.repeat(v, B, axis=0)) for k, v in extra.items()})
        if s.sbert_file:
            feeds["sbert"] = {k: np.repeat(v, B, 0) for k, v in s.tokenize(self.text).items()}
        self.feeds = feeds
        self.ref = {net: tb.run(net, f)[0] for net, f in feeds.items()}

    # -- request metric over the sample --
    def request_eval(self, pipe: SessionPipe) -> tuple[list[np.ndarray], dict[str, float]]:
        """Every (user, metric hour) request with the profile the Session writes itself."""
        from umask.runtime.core.errors import InputError

        preds, truths = [], []
        for ui in range(len(self.sample.events)):
            for h in self.cfg.request.metric_hours:
                hist, now = self.sample.history(ui, h)
                if len(hist) < 5:
                    continue
                try:
                    pred, w = pipe(hist, now)
                except InputError as e:     # a user without context at that hour
                    log.debug("metric request user %d %02d:00 skipped: %s", ui, h, e)
                    continue
                preds.append(pred)
                truths.append(self.sample.truth(ui, w))
        return preds, request_metric(preds, truths)

    # -- cases --
    def cases(self) -> list[Case]:
        engines = {"torch": torch_cases, "onnxruntime": ort_cases, "tensorrt": tensorrt_cases, "llama.cpp": llm_cases}
        out: list[Case] = []
        for name, make in engines.items():
            if name in self.cfg.engines:
                out += make(self)
        return out

    def component_case(self, net: str, engine: str, version: str, prec: str, backend: Any, files: Sequence[Path],
                       *, provider: str, device: str = "cpu", threads: int = 1, spinning: bool | None = None,
                       export_parity: Any = None, **kw: Any) -> Case:
        """One network of ``backend`` on the request's inputs; parity vs the torch reference."""
        feed, ref = self.feeds[net], self.ref[net]

        def parity() -> dict[str, Any]:
            got = backend.run(net, feed)[0]
            metric, value = component_metric(net, got, ref)
            d = {"reference": REFERENCE, "max_abs_diff": max_abs_diff(got, ref), "metric": metric, "value": value}
            return d if export_parity is None else {**d, "export_time": export_parity}

        return Case(NETS[net], engine, version, prec, backend.bind(net, feed), provider=provider,
                    provider_used=backend.providers().get(net), device=device, threads=threads, spinning=spinning,
                    batch=self.cfg.batch, shapes=shapes_of(feed), artifact=repo_relative(files),
                    artifact_bytes=total_bytes(files), parity=parity, **kw)

    def request_case(self, engine: str, version: str, precision: str, pipe: SessionPipe, provider: str, threads: int,
                     spinning: bool | None, files: Sequence[Path], *, generated: bool = False,
                     component: str = "request_profile_cached", timing: TimingConfig | None = None,
                     notes: str = "", with_parity: bool = True) -> Case:
        """One full request of ``pipe`` (profile text cached, or ``generated`` by the Session's LLM)."""
        hist, now, text = self.hist, self.now, self.text
        fn = (lambda: pipe(hist, now)) if generated else (lambda: pipe(hist, now, profile_text=text))

        def parity() -> dict[str, Any]:
            ref_pred, _ = self.torch_pipe(hist, now, profile_text=text)
            got, _ = pipe(hist, now, profile_text=text)
            d: dict[str, Any] = {"reference": "the runtime Session on the torch eager fp32 backend (same seed)",
                                 "max_abs_diff": max_abs_diff(got, ref_pred)}
            if self.cfg.metric:
                if not hasattr(self, "_torch_metric"):
                    self._torch_preds, self._torch_metric = self.request_eval(self.torch_pipe)
                preds, m = self.request_eval(pipe)
                d.update({"metric": "short_term_active_mae", "value": m["active_mae"],
                          "reference_value": self._torch_metric["active_mae"], "mae": m["mae"],
                          "reference_mae": self._torch_metric["mae"], "n_requests": len(preds),
                          "metric_data": "REAL Tsinghua 6-user sample, next 1 h, featurized scale",
                          "max_abs_diff_all_requests": None if generated else max(
                              (max_abs_diff(a, b) for a, b in zip(preds, self._torch_preds)), default=None)})
            return d

        rq = pipe.req

        def post(_t: Timing) -> dict[str, Any]:
            st = pipe.stage_s[1:] or pipe.stage_s             # drop the first (warm-up) call
            keys = sorted({k for x in st for k in x})
            return {"request": {"sampler": rq.sampler, "steps": rq.steps, "n_samples": rq.n_samples, "seed": rq.seed,
                                "task": rq.task, "user_index": rq.user_index, "hour": rq.hour,
                                "stage_ms_median": {k: round(1e3 * float(np.median([x.get(k, 0.0) for x in st])), 3)
                                                    for k in keys}}}

        return Case(component, engine, version, precision, fn, provider=provider,
                    provider_used=pipe.s.report()["providers"], threads=threads, spinning=spinning, batch=1,
                    shapes={"history_events": [len(hist)], "window": list(self.window.x.shape)},
                    artifact=repo_relative(files), artifact_bytes=total_bytes(files),
                    parity=parity if with_parity else None, timing=timing, post=post,
                    notes=notes or f"runtime Session.complete(history, {rq.task!r}, text=cached profile) on the "
                                   f"{pipe.s.backend.name} backend: window, prior, (SBERT embedding "
                                   f"{'cached with the profile' if pipe.embedding_cached else 'computed'}), profile "
                                   f"MLP, mask, {rq.sampler} {rq.steps} steps x {rq.n_samples} draws")

    def providers(self) -> list[str]:
        """The onnxruntime EPs to measure: ``--providers`` among the available ones (the others: a skip line)."""
        from umask.runtime.engines.ort import available_providers

        avail = available_providers()
        want = self.cfg.providers or tuple(avail)
        for p in want:
            if p not in avail:
                self.skipped.append(f"onnxruntime provider {p}: not available here (available: {avail})")
        return [p for p in want if p in avail]


def run(cfg: HarnessConfig, command: str = "", *, max_load: float | None = None,
        wait_load_s: float = 1800.0) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Build and measure every configuration; returns (rows, meta, skipped)."""
    from tqdm.auto import tqdm

    os.environ.setdefault("OMP_NUM_THREADS", str(max(cfg.threads)))
    t_start = time.perf_counter()
    h = Harness(cfg)
    cases = h.cases()
    if not cases:
        raise SystemExit("no configuration to measure (see the skip lines): " + "; ".join(h.skipped))
    la_wait = wait_for_quiet(max_load, wait_load_s) if max_load is not None else None
    machine = machine_info()
    from umask.runtime.engines.ort import cpu_int8_caps

    env = {"git_commit": git_commit(), "cpu_int8": cpu_int8_caps(),
           "machine_tag": f"{machine['cpu']} x{machine['logical_cores']}" + (f", {machine['gpu']}" if machine['gpu']
                                                                              else "")}
    load_before = load_average()
    n_burn = burn_in(cases[0].fn, cfg.timing.burn_in_s) if cfg.timing.burn_in_s > 0 else 0
    rows = []
    for c in tqdm(cases, desc="latency rows", unit="row"):
        log.info("measuring %s", c.name)
        rows.append(run_case(c, cfg.timing, env))
    peer_meta = None
    if cfg.peers:            # same run, after the harness rows: its own interleaved onnxruntime / peer blocks
        from umask.bench.latency import peers

        pr = peers.run(cfg.bundle, [BUNDLE_PRECISION.get(p, p) for p in cfg.precisions],
                       rounds=6 if cfg.quick else 40, block=2 if cfg.quick else 5,
                       repetitions=cfg.timing.repetitions, threads=min(cfg.threads))
        for r in pr["rows"]:
            r["notes"] = f"peers run (interleaved with its own onnxruntime rows); {r['notes']}"
            r["name"] = f"{r['name']}/peers-run"
        rows += pr["rows"]
        h.skipped += pr["skipped"]
        peer_meta = {"ratios": pr["meta"]["ratios"], "versions": pr["meta"]["versions"], "notes": pr["meta"]["notes"]}
    load_after = load_average()
    meta = {
        "command": command, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": env["git_commit"], "machine": machine, "cpu_int8": env["cpu_int8"], "versions": h.vers,
        "load_before": load_before, "load_after": load_after, "load_when_waited": la_wait,
        "loaded": bool(load_before and load_before[0] >= 1.0) or bool(load_after and load_after[0] >= 1.5),
        "mode": "quick (smoke)" if cfg.quick else "full", "timing": asdict(cfg.timing),
        "burn_in": {"seconds": cfg.timing.burn_in_s, "calls": n_burn, "of": cases[0].name},
        "bundle": str(cfg.bundle) if cfg.bundle else None,
        "bundle_created": h.manifest.get("created_utc"),
        "bundle_onnx_sha256": bundle_fingerprint(h.manifest),
        "checkpoint": str(getattr(h, "ckpt", None)),
        "request": {**asdict(cfg.request), "description": cfg.request.describe()},
        "ratios": request_ratios(rows), "peers": peer_meta, "wall_seconds": round(time.perf_counter() - t_start, 1),
        "notes": [
            "Latency in ms per call (a request row: one full request). Peak RSS is the process's resident peak "
            "while the row ran (every model loaded so far included).",
            "Component inputs come from the benchmarked REAL request window (tiled to the batch); the denoiser "
            "row is one DiT call at t = 999 (the sampler's first step).",
            "Request rows run the runtime Session itself on each network backend (torch, onnxruntime, TensorRT).",
            "Parity: vs torch eager fp32 on the same inputs; 'export_time' (JSON) repeats the manifest's figures.",
            "Data: REAL Tsinghua 6-user one-day sample (data/tsinghua_app_usage); the model was trained on "
            "SYNTHETIC users (see the checkpoint's config).",
        ] + h.notes,
    }
    return rows, meta, list(dict.fromkeys(h.skipped))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m umask.bench.latency.harness`` (benchmarks/latency/cli.py)."""
    from umask.bench.latency.cli import main as cli_main

    return cli_main(argv)


__all__ = ["DEFAULT_OUT", "HarnessConfig", "Harness", "run", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
