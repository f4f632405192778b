"""Per-layer quantization sensitivity, measured in PyTorch so one ranking serves every toolchain.

For each conv / linear layer alone, its weight is rounded to int8 (per output channel, symmetric) and its input
to uint8 (per tensor, range from the calibration images), everything else left in fp32; the layer's sensitivity
is how far the model's output then drifts from fp32 (1 - mean cosine on the evaluation images). The attention
matmuls and softmax are not quantized by the int8 schemes here, so they are not ranked.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    flat = w.reshape(w.shape[0], -1)
    scale = flat.abs().amax(1).clamp_min(1e-12) / 127.0
    return (torch.round(flat / scale[:, None]).clamp(-127, 127) * scale[:, None]).reshape(w.shape)


def _fake_quant_act(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    zero = round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


def quantizable_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def rank_layers(model: nn.Module, calib: np.ndarray, evalset: np.ndarray, *, max_images: int = 64) -> list[dict]:
    """[{module, sensitivity}] sorted from most to least sensitive (inputs: normalized images)."""
    model = model.eval()
    layers = quantizable_layers(model)
    modules = dict(model.named_modules())
    ranges: dict[str, list[float]] = {n: [np.inf, -np.inf] for n in layers}

    def observe(name):
        def hook(mod, inp):
            r = ranges[name]
            r[0] = min(r[0], float(inp[0].min()))
            r[1] = max(r[1], float(inp[0].max()))
        return hook

    handles = [modules[n].register_forward_pre_hook(observe(n)) for n in layers]
    for i in range(0, len(calib), 16):
        model(torch.from_numpy(calib[i:i + 16]))
    for h in handles:
        h.remove()
    x = torch.from_numpy(evalset[:max_images])
    ref = model(x)
    ref = (ref if isinstance(ref, torch.Tensor) else torch.cat([t.flatten(1) for t in ref], 1)).flatten(1)
    out = []
    for name in layers:
        mod = modules[name]
        original = mod.weight.data.clone()
        mod.weight.data = _fake_quant_weight(original)
        lo, hi = ranges[name]
        handle = mod.register_forward_pre_hook(lambda m, inp, lo=lo, hi=hi: (_fake_quant_act(inp[0], lo, hi),))
        try:
            y = model(x)
            y = (y if isinstance(y, torch.Tensor) else torch.cat([t.flatten(1) for t in y], 1)).flatten(1)
        finally:
            handle.remove()
            mod.weight.data = original
        cos = torch.nn.functional.cosine_similarity(ref.double(), y.double(), dim=1).mean().item()
        out.append({"module": name, "sensitivity": 1.0 - cos})
    return sorted(out, key=lambda d: -d["sensitivity"])
