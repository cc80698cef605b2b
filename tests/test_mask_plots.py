"""benchmarks/mask_plots.py: Fig. 8 / Fig. 9 analogues from a tiny checkpoint trained in the test.

The "tiny" U-MASK config is trained for a few steps on a few simulated (SYNTHETIC) users without the
SBERT profile model (profile_source="none"), then ``python -m umask.bench.plots.masks`` runs on it and
must write both PNGs and JSONs with the expected keys and finite numbers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from umask.train.models.umask.dit import TASKS
from umask.train.models.umask.trainer import TrainConfig, train

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
N_USERS = 10


def _finite(obj, path="$"):
    """Every number in a JSON body is finite (bool and str are skipped)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _finite(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _finite(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        assert math.isfinite(obj), f"{path} = {obj}"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mask_plots_run")
    cfg = TrainConfig(model="tiny", n_users=N_USERS, sim_seed=0, profile_source="none", sbert_cache=None,
                      out=str(out), steps=6, warmup=1, batch_size=8, lr=2e-3, ckpt_every=6, log_every=3,
                      progress=False, seed=0, num_threads=1)
    train(cfg)
    return out / "ckpt"


def test_mask_plots_command(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "umask.bench.plots.masks", "--ckpt", str(tiny_ckpt), "--users",
                        str(N_USERS), "--seed", "0", "--out", str(out), "--stability-seeds", "2"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ARI" in r.stdout and "synthetic users (simulator)" in r.stdout
    for name in ("task_masks.png", "clusters.png"):
        raw = (out / name).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 10_000

    tm = json.loads((out / "task_masks.json").read_text())
    _finite(tm)
    info = tm["info"]
    assert info["step"] == 6 and info["population_matches_checkpoint"] is True
    assert info["label"] == "synthetic users (simulator)" and "step_000006" in info["checkpoint"]
    assert tm["tasks"] == list(TASKS)
    ctx = info["context"]
    for name in TASKS:
        s = tm["per_task"][name]
        for key in ("temporal_revealed", "temporal_avail", "spatial_revealed", "density_k_over_navail",
                    "ratio_effective", "rho_tau_learned", "rho_init", "soft_mask_quantiles", "n_pi_quantiles",
                    "revealed_fraction_of_context", "pi_entropy_rel_uniform_mean"):
            assert key in s, (name, key)
        assert len(s["temporal_revealed"]) == ctx
        assert np.asarray(s["spatial_revealed"]).shape == (info["H"], info["W"])
        t = np.asarray(s["temporal_revealed"])
        assert ((t >= 0) & (t <= 1)).all()
        # the evaluation mask reveals a subset of the available coordinates
        assert (t <= np.asarray(s["temporal_avail"]) + 1e-9).all()
        d = s["density_k_over_navail"]["mean"]
        assert 0.0 <= d <= 1.0
        m = np.asarray(tm["example_user"]["maps"][name])
        assert m.shape == (info["H"] * info["W"], ctx) and set(np.unique(m)) <= {0, 1, 2}
    # short/long-term see the whole context as candidates
    assert tm["per_task"]["short_term"]["avail_fraction_of_context"] == pytest.approx(1.0)

    cl = json.loads((out / "clusters.json").read_text())
    _finite(cl)
    for key in ("ari", "nmi", "ari_kmeans_on_fpat", "cluster", "archetype", "tsne", "density_per_cluster",
                "stability", "controls", "kmeans", "tsne_params"):
        assert key in cl, key
    assert -1.0 <= cl["ari"] <= 1.0
    assert len(cl["cluster"]) == len(cl["archetype"]) == len(cl["tsne"]) == N_USERS
    assert cl["kmeans"]["k"] == 5 and set(cl["cluster"]) == set(range(5))
    assert set(cl["archetype"]) <= {"commuter", "explorer", "night", "homebody", "sparse"}
    for v in cl["density_per_cluster"].values():
        assert set(TASKS) <= set(v)
    assert len(cl["stability"]["ari_tsne_kmeans"]) == 2
