"""What the U-MASK Session checks before it trusts a bundle's networks or a caller's request (torch-free).

* which bundle files a session of one precision loads (`bundle_network_files`, `bundle_networks`);
* each network's I/O signature as onnxruntime loaded it against the manifest's and the feeds the
  session passes (`check_io_signature`, `manifest_signature`, `NETWORK_IO`);
* request arguments: strict integers within `RequestLimits` (`_check_int`), profile texts (`check_text`);
* outputs: valid JSON with finite numbers only (`check_output`).

Used by runtime/families/umask/session.py (which re-exports these names).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.bundle import BundleError, ManifestError
from umask.runtime.core.errors import InputError, LimitError
from umask.runtime.core.limits import REQUEST_LIMITS, RequestLimits
from umask.runtime.engines.samplers import SAMPLER_NAMES

NETWORKS = ("dit", "profile_mlp", "maskgen")     # + "sbert" when the bundle ships the encoder
# the feeds the session passes and the outputs it reads, per network (checked against the manifest at open)
NETWORK_IO = {"dit": (("x_t", "x_obs", "mask", "t", "h_u", "task"), 1),
              "maskgen": (("x", "avail", "h_u", "task", "e_pos", "gumbel"), 4),
              "profile_mlp": (("emb", "present"), 1),
              "sbert": (("input_ids", "attention_mask"), 1)}


def bundle_networks(root: Path, manifest: dict[str, Any], precision: str,
                    sbert_precision: str = "fp32") -> dict[str, Path]:
    """The ONNX file of every network a ``precision`` session runs (BundleError when one is unusable):
    dit, profile_mlp, maskgen of that precision and the SBERT encoder (fp32, or the int8 one)."""
    return {n: Path(root) / rel for n, rel in bundle_network_files(root, manifest, precision, sbert_precision).items()}


def bundle_network_files(root: Path, manifest: dict[str, Any], precision: str,
                         sbert_precision: str = "fp32") -> dict[str, str]:
    """`bundle_networks` as bundle-relative paths (what `read_verified` takes)."""
    arts = manifest["artifacts"]
    if type(precision) is not str:
        raise InputError(f"precision must be a string, got {type(precision).__name__}")
    if precision not in arts:
        raise BundleError(f"{root}: precision {precision!r} not in this bundle (has {sorted(arts)})")
    files = {}
    for net in NETWORKS:
        e = arts[precision].get(net)
        if e is None or e.get("status") != "ok" or not e.get("file"):
            ok = [p for p in arts if arts[p].get(net, {}).get("status") == "ok"]
            raise BundleError(f"{root}: no usable {precision} {net} artifact "
                              f"({(e or {}).get('reason', 'absent')}); usable precisions: {ok}")
        files[net] = e["file"]
    sb = manifest.get("sbert", {})
    if sb.get("status") == "present":
        # sbert_precision "int8": the export's cosine-gated int8 encoder (~4x smaller); fp32 otherwise
        s8 = sb.get("int8", {})
        if sbert_precision == "int8" and s8.get("status") != "ok":
            raise BundleError(f"{root}: no usable int8 SBERT in this bundle ({s8.get('status', 'absent')})")
        files["sbert"] = s8["file"] if sbert_precision == "int8" else sb["file"]
    return files


def manifest_signature(manifest: dict[str, Any], precision: str, net: str,
                       sbert_precision: str = "fp32") -> dict[str, Any] | None:
    """The manifest's I/O signature of ``net`` ({"inputs", "outputs"}: name / shape / dtype dicts, or for
    SBERT possibly names only); None when the manifest records none (the int8 SBERT)."""
    if net == "sbert":
        sb = manifest.get("sbert", {})
        if sbert_precision == "int8":
            s8 = sb.get("int8", {})
            if isinstance(s8.get("inputs"), list):
                return {"inputs": s8["inputs"], "outputs": s8.get("outputs", [])}
        sig = sb.get("signature")
        if isinstance(sig, dict) and "inputs" in sig:
            return sig
        if "inputs" in sb:
            return {"inputs": sb["inputs"], "outputs": sb.get("outputs", [])}
        return None
    arts = manifest["artifacts"]
    e = arts[precision][net]
    if "inputs" not in e and e.get("shared") in arts:
        e = arts[e["shared"]].get(net, {})
    return {"inputs": e["inputs"], "outputs": e.get("outputs", [])} if "inputs" in e else None


def check_io_signature(where: str, net: str, want: dict[str, Any] | None, got: dict[str, Any], *,
                       dit_extra: tuple[str, ...] = ()) -> None:
    """BundleError unless the loaded network's I/O (``got``, `OrtBackend.io_signature`) matches the manifest
    (``want``): the same names in the same order, element types and fixed dimensions; and the inputs
    the session feeds (`NETWORK_IO`; ``dit_extra``: the DiT's optional inputs, prior.dit_extra_inputs)."""
    feeds, n_out = NETWORK_IO[net]
    if net == "dit":
        feeds = (*feeds, *dit_extra)
    got_in = [i["name"] for i in got["inputs"]]
    if sorted(got_in) != sorted(feeds) or len(got["outputs"]) < n_out:
        raise BundleError(f"{where}: the {net} network takes {got_in} and gives {len(got['outputs'])} outputs; "
                          f"this runtime feeds {list(feeds)} and reads {n_out}")
    if want is None:
        return
    for side in ("inputs", "outputs"):
        w, g = want.get(side) or [], got[side]
        if not isinstance(w, list):
            raise ManifestError(f"{where}: {net} {side}: the manifest's signature is not a list")
        names_w = [x["name"] if isinstance(x, dict) else x for x in w]
        names_g = [x["name"] for x in g]
        if names_w != names_g:
            raise BundleError(f"{where}: {net} {side} {names_g} differ from the manifest's {names_w}")
        for a, b in zip(w, g):
            if not isinstance(a, dict):
                continue
            if "dtype" in a and a["dtype"] != b["dtype"]:
                raise BundleError(f"{where}: {net} {side[:-1]} {b['name']!r} is {b['dtype']}, manifest {a['dtype']}")
            sa, sg = a.get("shape"), b.get("shape")
            if isinstance(sa, list) and isinstance(sg, list):
                if len(sa) != len(sg) or any(type(x) is int and type(y) is int and x != y for x, y in zip(sa, sg)):
                    raise BundleError(f"{where}: {net} {side[:-1]} {b['name']!r} has shape {sg}, manifest {sa}")


def check_model_sections(root: Path, manifest: dict[str, Any]) -> None:
    """What the schema cannot say: x_scale positive with one entry per channel, an SBERT section
    whenever the model was trained with profiles, the sampler defaults inside the request bounds."""
    mpath = f"{root}/manifest.json"
    mdl, feat = manifest["model"], manifest["featurization"]
    xs = mdl["x_scale"]
    n_ch = feat["channels"]["n_channels"]
    if len(xs) != n_ch:
        raise ManifestError(f"{mpath}: model.x_scale has {len(xs)} entries, featurization.channels.n_channels "
                            f"is {n_ch}")
    for i, v in enumerate(xs):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and 1e-6 <= v <= 1e6):
            raise ManifestError(f"{mpath}: model.x_scale[{i}] = {v!r}: a scale must be in [1e-06, 1e+06]")
    if mdl["use_profile"] and "sbert" not in manifest:
        raise ManifestError(f"{mpath}: model.use_profile is true but the manifest has no 'sbert' section "
                            "(an export without SBERT records sbert.status 'absent'); refusing to drop the profile")


