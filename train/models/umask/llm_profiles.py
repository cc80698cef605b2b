"""Training-time U-SCOPE profiles written by the profiling LLM (issue #10): one text per user, cached.

The paper conditions U-MASK on profiles y_u that the fine-tuned LLM writes from the prompt x_u
(eq. 23) and encodes them as h_u = MLP(SBERT(y_u)) (eq. 24). `llm_profile_texts` runs a
`ProfileGenerator` (runtime/engines/llama.LlamaProfiler, greedy, one thread) once per user on
`build_prompt(stats)` of the user's TRAINING-days statistics and keeps the texts in a JSON file

    <cache_dir>/<sha256(generator id, prompt version, generation budget)[:16]>.json
        {"format": 1, "generator": "<id>", "texts": {"<user id>:<sha256(prompt)[:16]>": "<profile>"}}

written atomically after every new batch of users, so a resumed or repeated run (and a second rank)
reads the texts instead of generating them again. The key holds the prompt hash, so changed statistics
(another population, another split) never reuse a stale text. The generator id names the GGUF files by
name, size and a sha256 of their first and last MiB (a full hash of a 260 MB file per run is not worth
it; a re-quantized or re-trained file changes both ends).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from umask.runtime.core.errors import InputError
from umask.runtime.core.featurize import ProfileStats
from umask.runtime.families.umask.profile_text import (PROMPT_VERSION, ProfileGenerator, ProfileSpec, build_prompt,
                                                       normalize_text, profile_generator)
from umask.train.common.checkpoints import atomic_json

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_EDGE_BYTES = 1 << 20


def file_identity(path: str | Path) -> str:
    """"<name>:<size>:<sha256 of the first and last MiB>[:16]" of one model file."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        h.update(fh.read(_EDGE_BYTES))
        if size > 2 * _EDGE_BYTES:
            fh.seek(size - _EDGE_BYTES)
        h.update(fh.read(_EDGE_BYTES))
    return f"{p.name}:{size}:{h.hexdigest()[:16]}"


def generator_identity(spec: ProfileSpec) -> str:
    """Cache identity of an ``llm:`` spec's GGUF files (base [+ LoRA])."""
    if spec.model is None:
        raise InputError("generator_identity needs an llm:MODEL.gguf spec")
    for f in (spec.model, spec.lora):
        if f is not None and not Path(f).is_file():
            raise InputError(f"profile source llm: no GGUF file at {f}")
    return "+".join(file_identity(f) for f in (spec.model, spec.lora) if f is not None)


def prompt_key(user: int, prompt: str) -> str:
    return f"{int(user)}:{hashlib.sha256(prompt.encode()).hexdigest()[:16]}"


def cache_file(cache_dir: str | Path, generator_id: str) -> Path:
    from umask.runtime.engines.llama import MAX_PROFILE_TOKENS

    tag = hashlib.sha256(f"{generator_id}\nprompt v{PROMPT_VERSION}\nmax {MAX_PROFILE_TOKENS}".encode()).hexdigest()
    return Path(cache_dir) / f"{tag[:16]}.json"


def _read(path: Path, generator_id: str) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:       # a foreign or torn file: regenerate, never crash training
        log.warning("LLM profile cache %s unreadable (%s); ignored", path, e)
        return {}
    if doc.get("format") != CACHE_FORMAT or doc.get("generator") != generator_id:
        log.warning("LLM profile cache %s belongs to another generator / format; ignored", path)
        return {}
    return {str(k): str(v) for k, v in doc.get("texts", {}).items()}


def llm_profile_texts(user_ids: Sequence[int], stats: Sequence[ProfileStats], generator: ProfileGenerator | None,
                      *, generator_id: str, cache_dir: str | Path | None = None,
                      save_every: int = 10) -> tuple[list[str], dict[str, Any]]:
    """One LLM profile text per user (``generator(build_prompt(stats[i]))``, `normalize_text`-ed) ->
    (texts, info). Cached texts are reused; ``generator`` may be None when every text is cached (a
    resumed run never loads the LLM). ``info``: cache path, hits, generated count, seconds."""
    if len(user_ids) != len(stats):
        raise InputError(f"{len(user_ids)} user ids for {len(stats)} ProfileStats")
    path = cache_file(cache_dir, generator_id) if cache_dir else None
    cached = _read(path, generator_id) if path is not None else {}
    prompts = [build_prompt(s) for s in stats]
    keys = [prompt_key(u, p) for u, p in zip(user_ids, prompts)]
    texts: list[str] = []
    new = 0
    t0 = time.perf_counter()

    def save() -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_json(path, {"format": CACHE_FORMAT, "generator": generator_id, "texts": dict(sorted(cached.items()))})

    for i, (k, prompt) in enumerate(zip(keys, prompts)):
        if k not in cached:
            if generator is None:
                raise InputError(f"user {user_ids[i]}: no cached LLM profile and no generator")
            out = generator(prompt)
            if not isinstance(out, str) or not normalize_text(out):
                raise InputError(f"user {user_ids[i]}: the profiling LLM returned an empty profile")
            cached[k] = normalize_text(out)
            new += 1
            if new % save_every == 0:
                save()
                log.info("LLM profiles: %d generated (%.1f s a profile)", new, (time.perf_counter() - t0) / new)
        texts.append(cached[k])
    if new:
        save()
    info = {"generator": generator_id, "cache": None if path is None else str(path), "n_users": len(keys),
            "cache_hits": len(keys) - new, "generated": new, "generate_seconds": round(time.perf_counter() - t0, 1)}
    log.info("LLM profiles: %d users, %d from the cache, %d generated in %.1f s", len(keys), len(keys) - new, new,
             info["generate_seconds"])
    return texts, info


def user_llm_texts(users: Sequence[Any], spec: ProfileSpec, *, generator: ProfileGenerator | None = None,
                   generator_id: str | None = None, cache_dir: str | Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """`llm_profile_texts` for data.UserData users (``.user``, ``.profile``) and an ``llm:`` spec. The GGUF
    (profile_text.profile_generator: greedy, one thread) loads on the first cache miss only; a given
    ``generator`` (tests) replaces it and is cached under ``generator_id`` (default: its type name)."""
    if generator is None and spec.model is None:
        raise InputError("profile source 'llm' needs llm:MODEL.gguf[+LORA.gguf] or a generator")
    gid = generator_id or (generator_identity(spec) if generator is None else type(generator).__name__)
    loaded: list[Any] = [generator]

    def lazy(prompt: str) -> str:
        if loaded[0] is None:
            loaded[0] = profile_generator(spec, n_threads=1)
            log.info("LLM profiles: loaded %s%s", spec.model, f" + {spec.lora}" if spec.lora else "")
        return loaded[0](prompt)

    return llm_profile_texts([u.user for u in users], [u.profile for u in users], lazy, generator_id=gid,
                             cache_dir=cache_dir)


__all__ = ["cache_file", "file_identity", "generator_identity", "llm_profile_texts", "prompt_key", "user_llm_texts"]
