"""U-STS-LLM with spatio-temporal patch tokens (``USTSConfig.st_patch``, train/models/ustsllm/patch_tokens.py) on
real Milan windows: output shapes, the untrained network is its guidance signal, renumbering the cells permutes
the output, and the default (one token per cell) network is unchanged by the option.

Tiny random-init networks (one SmolLM2-shaped block) so the file runs in seconds on one CPU thread."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from umask.runtime.families.ustsllm.stats import fit_grid_stats
from umask.train.data import splits
from umask.train.data.grids import milan_grid

torch.set_num_threads(1)

TINY = dict(backbone="random", n_blocks=2, n_frozen=1, c_hidden=4, d_group=8, d_gru=8, guide_hidden=8,
            guide_step=24, lora_r=2)
PATCH = 48


@pytest.fixture(scope="module")
def windows() -> dict[str, dict[str, torch.Tensor]]:
    """Two real test windows of each task (network inputs), standardized with the training-period stats."""
    from umask.train.models.umask.grid_prior import MILAN_FIRST_WEEKDAY
    from umask.train.models.ustsllm.trainer import forecast_inputs, impute_inputs, to_torch

    g = milan_grid()
    stats = fit_grid_stats(g.values, g.splits()["train"][1], 144, MILAN_FIRST_WEEKDAY)
    z = stats.transform(g.values)
    fw = splits.forecast_windows(z, "test")
    iw = splits.imputation_windows(z, "test")
    i, j = np.array([0, 100]), np.array([0, 144])            # weekday and weekend windows among them
    return {"forecast": to_torch(forecast_inputs(fw.x[i], fw.starts[i] - 288, stats, 144)),
            "impute": to_torch(impute_inputs(iw.truth[j], iw.mask[j], iw.starts[j], stats))}


def _net(seed: int = 0, **kw: object) -> torch.nn.Module:
    from umask.train.models.ustsllm.model import USTSConfig, USTSLLM

    torch.manual_seed(seed)
    return USTSLLM(USTSConfig(**TINY, **kw)).eval()


def _perturb_head(net: torch.nn.Module) -> None:
    """A trained-like head: without it the zero-initialized eq. 13 head hides the LLM branch entirely."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for lin in net.rconv.values():
            lin.weight.copy_(0.05 * torch.randn(lin.weight.shape, generator=g))


