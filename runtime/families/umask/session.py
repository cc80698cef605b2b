"""The on-device Session: a verified bundle + a raw event history -> profile, mask, completion, predictions.

numpy + onnxruntime + tokenizers only (llama-cpp-python optional, through ``umask.runtime.engines.llama``);
never torch, no network I/O::

    s = Session.open("artifacts/bundles/small", precision="int8-qdq", threads=1)
    s.predict_short("events.csv")          # next hour: traffic, apps, location (JSON-ready dict)
    s.recommend_apps("events.csv", k=5)     # cold-start recommendation
    s.report()                              # what actually ran (providers, precision, threads)

The networks run on a pluggable `NetworkBackend` (``backend=``; default: `OrtBackend` over the
bundle's ONNX files of ``precision``, onnxruntime options from runtime/engines/ort.py). The latency
harness times this same Session over a torch reference and TensorRT backends.

Pipeline of one request (each stage timed, see `last_timings`):
``window`` (runtime/history.build_window: layout, featurization, avail / target of the task) ->
``profile`` (template text y_u, an LLM text when the bundle has GGUF files and llama_cpp imports,
or a caller's text) -> ``sbert`` (tokenizer.json + SBERT ONNX) -> ``profile_mlp`` (eq. 24, h_u) ->
``mask`` (mask generator ONNX, deterministic evaluation mask, eqs. 5-18) -> ``sample``
(numpy DDIM / DPM-Solver++(2M) over the DiT ONNX, model space = featurized x * x_scale; the mean
of ``n_samples`` completions, exact evidence) -> task-specific decoding.

Verified loading: `Session.open` checks the bundle's integrity AND its ed25519 signature by a trusted
key (`umask.runtime.core.signing.verify_bundle`; ``trusted_keys=`` or ``$UMASK_TRUSTED_KEYS``; an
unsigned bundle only with the explicit ``allow_unsigned=True``). Every file is then read through
`read_verified` (read once, size + sha256 of exactly those bytes): the ONNX networks go to
onnxruntime as bytes, the tokenizer as text, the catalog tables as bytes; the GGUF model by
`verified_path` (llama.cpp opens paths). Each network's I/O signature as onnxruntime loaded it must
match the manifest's (names, element types, fixed dimensions).

Bounds: `umask.runtime.core.limits.RequestLimits` (``limits=``) bounds threads, steps x samples, the
profile text, the embedding cache (LRU), ``now_ts`` past the history and the decoded outputs;
every failure is a `UmaskError` (onnxruntime's own exceptions are translated by the backend), and
every task output is finite, range-checked and valid JSON (`check_output`).

Determinism: the sampler noise comes from ``numpy.random.default_rng(SeedSequence([seed, sample]))``;
the same seed, history and bundle give bit-identical outputs, from any thread. onnxruntime's
``InferenceSession.run`` is thread-safe; the Session holds no per-request state outside
thread-locals (timings) and a lock-protected embedding cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from umask.runtime.core.bundle import BundleError, read_manifest, read_verified, verified_path
from umask.runtime.core.catalog import load_llmapp_catalog_bytes
from umask.runtime.core.errors import InputError, LimitError, UmaskError
from umask.runtime.core.events import EventLog, format_compact_time
from umask.runtime.core.featurize import (ChannelLayout, FeatureConfig, decode_app_counts, decode_traffic,
                                          encode_app_counts, encode_traffic)
from umask.runtime.core.history import TASK_NAMES, Window, WindowSpec, as_timestamp, build_window, load_history
from umask.runtime.core.limits import REQUEST_LIMITS, RequestLimits
from umask.runtime.core.signing import verify_bundle as verify_signed
from umask.runtime.families.umask.checks import (NETWORK_IO, NETWORKS, _check_int, bundle_network_files, bundle_networks,
                                                 check_io_signature, check_model_sections, check_output, check_text,
                                                 manifest_signature, request_args)
from umask.runtime.families.umask.prior import check_prior_note, dit_extra_feeds, dit_extra_inputs, history_prior
from umask.runtime.families.umask.profile_text import build_prompt, template_profile
from umask.runtime.core.tessellation import CityGrid, station_cells
from umask.runtime.engines.backends import NetworkBackend, OrtBackend
from umask.runtime.engines.ort import PROVIDER_ALIASES
from umask.runtime.engines.samplers import Schedule, make_sampler
from umask.runtime.session import FamilySession

log = logging.getLogger(__name__)

MAX_STEPS = REQUEST_LIMITS.max_steps
MAX_SAMPLES = REQUEST_LIMITS.max_samples


@dataclass
class Completion:
    """A clamped completion of one window (featurized scale)."""

    window: Window
    x: np.ndarray              # (C, T, H, W) float32 mean of n_samples completions, exact evidence
    mask: np.ndarray           # (T, H, W) bool evidence mask
    k: int
    h_u: np.ndarray            # (cond_dim,)
    sampler: str
    steps: int
    n_samples: int
    seed: int
    timings: dict[str, float] = field(default_factory=dict)


class Session(FamilySession):
    """See the module docstring. Build with `Session.open` (or `umask.runtime.session.Session.open`)."""

    family = "umask"

    def __init__(self, root: Path, manifest: dict[str, Any], *, providers: Sequence[str] | None, threads: int,
                 inter_op_threads: int, allow_spinning: bool, precision: str, profile_source: str,
                 llm_threads: int, sbert_precision: str = "fp32", backend: NetworkBackend | None = None,
                 llm: Any = None, limits: RequestLimits = REQUEST_LIMITS) -> None:
        if not isinstance(limits, RequestLimits):
            raise InputError(f"limits must be a RequestLimits, got {type(limits).__name__}")
        self.limits = limits
        self.root, self.manifest, self.precision = root, manifest, precision
        threads = _check_int("threads", threads, 1, limits.max_threads)
        inter_op_threads = _check_int("inter_op_threads", inter_op_threads, 1, limits.max_threads)
        llm_threads = _check_int("llm_threads", llm_threads, 1, limits.max_threads)
        if providers is not None and (isinstance(providers, (str, bytes)) or not all(
                isinstance(p, str) and p for p in providers)):
            raise InputError(f"providers must be a list of provider names (cpu, cuda, tensorrt, ...), got {providers!r:.80}")
        if not isinstance(allow_spinning, bool):
            raise InputError(f"allow_spinning must be true or false, got {allow_spinning!r:.40}")
        self._check_model_sections(root, manifest)
        # optional DiT inputs (model.umask: prior, dit_calendar, dit_epos, dit_hb): a prior model's deterministic
        # prior is built from the history with the training function (runtime/families/umask/prior.py)
        umask_cfg = manifest["model"].get("umask") or {}
        self.prior_kind, self.dit_extra = str(umask_cfg.get("prior", "none")), dit_extra_inputs(umask_cfg)
        check_prior_note(self.prior_kind, (manifest.get("parity_inputs") or {}).get("prior"), f"{root}/manifest.json")
        rels = bundle_network_files(root, manifest, precision, sbert_precision)
        self.providers_requested = list(providers or ["CPUExecutionProvider"])
        self.threads, self.inter_op_threads, self.allow_spinning = threads, inter_op_threads, allow_spinning
        if backend is None:
            # every ONNX file as the verified bytes (read once, hashed, handed to onnxruntime)
            blobs = {n: read_verified(root, rel, manifest) for n, rel in rels.items()}
            backend = OrtBackend(blobs, providers=providers, threads=threads, inter_op_threads=inter_op_threads,
                                 allow_spinning=allow_spinning, origins={n: f"{root}/{rel}" for n, rel in rels.items()})
        elif not isinstance(backend, NetworkBackend):
            raise InputError(f"backend must be a NetworkBackend, got {type(backend).__name__}")
        missing = [n for n in rels if not backend.has(n)]
        if missing:
            raise InputError(f"the {backend.name} backend cannot run the networks {missing} of {root}")
        if hasattr(backend, "io_signature"):
            for n, rel in rels.items():
                check_io_signature(f"{root}/{rel}", n, manifest_signature(manifest, precision, n, sbert_precision),
                                   backend.io_signature(n), dit_extra=self.dit_extra)
        self.backend = backend
        self.providers_missing = list(getattr(backend, "providers_missing", []))
        sb = manifest.get("sbert", {})
        self._tok = None
        self.sbert_file: str | None = rels.get("sbert")
        if self.sbert_file is not None:
            from tokenizers import Tokenizer

            raw = read_verified(root, sb["tokenizer"], manifest)
            try:
                self._tok = Tokenizer.from_str(raw.decode("utf-8"))
            except Exception as e:  # noqa: BLE001 - tokenizers raises its own Exception types
                raise BundleError(f"{root}/{sb['tokenizer']}: not a tokenizer.json ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:200]})") from None
            self._tok.enable_truncation(max_length=int(sb.get("max_len", 128)))
            self._tok.no_padding()
        feat = manifest["featurization"]
        self.fcfg = FeatureConfig.from_dict(feat["feature_config"])
        self.spec = WindowSpec.from_dict(feat["window"])
        self.catalog = self._load_catalog(root, manifest)
        self.channels = ChannelLayout.for_catalog(self.catalog)
        if self.channels.n_channels != feat["channels"]["n_channels"]:
            raise BundleError(f"{root}: catalog gives {self.channels.n_channels} channels, manifest "
                              f"{feat['channels']['n_channels']}")
        self.grid = CityGrid.from_stations(self.catalog.stations, self.fcfg.cell_m)
        self.cells = station_cells(self.catalog.stations, self.grid)
        mdl = manifest["model"]
        self.x_scale = np.asarray(mdl["x_scale"], np.float32).reshape(1, -1, 1, 1, 1)
        self.mask_mode = mdl["mask_mode"]
        tasks = list(mdl.get("tasks") or [])
        unknown = [t for t in mdl.get("all_evidence_tasks", []) if t not in tasks]
        if unknown:
            raise BundleError(f"{root}: manifest model.all_evidence_tasks names unknown task(s) {unknown}")
        # tasks whose evidence is every available coordinate (the learned mask discarded evidence that helps)
        self.all_evidence = frozenset(tasks.index(t) for t in mdl.get("all_evidence_tasks", []))
        self.rho_init = list(mdl["rho_init"])
        self.use_profile = bool(mdl["use_profile"])
        self.cond_dim, self.sbert_dim = int(mdl["cond_dim"]), int(mdl["sbert_dim"])
        self.n_coords = int(mdl["maskgen"]["T"] * mdl["maskgen"]["H"] * mdl["maskgen"]["W"])
        diff = manifest["diffusion"]
        self.schedule = Schedule(np.asarray(diff["alphas_cumprod"], np.float32))
        self.defaults = dict(diff["defaults"])
        self.profile_source = profile_source
        self.llm_threads = llm_threads
        self._llm: Any = llm                 # a caller's profiler (generate(prompt) -> str) or the bundle's GGUF
        self._llm_given = llm is not None
        self._llm_lock = threading.RLock()   # re-entered: profile() holds it while _llm_profiler() builds the model
        self._emb_cache: OrderedDict[str, np.ndarray] = OrderedDict()   # LRU, limits.max_cache_entries
        self._cache_lock = threading.Lock()
        self._local = threading.local()
        self._traffic_max = float(encode_traffic(np.array(limits.max_traffic_bytes_per_slot)))
        self._app_max = float(encode_app_counts(np.array(limits.max_app_records_per_slot)))

    _check_model_sections = staticmethod(check_model_sections)

    @staticmethod
    def _load_catalog(root: Path, manifest: dict[str, Any]) -> Any:
        """The catalog tables from their verified bytes (``featurization.catalog.files``, else catalog/*)."""
        cat = manifest["featurization"].get("catalog")
        rels = list(cat["files"]) if cat else sorted(r for r in manifest["files"] if r.startswith("catalog/"))
        if not rels:
            raise BundleError(f"{root}: the bundle lists no catalog tables")
        tables = {rel.rsplit("/", 1)[-1]: read_verified(root, rel, manifest) for rel in rels}
        return load_llmapp_catalog_bytes(tables, f"{root}/catalog")

    # ------------------------------------------------------------------ construction / report
    @classmethod
    def open(cls, bundle: str | Path, *, providers: Sequence[str] | None = None, threads: int = 1,
             inter_op_threads: int = 1, allow_spinning: bool = False, precision: str = "fp32",
             verify: bool = True, profile_source: str = "auto", llm_threads: int = 1,
             sbert_precision: str = "fp32", backend: NetworkBackend | None = None, llm: Any = None,
             trusted_keys: Any = None, allow_unsigned: bool = False,
             limits: RequestLimits = REQUEST_LIMITS) -> Session:
        """Verify ``bundle`` (manifest + every file's size and sha256; ``verify=False`` checks sizes only)
        and load the networks of ``precision`` on ``providers`` (names or aliases cpu / cuda / tensorrt;
        unavailable ones fall back to CPU, see `report`). ``threads``: onnxruntime intra-op threads;
        ``allow_spinning``: False (default) stops idle onnxruntime threads from busy-waiting, which
        otherwise slows the host app down. ``profile_source``: auto | template | llm. ``sbert_precision``:
        fp32 (default) or int8 (the export's dynamic-int8 encoder, cosine >= 0.99 to fp32 on the verify
        texts; h_u moves slightly, which can flip near-tied evidence picks of the mask). ``backend``: the
        `NetworkBackend` that runs the networks (default: onnxruntime over the bundle's files; ``providers``,
        ``threads`` and ``allow_spinning`` configure that one). ``llm``: a profiler object with
        ``generate(prompt) -> str`` used instead of the bundle's GGUF model. ``trusted_keys``: public keys
        (files, folders, PEM bytes or key objects; default ``$UMASK_TRUSTED_KEYS``) one of which must have
        signed the manifest; ``allow_unsigned=True`` is the explicit opt-out for a bundle without
        ``manifest.sig`` (a present signature is always checked). ``limits``: the request bounds."""
        if sbert_precision not in ("fp32", "int8"):
            raise InputError(f"sbert_precision must be fp32 or int8, got {sbert_precision!r}")
        if profile_source not in ("auto", "template", "llm"):
            raise InputError(f"profile_source must be auto, template or llm, got {profile_source!r}")
        if not isinstance(allow_unsigned, bool) or not isinstance(verify, bool):
            raise InputError("allow_unsigned and verify must be true or false")
        if not isinstance(bundle, (str, Path)):
            raise InputError(f"bundle must be a directory path, got {type(bundle).__name__}")
        try:
            root = Path(bundle)
            root.is_dir()
        except (ValueError, OSError) as e:
            raise InputError(f"bundle {str(bundle)[:80]!r}: not a usable path ({e})") from None
        # verify=False skips the whole-file sha256 pass here; every file the session loads is still hashed
        # by read_verified as it is read
        manifest = verify_signed(root, trusted_keys=trusted_keys, allow_unsigned=allow_unsigned, checksums=verify)
        return cls(root, manifest, providers=providers, threads=threads, inter_op_threads=inter_op_threads,
                   allow_spinning=allow_spinning, precision=precision, profile_source=profile_source,
                   llm_threads=llm_threads, sbert_precision=sbert_precision, backend=backend, llm=llm, limits=limits)

    def report(self) -> dict[str, Any]:
        """What actually runs: providers per network, precision, thread settings, LLM availability."""
        return {"bundle": str(self.root), "precision": self.precision,
                "providers_requested": self.providers_requested, "providers_missing": self.providers_missing,
                "backend": self.backend.name, "providers": self.backend.providers(),
                "threads": {"intra_op": self.threads, "inter_op": self.inter_op_threads,
                            "allow_spinning": self.allow_spinning},
                "sbert": self.sbert_file, "llm": self._llm_available(),
                "mask_mode": self.mask_mode, "prior": self.prior_kind, "sampler_defaults": self.defaults,
                "limits": {n: getattr(self.limits, n) for n in RequestLimits.DOCS}}

    def describe(self) -> dict[str, Any]:
        """`report` with the family (FamilySession)."""
        return {"family": self.family, **self.report()}

    def close(self) -> None:
        """Release the network backend and the LLM; requests fail afterwards."""
        self.backend.close()
        with self._llm_lock:
            self._llm = None
            self._llm_given = False

    @property
    def last_timings(self) -> dict[str, float]:
        """Seconds per stage of this thread's last request (window, profile, sbert, profile_mlp, mask, sample)."""
        return dict(getattr(self._local, "timings", {}))

    def _tick(self, stage: str, t0: float) -> float:
        t = time.perf_counter()
        tm = self._local.__dict__.setdefault("timings", {})
        tm[stage] = tm.get(stage, 0.0) + (t - t0)
        return t

    def _reset(self) -> None:
        self._local.timings = {}

    # ------------------------------------------------------------------ inputs
    def _history(self, history: EventLog | str | Path) -> EventLog:
        if isinstance(history, (str, Path)):
            try:
                return load_history(history)
            except UmaskError:
                raise
            except (ValueError, OSError) as e:   # a NUL in the path, a name too long, a folder, ...
                raise InputError(f"history {str(history)[:120]!r}: unreadable ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:200]})") from None
        if not isinstance(history, EventLog):
            raise InputError(f"history must be an EventLog or a file path, got {type(history).__name__}")
        return history

    def window(self, history: EventLog | str | Path, task: str, *, now_ts: int | None = None,
               missing: np.ndarray | None = None) -> Window:
        t0 = time.perf_counter()
        if not isinstance(task, str) or task not in TASK_NAMES:
            raise InputError(f"unknown task {task!r:.40}; choose from {TASK_NAMES}")
        if now_ts is not None:
            now_ts = as_timestamp(now_ts, "now_ts")
        if missing is not None and not isinstance(missing, np.ndarray):
            raise InputError(f"missing must be a numpy bool array, got {type(missing).__name__}")
        ev = self._history(history)
        w = build_window(ev, self.catalog, self.fcfg, self.spec, task, now_ts=now_ts,
                         missing=missing, grid=self.grid, cells=self.cells)
        gap_s = w.now_ts - int(np.max(ev.ts))
        if gap_s > self.limits.max_idle_hours * 3600:
            raise InputError(f"now_ts={now_ts}: {gap_s / 3600:.1f} h ({gap_s / 86400:.1f} days) after the history's "
                             f"last event; every slot in between would count as observed inactivity "
                             f"(RequestLimits.max_idle_hours = {self.limits.max_idle_hours})")
        self._tick("window", t0)
        return w

    # ------------------------------------------------------------------ profile / embedding
    def _llm_available(self) -> bool:
        if self._llm_given:
            return True
        llm = self.manifest.get("llm", {})
        if llm.get("status") != "present":
            return False
        try:
            from umask.runtime.engines import llama as llm_mod  # noqa: F401
        except ImportError:
            return False
        return bool(getattr(llm_mod, "llama_cpp_available", lambda: False)())

    def _llm_profiler(self) -> Any:
        with self._llm_lock:
            if self._llm is None:
                from umask.runtime.engines.llama import LlamaProfiler

                llm = self.manifest["llm"]
                if llm.get("model"):          # schema: one model (merged quant, or base + LoRA adapter)
                    base, lora = [self.root / llm["model"]], ([self.root / llm["lora"]] if llm.get("lora") else [])
                else:                         # older bundles: files listed only
                    files = [self.root / f for f in llm["files"]]
                    base = [f for f in files if "lora" not in f.name.lower()]
                    lora = [f for f in files if "lora" in f.name.lower()]
                if not base:
                    raise BundleError(f"{self.root}: the bundle's llm/ has no base GGUF model")
                # llama.cpp opens paths: re-hash each file right before the open (verified_path)
                rel = [p.relative_to(self.root).as_posix() for p in base[:1] + lora[:1]]
                paths = [verified_path(self.root, r, self.manifest) for r in rel]
                self._llm = LlamaProfiler(paths[0], paths[1] if len(paths) > 1 else None, n_threads=self.llm_threads)
            return self._llm

    def profile(self, history: EventLog | str | Path | Window, *, source: str | None = None,
                text: str | None = None, now_ts: int | None = None) -> dict[str, Any]:
        """The U-SCOPE profile y_u: {"text", "source", "prompt"}. ``text`` given: that text (cached /
        user-edited). source auto: the LLM if the bundle has GGUF files and llama_cpp imports, else the
        rule-based template; "llm" insists on the LLM."""
        t0 = time.perf_counter()
        if text is not None:
            return {"text": check_text(text, self.limits), "source": "text", "prompt": None}
        if source is not None and source not in ("auto", "template", "llm"):
            raise InputError(f"source must be auto, template or llm, got {source!r:.40}")
        w = history if isinstance(history, Window) else self.window(history, "long_term", now_ts=now_ts)
        if w.stats is None:
            return {"text": None, "source": "none", "prompt": None}
        src = source or self.profile_source
        prompt = build_prompt(w.stats)
        if src == "llm" or (src == "auto" and self._llm_available()):
            if not self._llm_available():
                raise BundleError("profile_source 'llm' needs GGUF files in the bundle and llama_cpp installed")
            with self._llm_lock:
                out = self._llm_profiler().generate(prompt)
            if not isinstance(out, str) or not out.strip():
                raise BundleError(f"{self.root}: the profiling LLM returned no text ({type(out).__name__})")
            res = {"text": out[:self.limits.max_text_chars], "source": "llm", "prompt": prompt}
        else:
            res = {"text": template_profile(w.stats), "source": "template", "prompt": prompt}
        self._tick("profile", t0)
        return res

    def tokenize(self, text: str) -> dict[str, np.ndarray]:
        """The SBERT encoder's feed of one text: {"input_ids", "attention_mask"} (1, n) int64, no padding."""
        if self._tok is None:
            raise BundleError(f"{self.root}: the bundle has no SBERT encoder")
        enc = self._tok.encode(check_text(text, self.limits))
        return {"input_ids": np.asarray([enc.ids], np.int64),
                "attention_mask": np.asarray([enc.attention_mask], np.int64)}

    def clear_embedding_cache(self) -> None:
        """Forget the cached SBERT embeddings (the next request embeds its profile text again)."""
        with self._cache_lock:
            self._emb_cache.clear()

    def sbert(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) SBERT embeddings (normalized) of ``texts`` through the bundle's ONNX encoder."""
        if self._tok is None:
            raise BundleError(f"{self.root}: the bundle has no SBERT encoder")
        if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
            raise InputError(f"texts must be a list of strings, got {type(texts).__name__}")
        if len(texts) > self.limits.max_cache_entries:
            raise LimitError(None, None, f"{len(texts)} texts in one call; the limit is "
                                         f"{self.limits.max_cache_entries} (RequestLimits.max_cache_entries)")
        texts = [check_text(t, self.limits, f"texts[{i}]") for i, t in enumerate(texts)]
        out = np.zeros((len(texts), self.sbert_dim), np.float32)
        todo = []
        with self._cache_lock:
            for i, t in enumerate(texts):
                if t in self._emb_cache:
                    self._emb_cache.move_to_end(t)
                    out[i] = self._emb_cache[t]
                else:
                    todo.append(i)
        t0 = time.perf_counter()
        for i in todo:      # one text at a time: no padding, so the output equals the unpadded torch path
            e = np.asarray(self.backend.run("sbert", self.tokenize(texts[i]))[0][0], np.float32)
            if e.shape != (self.sbert_dim,) or not np.all(np.isfinite(e)):
                raise BundleError(f"{self.root}/{self.sbert_file}: the SBERT encoder gave a {e.shape} embedding "
                                  f"with non-finite values or the wrong size (manifest sbert_dim {self.sbert_dim})")
            out[i] = e
            with self._cache_lock:
                self._emb_cache[texts[i]] = e
                self._emb_cache.move_to_end(texts[i])
                while len(self._emb_cache) > self.limits.max_cache_entries:
                    self._emb_cache.popitem(last=False)
        self._tick("sbert", t0)
        return out

    def embed(self, history: EventLog | str | Path | Window | None = None, *, text: str | None = None,
              now_ts: int | None = None) -> np.ndarray:
        """h_u (cond_dim,) float32 (eq. 24): profile text -> SBERT -> profile MLP; the MLP's learned 'no profile'
        embedding without a text, without SBERT in the bundle, or for a model trained without U-SCOPE."""
        txt = None if text is None else check_text(text, self.limits)
        if txt is None and history is not None and self.use_profile and self._tok is not None:
            txt = self.profile(history, now_ts=now_ts)["text"]
        emb = np.zeros((1, self.sbert_dim), np.float32)
        present = np.zeros((1,), np.float32)
        if txt is not None and self.use_profile and self._tok is not None:
            emb = self.sbert([txt])
            present[:] = 1.0
        t0 = time.perf_counter()
        h = np.asarray(self.backend.run("profile_mlp", {"emb": emb, "present": present})[0][0], np.float32)
        if h.shape != (self.cond_dim,) or not np.all(np.isfinite(h)):
            raise BundleError(f"{self.root}: the profile MLP gave h_u of shape {h.shape} with non-finite values or "
                              f"the wrong size (manifest cond_dim {self.cond_dim})")
        self._tick("profile_mlp", t0)
        return h

    # ------------------------------------------------------------------ mask / completion
    def _mask(self, w: Window, h_u: np.ndarray, seed: int) -> tuple[np.ndarray, int, np.ndarray | None]:
        """(evidence mask (T, H, W) bool, budget k, the mask generator's h_b when the bundle's graph gives it)."""
        t0 = time.perf_counter()
        avail = w.avail[None]
        h_b = None
        # a task of the bundle's all-evidence policy takes the "none" path instead of the learned mask
        # (as UMask.evidence: the policy replaces the learned mask only)
        mode = "none" if self.mask_mode == "learned" and w.task_id in self.all_evidence else self.mask_mode
        if mode == "learned" or "h_b" in self.dit_extra:   # a DiT taking h_b needs the generator
            feed = {"x": w.x[None], "avail": avail, "h_u": h_u[None], "task": np.array([w.task_id], np.int64),
                    "e_pos": w.e_pos[None], "gumbel": np.zeros((1, self.n_coords), np.float32)}
            outs = self.backend.run("maskgen", feed)
            hard, k, h_b = np.asarray(outs[0]), outs[2], (np.asarray(outs[4], np.float32) if len(outs) > 4 else None)
        if mode == "learned":
            if hard.shape[-3:] != avail.shape[2:] or hard.size != avail[0, 0].size:
                raise BundleError(f"{self.root}: the mask generator gave a mask of shape {hard.shape}, want "
                                  f"{avail.shape[2:]}")
            k = np.asarray(k).reshape(-1)
            if k.size < 1 or not np.isfinite(k[0]):
                raise BundleError(f"{self.root}: the mask generator gave no finite budget k")
            hard, k = hard.reshape(avail.shape[2:]) > 0.5, int(k[0])
        elif mode == "random":     # the ablation: a seeded random subset of avail, base budget
            a = avail[0, 0].reshape(-1) > 0.5
            n = int(a.sum())
            k = min(max(int(np.round(self.rho_init[w.task_id] * n)), 1 if n else 0), n)
            rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
            u = np.where(a, rng.random(a.size), 2.0)
            hard = np.zeros(a.size, bool)
            hard[np.argsort(u, kind="stable")[:k]] = True
            hard = hard.reshape(avail.shape[2:])
        else:
            hard = avail[0, 0] > 0.5
            k = int(hard.sum())
        self._tick("mask", t0)
        return hard, k, h_b

    def mask(self, history: EventLog | str | Path, task: str, *, now_ts: int | None = None,
             text: str | None = None, missing: np.ndarray | None = None) -> dict[str, Any]:
        """The evidence mask of ``task`` for this history: {"mask" (T, H, W) bool, "k", "n_avail", "ratio"}."""
        self._reset()
        w = self.window(history, task, now_ts=now_ts, missing=missing)
        h = self.embed(w, text=text)
        hard, k, _ = self._mask(w, h, 0)
        n = int(w.avail.sum())
        return {"mask": hard, "k": k, "n_avail": n, "ratio": k / n if n else 0.0, "window": w}

    def complete(self, history: EventLog | str | Path, task: str, *, steps: int | None = None,
                 sampler: str | None = None, seed: int = 0, n_samples: int | None = None,
                 now_ts: int | None = None, text: str | None = None, missing: np.ndarray | None = None) -> Completion:
        """Mean of ``n_samples`` clamped completions of the task window (featurized scale, exact evidence).
        A prior model's bundle defaults to ``steps=1``: the DiT's x0 estimate at t = N-1 (one network call
        per sample, UMask.complete(point="first_x0")); more steps run the full sampler on top of the prior."""
        args = request_args(self.limits, self.defaults, self.schedule.num_train_steps, steps, n_samples, sampler, seed,
                            task)        # the task's own defaults (manifest diffusion.defaults.by_task)
        self._reset()
        ev = self._history(history)
        w = self.window(ev, task, now_ts=now_ts, missing=missing)
        return self._complete(w, self.window_prior(ev, w), text, *args)

    def window_prior(self, history: EventLog | str | Path, w: Window) -> np.ndarray | None:
        """The deterministic prior (C, T, H, W) of window ``w`` from the raw history (None without a prior)."""
        if self.prior_kind == "none":
            return None
        t0 = time.perf_counter()
        pr = history_prior(self._history(history), self.catalog, self.fcfg, w, self.spec.context, self.prior_kind)
        self._tick("prior", t0)
        return pr

    def complete_window(self, w: Window, *, prior: np.ndarray | None = None, steps: int | None = None,
                        sampler: str | None = None, seed: int = 0, n_samples: int | None = None,
                        text: str | None = None) -> Completion:
        """`complete` of a prepared `Window` (featurized elsewhere, e.g. a benchmark's protocol window) with
        its ``prior`` (C, T, H, W), required for a prior model (`window_prior`, prior.window_prior)."""
        args = request_args(self.limits, self.defaults, self.schedule.num_train_steps, steps, n_samples, sampler, seed,
                            w.task)
        self._reset()
        return self._complete(w, prior, text, *args)

    def _complete(self, w: Window, prior: np.ndarray | None, text: str | None, steps: int, n_samples: int,
                  sampler: str, seed: int) -> Completion:
        C, T, H, W = w.x.shape
        if (self.prior_kind != "none") != (prior is not None):
            raise InputError(f"this bundle's model has prior {self.prior_kind!r}: a prior (C, T, H, W) is "
                             f"{'required' if prior is None else 'not taken'}")
        if prior is not None and (np.shape(prior) != (C, T, H, W) or not np.all(np.isfinite(prior))):
            raise InputError(f"prior must be a finite array of shape {(C, T, H, W)}, got {np.shape(prior)}")
        h_u = self.embed(w, text=text)
        hard, k, h_b = self._mask(w, h_u, int(seed))
        t0 = time.perf_counter()
        m = hard[None, None].astype(np.float32)                        # (1, 1, T, H, W)
        x_obs = (w.x[None] * self.x_scale * m).astype(np.float32)      # model space
        run = self.backend.run
        task_arr = np.array([w.task_id], np.int64)
        hu = h_u[None].astype(np.float32)
        extra = dit_extra_feeds(self.dit_extra, w, prior, h_b, self.x_scale)

        def denoise(x: np.ndarray, t: int) -> np.ndarray:
            return run("dit", {"x_t": x, "x_obs": x_obs, "mask": m, "t": np.array([t], np.int64),
                                  "h_u": hu, "task": task_arr, **extra})[0]

        smp = make_sampler(sampler, self.schedule)
        acc = np.zeros_like(x_obs, dtype=np.float64)
        for i in range(n_samples):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), i]))
            acc += smp.sample(denoise, x_obs, m, steps, rng=rng)
        mean = (acc / n_samples / self.x_scale).astype(np.float32)[0]
        mean = np.where(np.broadcast_to(hard[None], mean.shape), w.x, mean)   # exact evidence
        if not np.all(np.isfinite(mean)):
            raise BundleError(f"{self.root}: the completion holds NaN/inf: the bundle's networks are broken for "
                              "this input")
        self._tick("sample", t0)
        return Completion(w, mean, hard, k, h_u, sampler, steps, n_samples, int(seed), self.last_timings)

    # ------------------------------------------------------------------ task outputs (JSON-ready)
    def _clip(self, x: np.ndarray) -> np.ndarray:
        """The featurized domain: >= 0, location <= 1, traffic and app channels at most the encodings of
        RequestLimits.max_traffic_bytes_per_slot / max_app_records_per_slot (so decoding stays finite)."""
        x = np.nan_to_num(np.maximum(x, 0.0), nan=0.0, posinf=0.0)
        x[self.channels.location_index] = np.minimum(x[self.channels.location_index], 1.0)
        x[0] = np.minimum(x[0], self._traffic_max)
        x[self.channels.apps] = np.minimum(x[self.channels.apps], self._app_max)
        return x

    def target_prediction(self, c: Completion) -> np.ndarray:
        """(C, Th, H, W) float32: the completion's target slots, clipped to the featurized domain."""
        t0, t1 = c.window.target_slots
        return self._clip(np.array(c.x[:, t0:t1], np.float32))

    def _slot_times(self, w: Window, t0: int, t1: int) -> list[int]:
        ts = w.window_start_ts + np.arange(t0, t1) * w.slot_seconds
        return [int(v) for v in format_compact_time(ts)]

    def _cell_info(self, w: Window, slot: int) -> dict[str, Any]:
        h, wi = divmod(int(slot), self.fcfg.W)
        gy, gx = (int(v) for v in w.layout.cells[h, wi])
        g = self.grid
        info: dict[str, Any] = {"slot": int(slot), "grid_cell": [gy, gx]}
        if gy >= 0:
            rad = np.pi / 180.0
            info["lat"] = round(float(g.lat0 + (gy + 0.5) * g.cell_m / (6_371_008.8 * rad)), 6)
            info["lon"] = round(float(g.lon0 + (gx + 0.5) * g.cell_m / (6_371_008.8 * rad * np.cos(g.lat_ref * rad))), 6)
        if w.stats is not None:
            info["place_type"] = w.stats.slot_place[int(slot)]
        return info

    def _forecast(self, c: Completion, top_apps: int = 5) -> dict[str, Any]:
        w = c.window
        t0, t1 = w.target_slots
        x = self._clip(c.x[:, t0:t1].astype(np.float64))               # (C, Th, H, W)
        traffic = decode_traffic(x[0]).sum(axis=(1, 2))                 # (Th,) bytes
        apps = decode_app_counts(x[self.channels.apps]).sum(axis=(1, 2, 3))   # (K,)
        loc = x[self.channels.location_index].reshape(x.shape[1], -1)   # (Th, H*W)
        names = self.catalog.apps.category_names
        order = np.lexsort((np.arange(len(apps)), -apps))[:top_apps]
        return {"task": w.task, "now": int(format_compact_time(np.array([w.now_ts]))[0]),
                "slot_minutes": self.fcfg.slot_minutes, "slots": self._slot_times(w, t0, t1),
                "traffic_bytes": [round(float(v), 1) for v in traffic],
                "apps": [{"category": names[i], "expected_records": round(float(apps[i]), 3)} for i in order],
                "location": [self._cell_info(w, int(np.argmax(r))) | {"presence": round(float(r.max()), 4)}
                             for r in loc],
                "evidence": {"k": c.k, "n_avail": int(w.avail.sum())}, "sampler": c.sampler, "steps": c.steps,
                "n_samples": c.n_samples, "seed": c.seed, "precision": self.precision}

    def predict_short(self, history: EventLog | str | Path, **kw: Any) -> dict[str, Any]:
        """Short-term prediction: the next ``short_horizon`` slots (1 h for the small model)."""
        return check_output(self._forecast(self.complete(history, "short_term", **kw)), "predict_short")

    def forecast_long(self, history: EventLog | str | Path, **kw: Any) -> dict[str, Any]:
        """Long-term forecast: the next ``horizon`` slots (24 h for the small model)."""
        return check_output(self._forecast(self.complete(history, "long_term", **kw)), "forecast_long")

    def _rank(self, scores: np.ndarray, k: int) -> list[int]:
        k = _check_int("k", k, 1, self.limits.max_k)
        return np.lexsort((np.arange(len(scores)), -scores))[:k].tolist()

    def recommend(self, history: EventLog | str | Path, k_apps: int = 5, k_locations: int = 3,
                  **kw: Any) -> dict[str, list[dict[str, Any]]]:
        """Cold-start recommendations from ONE cold-start completion: ``apps`` (top-k categories by
        expected records in the next horizon) and ``locations`` (top-k layout cells by expected
        active slots)."""
        self._rank(np.zeros(1), k_apps)
        self._rank(np.zeros(1), k_locations)
        c = self.complete(history, "cold_start", **kw)
        t0, t1 = c.window.target_slots
        x = self._clip(c.x[:, t0:t1].astype(np.float64))                  # (C, Th, H, W)
        apps = decode_app_counts(x[self.channels.apps]).sum(axis=(1, 2, 3))  # (K,)
        locs = x[self.channels.location_index].sum(axis=0).reshape(-1)     # (H*W,)
        # only layout slots that hold one of the user's places: an empty slot has no cell to recommend (a user
        # with fewer places than k gets fewer locations)
        placed = np.flatnonzero(np.asarray(c.window.layout.cells)[..., 0].reshape(-1) >= 0)
        names = self.catalog.apps.category_names
        return check_output(
            {"apps": [{"rank": r + 1, "category": names[i], "score": round(float(apps[i]), 4)}
                      for r, i in enumerate(self._rank(apps, min(k_apps, len(apps))))],
             "locations": [{"rank": r + 1, **self._cell_info(c.window, i), "score": round(float(locs[i]), 4)}
                           for r, i in enumerate(placed[self._rank(locs[placed], min(k_locations, len(placed)))]
                                                 if len(placed) else [])]},
            "recommend")

    def recommend_apps(self, history: EventLog | str | Path, k: int = 5, **kw: Any) -> list[dict[str, Any]]:
        """Cold-start app (category) recommendation: top-k by expected records in the next horizon."""
        return self.recommend(history, k_apps=k, k_locations=1, **kw)["apps"]

    def recommend_locations(self, history: EventLog | str | Path, k: int = 3, **kw: Any) -> list[dict[str, Any]]:
        """Cold-start location recommendation: top-k layout cells by expected active slots in the next horizon (only
        slots that hold one of the user's places; fewer than k when the user has fewer)."""
        return self.recommend(history, k_apps=1, k_locations=k, **kw)["locations"]

    def impute(self, history: EventLog | str | Path, missing: np.ndarray | None = None, **kw: Any) -> dict[str, Any]:
        """Fill the ``missing`` (context, H, W) coordinates of the context window (default: the gaps)."""
        c = self.complete(history, "imputation", missing=missing, **kw)
        w = c.window
        x = self._clip(c.x[:, :self.spec.context].astype(np.float64))
        miss = w.target[0, :self.spec.context] > 0.5
        traffic = decode_traffic(x[0]) * miss
        apps = decode_app_counts(x[self.channels.apps]) * miss[None]
        names = self.catalog.apps.category_names
        tot = apps.sum(axis=(1, 2, 3))
        return check_output(
            {"task": "imputation", "now": int(format_compact_time(np.array([w.now_ts]))[0]),
             "n_missing": int(miss.sum()), "window_slots": self._slot_times(w, 0, self.spec.context)[:1],
             "imputed_traffic_bytes_per_slot": [round(float(v), 1) for v in traffic.sum(axis=(1, 2))],
             "imputed_app_records": {names[i]: round(float(tot[i]), 3) for i in np.argsort(-tot)[:5]},
             "evidence": {"k": c.k, "n_avail": int(w.avail.sum())}, "seed": c.seed, "precision": self.precision},
            "impute")

    REQUEST_OPTIONS = ("steps", "sampler", "seed", "n_samples", "now_ts", "text", "missing")

    def run(self, history: EventLog | str | Path, task: str, *, k: int = 5, **kw: Any) -> dict[str, Any]:
        """One JSON-ready request: task short | long | cold | impute (what ``umask run`` prints); ``kw``:
        the options of `complete` (steps, sampler, seed, n_samples, now_ts, text; missing for impute)."""
        t0 = time.perf_counter()
        unknown = sorted(set(kw) - set(self.REQUEST_OPTIONS))
        if unknown:
            raise InputError(f"unknown request options {unknown}; choose from {list(self.REQUEST_OPTIONS)}")
        if task == "short":
            out: Any = self.predict_short(history, **kw)
        elif task == "long":
            out = self.forecast_long(history, **kw)
        elif task == "cold":
            out = self.recommend(history, k_apps=k, k_locations=k, **kw)
        elif task == "impute":
            out = self.impute(history, **kw)
        else:
            raise InputError(f"unknown task {task!r:.40}; choose from short, long, cold, impute")
        return check_output({"result": out, "timings_s": {k_: round(v, 4) for k_, v in self.last_timings.items()},
                             "total_s": round(time.perf_counter() - t0, 4), "runtime": self.report()}, f"run {task}")


__all__ = ["Session", "Completion", "BundleError", "read_manifest", "TASK_NAMES", "NETWORKS", "NETWORK_IO",
           "bundle_networks", "bundle_network_files", "manifest_signature", "check_io_signature", "check_text",
           "check_output", "PROVIDER_ALIASES"]
