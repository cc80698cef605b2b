"""Settings declared once (train/common/config.py): the argparse CLI generated from dataclass fields,
the two U-MASK trainers' command lines, and the commands that scripts and result files record."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import pytest

from umask.runtime.core.errors import InputError
from umask.train.common.config import (HelpFormatter, LoopConfig, add_dataclass_args, cli_fields, dataclass_from_args,
                                       with_default)
from umask.train.models.umask import grid, trainer

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Demo:
    width: int = field(default=64, metadata={"help": "hidden width"})
    rate: float | None = field(default=None, metadata={"help": "a rate"})
    cache: str | None = field(default="cache/x", metadata={"help": "cache folder", "none_text": ""})
    mode: Literal["a", "b"] = field(default="a", metadata={"help": "which mode"})
    fast: bool = field(default=False, metadata={"help": "go fast"})
    bar: bool = field(default=True, metadata={"help": "no bar"})
    patch: tuple[int, int, int] = field(default=(4, 5, 5), metadata={"help": "patch sizes"})
    extra: dict[str, Any] = field(default_factory=dict, metadata={"help": "overrides", "flag": "--set"})
    name: str = field(default="x", metadata={"help": "renamed", "flag": "--config", "choices": ("x", "y"),
                                             "group": "model"})
    internal: int = field(default=3, metadata={"cli": False})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo", formatter_class=HelpFormatter)
    add_dataclass_args(p, Demo)
    return p


def test_fields_become_typed_options() -> None:
    p = _parser()
    assert dataclass_from_args(Demo, p.parse_args([])) == Demo()
    ns = p.parse_args(["--width", "8", "--rate", "0.5", "--cache", "", "--mode", "b", "--fast", "--no-bar",
                       "--patch", "2,1,1", "--set", "w=0.1", "--set", 'label="z"', "--set", "k=raw", "--config", "y"])
    d = dataclass_from_args(Demo, ns)
    assert d == Demo(width=8, rate=0.5, cache=None, mode="b", fast=True, bar=False, patch=(2, 1, 1),
                     extra={"w": 0.1, "label": "z", "k": "raw"}, name="y")
    assert dataclass_from_args(Demo, ns, width=9).width == 9                   # explicit overrides win
    for bad in (["--mode", "c"], ["--patch", "1,2"], ["--width", "x"], ["--set", "novalue"], ["--config", "z"],
                ["--internal", "1"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)


def test_help_is_generated_from_the_descriptions() -> None:
    text = " ".join(_parser().format_help().split())
    for snippet in ("--width N hidden width (default: 64)", "--patch N,N,N patch sizes (default: 4,5,5)",
                    "--no-bar no bar", "--fast go fast", "--set KEY=VALUE overrides; repeatable",
                    "{a,b} which mode (default: a)", "model:", "--config {x,y}"):
        assert snippet in text, snippet
    assert "(default: False)" not in text and "(default: None)" not in text and "internal" not in text


@pytest.mark.parametrize("cls", [trainer.TrainConfig, grid.GridTrainConfig])
def test_every_trainer_setting_has_a_description_and_a_json_round_trip(cls) -> None:
    assert issubclass(cls, LoopConfig)
    missing = [f.name for f in cli_fields(cls) if not f.metadata.get("help")]
    assert not missing, missing
    help_text = " ".join((trainer if cls is trainer.TrainConfig else grid).build_parser().format_help().split())
    for f in cli_fields(cls):
        shown = f.metadata.get("help_off", f.metadata["help"]) if f.default is True else f.metadata["help"]   # --no-x
        assert " ".join(shown.split()) in help_text, f.name
    cfg = cls()
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_family_defaults_keep_the_shared_description() -> None:
    loop_fields = {f.name: f for f in fields(LoopConfig)}
    grid_fields = {f.name: f for f in fields(grid.GridTrainConfig)}
    assert grid.GridTrainConfig().steps == 1500 and LoopConfig().steps == 1000
    assert dict(grid_fields["steps"].metadata) == dict(loop_fields["steps"].metadata)
    assert grid.MilanTrainConfig is grid.GridTrainConfig
    with pytest.raises(TypeError):
        with_default(LoopConfig, "no_such_setting", 1)


def _recorded_commands() -> list[list[str]]:
    """Trainer commands recorded in the README and the result tables (real inputs)."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "benchmarks" / "results").glob("*.md"))]:
        for m in re.finditer(r"python -m umask\.train\.models\.umask\.trainer ([^`|\n]*)", path.read_text()):
            out.append(shlex.split(m.group(1)))
    return out


def test_recorded_trainer_commands_still_parse() -> None:
    cmds = _recorded_commands()
    assert len(cmds) >= 3
    for argv in cmds:
        cfg = trainer.config_from_args(trainer.build_parser().parse_args(argv))
        assert cfg.model == argv[argv.index("--config") + 1]
        if "--no-profile" in argv:
            assert cfg.model_overrides["use_profile"] is False


def test_train_user_v2_script_flags() -> None:
    script = (ROOT / "scripts" / "train_user_v2.sh").read_text()
    common = shlex.split(re.search(r"COMMON=\((.*?)\)", script, re.S).group(1))
    p = trainer.build_parser()
    cfg = trainer.config_from_args(p.parse_args(common))
    assert (cfg.model, cfg.steps, cfg.warmup, cfg.eval_every, cfg.n_users, cfg.num_threads, cfg.progress) == \
        ("small", 1000, 50, 250, 300, 1, False)
    assert cfg.model_overrides == {"t_power": 2.0, "data_scale": "none"}
    ab = trainer.config_from_args(p.parse_args([*common, "--no-profile", "--mask-mode", "none",
                                                "--no-dit-conditioning"]))
    assert ab.model_overrides == {"t_power": 2.0, "data_scale": "none", "mask_mode": "none", "use_profile": False,
                                  "dit_conditioning": False}
    assert trainer.config_from_args(p.parse_args(["--sbert-cache", ""])).sbert_cache is None


def test_grid_cli_and_validation() -> None:
    p = grid.build_parser()
    cfg = grid.config_from_args(p.parse_args(["--data", "my.csv", "--grid", "3x4", "--slot-minutes", "30",
                                              "--patch", "4,3,2", "--max-minutes", "5", "--mask-mode", "none"]))
    assert (cfg.data, cfg.grid, cfg.slot_minutes, cfg.patch, cfg.max_minutes, cfg.mask_mode) == \
        ("my.csv", "3x4", 30, (4, 3, 2), 5.0, "none")
    assert grid.config_from_args(p.parse_args([])).data == "milan"
    with pytest.raises(InputError, match="steps"):
        grid.GridTrainConfig(steps=0)
    with pytest.raises(InputError, match="--data milan"):
        grid.GridTrainConfig(grid="3x4").open_grid()


def test_every_fatsmb_setting_is_described_in_its_help() -> None:
    from umask.train.models.fatsmb import trainer as fs
    from umask.train.models.fatsmb.model import FatsMBConfig

    text = " ".join(fs.build_parser().format_help().split())
    for cls in (FatsMBConfig, fs.TrainConfig):
        missing = [f.name for f in cli_fields(cls) if not f.metadata.get("help")]
        assert not missing, (cls.__name__, missing)
        for f in cli_fields(cls):
            assert " ".join(f.metadata["help"].split()) in text, f.name
