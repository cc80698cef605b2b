"""``umask train umask --data <app-only log>`` end to end, on logs cut from the REAL Tsinghua LLMApp
sample (runtime/core/usage_log.py): its time and app columns (and, for the population, its user and
bytes columns), with the base station dropped, so the location channel is ABSENT.

The shipped sample covers one day (2016-04-20, 6 users) and training needs >= 3 whole days
(train / validation / test), so the logs repeat each real event on 4 consecutive days (the same
local time, the day shifted). Every value still comes from the sample; only the dates are added.

The tiny model and 3 steps check the plumbing and the loss, not the accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umask.cli import main
from umask.runtime.core.events import EventLog, format_compact_time, read_llmapp_sample
from umask.runtime.core.featurize import DAY_SECONDS
from umask.train.models.umask.data import (COLD, UserWindowDataset, collate, load_users, population_fingerprint,
                                           save_users, users_from_trace, val_windows)
from umask.train.models.umask.model import UMASK_CONFIGS
from umask.train.models.umask.trainer import load_model, resolve_checkpoint

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "tsinghua_app_usage" / "app_usage_trace_sample_llmapp.csv.gz"
DAYS = 4


def write_app_only(path: Path, ev: EventLog, *, users: bool, nbytes: bool) -> Path:
    """The events as an app-only CSV (no location column), each repeated on DAYS consecutive days."""
    header = ["user_id"] * users + ["time", "app_id"] + ["bytes"] * nbytes
    lines = [",".join(header)]
    for d in range(DAYS):
        stamps = format_compact_time(ev.ts + d * DAY_SECONDS)
        for i in range(len(ev)):
            row = [str(int(ev.user[i]))] * users + [str(int(stamps[i])), str(int(ev.app[i]))]
            lines.append(",".join(row + [str(int(ev.bytes[i]))] * nbytes))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def real() -> EventLog:
    return read_llmapp_sample(SAMPLE)


@pytest.fixture(scope="module")
def one_phone(real: EventLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`time,app` only: the log of the sample's busiest user, as one phone would export it."""
    users, counts = np.unique(real.user, return_counts=True)
    return write_app_only(tmp_path_factory.mktemp("apps") / "apps.csv", real.for_user(int(users[counts.argmax()])),
                          users=False, nbytes=False)


@pytest.fixture(scope="module")
def run(one_phone: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """`umask train umask --data apps.csv --config tiny --steps 3 ...`, in process: (run dir, exit code, stderr)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("run") / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["train", "umask", "--data", str(one_phone), "--config", "tiny", "--steps", "3", "--batch-size", "4",
                   "--eval-every", "3", "--eval-batches", "1", "--no-progress", "--num-threads", "1",
                   "--sbert-cache", str(out.parent / "sbert"), "--out", str(out)])
    return out, rc, err.getvalue()


def test_cli_trains_on_an_app_only_log(run: tuple[Path, int, str]) -> None:
    out, rc, err = run
    assert rc == 0, err
    assert "it cannot predict" in err and "location:" in err and "traffic:" in err   # said before training
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["absent_channels"] == ["location", "traffic"]
    assert any(line.startswith("location:") for line in config["data"]["cannot_predict"])
    assert config["data"]["n_users_loaded"] == 1
    # nothing was learned about the absent channels' scale: their training RMS is 0
    rms = config["data"]["channel_rms_train"]
    assert rms[0] == 0.0 and rms[-1] == 0.0 and max(rms[1:-1]) > 0
    ckpt = resolve_checkpoint(out)
    assert ckpt.name == "step_000003"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(np.isfinite(losses))


def test_windows_of_an_app_only_population(real: EventLog, tmp_path: Path) -> None:
    path = write_app_only(tmp_path / "pop.csv", real, users=True, nbytes=True)
    users = users_from_trace(path)                                    # routed by the header
    assert [u.user for u in users] == sorted(real.users.tolist())
    assert all(u.absent == frozenset({"location"}) for u in users)   # bytes column: traffic is present
    # the absent channel survives save_users / load_users
    back, _ = load_users(save_users(tmp_path / "users.npz", users))
    assert [u.absent for u in back] == [u.absent for u in users]
    assert population_fingerprint(back) == population_fingerprint(users)

    window = UMASK_CONFIGS["tiny"].window
    for ds in (UserWindowDataset(users, window), UserWindowDataset(users, window, val_windows(users, window))):
        loc = users[0].tensor.channels.location_index
        n_cold_evidence = 0
        for i in range(0, len(ds), 7):
            item = ds[i]
            present = item["channel_present"].numpy()
            assert present[loc] == 0.0 and present[:loc].all()        # traffic + apps present, location absent
            assert not item["x0"][loc].any()
            for k in ("avail", "target"):                             # only cell (0, 0) carries evidence / targets
                assert not item[k][..., 1:].any() and not item[k][..., 1:, :].any()
            assert item["target"].sum() > 0
            if item["task"] == COLD:
                n_cold_evidence += int(item["avail"].sum())
        assert n_cold_evidence > 0                                    # active slots found without a location


def test_the_loss_never_reads_the_absent_channels(run: tuple[Path, int, str], one_phone: Path) -> None:
    out, rc, _ = run
    assert rc == 0
    model, _ = load_model(resolve_checkpoint(out))
    users = users_from_trace(one_phone)
    ds = UserWindowDataset(users, model.cfg.window, val_windows(users, model.cfg.window))
    batch = collate([ds[i] for i in range(0, len(ds), max(1, len(ds) // 8))][:8])
    ch = users[0].tensor.channels
    assert batch["channel_present"][:, ch.location_index].eq(0).all() and batch["channel_present"][:, 0].eq(0).all()

    def loss(b: dict[str, torch.Tensor], scramble: bool) -> torch.Tensor:
        """The training loss at fixed noise; ``scramble`` overwrites the DiT's location and traffic output."""
        def hook(_module, _inputs, pred):
            pred = pred.clone()
            g = torch.Generator().manual_seed(1)
            for c in (0, ch.location_index):
                pred[:, c] = 10.0 * torch.randn(pred[:, c].shape, generator=g)
            return pred

        handle = model.dit.register_forward_hook(hook) if scramble else None
        try:
            with torch.no_grad():
                total, _ = model(b, generator=torch.Generator().manual_seed(0))
        finally:
            if handle is not None:
                handle.remove()
        return total

    base = loss(batch, scramble=False)
    assert torch.equal(base, loss(batch, scramble=False))            # deterministic at fixed noise
    assert torch.equal(base, loss(batch, scramble=True))             # absent channels: not in the loss
    # the check can fail: without channel_present the same scrambling changes the loss
    full = {k: v for k, v in batch.items() if k != "channel_present"}
    assert not torch.equal(loss(full, scramble=False), loss(full, scramble=True))
