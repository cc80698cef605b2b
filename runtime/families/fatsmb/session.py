"""FatsMB on the device: ``recommend(history, behavior, k)`` from a verified bundle, numpy + onnxruntime.

    from umask.runtime.session import Session
    with Session.open("artifacts/bundles/fatsmb", precision="int8-qdq") as s:
        s.recommend([(2333346, "pv"), (2576651, "pv"), (3830808, "cart")], behavior="buy", k=10)

One request (Alg. 2 of the paper): the history (raw item ids and behaviors, oldest first) is mapped
onto the bundle's item table (``items.npz``: raw item id and category per dense id; unknown items
are skipped and counted), cut to the encoder's last ``max_len - 1`` tokens, and a [mask] target token
with a masked behavior is appended; ``encoder.onnx`` gives the behavior-agnostic preference z_∅.
The numpy DDIM (`umask.runtime.engines.samplers.DDIM`, no evidence) walks ``steps`` trailing
timesteps from z_T = ``default_rng(seed).standard_normal(d)`` with the guided x0 estimate
uncond + w (cond - uncond) (eq. 17; cond and uncond in one batched ``denoiser.onnx`` call), and
``decoder.onnx`` scores every item of the table. When the bundle carries a prior (``prior.npz``:
co-occurrence and count tables of the training split; the fitted gains in the manifest), the final
scores are ``scale_b * decoder + prior`` (`umask.runtime.families.fatsmb.prior`, a documented
deviation from the paper) over the WHOLE history. Nothing here imports torch.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from umask.runtime.core.bundle import (INT, LIST, MAP, NUM, OBJ, PATH, STR, JSON, BundleError, read_verified,
                                       register_manifest_schema)
from umask.runtime.core.errors import InputError
from umask.runtime.engines.ort import inference_session, session_options
from umask.runtime.engines.samplers import DDIM, Schedule
from umask.runtime.families.fatsmb import prior as prior_mod
from umask.runtime.session import FamilySession

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8-qdq")
NETWORKS = ("encoder", "denoiser", "decoder")
MAX_HISTORY = 100_000

ARTIFACT = OBJ({"file": PATH}, {"parity": JSON, "conversion": JSON, "inputs": JSON, "outputs": JSON, "opset": INT(1, 100)})
register_manifest_schema("fatsmb", {
    "model": OBJ({"n_items": INT(1, 1 << 31), "n_behaviors": INT(1, 64), "behaviors": LIST(STR(32), 64, 1),
                  "d": INT(1, 4096), "max_len": INT(2, 4096)}, extra=JSON),
    "diffusion": OBJ({"alphas_cumprod": LIST(NUM(0, 1), 100_000, 1), "steps": INT(1, 100_000),
                      "guidance": NUM(-100, 100)}, extra=JSON),
    "items": OBJ({"file": PATH}, extra=JSON),
    "artifacts": MAP(MAP(ARTIFACT), max_items=8),
}, {"checkpoint": JSON, "parity": JSON, "tolerances": JSON,
    # the repeat / co-occurrence prior (a documented deviation, see prior.py): tables file + fitted gains
    "prior": OBJ({"file": PATH, "gains": LIST(LIST(NUM(0, 1e6), 64, 1), 64, 1), "scale": LIST(NUM(0, 1e6), 64, 1),
                  "config": JSON}, extra=JSON)})


class Pipeline:
    """The request math over three callables, shared by the session and the exporter's parity check.

    encoder(items (N, L) int64, behaviors (N, L) int64) -> (N, d); denoiser(z_t, t, z_null, b) -> x0 (N, d);
    decoder(z (N, d)) -> (N, n_items). Ids are shifted as in training: 0 pad, items 1..n, [mask] n+1;
    behaviors 1..B, [mask] B+1; b = n_behaviors means ∅ (unconditional) for the denoiser.
    """

    def __init__(self, encoder, denoiser, decoder, *, n_items: int, n_behaviors: int, max_len: int, d: int,
                 alphas_cumprod: np.ndarray) -> None:
        self.encoder, self.denoiser, self.decoder = encoder, denoiser, decoder
        self.n_items, self.n_behaviors, self.max_len, self.d = n_items, n_behaviors, max_len, d
        self.sampler = DDIM(Schedule(alphas_cumprod))
        self.prior: tuple[prior_mod.PriorTables, np.ndarray, np.ndarray] | None = None   # (tables, gains, scale)

    def finish(self, scores: np.ndarray, items: np.ndarray, behaviors: np.ndarray, target: int) -> np.ndarray:
        """Decoder scores (n_items,) -> final scores: ``scale_b * scores + prior`` when the bundle has a prior."""
        if self.prior is None:
            return scores
        tables, gains, scale = self.prior
        return prior_mod.apply(scores, tables, items, behaviors, target, gains, scale)

    def tokens(self, items: np.ndarray, behaviors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense history -> right-aligned (1, L) tokens with the masked target token last."""
        L = self.max_len
        it = np.r_[np.asarray(items, np.int64)[-(L - 1):] + 1, self.n_items + 1]
        bh = np.r_[np.asarray(behaviors, np.int64)[-(L - 1):] + 1, self.n_behaviors + 1]
        out_i, out_b = np.zeros((1, L), np.int64), np.zeros((1, L), np.int64)
        out_i[0, L - len(it):], out_b[0, L - len(bh):] = it, bh
        return out_i, out_b

    def latent(self, items: np.ndarray, behaviors: np.ndarray, target: int, *, steps: int, guidance: float,
               seed: int = 0, noise: np.ndarray | None = None) -> np.ndarray:
        """z_0 (1, d) of the target behavior (Alg. 2)."""
        z_null = np.asarray(self.encoder(*self.tokens(items, behaviors)), np.float32)        # (1, d)
        zz = np.concatenate([z_null, z_null])
        bb = np.array([target, self.n_behaviors], np.int64)                                    # cond, ∅

        def denoise(z_t: np.ndarray, t: int) -> np.ndarray:
            x0 = np.asarray(self.denoiser(np.concatenate([z_t, z_t]), np.full(2, t, np.int64), zz, bb), np.float32)
            cond, uncond = x0[:1], x0[1:]
            return uncond + guidance * (cond - uncond)                                         # eq. 17

        z_T = np.random.default_rng(seed).standard_normal((1, self.d)).astype(np.float32) if noise is None \
            else np.asarray(noise, np.float32).reshape(1, self.d)
        zeros = np.zeros((1, self.d), np.float32)
        return self.sampler.sample(denoise, zeros, zeros, steps, noise=z_T)

    def scores(self, items, behaviors, target: int, **kw) -> np.ndarray:
        s = np.asarray(self.decoder(self.latent(items, behaviors, target, **kw)), np.float32)[0]      # (n_items,)
        return self.finish(s, items, behaviors, target)