def _check_int(name: str, v: Any, lo: int, hi: int | float) -> int:
    """``v`` as an int in [lo, hi]: InputError for a non-integer or v < lo, LimitError (a RequestLimits
    bound) for v > hi; the message names the argument."""
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(lo, f"an integer >= {lo}")
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise InputError(f"{name} must be {kind}, got {type(v).__name__} {v!r:.40}")
    v = int(v)
    if v < lo:
        raise InputError(f"{name} must be {kind}, got {v}")
    if v > hi:
        raise LimitError(None, None, f"{name}={v} is above the limit {hi} (RequestLimits)")
    return v


def task_defaults(defaults: dict[str, Any], task: str | None) -> dict[str, Any]:
    """The sampler defaults of ``task``: the manifest's ``diffusion.defaults`` with its ``by_task[task]``
    overrides applied (e.g. the short-term request's single draw)."""
    return {**defaults, **((defaults.get("by_task") or {}).get(task) or {})}


def request_args(limits: RequestLimits, defaults: dict[str, Any], num_train_steps: int, steps: Any, n_samples: Any,
                 sampler: Any, seed: Any, task: str | None = None) -> tuple[int, int, str, int]:
    """A completion request's (steps, n_samples, sampler, seed), the bundle's ``defaults`` for None (with the
    ``defaults.by_task[task]`` overrides of the request's task), checked against ``limits`` (InputError /
    LimitError naming the argument)."""
    defaults = task_defaults(defaults, task)
    steps = _check_int("steps", defaults.get("steps", 10) if steps is None else steps, 1,
                       min(limits.max_steps, num_train_steps))
    n_samples = _check_int("n_samples", defaults.get("n_samples", 1) if n_samples is None else n_samples, 1,
                           limits.max_samples)
    if steps * n_samples > limits.max_denoiser_calls:
        raise LimitError(None, None, f"steps x n_samples = {steps} x {n_samples} = {steps * n_samples} DiT calls; "
                                     f"the limit is {limits.max_denoiser_calls} (RequestLimits.max_denoiser_calls)")
    sampler = defaults.get("sampler", "ddim") if sampler is None else sampler
    if not isinstance(sampler, str) or sampler not in SAMPLER_NAMES:
        raise InputError(f"unknown sampler {sampler!r:.40}; choose from {SAMPLER_NAMES}")
    return steps, n_samples, sampler, _check_int("seed", seed, 0, limits.max_seed)


def check_text(text: Any, limits: RequestLimits = REQUEST_LIMITS, name: str = "text") -> str:
    """``text`` as a profile text: a non-empty str of at most ``limits.max_text_chars`` characters that
    encodes as UTF-8 (no lone surrogates); InputError / LimitError otherwise."""
    if not isinstance(text, str):
        raise InputError(f"{name} must be a str, got {type(text).__name__}")
    if not text.strip():
        raise InputError(f"{name}: profile text must be a non-empty string")
    if len(text) > limits.max_text_chars:
        raise LimitError(None, None, f"{name}: {len(text)} characters; the limit is {limits.max_text_chars} "
                                     "(RequestLimits.max_text_chars)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"{name}: not valid Unicode text ({e.reason} at character {e.start})") from None
    return text


def check_output(out: Any, what: str) -> Any:
    """``out`` if it is valid JSON (finite numbers only); else BundleError naming ``what``."""
    try:
        json.dumps(out, allow_nan=False, default=_json_default)
    except (ValueError, TypeError) as e:
        raise BundleError(f"{what}: the decoded output is not valid JSON ({e}): the bundle's networks are "
                          "broken for this input") from None
    return out


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"{f} is not a finite number")
        return f
    raise TypeError(f"{type(v).__name__} is not JSON")


__all__ = ["task_defaults", "NETWORKS", "NETWORK_IO", "bundle_networks", "bundle_network_files", "manifest_signature",
           "check_io_signature", "check_model_sections", "request_args", "check_text", "check_output"]
