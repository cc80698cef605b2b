"""Joint U-MASK training: loss goes down, safetensors checkpoints, exact resume, kill + resume, DDP.

Everything runs the "tiny" config on 4 simulated (SYNTHETIC) users with one torch thread.
The subprocess tests (kill + resume, torchrun with 2 processes) are marked ``slow`` but stay small
(a few seconds each) and run in CI (``pytest -q`` selects every marker).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from umask.runtime.core.errors import InputError
from umask.train.models.umask.data import (UserWindowDataset, build_profile_table, channel_rms, collate, save_users,
                                 simulated_users)
from umask.train.diffusion import DDIMSampler
from umask.train.models.umask.trainer import (CKPT_FILES, Dist, TrainConfig, evaluate, find_latest_checkpoint, flatten_optimizer,
                                 is_complete, load_model, lr_at, save_checkpoint, seed_everything, train,
                                 unflatten_optimizer)
from umask.train.models.umask.model import UMASK_CONFIGS, UMask, UMaskConfig, random_mask

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
N_USERS = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(users .npz, SBERT cache): the population is simulated once and the profile embeddings cached,
    so every training run below (in-process or not) skips the simulator and the SBERT model."""
    d = tmp_path_factory.mktemp("umask_train")
    users = simulated_users(N_USERS, seed=0)
    npz = save_users(d / "users.npz", users, {"n_users": N_USERS, "sim_seed": 0})
    build_profile_table(users, cache_dir=d / "sbert")
    return npz, d / "sbert"


def _cfg(data: tuple[Path, Path], out: Path, **kw) -> TrainConfig:
    base = {"model": "tiny", "data": str(data[0]), "sbert_cache": str(data[1]), "out": str(out), "progress": False,
            "log_every": 1, "warmup": 2, "lr": 2e-3, "batch_size": 8, "ckpt_every": 10, "seed": 0}
    base.update(kw)
    return TrainConfig(**base)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cli(data: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return ["-m", "umask.train.models.umask.trainer", "--config", "tiny", "--data", str(data[0]), "--sbert-cache", str(data[1]),
            "--out", str(out), "--no-progress", "--warmup", "2", "--num-threads", "1", *extra]


def _steps_logged(out: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(x)]


def _assert_no_pickle(path: Path) -> None:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and json.loads(raw[8:8 + n]), f"{path} is not a safetensors file"
    assert not raw.startswith(b"\x80") and not raw.startswith(b"PK"), f"{path} looks like a pickle / torch zip"


# -----------------------------------------------------------------------------
# Model pieces
# -----------------------------------------------------------------------------

def _tiny_batch(data, cfg_name: str = "tiny", n: int = 8, **overrides):
    from umask.train.models.umask.data import load_users

    users, _ = load_users(data[0])
    mcfg = replace(UMASK_CONFIGS[cfg_name], **overrides).with_data(22, 4, 4, int(users[0].e_pos.shape[-1]))
    table = build_profile_table(users, cache_dir=data[1])
    ds = UserWindowDataset(users, mcfg.window, profiles=table)
    step = len(ds) // n
    return mcfg, users, collate([ds[(i * step + i % 4, 0)] for i in range(n)])


def test_random_mask_budget() -> None:
    g = torch.Generator().manual_seed(0)
    avail = (torch.rand((3, 1, 16, 4, 4), generator=g) < 0.4).float()
    avail[2] = 0.0
    m = random_mask(avail, torch.tensor([0.5, 0.25, 0.5]), g)
    n = avail.flatten(1).sum(1)
    assert m.flatten(1).sum(1).tolist() == [torch.round(0.5 * n[0]).item(), torch.round(0.25 * n[1]).item(), 0.0]
    assert (m <= avail).all()


@pytest.mark.parametrize("overrides", [{}, {"mask_mode": "random"}, {"mask_mode": "none"}, {"use_profile": False},
                                       {"dit_conditioning": False}, {"t_power": 2.0, "data_scale": "none"}])
def test_model_variants_and_complete(data, overrides) -> None:
    mcfg, users, batch = _tiny_batch(data, **overrides)
    seed_everything(0)
    model = UMask(mcfg)
    model.set_data_scale(torch.from_numpy(channel_rms(users)))
    total, parts = model.loss(batch, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(total) and parts["target"] > 0
    total.backward()
    if overrides.get("mask_mode") == "learned" or not overrides:
        assert 0.0 < parts["evidence_ratio"] < 1.0
    if overrides.get("use_profile") is False:
        assert parts["nce"] == 0.0
    pred, mask = model.complete(batch, DDIMSampler(model.schedule), steps=3, n_samples=2, seed=0, return_mask=True)
    assert pred.shape == batch["x0"].shape and torch.isfinite(pred).all()
    assert (mask <= batch["avail"]).all()                       # evidence only from available coordinates
    if overrides.get("mask_mode") == "none":
        assert torch.equal(mask, batch["avail"])
    ev = mask.expand_as(pred) > 0.5
    assert torch.equal(pred[ev], batch["x0"][ev])               # exact evidence
    again = model.complete(batch, DDIMSampler(model.schedule), steps=3, n_samples=2, seed=0)
    assert torch.equal(pred, again)                              # seeded
    # the config (t_power included) survives the checkpoint's JSON round trip and rebuilds the same schedule
    back = UMaskConfig.from_dict(json.loads(json.dumps(mcfg.to_dict())))
    assert back == mcfg and type(UMask(back).schedule) is type(model.schedule)


def test_lr_schedule() -> None:
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3) and lr_at(100, cfg) == pytest.approx(1e-4)
    assert lr_at(55, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 100))


