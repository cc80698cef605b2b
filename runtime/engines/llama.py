"""On-device U-SCOPE profiling LLM: a GGUF model run by llama-cpp-python (torch-free).

The profiling LLM turns the prompt x_u (`profile_text.build_prompt`, eq. 23) into the profile text
y_u. Training (train/uscope_llm.py) and the device format the model input the SAME way, with
`chat_prompt` below (ChatML, the chat format of SmolLM2), so a fine-tuned model sees on the device
exactly the token sequence it was trained on.

API (used by the runtime session)::

    from umask.runtime.engines.llama import LlamaProfiler
    prof = LlamaProfiler("artifacts/uscope/gguf/uscope-q8_0.gguf", lora_path=None, n_threads=1)
    text = prof.generate(build_prompt(stats), max_tokens=MAX_PROFILE_TOKENS)   # greedy, deterministic

``LlamaProfiler`` is also a `profile_text.ProfileGenerator` (``prof(prompt) -> str``). A LoRA adapter
in GGUF form (``uscope-lora-f16.gguf``) is applied on top of a base GGUF with ``lora_path``.
``llama_cpp`` is imported lazily, so importing this module needs numpy only; without llama-cpp-python
the constructor raises `LLMUnavailableError` (install the ``llm`` extra: ``UMASK_WITH_LLM=1
./scripts/setup.sh``).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.errors import InputError

SYSTEM_PROMPT = ("You write a mobile user's behaviour profile from usage statistics. Answer with five "
                 "lines: Intent, Routine, App preferences, Place tendencies, Regularity.")
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
MAX_PROFILE_TOKENS = 192          # fixed generation budget; the template profiles need ~100-150 tokens
DEFAULT_N_CTX = 1024              # prompt (~200 tokens with the chat frame) + profile fits easily
# Drafted decoding (speculative decoding without a draft model; OFF by default, ``draft_tokens``): the next
# tokens are guessed, from the prompt (a profile restates runs of its prompt: "busiest at 18h") or from a
# draft text the answer should resemble (below), and checked in ONE batched evaluation; the longest prefix the
# model's own arg-max agrees with is kept, plus its next token. In exact arithmetic that is plain greedy
# decoding. In llama.cpp it is not exactly: a batched evaluation rounds differently from one-token steps, and
# on 3 of the 6 REAL-sample prompts the Q8_0 text leaves the plain greedy text after a near-tie
# (benchmarks/results/llm_profile_cpu.json, gate column). On one CPU thread a checked batch of 5-9 tokens
# costs 2-3 single-token steps (every position needs its 49k-wide logits), so the gain is 10-25 %: off by
# default, for reproducible profiles.
DRAFT_TOKENS = 4
DRAFT_NGRAM = 3
# A second draft source: a text the answer is expected to resemble (for U-SCOPE, the rule-based template
# profile of the same statistics, which the LLM was fine-tuned to improve on: most of its lines come back
# nearly verbatim). Its guesses are longer (DRAFT_TEXT_TOKENS) and tried before the prompt lookup; the draft
# only decides how many tokens one model call may confirm (about 60 % of the answer tokens come from it).
DRAFT_TEXT_TOKENS = 8


class LLMUnavailableError(RuntimeError):
    """llama-cpp-python is not installed (the optional ``llm`` extra)."""


def chat_prompt(prompt: str, system: str = SYSTEM_PROMPT) -> str:
    """The model input for x_u: a ChatML system + user turn, opened for the assistant's answer."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the profiling prompt x_u must be a non-empty string")
    return (f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{prompt.strip()}{IM_END}\n"
            f"{IM_START}assistant\n")


def chat_target(profile: str) -> str:
    """The assistant answer as trained: the profile text closed by the end-of-turn token."""
    return f"{profile.strip()}{IM_END}"


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - depends on the install
        raise LLMUnavailableError("llama-cpp-python is not installed; install the 'llm' extra "
                                  "(UMASK_WITH_LLM=1 ./scripts/setup.sh)") from e
    return llama_cpp


