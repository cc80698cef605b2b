"""Device-only checks: run on a GPU machine or a Jetson with ``pytest device_tests``.

They skip with a one-line reason where the hardware is absent. The rest of the device suite
(every bundle artifact on every execution provider, latency rows, Jetson power) is in the other
files of this folder.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from umask.train.models.umask.dit import DiT, dit_config  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU parity skipped")


@needs_cuda
def test_dit_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    model = DiT(dit_config("tiny")).eval()
    for p in model.parameters():  # adaLN-Zero starts at zero output; give it non-trivial weights
        torch.nn.init.normal_(p, std=0.05)
    inputs = model.example_inputs(batch=4, seed=0)
    with torch.no_grad():
        ref = model(*inputs)
        gpu = model.cuda()(*(x.cuda() for x in inputs)).cpu()
    assert torch.allclose(ref, gpu, atol=1e-4, rtol=1e-3), float((ref - gpu).abs().max())


def test_onnxruntime_gpu_provider_listed_when_cuda() -> None:
    ort = pytest.importorskip("onnxruntime")
    providers = ort.get_available_providers()
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device; onnxruntime providers here: {providers}")
    assert "CUDAExecutionProvider" in providers or "TensorrtExecutionProvider" in providers, providers
