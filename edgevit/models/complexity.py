"""Parameter and multiply-accumulate counts, the way the Next-ViT paper counts them.

MACs are counted for convolutions, linear layers and the two attention matmuls (q k^T and attn v); pooling,
normalization, activations and additions are not counted. Counted by running the model once with hooks, so any
input size and any config is covered without a second description of the architecture.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevit.models.nextvit import EMHSA, NextViT


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: NextViT, img_size: tuple[int, int], batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass at ``img_size`` (H, W)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    def attn_hook(m: EMHSA, inp, out):
        nonlocal total
        b, n, c = inp[0].shape
        n_kv = n // m.n_ratio if m.sr is not None else n
        total += 2 * b * n * n_kv * c  # q k^T and attn v, over all heads: heads * head_dim == c

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, EMHSA):
            handles.append(m.register_forward_hook(attn_hook))
    try:
        with torch.no_grad():
            model(torch.zeros(batch, 3, *img_size))
    finally:
        for h in handles:
            h.remove()
    return total