def test_optimizer_state_roundtrip() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 3)).sum().backward()
        opt.step()
    tensors, meta = flatten_optimizer(opt)
    assert "0.exp_avg" in tensors and "0.step" in meta["scalars"] and "0.step" not in tensors
    json.dumps(meta)
    opt2 = torch.optim.AdamW(net.parameters(), lr=1.0)
    unflatten_optimizer(opt2, tensors, meta)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for k in a["state"]:
        for name, v in a["state"][k].items():
            assert torch.equal(v, b["state"][k][name])


def test_latest_checkpoint_never_picks_a_partial_one(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(net.parameters())
    root = tmp_path / "ckpt"
    for step in (5, 10):
        save_checkpoint(root, step, net, net, opt, {"model": {}}, {"rng": None}, keep_last=3)
    assert (root / "latest").read_text().strip() == "step_000010"
    assert find_latest_checkpoint(root) == root / "step_000010"
    # a half-written newer directory, a stale temp directory and a pointer to the broken one
    broken = root / "step_000015"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\x00" * 5)
    (root / ".tmp-step_000020-123").mkdir()
    (root / "latest").write_text("step_000015\n")
    assert not is_complete(broken)
    assert find_latest_checkpoint(root) == root / "step_000010"
    # a complete newer directory whose pointer update was lost (killed between rename and pointer)
    save_checkpoint(root, 20, net, net, opt, {"model": {}}, {"rng": None}, keep_last=5)
    (root / "latest").write_text("step_000010\n")
    assert find_latest_checkpoint(root) == root / "step_000020"


def test_resolve_and_best_checkpoint(tmp_path: Path) -> None:
    from umask.train.common.checkpoints import best_checkpoint, resolve_checkpoint

    net = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(net.parameters())
    run = tmp_path / "run"
    root = run / "ckpt"
    for step in (5, 10):
        save_checkpoint(root, step, net, net, opt, {"model": {}}, {"rng": None}, keep_last=3)
    s5, s10 = root / "step_000005", root / "step_000010"
    assert resolve_checkpoint(run) == s10 and resolve_checkpoint(root) == s10
    assert resolve_checkpoint(root / "latest") == s10 and resolve_checkpoint(s5) == s5
    assert best_checkpoint(run) == s10                        # no best pointer: the newest complete one
    (root / "best").write_text("step_000005\n")
    assert best_checkpoint(run) == s5 and resolve_checkpoint(root / "best") == s5
    with pytest.raises(InputError, match="nothing"):
        resolve_checkpoint(run / "nothing")
    with pytest.raises(InputError):
        best_checkpoint(tmp_path / "empty")


# -----------------------------------------------------------------------------
# Training runs
# -----------------------------------------------------------------------------

def test_tiny_training_loss_drops_and_checkpoints_are_safetensors(data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = _cfg(data, out, steps=20, ckpt_every=10)
    final = train(cfg)
    root = out / "ckpt"
    assert final == root / "step_000020" and (root / "latest").read_text().strip() == "step_000020"
    for step in (10, 20):
        d = root / f"step_{step:06d}"
        assert is_complete(d) and sorted(p.name for p in d.iterdir()) == sorted(CKPT_FILES)
        for f in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
            _assert_no_pickle(d / f)
            assert load_file(str(d / f))
        state = json.loads((d / "state.json").read_text())
        assert state["step"] == step and state["data_cursor"]["samples_seen"] == step * 8
        assert state["optimizer"]["scalars"]["0.step"]["value"] == step
        assert isinstance(state["rng"]["torch"], list) and isinstance(state["rng"]["numpy"][1], list)
        assert json.loads((d / "config.json").read_text())["model"]["name"] == "tiny"
    assert _steps_logged(out) == list(range(1, 21))

    # the loss on fixed windows and fixed noise goes down against the same initialization
    from umask.train.models.umask.trainer import load_population

    users, _ = load_population(cfg)
    trained, config = load_model(final, ema=False)
    mcfg = trained.cfg
    seed_everything(0)
    init = UMask(mcfg)
    init.set_data_scale(torch.from_numpy(channel_rms(users)))
    ds = UserWindowDataset(users, mcfg.window, profiles=build_profile_table(users, cache_dir=data[1]))
    ecfg = replace(cfg, eval_batches=12)
    before = evaluate(init, ds, ecfg, torch.device("cpu"), Dist())["val/loss"]
    after = evaluate(trained, ds, ecfg, torch.device("cpu"), Dist())["val/loss"]
    assert after < 0.97 * before, (before, after)
    assert torch.equal(trained.x_scale, init.x_scale)            # the data scale travels with the weights
    assert config["data"]["fingerprint"] and config["train"]["steps"] == 20


def test_resume_continues_exactly(data, tmp_path: Path) -> None:
    split, full = tmp_path / "split", tmp_path / "full"
    first = train(_cfg(data, split, steps=20, stop_at=10, ckpt_every=5))
    assert first.name == "step_000010" and is_complete(split / "ckpt" / "step_000005")
    resumed = train(_cfg(data, split, steps=20, ckpt_every=5))          # --resume auto
    straight = train(_cfg(data, full, steps=20, ckpt_every=5))
    assert resumed.name == straight.name == "step_000020"
    for f in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        a, b = load_file(str(resumed / f)), load_file(str(straight / f))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=f"{f}:{k}")
    sa = json.loads((resumed / "state.json").read_text())
    sb = json.loads((straight / "state.json").read_text())
    assert sa["optimizer"] == sb["optimizer"] and sa["data_cursor"] == sb["data_cursor"]
    assert _steps_logged(split) == list(range(1, 21))                     # no duplicated records
    # resuming with another model config is refused
    with pytest.raises(InputError, match="model config"):
        train(_cfg(data, split, steps=30, model_overrides={"w_nce": 0.5}))


def test_warm_start_loads_weights_on_other_data_and_refuses_another_model(data, tmp_path: Path) -> None:
    src = train(_cfg(data, tmp_path / "src", steps=10))
    # a different population (its own users file): resume would refuse it, a warm start takes it
    other = save_users(tmp_path / "other.npz", simulated_users(3, seed=5), {"n_users": 3, "sim_seed": 5})
    with pytest.raises(InputError, match="cannot resume"):
        train(_cfg((other, data[1]), tmp_path / "src", steps=20))
    out = tmp_path / "warm"
    warm = train(_cfg((other, data[1]), out, steps=1, lr=0.0, warmup=0, init_from=str(src)))
    # lr 0: one step leaves the loaded weights as they were, so the run starts from the checkpoint's
    a, b = load_file(str(src / "model.safetensors")), load_file(str(warm / "model.safetensors"))
    dit = [k for k in a if k.startswith("dit.")]
    assert dit
    for k in dit:                      # (the mask generator's buffers move on every step, lr or not)
        torch.testing.assert_close(a[k], b[k], msg=k)
    state = json.loads((warm / "state.json").read_text())
    assert state["step"] == 1 and json.loads((out / "config.json").read_text())["train"]["init_from"] == str(src)
    with pytest.raises(InputError, match="model config differs"):       # another architecture
        train(_cfg((other, data[1]), tmp_path / "warm2", steps=1, init_from=str(src),
                   model_overrides={"nce_dim": 32}))
    # a loss-only field (UMask.TRAINING_ONLY_FIELDS) may change in a fine-tune: the learned budget of v5
    tuned = train(_cfg((other, data[1]), tmp_path / "warm3", steps=1, init_from=str(src),
                       model_overrides={"budget_mode": "free", "w_nce": 0.5}))
    assert json.loads((tuned / "config.json").read_text())["model"]["budget_mode"] == "free"
    # the prior's kind may change between kinds of the same network (UMask.WARM_START_FIELDS: v6's task_blend
    # from v4's blend); a change that adds the prior input changes the network and is refused by name
    with pytest.raises(InputError, match="weights do not fit this model .prior None -> 'blend'."):
        train(_cfg((other, data[1]), tmp_path / "warm4", steps=1, init_from=str(src), model_overrides={"prior": "blend"}))
    blend = train(_cfg((other, data[1]), tmp_path / "blend", steps=1, model_overrides={"prior": "blend"}))
    task = train(_cfg((other, data[1]), tmp_path / "task", steps=1, lr=0.0, warmup=0, init_from=str(blend),
                      model_overrides={"prior": "task_blend"}))
    m = json.loads((task / "config.json").read_text())["model"]
    assert m["prior"] == "task_blend" and m["window"]["prior"] == "task_blend"


@pytest.mark.parametrize("mode", ["pin", "free", "price"])
def test_budget_modes_learn_rho_at_its_own_lr(data, tmp_path: Path, mode: str) -> None:
    """eq. 13's rho_tau: "pin" (v1-v4) holds it near rho_init, "free" and "price" let it move; the
    budget LR multiplier puts rho's logit in its own optimizer group at lr x budget_lr_scale."""
    from umask.train.common.loop import LoopConfig, make_optimizer

    cfg = replace(UMASK_CONFIGS["tiny"].with_data(22, 4, 4, 15), budget_mode=mode, budget_lr_scale=50.0)
    model = UMask(cfg)
    groups = [g for g in make_optimizer(model, LoopConfig(lr=1e-3)).param_groups if g["lr_scale"] != 1.0]
    assert len(groups) == 1 and groups[0]["params"] == [model.maskgen.rho_logit] and groups[0]["lr_scale"] == 50.0
    out = tmp_path / mode
    train(_cfg(data, out, steps=12, model_overrides={"budget_mode": mode, "budget_lr_scale": 50.0, "w_budget": 0.1}))
    rec = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "loss" in json.loads(x)]
    rho0 = np.array(UMASK_CONFIGS["tiny"].maskgen_config().rho_init)
    rho = np.array([rec[-1][f"rho/{t}"] for t in ("short_term", "long_term", "cold_start", "imputation")])
    assert np.all(np.isfinite(rho)) and np.all((rho > 0) & (rho < 1))
    moved = np.abs(rho - rho0).max()
    if mode == "pin":
        assert moved < 0.05, (mode, rho)             # the pin term pulls back towards rho_init
    else:
        assert moved > 0.02, (mode, rho)             # 12 steps at 50x the LR move the logit visibly
    if mode == "price":
        assert rec[-1]["budget"] > 0 and rho.mean() < rho0.mean()   # a price on evidence lowers the budgets
    with pytest.raises(InputError, match="budget_mode"):
        replace(cfg, budget_mode="cap")


