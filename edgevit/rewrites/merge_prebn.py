"""Pre-BatchNorm merges: a BatchNorm feeding a 1x1 conv or a linear layer folds into that layer.

f(a * x + s) = W (a * x + s) + b = (W diag(a)) x + (W s + b)      (W: out x in, a and s per input channel)

* NCB.norm -> mlp.fc1; NTB.norm2 -> mlp.fc1;
* NTB.norm1 -> q, k, v. Keys and values see BN1d(pool(BN1(x))); average pooling is linear, so
  pool(a * x + s) = a * pool(x) + s, and with BN1d = (c, d): c * a * pool(x) + (c * s + d): one affine, folded
  into k and v, and both BatchNorms disappear;
* NTB.norm1 -> an attention variant's projections (``edgevit.models.attention``): each declares whether it reads
  the full map or the pooled one (``input_paths``); the full ones take BN1's affine, the pooled ones the composed
  affine above, and the variant's own BatchNorm disappears;
* the final BatchNorm -> the classifier: pooling is linear too. With no classifier (features mode,
  num_classes=0) it becomes a plain per-channel affine (``ChannelAffine``), which is no BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevit.models.attention import BCHWAttention
from edgevit.models.nextvit import NCB, NTB, find_nextvit
from edgevit.rewrites.base import ChannelAffine, PassReport, bn_scale_shift, register_pass


def _merge_into(layer: nn.Module, a: torch.Tensor, s: torch.Tensor) -> None:
    """Fold y = a * x + s (per input channel) into ``layer`` (Linear or 1x1 Conv2d) in place."""
    w = layer.weight
    w2 = w.reshape(w.shape[0], w.shape[1])
    bias = layer.bias if layer.bias is not None else torch.zeros(w.shape[0])
    new_bias = bias + w2 @ s
    layer.weight.copy_((w2 * a.reshape(1, -1)).reshape(w.shape))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)


@register_pass("merge_pre_bn", "fold every BatchNorm that feeds a 1x1 conv or linear layer into that layer")
def merge_pre_bn_pass(model: nn.Module) -> PassReport:
    report = PassReport("merge_pre_bn")
    for name, m in model.named_modules():
        if isinstance(m, NCB) and isinstance(m.norm, nn.BatchNorm2d):
            _merge_into(m.mlp.fc1, *bn_scale_shift(m.norm))
            m.norm = nn.Identity()
            report.changed.append(f"{name}.norm->mlp.fc1")
        elif isinstance(m, NTB) and isinstance(m.norm1, nn.BatchNorm2d) and isinstance(m.e_mhsa, BCHWAttention):
            a, s = bn_scale_shift(m.norm1)
            attn = m.e_mhsa
            ap, sp = a, s
            if attn.norm is not None:
                c, d = bn_scale_shift(attn.norm)
                ap, sp = c * a, c * s + d
                attn.norm = None
            for layer, path in attn.input_paths().items():
                _merge_into(getattr(attn, layer), *((a, s) if path == "full" else (ap, sp)))
            m.norm1 = nn.Identity()
            report.changed.append(f"{name}.norm1->e_mhsa.{'/'.join(attn.input_paths())}")
            _merge_into(m.mlp.fc1, *bn_scale_shift(m.norm2))
            m.norm2 = nn.Identity()
            report.changed.append(f"{name}.norm2->mlp.fc1")
        elif isinstance(m, NTB) and isinstance(m.norm1, nn.BatchNorm2d):
            a, s = bn_scale_shift(m.norm1)
            attn = m.e_mhsa
            _merge_into(attn.q, a, s)
            if isinstance(attn.norm, nn.BatchNorm1d):
                c, d = bn_scale_shift(attn.norm)
                ak, sk = c * a, c * s + d
                attn.norm = nn.Identity()
            else:
                ak, sk = a, s
            _merge_into(attn.k, ak, sk)
            _merge_into(attn.v, ak, sk)
            m.norm1 = nn.Identity()
            report.changed.append(f"{name}.norm1->e_mhsa.q/k/v" + ("(+norm)" if attn.sr is not None else ""))
            _merge_into(m.mlp.fc1, *bn_scale_shift(m.norm2))
            m.norm2 = nn.Identity()
            report.changed.append(f"{name}.norm2->mlp.fc1")
    for path, net in find_nextvit(model):  # the model itself, or the backbone(s) of a user's model
        if not isinstance(net.norm, nn.BatchNorm2d):
            continue
        at = f"{path}." if path else ""
        a, s = bn_scale_shift(net.norm)
        if net.head is not None and isinstance(net.head.fc, nn.Linear):
            _merge_into(net.head.fc, a, s)
            net.norm = nn.Identity()
            report.changed.append(f"{at}norm->head.fc")
        else:
            net.norm = ChannelAffine(a, s)
            report.changed.append(f"{at}norm->ChannelAffine")
    return report