def test_patch_tokens_shapes_and_token_count(windows: dict[str, dict[str, torch.Tensor]]) -> None:
    from umask.train.models.ustsllm import patch_tokens

    net = _net(st_patch=PATCH)
    _perturb_head(net)
    seen = {}

    def grab(_m: torch.nn.Module, _i: tuple, out: torch.Tensor) -> None:
        seen["h"] = out.shape

    net.embed.register_forward_hook(grab)
    with torch.no_grad():
        for task, (length, target) in {"forecast": (432, 144), "impute": (288, 288)}.items():
            y = net(task, **windows[task])
            assert y.shape == (2, target, 25) and torch.isfinite(y).all()
            assert seen["h"][:2] == (2, 25 * length // PATCH)        # cells x time patches tokens
    b = torch.randn(2, 3, 3)
    tb = patch_tokens.token_bias(b, 4)                               # kron(B~, ones(K, K))
    assert torch.equal(tb, torch.stack([torch.kron(b[i], torch.ones(4, 4)) for i in range(2)]))


def test_untrained_patch_network_returns_its_guidance_exactly(windows: dict[str, dict[str, torch.Tensor]]) -> None:
    """Eq. 13's per-token head starts at zero, so eq. 14 gives Y = G (eq. 7) to the bit; a non-zero head moves it."""
    net = _net(st_patch=PATCH)
    guide = {}
    with torch.no_grad():
        for task, inp in windows.items():
            obs = 1 - inp["mask"]
            x = torch.nan_to_num(inp["x"]) * obs
            s = net.scaling(x, obs, None)                            # eq. 1 at its midpoint, (B, 1, 1)
            b, t, n = x.shape
            rows = [v.transpose(1, 2).reshape(b * n, t) for v in (s * x, inp["mask"], s * inp["prior"])]
            guide[task] = (net.guide[task](*rows).view(b, n, -1) / s).transpose(1, 2)   # (B, S, N)
            assert torch.allclose(net(task, **inp), guide[task], atol=1e-6)
        _perturb_head(net)
        for task, inp in windows.items():
            assert not torch.allclose(net(task, **inp), guide[task], atol=1e-3)


def test_renumbering_cells_permutes_the_patch_network_output(windows: dict[str, dict[str, torch.Tensor]]) -> None:
    net = _net(st_patch=PATCH)
    _perturb_head(net)
    perm = torch.from_numpy(np.random.default_rng(3).permutation(25))
    with torch.no_grad():
        for task, inp in windows.items():
            y = net(task, **inp)
            pinp = {k: (v[..., perm] if v.dim() == 3 else v) for k, v in inp.items()}
            pinp["graph"] = inp["graph"][perm][:, perm]
            assert torch.allclose(y[..., perm], net(task, **pinp), atol=1e-4)
            assert not torch.allclose(y[..., perm], y, atol=1e-4)     # the permutation does change the layout


def test_default_config_is_unchanged_and_old_configs_load(tmp_path, windows) -> None:
    from dataclasses import asdict

    from umask.train.models.ustsllm.model import USTSConfig, load_model

    assert USTSConfig().st_patch == 0
    old = asdict(USTSConfig(**TINY))
    old.pop("st_patch")                                              # a config.json written before the option
    assert USTSConfig(**old) == USTSConfig(**TINY)
    a, b = _net(seed=5), _net(seed=5, st_patch=0)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert not any(k.startswith("embed.pos") for k in a.state_dict())
    assert a.rconv["impute"].weight.shape == (288, a.norm.normalized_shape[0])   # one token -> whole window
    with torch.no_grad():
        for task, inp in windows.items():
            assert torch.equal(a(task, **inp), b(task, **inp))
    # a checkpoint directory whose config.json has no st_patch loads as the one-token-per-cell network
    from safetensors.torch import save_file

    ck = tmp_path / "ckpt" / "step_000001"
    ck.mkdir(parents=True)
    save_file({f"net.{k}": v.contiguous() for k, v in a.state_dict().items()}, str(ck / "ema.safetensors"))
    (ck / "config.json").write_text(json.dumps({"model": {"name": "ustsllm", "net": old}}))
    loaded, _ = load_model(ck)
    assert loaded.cfg.st_patch == 0
    with torch.no_grad():
        assert torch.equal(loaded("impute", **windows["impute"]), a("impute", **windows["impute"]))


def test_bad_patch_sizes_are_rejected() -> None:
    from umask.train.models.ustsllm.model import USTSConfig

    with pytest.raises(ValueError, match="st_patch"):
        USTSConfig(**TINY, st_patch=30)                              # not a multiple of the eq. 4 patch (12)
    with pytest.raises(ValueError, match="st_patch"):
        USTSConfig(**TINY, st_patch=96)                              # does not divide the 144-slot horizon
    with pytest.raises(ValueError, match="st_patch"):
        USTSConfig(**TINY, st_patch=48, use_guidance=False)


def test_patch_network_exports_to_onnx_with_parity(tmp_path) -> None:
    """The exporter traces the patch network (dynamic batch and cell axes) and its fp32 parity gate holds; the
    runtime session then runs it on a grid with another cell count."""
    from umask.export.families.ustsllm.exporter import export_bundle
    from umask.runtime.session import Session
    from umask.train.data.grids import GridData
    from umask.train.models.ustsllm.model import USTSConfig
    from umask.train.models.ustsllm.trainer import TrainConfig, train

    milan = milan_grid()
    crop = GridData(values=milan.values[:, :9], height=3, width=3, slot_minutes=10, adjacency=None,
                    source="milan first 9 cells", data="real")
    ckpt = train(TrainConfig(steps=2, batch_size=2, warmup=1, eval_every=2, val_stride=64, out=str(tmp_path / "run"),
                             net=USTSConfig(**TINY, st_patch=PATCH)), grid=crop)
    data = tmp_path / "crop.csv"
    np.savetxt(data, crop.values, delimiter=",", fmt="%.6f")
    m = export_bundle(ckpt, tmp_path / "bundle", precisions=["fp32"], data=data)
    assert m["model"]["net"]["st_patch"] == PATCH
    for task in ("forecast", "impute"):
        assert m["artifacts"]["fp32"][task]["parity"]["max_abs_diff_vs_torch"] <= 1e-3
    other = fit_grid_stats(milan.values[:, :12], 3456, 144)
    with Session.open(tmp_path / "bundle", allow_unsigned=True) as s:
        assert s.forecast(milan.values[:288, :12], first_slot=0, stats=other).shape == (144, 12)