def test_simulated_population_names_each_part() -> None:
    from umask.train.models.umask.data import simulated_population

    pop = simulated_population([(0, 2), (3, 2)])
    alone = simulated_users(2, seed=0)
    assert len(pop) == 4 and len({u.user for u in pop}) == 4
    assert all(u.user >= 1_000_000 for u in pop[2:])
    for a, b in zip(pop[:2], alone):           # part 0 is exactly the 2-user population of seed 0
        assert np.array_equal(a.tensor.key, b.tensor.key) and np.array_equal(a.tensor.values, b.tensor.values)
    with pytest.raises(InputError, match="n_users"):
        simulated_population([(0, 0)])


def test_validation_early_stop_and_best_pointer(data, tmp_path: Path) -> None:
    out = tmp_path / "es"
    # lr = 0: the validation loss can never improve after the first evaluation -> stop at the second
    cfg = _cfg(data, out, steps=30, lr=0.0, eval_every=2, eval_batches=2, patience=1, ckpt_every=100)
    final = train(cfg)
    assert final.name == "step_000004"
    assert (out / "ckpt" / "best").read_text().strip() == "step_000002"
    vals = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "val/loss" in x]
    assert [v["step"] for v in vals] == [2, 4] and vals[0]["val/loss"] == vals[1]["val/loss"]
    assert train(cfg) == final                                    # an early-stopped run stays stopped
    with pytest.raises(InputError, match="resume never"):
        train(replace(cfg, resume="never"))


