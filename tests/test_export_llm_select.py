"""Which profiling LLM a bundle ships (export.exporter.select_gguf)."""

from __future__ import annotations

from pathlib import Path

import pytest

from umask.export.families.umask.exporter import GGUF_BASE, GGUF_LORA, GGUF_MERGED, select_gguf
from umask.runtime.core.errors import InputError


def _touch(d: Path, *names: str) -> None:
    for n in names:
        (d / n).write_bytes(b"GGUF")


def test_merged_quant_ships_alone_never_with_the_adapter(tmp_path: Path) -> None:
    _touch(tmp_path, *GGUF_MERGED.values(), GGUF_BASE, GGUF_LORA)
    e = select_gguf(tmp_path, "q8_0")
    assert e["status"] == "present" and e["files"] == ["llm/uscope-q8_0.gguf"]
    assert e["model"] == "llm/uscope-q8_0.gguf" and e["lora"] is None
    e = select_gguf(tmp_path, "base+lora")
    assert e["files"] == [f"llm/{GGUF_BASE}", f"llm/{GGUF_LORA}"] and e["lora"] == f"llm/{GGUF_LORA}"


def test_missing_files_mean_no_llm_with_a_reason(tmp_path: Path) -> None:
    _touch(tmp_path, GGUF_MERGED["f16"], GGUF_LORA)           # no q8_0, no base model
    for quant, missing in (("q8_0", "uscope-q8_0.gguf"), ("base+lora", GGUF_BASE)):
        e = select_gguf(tmp_path, quant)
        assert e["status"] == "absent" and e["files"] == [] and missing in e["note"]
    assert select_gguf(None)["status"] == "absent"
    assert select_gguf(tmp_path / "nowhere")["status"] == "absent"
    with pytest.raises(InputError):
        select_gguf(tmp_path, "q2_k")
