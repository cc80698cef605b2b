"""torch -> ONNX for every family's exported networks: one opset, one exporter call, one warning policy.

``torch.onnx.export(..., dynamo=False)`` (the TorchScript exporter) with the opset pinned to `OPSET`
and the batch axis dynamic on every input and output (or the caller's ``dynamic_axes``, e.g. a cell
axis for grids). Why not optimum-onnx or the dynamo exporter: export/families/umask/networks.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

OPSET = 18


def export_module(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, opset: int = OPSET, *,
                  input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                  dynamic_axes: dict[str, dict[int, str]] | None = None) -> None:
    """``module`` on ``inputs`` as ONNX at ``path``. Names default to the module's ``input_names`` /
    ``output_names``; ``dynamic_axes`` defaults to a dynamic batch axis on each of them."""
    names_in = list(input_names if input_names is not None else module.input_names)
    names_out = list(output_names if output_names is not None else module.output_names)
    dyn: dict[str, Any] = dynamic_axes if dynamic_axes is not None else {n: {0: "batch"} for n in names_in + names_out}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        torch.onnx.export(module, inputs, str(path), input_names=names_in, output_names=names_out,
                          dynamic_axes=dyn, opset_version=opset, dynamo=False, do_constant_folding=True)


__all__ = ["OPSET", "export_module"]