@pytest.mark.slow
def test_kill_and_resume(data, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = [sys.executable, *_cli(data, out, "--steps", "60", "--ckpt-every", "2", "--log-every", "5")]
    latest = out / "ckpt" / "latest"
    with open(tmp_path / "first.log", "wb") as logf:
        proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=logf, stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        while not latest.exists() and proc.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    root = out / "ckpt"
    pointed = root / latest.read_text().strip()
    assert is_complete(pointed), "the latest pointer names an incomplete checkpoint"
    steps = sorted(int(p.name[5:]) for p in root.glob("step_*"))
    assert steps and steps[-1] < 60
    assert all(is_complete(root / f"step_{s:06d}") for s in steps), "a step_* directory is incomplete"
    killed_at = find_latest_checkpoint(root)
    assert killed_at is not None

    res = subprocess.run(args, check=False, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"resumed from {killed_at}" in res.stderr
    final = find_latest_checkpoint(root)
    assert final == root / "step_000060" and json.loads((final / "state.json").read_text())["step"] == 60
    assert not list(root.glob(".tmp-*")), "temporary checkpoint directories left behind"
    logged = _steps_logged(out)
    assert logged == sorted(set(logged)) and logged[-1] == 60


@pytest.mark.slow
def test_ddp_two_processes(data, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            *_cli(data, out, "--steps", "6", "--ckpt-every", "3", "--log-every", "2", "--batch-size", "4")]
    res = subprocess.run(args, check=False, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    root = out / "ckpt"
    final = find_latest_checkpoint(root)
    assert final == root / "step_000006" and is_complete(root / "step_000003")
    config = json.loads((final / "config.json").read_text())
    state = json.loads((final / "state.json").read_text())
    assert config["world_size"] == 2 and state["world_size"] == 2
    assert state["data_cursor"]["samples_seen"] == 6 * 4 * 2
    assert len(state["rng"]) == 2 and state["rng"][0] != state["rng"][1]    # per-rank random streams
    assert _steps_logged(out) == [2, 4, 6]                                   # rank 0 logs, once
    assert "[rank 0]" in res.stderr and "step_000006" in res.stdout
    model, _ = load_model(final)
    assert all(math.isfinite(float(p.detach().abs().sum())) for p in model.parameters())
    assert np.isfinite(json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["loss"])
