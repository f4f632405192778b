"""Deterministic random weights with realistic BatchNorm statistics.

Until a trained checkpoint is given, smoke runs and tests use these weights. Plain freshly-initialised
BatchNorms (mean 0, var 1, gamma 1, beta 0) would make every fold an identity and hide fold bugs, and random
statistics unrelated to the activations make the network blow up or die. So: random gamma/beta first, then the
running statistics are measured in a calibration pass, exactly as training would leave them, and rounded to fp16
precision so that tiny thread-count differences do not change the weights' hash.

The calibration pass sees the kinds of pictures the weights will be run on (``calibration_images``): smooth
synthetic noise, edgevit's golden pictures and crops of real photographs shipped with the package. A random network
is only normalized for the inputs its statistics were measured on; measured on synthetic noise alone, Next-ViT-S's
E-MHSA inputs reached a standard deviation of 46-55 on a golden picture (instead of ~1), its attention softmax became
so sharp that fp32 itself lost three digits at 640x640, and no fp32 artifact could pass parity there
(``benchmarks/results/fp32_conditioning_synthetic_bn.txt``; now: ``fp32_conditioning.txt``).
"""

from __future__ import annotations

import torch
from torch import nn

from edgevit.models.nextvit import NextViT


def synthetic_images(n: int, size: tuple[int, int], *, seed: int = 0) -> torch.Tensor:
    """Smooth, image-like normalized inputs: low-frequency noise plus edges, (n, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    coarse = torch.randn(n, 3, max(h // 16, 2), max(w // 16, 2), generator=g)
    img = nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    img = img + 0.3 * torch.randn(n, 3, h, w, generator=g)
    return img.clamp(-2.5, 2.5)


def calibration_images(n: int, size: tuple[int, int], *, seed: int = 0) -> torch.Tensor:
    """The BatchNorm calibration inputs, normalized, (n, 3, H, W): a quarter smooth synthetic noise, half golden
    pictures (``preprocess.golden_image``), a quarter crops of photographs (the shipped photodigits calibration
    images; more golden pictures where an install lacks them), in that order."""
    import numpy as np

    from edgevit.models.factory import embedded_data
    from edgevit.preprocess import Preprocess, golden_image, list_images, open_image

    pre = Preprocess.for_size(size)
    n_syn, n_photo = n // 4, n // 4
    folder = embedded_data("nextvit_photodigits", "calib")
    photos = list_images(folder)[seed % 7::7][:n_photo] if folder else []
    n_gold = n - n_syn - len(photos)
    pictures = [golden_image(size, seed=100 + seed + i) for i in range(n_gold)] + [open_image(f) for f in photos]
    raw = np.stack([pre.raw(pre.resized(p)) for p in pictures])
    return torch.cat([synthetic_images(n_syn, size, seed=seed), torch.from_numpy(pre.normalize(raw))])


@torch.no_grad()
def randomize_(model: NextViT, *, seed: int = 0, calib_images: int = 8) -> NextViT:
    """Give ``model`` deterministic random weights with measured BatchNorm statistics; returns it in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.02)
        elif isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * m.in_features ** -0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.02)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    size = (model.cfg.default_img_size, model.cfg.default_img_size)
    images = calibration_images(calib_images, size, seed=seed + 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for drop in model.modules():  # stochastic depth and dropout would make the statistics random
            if isinstance(drop, nn.Dropout) or type(drop).__name__ == "DropPath":
                drop.eval()
        for i in range(0, calib_images, 4):
            model(images[i:i + 4])
    finally:
        torch.set_num_threads(threads)
        model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
            m.running_mean.copy_(m.running_mean.half().float())
            m.running_var.copy_(m.running_var.half().float().clamp_min(1e-3))
            m.num_batches_tracked.fill_(0)
    return model
