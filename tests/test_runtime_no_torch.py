"""Design rule 1: the runtime never imports torch (nor pandas / scipy: it is numpy-only)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime"
BLOCKED = ("torch", "pandas", "scipy")

SCRIPT = textwrap.dedent(f"""
    import sys
    for name in {BLOCKED!r}:
        sys.modules[name] = None          # any import of it now raises ImportError
    import umask.runtime
    import umask.runtime.core.events
    import umask.runtime.core.catalog
    import umask.runtime.core.errors
    import umask.runtime.core.tessellation
    import umask.runtime.core.featurize
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.runtime.core.events import read_llmapp_sample
    from umask.runtime.core.featurize import FeatureConfig, featurize_population
    data = {str(ROOT / "data" / "tsinghua_app_usage")!r}
    events = read_llmapp_sample(data + "/app_usage_trace_sample_llmapp.csv.gz")
    pop = featurize_population(events, load_llmapp_catalog(data), FeatureConfig())
    assert sorted(pop) == [4, 5, 6, 7, 8, 9], sorted(pop)
    assert sum(f.report.n_events for f in pop.values()) == 3293
    assert not any(m in sys.modules and sys.modules[m] is not None for m in {BLOCKED!r})
    print("OK", sum(f.tensor.nnz for f in pop.values()))
""")


def test_runtime_runs_without_torch() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK")


_IMPORT = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(BLOCKED) + r")\b", re.MULTILINE)
_DYNAMIC = re.compile(r"""(?:import_module|__import__)\(\s*["'](""" + "|".join(BLOCKED) + r""")\b""")


def test_runtime_sources_do_not_import_torch_or_pandas() -> None:
    files = sorted(RUNTIME.rglob("*.py"))
    assert files, "no runtime sources found"
    offenders = [f"{f.relative_to(ROOT)}: {m.group(0).strip()}" for f in files
                 for rx in (_IMPORT, _DYNAMIC) for m in rx.finditer(f.read_text(encoding="utf-8"))]
    assert offenders == []
