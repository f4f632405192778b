"""conv -> BatchNorm folding (stem, PatchEmbed, MHCA, NTB projection).

BN(W * x + b) = a * (W * x + b) + s  with a = gamma / sqrt(var + eps), s = beta - a * mean
             = (a[o] * W[o]) * x + (a * b + s)
so the convolution takes weight a[o] * W[o, ...] and bias a * b + s, and the BatchNorm becomes Identity.
PyTorch implements exactly this as ``torch.nn.utils.fusion.fuse_conv_bn_eval``; the pass uses it.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edgevit.models.nextvit import MHCA, ConvNormAct, PatchEmbed
from edgevit.rewrites.base import PassReport, register_pass


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new eval-mode conv computing ``bn(conv(x))`` (both inputs must be in eval mode)."""
    return fuse_conv_bn_eval(conv.eval(), bn.eval())


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