class LlamaProfiler:
    """Greedy profile generation with a GGUF model (llama.cpp), optionally with a GGUF LoRA adapter.

    ``logits_all=True`` keeps the logits of every evaluated position (needed by `next_token_logits`
    for teacher-forced parity checks; slightly slower).
    """

    def __init__(self, model_path: str | Path, lora_path: str | Path | None = None, n_threads: int = 1, *,
                 n_ctx: int = DEFAULT_N_CTX, logits_all: bool = False, seed: int = 0,
                 verbose: bool = False, draft_tokens: int = 0, reuse_prefix: bool = True) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise InputError(f"no GGUF model at {model_path}")
        if lora_path is not None and not Path(lora_path).is_file():
            raise InputError(f"no GGUF LoRA adapter at {lora_path}")
        if int(n_threads) < 1:
            raise InputError(f"n_threads must be >= 1, got {n_threads}")
        if not 0 <= int(draft_tokens) <= 16:
            raise InputError(f"draft_tokens must be in 0..16, got {draft_tokens}")
        self.draft_tokens = 0 if logits_all else int(draft_tokens)   # the parity mode decodes token by token
        self.reuse_prefix = bool(reuse_prefix)
        llama_cpp = _import_llama_cpp()
        self.model_path, self.lora_path = model_path, (Path(lora_path) if lora_path else None)
        self.n_threads = int(n_threads)
        self.logits_all = bool(logits_all)
        kw: dict[str, Any] = dict(model_path=str(model_path), n_ctx=int(n_ctx), n_threads=self.n_threads,
                                  n_threads_batch=self.n_threads, logits_all=bool(logits_all), seed=int(seed),
                                  verbose=bool(verbose))
        if self.lora_path is not None:
            kw["lora_path"] = str(self.lora_path)
        with _quiet(not verbose):
            self.llm = llama_cpp.Llama(**kw)
        self.end_id = self._single_token(IM_END)
        frame = chat_prompt("\x00")                               # the chat frame around a placeholder
        self._prefix_ids = self.tokenize(frame[:frame.index("\x00")])  # system turn + "<|im_start|>user\n"
        self._memo: dict[tuple[str, int], str] = {}      # greedy decoding is deterministic: memoize texts

    # -- tokens --
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` with special tokens parsed and no BOS added (as the HF tokenizer)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def _single_token(self, text: str) -> int | None:
        ids = self.tokenize(text)
        return ids[0] if len(ids) == 1 else None

    # -- generation --
    def generate_ids(self, prompt_ids: list[int], max_tokens: int = MAX_PROFILE_TOKENS, *,
                     draft_ids: list[int] | None = None) -> tuple[list[int], dict[str, float]]:
        """Greedy continuation of ``prompt_ids`` (stops at the end-of-turn token, not included).

        The chat frame up to the user's statistics (system prompt included) is the same for every profile:
        with ``reuse_prefix`` it is evaluated once and kept in the context, and only the rest of the prompt
        is evaluated per profile. The split is always the same (prefix, then rest), so a prompt gives the
        same text whatever was generated before. With ``draft_tokens`` > 0 the tokens are drafted by prompt lookup (see
        `DRAFT_TOKENS`). Returns (ids, timing) with timing = {prompt_tokens, prompt_reused, prompt_s,
        gen_tokens, gen_s, model_calls, draft_accepted}."""
        if not prompt_ids:
            raise InputError("empty prompt")
        llm = self.llm
        pre = self._prefix_ids
        keep = len(pre) if (self.reuse_prefix and pre and len(prompt_ids) > len(pre)
                            and list(prompt_ids[:len(pre)]) == pre) else 0
        if keep and not (llm.n_tokens >= keep and llm.input_ids[:keep].tolist() == pre):
            llm.reset()
            llm.eval(pre)                                      # once per process: the shared chat frame
        if keep:
            llm.n_tokens = keep                                # eval() drops the KV cache after n_tokens
        else:
            llm.reset()
        t0 = time.perf_counter()
        llm.eval(list(prompt_ids[keep:]))
        t1 = time.perf_counter()
        stops = {t for t in (self.end_id, llm.token_eos()) if t is not None}
        out: list[int] = []
        calls = accepted = 0
        tok = int(np.argmax(self._last_logits()))
        while tok not in stops and len(out) < int(max_tokens):
            out.append(tok)
            draft = (self._draft(list(prompt_ids) + out, out, draft_ids)[: int(max_tokens) - len(out)]
                     if self.draft_tokens else [])
            if not draft:
                llm.eval([tok])
                calls += 1
                tok = int(np.argmax(self._last_logits()))
                continue
            n0 = llm.n_tokens
            best = self._eval_all_logits([tok, *draft]).argmax(axis=1)   # (1 + len(draft),)
            calls += 1
            j = 0
            while j < len(draft) and int(best[j]) == draft[j] and draft[j] not in stops:
                out.append(draft[j])
                j += 1
            accepted += j
            llm.n_tokens = n0 + 1 + j                          # forget the rejected guesses (their KV is dropped)
            tok = int(best[j])
        t2 = time.perf_counter()
        return out, {"prompt_tokens": float(len(prompt_ids)), "prompt_reused": float(keep), "prompt_s": t1 - t0,
                     "gen_tokens": float(len(out)), "gen_s": t2 - t1, "model_calls": float(calls),
                     "draft_accepted": float(accepted)}

    def _draft(self, seq: list[int], out: list[int], draft_ids: list[int] | None = None) -> list[int]:
        """The guess for the tokens after ``seq`` (= prompt + ``out``): from ``draft_ids`` (an expected answer)
        where the last tokens of ``out`` occur in it (at the start of the answer: its first tokens), up to
        `DRAFT_TEXT_TOKENS`; else prompt lookup: what followed the latest earlier occurrence of the last
        `DRAFT_NGRAM` tokens of ``seq``, up to ``draft_tokens``; [] when neither matches."""
        if draft_ids:
            if len(out) == 1:                                  # only the first token decided: follow the answer
                if draft_ids[0] == out[0]:
                    return list(draft_ids[1:1 + DRAFT_TEXT_TOKENS])
            for n in (DRAFT_NGRAM, 2):
                if len(out) >= n:
                    key = out[-n:]
                    hits = [i for i in range(len(draft_ids) - n) if draft_ids[i:i + n] == key]
                    if hits:          # the occurrence nearest to where the answer is (answers track the draft)
                        i = min(hits, key=lambda j: abs(j + n - len(out)))
                        return list(draft_ids[i + n:i + n + DRAFT_TEXT_TOKENS])
        n = DRAFT_NGRAM
        if len(seq) <= n:
            return []
        key = seq[-n:]
        for i in range(len(seq) - n - 1, -1, -1):
            if seq[i:i + n] == key:
                return seq[i + n:i + n + self.draft_tokens]
        return []

    def _eval_all_logits(self, tokens: list[int]) -> np.ndarray:
        """Evaluate ``tokens`` after the context's ``n_tokens`` in one batch and return the logits of EVERY
        position (len(tokens), vocab) (llama-cpp-python's ``eval`` keeps only the last row unless the whole
        model runs with logits_all, which would also compute them for every prompt token)."""
        llm = self.llm
        n_past = llm.n_tokens
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past:n_past + len(tokens)] = tokens
        llm.n_tokens = n_past + len(tokens)
        rows = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(tokens) * llm.n_vocab(),))
        return rows.reshape(len(tokens), llm.n_vocab()).copy()

    def _last_logits(self) -> np.ndarray:
        llm = self.llm
        if self.logits_all:
            return np.asarray(llm.scores[llm.n_tokens - 1])
        llama_cpp = _import_llama_cpp()
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()

    def next_token_logits(self, ids: list[int]) -> np.ndarray:
        """(len(ids), vocab) logits of every position of ``ids`` in one pass (needs logits_all=True)."""
        if not self.logits_all:
            raise InputError("next_token_logits needs LlamaProfiler(..., logits_all=True)")
        self.llm.reset()
        self.llm.eval(list(ids))
        return np.asarray(self.llm.scores[: len(ids)]).copy()

    def generate(self, prompt: str, max_tokens: int = MAX_PROFILE_TOKENS, *, draft: str | None = None) -> str:
        """The profile text y_u for the prompt x_u (raw `build_prompt` text; the chat frame is added here).
        Greedy, so equal prompts give equal texts (memoized per instance). ``draft``: a text the answer is
        expected to resemble (the template profile), used only to guess tokens (`DRAFT_TEXT_TOKENS`)."""
        key = (prompt, int(max_tokens))
        if key not in self._memo:
            dids = self.tokenize(draft.strip()) if (draft and draft.strip()) else None
            ids, _ = self.generate_ids(self.tokenize(chat_prompt(prompt)), max_tokens, draft_ids=dids)
            self._memo[key] = self.detokenize(ids).strip()
        return self._memo[key]

    def __call__(self, prompt: str) -> str:
        return self.generate(prompt)


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence llama.cpp's C-level stderr chatter while loading (it ignores verbose=False in places)."""
    if not enabled:
        yield
        return
    try:
        fd = os.dup(2)
    except OSError:  # pragma: no cover
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)
