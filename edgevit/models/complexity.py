"""Parameter and multiply-accumulate counts, the way the Next-ViT paper counts them.

MACs are the multiply-accumulates of matrix products: convolutions, linear layers and the two attention matmuls
(q k^T and attn v); pooling, normalization, activations and additions are not counted. They are counted by
PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` (conv, mm, addmm, bmm ...: 2 FLOPs per MAC) on one
forward pass, so any form of the model (original, or a deployed rewrite with 1x1 convs and 4-D matmuls) and any
input size is counted the same way, without a second description of the architecture.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, img_size: tuple[int, int], batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass at ``img_size`` (H, W)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(batch, 3, *img_size))
    return counter.get_total_flops() // 2
