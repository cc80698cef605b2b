"""``umask verify`` and the key options of ``umask run``: one line, the class's exit code (runtime/core/errors.py).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_verify_cli.py``
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export_fixtures import SAMPLE, edited_bundle, signing_test_key, tiny_bundle
from umask.cli import main
from umask.runtime.core.errors import BundleError, ManifestError, SignatureError
from umask.runtime.core.signing import ENV_TRUSTED_KEYS


def events_csv(path: Path, user: int = 5) -> Path:
    """One REAL user of the shipped sample as events.csv."""
    from umask.runtime.core.events import format_compact_time, read_llmapp_sample

    ev = read_llmapp_sample(SAMPLE).for_user(user)
    path.write_text("time,app_id,base_id,bytes\n" + "".join(
        f"{t},{a},{b},{n}\n" for t, a, b, n in zip(format_compact_time(ev.ts), ev.app, ev.bs, ev.bytes)))
    return path


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:  # noqa: ANN001
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_verify_signed_bundle_prints_one_line_and_a_summary(capsys, monkeypatch) -> None:
    b = tiny_bundle()[1]
    monkeypatch.delenv(ENV_TRUSTED_KEYS, raising=False)
    assert _run(capsys, ["verify", str(b)])[0] == SignatureError.exit_code     # signed, but nothing trusted
    code, out, err = _run(capsys, ["verify", str(b), "--trusted-keys", str(signing_test_key()[1])])
    assert code == 0, err
    first, rest = out.split("\n", 1)
    assert first.startswith(f"umask verify: {b}: OK") and "signed by key" in first
    summary = json.loads(rest)
    assert summary["family"] == "umask" and summary["files"] == len(json.loads((b / "manifest.json").read_text())["files"])
    assert "fp32" in summary["precisions"] and summary["key_id"]
    # the key folder works too, and so does the environment variable
    assert _run(capsys, ["verify", str(b), "--trusted-keys", str(signing_test_key()[1].parent)])[0] == 0
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(signing_test_key()[1]))
    assert _run(capsys, ["verify", str(b)])[0] == 0


def test_verify_refusals_have_distinct_codes(capsys, tmp_path: Path, monkeypatch) -> None:
    from umask.export.signing import generate_keypair

    monkeypatch.delenv(ENV_TRUSTED_KEYS, raising=False)
    pub = str(signing_test_key()[1])
    unsigned = edited_bundle(tmp_path / "u", sign=False)
    code, out, err = _run(capsys, ["verify", str(unsigned), "--trusted-keys", pub])
    assert code == SignatureError.exit_code and "unsigned" in err and len(err.strip().splitlines()) == 1 and not out
    code, out, _ = _run(capsys, ["verify", str(unsigned), "--allow-unsigned"])
    assert code == 0 and "UNSIGNED" in out.splitlines()[0]
    _, mallory = generate_keypair(tmp_path / "k", "mallory")
    code, _, err = _run(capsys, ["verify", str(tiny_bundle()[1]), "--trusted-keys", str(mallory)])
    assert code == SignatureError.exit_code and "not trusted" in err
    broken = edited_bundle(tmp_path / "m", sign=False, manifest_edit=lambda m: m["model"].update(x_scale="ten"))
    code, _, err = _run(capsys, ["verify", str(broken), "--trusted-keys", pub])
    assert code == ManifestError.exit_code and "model.x_scale" in err
    tampered = edited_bundle(tmp_path / "t")
    (tampered / "catalog/llmapp_app.csv").write_bytes(b"app_id,app_cate_id\n")
    code, _, err = _run(capsys, ["verify", str(tampered), "--trusted-keys", pub])
    assert code == BundleError.exit_code and "llmapp_app.csv" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, ["verify", str(tmp_path / "nothing"), "--trusted-keys", pub])
    assert code == BundleError.exit_code and "not a bundle directory" in err


def test_run_honours_the_key_options(capsys, tmp_path: Path, monkeypatch) -> None:
    unsigned = edited_bundle(tmp_path / "u", sign=False)
    signed = str(tiny_bundle()[1])                     # (tiny_bundle() trusts the test key in os.environ)
    monkeypatch.delenv(ENV_TRUSTED_KEYS, raising=False)
    base = ["run", "--history", str(events_csv(tmp_path / "e.csv")), "--task", "short", "--steps", "1"]
    code, _, err = _run(capsys, base + ["--bundle", signed])
    assert code == SignatureError.exit_code and "no trusted key" in err
    code, out, err = _run(capsys, base + ["--bundle", signed, "--trusted-keys", str(signing_test_key()[1])])
    assert code == 0, err
    assert json.loads(out)["result"]["slots"]
    code, _, err = _run(capsys, base + ["--bundle", str(unsigned), "--trusted-keys", str(signing_test_key()[1])])
    assert code == SignatureError.exit_code
    code, out, err = _run(capsys, base + ["--bundle", str(unsigned), "--allow-unsigned"])
    assert code == 0, err


@pytest.mark.parametrize("extra, code, needle", [
    (["--threads", "100000"], 5, "threads"),
    (["--steps", "1000", "--samples", "64"], 5, "steps"),
    (["--now", str(2**63)], 3, "--now"),
    (["--now", "20300101000000"], 3, "now_ts"),
    (["--seed", "-1"], 3, "seed"),
    (["--precision", "fp8"], 6, "fp8"),
    (["--providers", ","], 3, "--providers"),
])
def test_run_errors_are_one_line_with_the_class_code(capsys, tmp_path: Path, extra: list[str], code: int,
                                                    needle: str) -> None:
    hist = str(events_csv(tmp_path / "e.csv"))
    got, out, err = _run(capsys, ["run", "--bundle", str(tiny_bundle()[1]), "--history", hist, "--task", "short",
                                  *extra])
    assert got == code and needle in err and len(err.strip().splitlines()) == 1 and not out, (got, err)