class Session(FamilySession):
    """A FatsMB bundle opened for requests (see the module docstring)."""

    family = "fatsmb"

    def __init__(self, root: Path, manifest: dict[str, Any], *, precision: str, threads: int,
                 providers: Sequence[str] | None) -> None:
        if precision not in manifest["artifacts"]:
            raise InputError(f"precision {precision!r} not in this bundle (has {sorted(manifest['artifacts'])})")
        self.root, self.manifest, self.precision, self.threads = root, manifest, precision, threads
        m, dif = manifest["model"], manifest["diffusion"]
        self.behaviors = tuple(m["behaviors"])
        if len(self.behaviors) != m["n_behaviors"]:
            raise BundleError(f"{root}/manifest.json: model.behaviors has {len(self.behaviors)} names, n_behaviors {m['n_behaviors']}")
        self.steps, self.guidance = int(dif["steps"]), float(dif["guidance"])
        arts = manifest["artifacts"][precision]
        missing = [n for n in NETWORKS if n not in arts]
        if missing:
            raise BundleError(f"{root}/manifest.json: artifacts.{precision} lacks {missing}")
        opts = session_options(threads=threads)
        self.ort = {n: inference_session(read_verified(root, arts[n]["file"], manifest), opts, providers) for n in NETWORKS}
        self.origins = {n: str(root / arts[n]["file"]) for n in NETWORKS}
        with np.load(io.BytesIO(read_verified(root, manifest["items"]["file"], manifest)), allow_pickle=False) as z:
            self.item_ids, self.item_category = z["item_ids"].astype(np.int64), z["item_category"].astype(np.int64)
        if len(self.item_ids) != m["n_items"]:
            raise BundleError(f"{root}/{manifest['items']['file']}: {len(self.item_ids)} items, manifest says {m['n_items']}")
        self.index = {int(r): j for j, r in enumerate(self.item_ids)}
        run = lambda name, *xs: self.ort[name].run(None, dict(zip([i.name for i in self.ort[name].get_inputs()], xs)))[0]  # noqa: E731
        self.pipeline = Pipeline(lambda i, b: run("encoder", i, b), lambda *a: run("denoiser", *a), lambda z: run("decoder", z),
                                 n_items=m["n_items"], n_behaviors=m["n_behaviors"], max_len=m["max_len"], d=m["d"],
                                 alphas_cumprod=np.asarray(dif["alphas_cumprod"], np.float32))
        if "prior" in manifest:
            pr = manifest["prior"]
            with np.load(io.BytesIO(read_verified(root, pr["file"], manifest)), allow_pickle=False) as z:
                tables = prior_mod.PriorTables(z["indptr"], z["indices"], z["data"], z["counts"], m["n_behaviors"],
                                               prior_mod.PriorConfig(**pr["config"]))
            gains, scale = np.asarray(pr["gains"], np.float32), np.asarray(pr["scale"], np.float32)
            if tables.n_items != m["n_items"] or gains.shape != (m["n_behaviors"], tables.n_features) \
                    or scale.shape != (m["n_behaviors"],):
                raise BundleError(f"{root}/manifest.json: prior gains {gains.shape} / scale {scale.shape} / "
                                  f"{tables.n_items} items do not fit the model")
            self.pipeline.prior = (tables, gains, scale)

    @classmethod
    def open(cls, bundle: str | Path, *, precision: str = "fp32", threads: int = 1, providers: Sequence[str] | None = None,
             trusted_keys: Any = None, allow_unsigned: bool = False, verify: bool = True, **_: Any) -> "Session":
        """Verify the bundle (integrity + signature by a trusted key; ``allow_unsigned=True`` opts out) and
        load the three networks of ``precision`` (fp32 | int8-qdq)."""
        from umask.runtime.core.signing import verify_bundle as verify_signed

        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not isinstance(bundle, (str, Path)):
            raise InputError(f"bundle must be a directory path, got {type(bundle).__name__}")
        root = Path(bundle)
        manifest = verify_signed(root, trusted_keys=trusted_keys, allow_unsigned=allow_unsigned, checksums=verify)
        return cls(root, manifest, precision=precision, threads=threads, providers=providers)

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "bundle": str(self.root), "precision": self.precision, "threads": self.threads,
                "n_items": len(self.item_ids), "behaviors": list(self.behaviors), "steps": self.steps,
                "guidance": self.guidance, "providers": {n: s.get_providers() for n, s in self.ort.items()}}

    def self_test_files(self) -> list[str]:
        return sorted(self.manifest["artifacts"][self.precision][n]["file"] for n in NETWORKS)

    def close(self) -> None:
        self.ort = {}

    # --- requests ---------------------------------------------------------------------------------
    def behavior_code(self, behavior: str | int, what: str = "behavior") -> int:
        if isinstance(behavior, (int, np.integer)) and not isinstance(behavior, bool):
            if 0 <= int(behavior) < len(self.behaviors):
                return int(behavior)
        elif isinstance(behavior, str) and behavior in self.behaviors:
            return self.behaviors.index(behavior)
        raise InputError(f"{what} {behavior!r:.40}: not one of {list(self.behaviors)} (or their codes 0..{len(self.behaviors) - 1})")

    def scores(self, items: np.ndarray, behaviors: np.ndarray, behavior: str | int, *, steps: int | None = None,
               guidance: float | None = None, seed: int = 0, noise: np.ndarray | None = None) -> np.ndarray:
        """Scores (n_items,) over the dense item table for a dense-id history (the benchmark's entry point)."""
        if not self.ort:
            raise InputError("session is closed")
        items, behaviors = np.asarray(items, np.int64).reshape(-1), np.asarray(behaviors, np.int64).reshape(-1)
        if items.shape != behaviors.shape or items.size == 0:
            raise InputError(f"history: items {items.shape} and behaviors {behaviors.shape} must be equal, non-empty")
        if items.min() < 0 or items.max() >= len(self.item_ids) or behaviors.min() < 0 or behaviors.max() >= len(self.behaviors):
            raise InputError("history: dense item or behavior id out of range")
        st = self.steps if steps is None else int(steps)
        if not 1 <= st <= len(self.manifest["diffusion"]["alphas_cumprod"]):
            raise InputError(f"steps must be in [1, {len(self.manifest['diffusion']['alphas_cumprod'])}], got {steps}")
        return self.pipeline.scores(items, behaviors, self.behavior_code(behavior), steps=st,
                                    guidance=self.guidance if guidance is None else float(guidance), seed=seed, noise=noise)

    def recommend(self, history: Sequence[tuple[int, str | int]], behavior: str | int, k: int = 10, *,
                  seed: int = 0, steps: int | None = None) -> dict[str, Any]:
        """Top-``k`` items for the next interaction of type ``behavior`` after ``history`` (raw item ids and
        behavior names or codes, oldest first). Returns {"items": raw ids, "scores", "categories",
        "skipped_unknown": history entries whose item is not in the table}."""
        if isinstance(history, (str, bytes)) or not hasattr(history, "__len__"):
            raise InputError("history must be a sequence of (item id, behavior) pairs")
        if len(history) > MAX_HISTORY:
            raise InputError(f"history has {len(history)} entries; the limit is {MAX_HISTORY}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(self.item_ids):
            raise InputError(f"k must be an integer in [1, {len(self.item_ids)}], got {k!r:.40}")
        code = self.behavior_code(behavior)
        items, behs, skipped = [], [], 0
        for n, pair in enumerate(history):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InputError(f"history[{n}]: expected (item id, behavior), got {pair!r:.60}")
            raw, b = pair
            if isinstance(raw, bool) or not isinstance(raw, (int, np.integer)):
                raise InputError(f"history[{n}]: item id must be an integer, got {raw!r:.40}")
            j = self.index.get(int(raw))
            if j is None:
                skipped += 1
                continue
            items.append(j)
            behs.append(self.behavior_code(b, f"history[{n}] behavior"))
        if not items:
            raise InputError(f"history: none of its {len(history)} items is in the bundle's item table")
        s = self.scores(np.array(items), np.array(behs), code, seed=seed, steps=steps)
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        return {"items": self.item_ids[top].tolist(), "scores": s[top].astype(float).tolist(),
                "categories": self.item_category[top].tolist(), "behavior": self.behaviors[code],
                "skipped_unknown": skipped}


def read_item_history(path: Path) -> list[tuple[int, str]]:
    """(raw item id, behavior) pairs, oldest first, of a CSV with the header ``item_id,behavior`` (a Taobao-style
    log may carry more columns, e.g. ``user_id,item_id,category_id,behavior,timestamp``: rows are then ordered by
    ``timestamp``); InputError naming the file and line."""
    import csv

    if not path.is_file():
        raise InputError(f"--history {path}: no such file")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or not {"item_id", "behavior"} <= {c.strip() for c in rows[0]}:
        raise InputError(f"--history {path}:1: expected a header with item_id and behavior columns, got "
                         f"{','.join(rows[0]) if rows else 'an empty file'}")
    head = [c.strip() for c in rows[0]]
    i_item, i_beh = head.index("item_id"), head.index("behavior")
    i_ts = head.index("timestamp") if "timestamp" in head else None
    out = []
    for n, r in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in r):
            continue
        try:
            ts = int(r[i_ts]) if i_ts is not None else n
            out.append((ts, int(r[i_item]), r[i_beh].strip()))
        except (ValueError, IndexError):
            raise InputError(f"--history {path}:{n}: expected an integer item_id (and timestamp), got {','.join(r)[:80]}") from None
    if not out:
        raise InputError(f"--history {path}: no interactions")
    if len(out) > MAX_HISTORY:
        raise InputError(f"--history {path}: {len(out)} interactions; the limit is {MAX_HISTORY}")
    return [(item, beh) for _, item, beh in sorted(out, key=lambda t: t[0])]


