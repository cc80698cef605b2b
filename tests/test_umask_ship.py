"""Shipping a per-user U-MASK checkpoint (train/models/umask/ship.py) and loading the shipped folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from umask.runtime.core.errors import InputError
from umask.train.models.umask.model import UMask, umask_config
from umask.train.models.umask.ship import ship
from umask.train.models.umask.trainer import load_model

torch.set_num_threads(1)


def _fake_checkpoint(tmp: Path) -> tuple[Path, UMask]:
    cfg = umask_config("tiny", prior="blend", dit_calendar=True, dit_epos=True, dit_hb=True)
    torch.manual_seed(0)
    model = UMask(cfg)
    with torch.no_grad():   # non-trivial weights everywhere (the zero-initialized heads included)
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ck = tmp / "run" / "ckpt" / "step_000007"
    ck.mkdir(parents=True)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(ck / "ema.safetensors"))
    save_file({k: torch.zeros_like(v) for k, v in sd.items()}, str(ck / "model.safetensors"))  # not the EMA
    (ck / "config.json").write_text(json.dumps({"model": cfg.to_dict(), "data": {"source": "test"}}))
    (ck / "state.json").write_text(json.dumps({"step": 7}))
    return ck, model


def test_shipped_folder_holds_the_ema_weights_and_loads(tmp_path: Path) -> None:
    ck, model = _fake_checkpoint(tmp_path)
    out = ship(ck, tmp_path / "shipped")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["shipped"]["step"] == 7 and cfg["shipped"]["weights"] == "ema" and cfg["model"]["dit_hb"] is True
    sd = load_file(str(out / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    loaded, config = load_model(out)                      # no ema.safetensors: model.safetensors, widened to fp32
    assert config["shipped"]["sha256"] == cfg["shipped"]["sha256"]
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype
        torch.testing.assert_close(w, v.half().to(v.dtype), rtol=0, atol=0)


def test_ship_records_all_evidence_tasks_and_the_model_uses_them(tmp_path: Path) -> None:
    ck, _ = _fake_checkpoint(tmp_path)
    out = ship(ck, tmp_path / "shipped", all_evidence_tasks=["imputation"])
    loaded, cfg = load_model(out)
    assert cfg["inference"]["all_evidence_tasks"] == ["imputation"] and loaded.all_evidence_tasks == {3}
    x, avail, h_u, _, e_pos = loaded.maskgen.example_inputs(4, seed=1)
    batch = {"x0": x, "avail": avail, "task": torch.tensor([0, 3, 1, 3]), "e_pos": e_pos}
    with torch.no_grad():
        _, hard, mo = loaded.evidence(batch, h_u, None, deterministic=True)
    assert torch.equal(hard[1], avail[1]) and torch.equal(hard[3], avail[3])     # imputation: all of avail
    assert torch.equal(hard[0], mo.hard[0]) and hard[0].sum() < avail[0].sum()     # others: the learned mask
    with pytest.raises(InputError, match="teleport"):
        ship(ck, tmp_path / "bad", all_evidence_tasks=["teleport"])


def test_ship_refuses_a_folder_without_ema(tmp_path: Path) -> None:
    ck, _ = _fake_checkpoint(tmp_path)
    out = ship(ck, tmp_path / "shipped")
    with pytest.raises(InputError, match="ema"):
        ship(out, tmp_path / "again")


def _load_family(folder: Path, family: str) -> torch.nn.Module:
    """The family's own loader (what its scorer and exporter call) on a shipped folder."""
    if family == "umask":
        return load_model(folder)[0]
    if family == "ustsllm":
        from umask.train.models.ustsllm.model import load_model as load_ustsllm
        return load_ustsllm(folder)[0]
    if family == "gtslum":
        from umask.train.models.gtslum.trainer import load as load_gtslum
        return load_gtslum(folder)[0]
    if family == "fatsmb":
        from umask.train.models.fatsmb.trainer import load as load_fatsmb
        return load_fatsmb(folder)[0]
    raise AssertionError(f"{folder}: unknown family {family!r}")


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "checkpoints").iterdir()
                                        if (p / "config.json").is_file()))
def test_every_committed_checkpoint_is_intact_and_has_a_card(name: str) -> None:
    """The folders under checkpoints/ are what the main job and the result files name: every file is the one
    the config's ``shipped`` record hashed, a model card exists, and the family's loader builds the network."""
    from umask.train.common.ship import verify_shipped

    folder = Path(__file__).resolve().parents[1] / "checkpoints" / name
    cfg = verify_shipped(folder)
    card = (folder / "MODEL_CARD.md").read_text()
    assert ("SYNTHETIC" in card or "REAL" in card) and f"checkpoints/{name}" in card     # the card names its data
    model = _load_family(folder, cfg["shipped"].get("family", "umask"))   # U-MASK folders predate the field
    assert sum(p.numel() for p in model.parameters()) > 500_000


def test_run_folder_ship_copies_every_file_and_notices_a_change(tmp_path: Path) -> None:
    """Run folders that are already the product (FatsMB, GTS-LUM): copied (FatsMB's weights as fp16), each file hashed."""
    from umask.train.common.ship import ship_fatsmb, verify_shipped

    run = tmp_path / "run"
    run.mkdir()
    save_file({"w": torch.arange(6.0).reshape(2, 3)}, str(run / "model.safetensors"))
    (run / "config.json").write_text(json.dumps({"model": {"d": 3}}))
    with pytest.raises(InputError, match="items.safetensors"):                 # an unfinished run is refused
        ship_fatsmb(run, tmp_path / "bad")
    save_file({"items": torch.arange(4)}, str(run / "items.safetensors"))
    (run / "prior_diffusion.json").write_text('{"gains": [0.5]}')
    out = ship_fatsmb(run, tmp_path / "shipped")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "items.safetensors", "model.safetensors",
                                                      "prior_diffusion.json"]
    for f in ("items.safetensors", "prior_diffusion.json"):
        assert (out / f).read_bytes() == (run / f).read_bytes()
    w = load_file(str(out / "model.safetensors"))["w"]                         # the weights as fp16
    assert w.dtype == torch.float16 and torch.equal(w.float(), torch.arange(6.0).reshape(2, 3))
    cfg = verify_shipped(out)
    assert cfg["model"] == {"d": 3} and cfg["shipped"]["family"] == "fatsmb"
    with pytest.raises(InputError, match="already a shipped folder"):
        ship_fatsmb(out, tmp_path / "again")
    (out / "prior_diffusion.json").write_text('{"gains": [9.0]}')
    with pytest.raises(InputError, match="prior_diffusion.json: missing or changed"):
        verify_shipped(out)
    from umask.train.models.fatsmb.trainer import load as load_fatsmb
    with pytest.raises(InputError, match="changed since it was shipped"):       # the family's loader checks it too
        load_fatsmb(out)
