"""Privacy: a full request with torch blocked and every socket disabled (the runtime never touches the network).

The Python-level socket patch here cannot see native threads (onnxruntime's telemetry client);
tests/test_hardening_privacy_native.py checks the system calls of a held Session with strace.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from export_fixtures import SAMPLE, tiny_bundle, trust_test_key

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, socket, sys
    for name in ("torch", "pandas", "scipy", "transformers"):
        sys.modules[name] = None                      # any import of them raises ImportError

    class NoNetwork(socket.socket):
        def __init__(self, *a, **k):
            raise OSError("network disabled in this test")

    def refuse(*a, **k):
        raise OSError("network disabled in this test")

    socket.socket = NoNetwork
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    from umask.runtime.core.events import read_llmapp_sample
    from umask.runtime.families.umask.session import Session
    bundle, sample = sys.argv[1], sys.argv[2]
    ev = read_llmapp_sample(sample).for_user(5)
    s = Session.open(bundle, precision="int8-qdq")
    out = s.run(ev, "short", steps=2)
    cold = s.run(ev, "cold", k=3, steps=2)
    assert out["runtime"]["sbert"] and out["result"]["slots"], out
    assert len(cold["result"]["apps"]) == 3
    assert not any(m in sys.modules and sys.modules[m] is not None for m in ("torch", "transformers"))
    print("OK", json.dumps(out["timings_s"]))
""")


def test_full_request_without_torch_and_network() -> None:
    _, bundle = tiny_bundle()
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(bundle), str(SAMPLE)], cwd=ROOT, capture_output=True,
                         text=True, timeout=180, env=trust_test_key({"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("OK")


def test_cli_run_prints_json_without_torch(tmp_path: Path) -> None:
    import json

    _, bundle = tiny_bundle()
    from umask.runtime.core.events import format_compact_time, read_llmapp_sample

    ev = read_llmapp_sample(SAMPLE).for_user(6)
    p = tmp_path / "events.csv"
    p.write_text("time,app_id,base_id,bytes\n" + "".join(
        f"{t},{a},{b},{n}\n" for t, a, b, n in zip(format_compact_time(ev.ts), ev.app, ev.bs, ev.bytes)))
    code = ("import sys; sys.modules['torch'] = None; from umask.cli import main; "
            f"raise SystemExit(main(['run', '--bundle', {str(bundle)!r}, '--history', {str(p)!r}, "
            "'--task', 'long', '--steps', '2', '--precision', 'fp16']))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert len(out["result"]["slots"]) == 4 and out["runtime"]["precision"] == "fp16"
    bad = subprocess.run([sys.executable, "-m", "umask.cli", "run", "--bundle", str(tmp_path), "--history", str(p),
                          "--task", "short"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    from umask.runtime.core.errors import BundleError

    assert bad.returncode == BundleError.exit_code and "no manifest.json" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
