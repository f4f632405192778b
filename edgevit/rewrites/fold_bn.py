"""conv -> BatchNorm folding (stem, PatchEmbed, MHCA, NTB projection).

BN(W * x + b) = a * (W * x + b) + s  with a, s from ``bn_scale_shift``
             = (a[o] * W[o]) * x + (a * b + s)
so the convolution takes weight a[o] * W[o, ...] and bias a * b + s, and the BatchNorm becomes Identity.
"""

from __future__ import annotations

from torch import nn

from edgevit.models.nextvit import MHCA, ConvNormAct, PatchEmbed
from edgevit.rewrites.base import PassReport, bn_scale_shift, register_pass


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    a, s = bn_scale_shift(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    fused.weight.copy_(conv.weight * a.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else 0.0
    fused.bias.copy_(a * bias + s)
    return fused


@register_pass("fold_conv_bn", "fold every BatchNorm that follows a convolution into it")
def fold_conv_bn_pass(model: nn.Module) -> PassReport:
    report = PassReport("fold_conv_bn")
    for name, m in model.named_modules():
        if isinstance(m, (ConvNormAct, PatchEmbed)) and isinstance(m.norm, nn.BatchNorm2d):
            m.conv, m.norm = fold_conv_bn(m.conv, m.norm), nn.Identity()
            report.changed.append(f"{name}.conv+norm")
        elif isinstance(m, MHCA) and isinstance(m.norm, nn.BatchNorm2d):
            m.group_conv3x3, m.norm = fold_conv_bn(m.group_conv3x3, m.norm), nn.Identity()
            report.changed.append(f"{name}.group_conv3x3+norm")
    return report