def run_main(argv: Sequence[str] | None = None) -> int:
    """``umask run --bundle DIR --history FILE.csv --behavior B [-k 10] [--precision fp32|int8-qdq]``: the top-k items
    of one user's next interaction of type B as JSON (what `umask.cli` dispatches a fatsmb bundle to)."""
    import argparse
    import json
    import sys

    from umask.runtime.core.errors import BUNDLE_ERRORS, exit_status_help
    from umask.runtime.core.signing import add_key_options

    p = argparse.ArgumentParser(
        prog="umask run (fatsmb bundle)", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Recommend the next items of one user for a given behavior with a FatsMB bundle, privately "
                    "(numpy + onnxruntime, no torch, no network); full ranking over the bundle's item table, JSON out. "
                    "The bundle must be signed by a trusted key (--trusted-keys or $UMASK_TRUSTED_KEYS) unless "
                    "--allow-unsigned.",
        epilog="--history: a CSV with the header item_id,behavior (oldest first), or a Taobao-style log with more\n"
               "columns (user_id,item_id,category_id,behavior,timestamp: ordered by timestamp). Items the bundle does\n"
               "not know are skipped and counted (skipped_unknown); behaviors are the bundle's names (Taobao: pv, fav,\n"
               "cart, buy).\n\n"
               + exit_status_help(InputError, *BUNDLE_ERRORS, input_means="bad argument or history") + "\n\n"
               "example: umask run --bundle artifacts/bundles/fatsmb --history items.csv --behavior buy -k 10 "
               "--trusted-keys keys/umask.pub")
    p.add_argument("--bundle", required=True, help="bundle directory written by 'umask export --family fatsmb'")
    p.add_argument("--history", required=True, help="CSV of the user's interactions (see below)")
    p.add_argument("--behavior", required=True, help="behavior of the interaction to predict (e.g. buy)")
    p.add_argument("-k", type=int, default=10, help="items to return, best first (default 10)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32 (default) or int8-qdq")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent sampler's start noise (default 0)")
    add_key_options(p)
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    history = read_item_history(Path(ns.history))
    with Session.open(ns.bundle, precision=ns.precision, trusted_keys=ns.trusted_keys,
                      allow_unsigned=ns.allow_unsigned) as s:
        out = s.recommend(history, ns.behavior, k=ns.k, seed=ns.seed)
    print(json.dumps({"family": "fatsmb", **out}, indent=1))
    return 0


__all__ = ["Session", "Pipeline", "PRECISIONS", "read_item_history", "run_main"]
