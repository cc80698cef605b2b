"""Shared fixtures of the device suite: the bundle under test and the folder the device rows go to.

* bundle: ``--bundle PATH`` or ``UMASK_BUNDLE``; default: the bundle the committed
  benchmarks/results/latency_cpu.json was measured on when it exists here, else
  ``artifacts/bundles/small``. Absent -> the tests that need it skip with one line.
* output: ``UMASK_DEVICE_OUT`` or ``artifacts/device_tests`` (git-ignored); copy the files into
  benchmarks/results/ to commit them, labeled with the device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "artifacts" / "bundles" / "small"
COMMITTED = ROOT / "benchmarks" / "results" / "latency_cpu.json"


def default_bundle() -> Path:
    try:
        b = json.loads(COMMITTED.read_text())["meta"].get("bundle")
    except (OSError, ValueError, KeyError):
        b = None
    if b and (ROOT / b / "manifest.json").is_file():
        return ROOT / b
    return DEFAULT_BUNDLE


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bundle", default=None, help="bundle directory for the device tests (default: "
                                                    "$UMASK_BUNDLE or artifacts/bundles/small)")


@pytest.fixture(scope="session")
def bundle_dir(request: pytest.FixtureRequest) -> Path:
    p = request.config.getoption("--bundle") or os.environ.get("UMASK_BUNDLE") or default_bundle()
    p = Path(p)
    if not (p / "manifest.json").is_file():
        pytest.skip(f"no bundle at {p} (export one: see README 'Benchmarks and device tests')")
    from umask.runtime.core.bundle import BundleError, verify_bundle

    try:
        verify_bundle(p)
    except BundleError as e:
        pytest.skip(f"bundle {p} does not verify: {e}")
    return p


@pytest.fixture(scope="session")
def device_out() -> Path:
    p = Path(os.environ.get("UMASK_DEVICE_OUT") or ROOT / "artifacts" / "device_tests")
    p.mkdir(parents=True, exist_ok=True)
    return p
