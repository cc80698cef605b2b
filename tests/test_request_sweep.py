"""benchmarks/accuracy/request_sweep.py: configuration parsing and the headline gaps to the reference."""

from __future__ import annotations

import pytest

from umask.bench.accuracy.request_sweep import config_name, gaps, parse_configs
from umask.runtime.core.errors import InputError


def test_parse_configs_and_names() -> None:
    assert parse_configs("ddim:50:2, ddim:1:1") == [("ddim", 50, 2), ("ddim", 1, 1)]
    assert config_name("umask_small", ("ddim", 1, 1)) == "umask_small@ddim1x1"
    for bad in ("", "ddim:0:1", "ddim:1", "ddim:x:2"):
        with pytest.raises(InputError):
            parse_configs(bad)


def test_gaps_are_relative_to_the_reference_on_headline_metrics_only() -> None:
    def row(model: str, metric: str, value: float, better: str) -> dict:
        return {"protocol": "B1", "data": "real", "model": model, "metric": metric, "value": value, "better": better}

    rows = [row("ref", "rmse_all/app", 0.10, "lower"), row("fast", "rmse_all/app", 0.102, "lower"),
            row("ref", "app_recall@3", 0.50, "higher"), row("fast", "app_recall@3", 0.55, "higher"),
            row("ref", "active_mae/app", 1.0, "lower"), row("fast", "active_mae/app", 9.0, "lower")]  # not headline
    g = gaps(rows, "ref")["fast"]
    assert g["max_abs_gap"] == pytest.approx(0.1) and g["worst"].startswith("B1 real app_recall@3")
    assert (g["better_or_equal"], g["worse"]) == (1, 1)
