"""Window means as depthwise convolutions, so that an int8 LiteRT graph keeps them inside XNNPACK.

litert-torch's int8 graph leaves every AVERAGE_POOL_2D outside the XNNPACK delegate (six on Next-ViT-S: three
PatchEmbed 2x2 pools, three E-MHSA key/value pools), each a separate partition boundary with the reference kernel in
between. A mean over non-overlapping k_h x k_w windows is a depthwise convolution with stride (k_h, k_w) and every
weight 1/(k_h k_w): exact, since 1/4, 1/16 and 1/64 are powers of two (in PyTorch the outputs are bit-identical,
tests/rewrites/test_pool_conv.py; LiteRT's kernels sum in another order: at most 2.6e-4 apart on Next-ViT-S's
logits), and per-channel int8 weight quantization represents such a weight exactly (127 * s with s = w / 127). Measured on Next-ViT-S
(benchmarks/results/litert_pool_conv.txt): every pool is then delegated; the latency ties the pooled form within
the run's spread.
PatchEmbed's ceil-mode pool on an odd map has partial windows and stays a pool there (decided per call from the
static shape at export, as ``EvenAvgPool2x2`` does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevit.models.nextvit import PatchEmbed
from edgevit.rewrites.base import PassReport, register_pass, static_shape
from edgevit.rewrites.export_forms import EvenAvgPool2x2, TokenAttention, WindowMean


class DepthwiseMean(nn.Module):
    """Mean over non-overlapping ``kernel`` windows of a ``channels``-channel map as a depthwise convolution."""

    def __init__(self, channels: int, kernel: tuple[int, int], *, ceil_fallback: bool = False):
        super().__init__()
        self.kernel = tuple(kernel)
        self.ceil_fallback = ceil_fallback  # PatchEmbed: odd maps keep AvgPool2d(2, ceil, count_include_pad=False)
        weight = torch.full((channels, 1, *self.kernel), 1.0 / (self.kernel[0] * self.kernel[1]))
        self.register_buffer("weight", weight)

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[0]}, kernel={self.kernel}, ceil_fallback={self.ceil_fallback}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ceil_fallback and (not static_shape(*x.shape[-2:]) or x.shape[-2] % self.kernel[0]
                                   or x.shape[-1] % self.kernel[1]):
            return F.avg_pool2d(x, self.kernel, self.kernel, ceil_mode=True, count_include_pad=False)
        return F.conv2d(x, self.weight.to(x.dtype), stride=self.kernel, groups=x.shape[1])


@register_pass("pools_as_depthwise_conv", "non-overlapping window means (PatchEmbed 2x2 pools, token E-MHSA key/value "
                                          "pools) as depthwise convolutions with 1/k weights")
def pools_as_depthwise_conv(model: nn.Module) -> PassReport:
    report = PassReport("pools_as_depthwise_conv")
    for name, m in model.named_modules():
        if isinstance(m, PatchEmbed) and isinstance(m.pool, (EvenAvgPool2x2, nn.AvgPool2d)):
            if isinstance(m.pool, nn.AvgPool2d) and (m.pool.kernel_size not in (2, (2, 2))
                                                     or m.pool.stride not in (2, (2, 2))):
                continue
            m.pool = DepthwiseMean(m.conv.in_channels, (2, 2), ceil_fallback=True)
            report.changed.append(f"{name}.pool")
        if isinstance(m, TokenAttention) and isinstance(m.kv_pool, WindowMean):
            m.kv_pool = DepthwiseMean(m.q.in_features, m.kv_pool.kernel)
            report.changed.append(f"{name}.kv_pool")
    return report
