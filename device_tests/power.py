"""Jetson power and clock state from ``tegrastats`` (or ``jtop``), and energy per inference.

``PowerMonitor`` samples the board's total input rail while a ``with`` block runs; ``energy_j`` is
the trapezoid integral of power over the sample times, and energy per inference = energy_j / the
number of requests the block served. Not collected by pytest (no ``test_`` prefix).

tegrastats lines differ across Jetson generations; the total input rail is the first present of
``TOTAL_RAILS`` (Orin: ``VDD_IN 4321mW/4321mW``; Nano / TX2: ``POM_5V_IN 2914/2914``; Xavier:
``VIN_SYS_5V0`` or ``SYS5V``). Without one of them the sum of every rail is used and labeled so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0", "SYS5V")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?\b")
_FREQ = re.compile(r"\b(GR3D_FREQ|EMC_FREQ)\s+(\d+)%")


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One tegrastats line -> {"rails_mw": {name: instantaneous mW}, "total_mw", "total_rail", "freq_pct"}."""
    rails = {m.group(1): int(m.group(2)) for m in _RAIL.finditer(line)
             if m.group(1) not in ("RAM", "SWAP", "IRAM", "LFB")}
    total_rail = next((r for r in TOTAL_RAILS if r in rails), None)
    total = rails[total_rail] if total_rail else (sum(rails.values()) if rails else None)
    freq = {m.group(1): int(m.group(2)) for m in _FREQ.finditer(line)}
    return {"rails_mw": rails, "total_mw": total, "total_rail": total_rail or ("sum of rails" if rails else None),
            "freq_pct": freq}


def energy_joules(times_s: list[float], power_mw: list[float]) -> float:
    """Trapezoid integral of power (mW) over time (s) -> J."""
    if len(times_s) != len(power_mw):
        raise ValueError("times and powers differ in length")
    e = 0.0
    for i in range(1, len(times_s)):
        dt = times_s[i] - times_s[i - 1]
        if dt < 0:
            raise ValueError("sample times must not decrease")
        e += 0.5 * (power_mw[i] + power_mw[i - 1]) * dt
    return e / 1000.0


@dataclass
class PowerReport:
    source: str
    rail: str | None
    n_samples: int
    seconds: float
    mean_mw: float | None
    energy_j: float | None
    last_line: str = ""
    freq_pct: dict[str, int] = field(default_factory=dict)

    def per_inference(self, n: int) -> float | None:
        return None if self.energy_j is None or n < 1 else self.energy_j / n

    def to_dict(self, n_requests: int | None = None) -> dict[str, Any]:
        d = {"source": self.source, "rail": self.rail, "n_samples": self.n_samples, "seconds": round(self.seconds, 3),
             "mean_mw": self.mean_mw, "energy_j": self.energy_j, "freq_pct": self.freq_pct,
             "last_line": self.last_line[:300]}
        if n_requests is not None:
            d.update({"requests": n_requests, "energy_per_inference_j": self.per_inference(n_requests)})
        return d


def available() -> str | None:
    """'tegrastats', 'jtop' or None."""
    if shutil.which("tegrastats"):
        return "tegrastats"
    try:
        import jtop  # noqa: F401

        return "jtop"
    except Exception:  # noqa: BLE001
        return None


class PowerMonitor:
    """``with PowerMonitor() as pm: ...`` then ``pm.report``; samples every ``interval_ms``."""

    def __init__(self, interval_ms: int = 100) -> None:
        self.interval_ms = int(interval_ms)
        self.source = available()
        self.times: list[float] = []
        self.powers: list[float] = []
        self.rail: str | None = None
        self.last = ""
        self.freq: dict[str, int] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.report: PowerReport | None = None

    def _add(self, t: float, parsed: dict[str, Any], line: str) -> None:
        if parsed.get("total_mw") is None:
            return
        self.times.append(t)
        self.powers.append(float(parsed["total_mw"]))
        self.rail = parsed.get("total_rail")
        self.freq = parsed.get("freq_pct") or self.freq
        self.last = line

    def _read_tegrastats(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._add(time.perf_counter(), parse_tegrastats(line), line.strip())
            if self._stop.is_set():
                break

    def _read_jtop(self) -> None:
        from jtop import jtop

        with jtop(interval=self.interval_ms / 1000.0) as j:
            while not self._stop.is_set() and j.ok():
                p = j.power
                tot = p.get("tot", {}) if isinstance(p, dict) else {}
                mw = tot.get("power") if isinstance(tot, dict) else None
                if mw is not None:
                    self._add(time.perf_counter(), {"total_mw": mw, "total_rail": "jtop tot"}, str(tot))

    def __enter__(self) -> PowerMonitor:
        if self.source is None:
            raise RuntimeError("neither tegrastats nor jtop is available")
        self.t0 = time.perf_counter()
        if self.source == "tegrastats":
            self._proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read_tegrastats, daemon=True)
        else:
            self._thread = threading.Thread(target=self._read_jtop, daemon=True)
        self._thread.start()
        time.sleep(2.5 * self.interval_ms / 1000.0)          # first samples before the work starts
        return self

    def __exit__(self, *exc: Any) -> None:
        time.sleep(1.5 * self.interval_ms / 1000.0)
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=5)
        n = len(self.powers)
        self.report = PowerReport(
            source=self.source or "none", rail=self.rail, n_samples=n,
            seconds=(self.times[-1] - self.times[0]) if n > 1 else 0.0,
            mean_mw=sum(self.powers) / n if n else None,
            energy_j=energy_joules(self.times, self.powers) if n > 1 else None, last_line=self.last,
            freq_pct=self.freq)
