"""Privacy at the system-call level: a process holding a Session for 20 s makes no network connection
attempt and writes nothing under its HOME (onnxruntime's 1DS telemetry is off: runtime/__init__.py).

strace (``apt-get install -y strace``) follows every thread (``-f``) and records socket / connect /
sendto / sendmsg; the test fails on any AF_INET / AF_INET6 socket call (DNS to a local resolver
counts too: a lookup is a leak) and on any file under the temporary HOME / XDG_CACHE_HOME. The child
runs with a minimal environment, so only the runtime's own defaults decide. Before the fix the same
run looked up ``mobile.events.data.microsoft.com`` ~9 s after start and wrote
``~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}``.

Run: ``.venv/bin/python -m pytest -q tests/test_hardening_privacy_native.py`` (about 30 s plus the
one-off tiny export; ``UMASK_PRIVACY_HOLD_S`` changes the 20 s hold).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOLD_S = float(os.environ.get("UMASK_PRIVACY_HOLD_S", "20"))

SCRIPT = textwrap.dedent("""
    import sys, time
    from umask.runtime.core.events import read_llmapp_sample
    from umask.runtime.families.umask.session import Session
    bundle, sample, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
    s = Session.open(bundle, precision="fp32")
    out = s.run(read_llmapp_sample(sample).for_user(5), "short", steps=2)
    assert out["result"]["slots"], out
    print("opened", flush=True)
    time.sleep(hold)
    print("OK", flush=True)
""")

NET = re.compile(r"\b(socket|connect|sendto|sendmsg)\(.*AF_INET6?\b")


def test_held_session_makes_no_network_attempt_and_writes_nothing_home(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install -y strace): the native privacy check needs it")
    probe = subprocess.run([strace, "-f", "-qq", "-e", "trace=none", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()[:200]}")
    pytest.importorskip("torch")                      # the tiny bundle is exported by the training side
    from export_fixtures import SAMPLE, tiny_bundle

    _, bundle = tiny_bundle()
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "trace.txt"
    from export_fixtures import trust_test_key

    # the tiny bundle is signed by the per-process test key: the child trusts it explicitly
    env = trust_test_key({"PATH": "/usr/bin:/bin", "HOME": str(home), "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"})
    res = subprocess.run([strace, "-f", "-qq", "-e", "trace=socket,connect,sendto,sendmsg", "-o", str(log),
                          sys.executable, "-c", SCRIPT, str(bundle), str(SAMPLE), str(HOLD_S)],
                         cwd=ROOT, capture_output=True, text=True, timeout=HOLD_S + 240, env=env)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]
    calls = [ln for ln in log.read_text().splitlines() if NET.search(ln)]
    assert calls == [], "network system calls:\n" + "\n".join(calls[:20])
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"files created under HOME: {written[:20]}"
