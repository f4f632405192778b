"""E-MHSA on (B, C, H, W) tensors: q/k/v/proj as 1x1 convolutions, heads split by reshape only.

Exact for released weights. The original pools keys/values with AvgPool1d(r = sr*sr) over raster-ordered tokens:
runs of r consecutive tokens, crossing row ends, trailing tokens dropped. Here the same runs are pooled by viewing
the map as (B, C, 1, H*W) and average-pooling with a (1, r) window, stride r (the window never covers a partial
run, so the floor semantics come for free).

Two score layouts, both exact, chosen per runtime (see ``edgevit.rewrites.FORMS``):

* ``kq``: s^T = k^T q (keys x queries), softmax over keys (axis 1), out = v s^T. Only the pooled keys are
  transposed: no full feature map is transposed, which is Apple's guidance for the Neural Engine and what
  ONNX Runtime fuses into one MatMul with a transposed operand;
* ``qk``: s = q^T k, softmax over the last axis, out = v s^T. Transposes q, but every op stays inside the XNNPACK
  delegate, whose softmax takes only the last axis;
* ``split``: the ``kq`` math with the heads split by channel slices and every tensor kept rank 4
  ((B, 1, d, N) per head), Apple's recipe for the Neural Engine: no transpose and no rank change of activations.

The 1/sqrt(head_dim) scale is folded into q's weights and bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevit.errors import ConfigError
from edgevit.models.nextvit import NTB, EMHSA
from edgevit.rewrites.base import ChannelAffine, PassReport, bn_scale_shift, register_pass, static_shape

FORMS = ("kq", "qk", "split")


def _conv1x1(linear: nn.Linear, scale: float = 1.0) -> nn.Conv2d:
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=True)
    conv.weight.copy_(linear.weight.reshape(*linear.weight.shape, 1, 1) * scale)
    conv.bias.copy_(linear.bias * scale)
    return conv


class BCHWAttention(nn.Module):
    layout = "bchw"

    def __init__(self, src: EMHSA, form: str = "kq"):
        super().__init__()
        if form not in FORMS:
            raise ConfigError(f"unknown BCHW attention form {form!r}; choose one of {', '.join(FORMS)}")
        self.form = form
        self.num_heads, self.head_dim = src.num_heads, src.head_dim
        self.n_ratio = src.n_ratio if src.sr is not None else 1
        self.q = _conv1x1(src.q, src.scale)
        self.k = _conv1x1(src.k)
        self.v = _conv1x1(src.v)
        self.proj = _conv1x1(src.proj)
        if isinstance(src.norm, nn.BatchNorm1d):  # not merged into k/v yet: keep it as an affine on the pooled map
            self.norm = ChannelAffine(*bn_scale_shift(src.norm))
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, bh, d = h * w, b * self.num_heads, self.head_dim
        q = self.q(x)
        q = q if self.form == "split" else q.reshape(bh, d, n)
        r = self.n_ratio
        if r > 1:
            m = n // r
            if m < 1:
                raise ValueError(f"E-MHSA with spatial reduction needs at least {r} tokens, got {n}")
            t = x.reshape(b, c, 1, n)
            if not static_shape(n) or m * r != n:
                t = t[..., : m * r]  # the original drops the trailing tokens
            kv = self.norm(F.avg_pool2d(t, kernel_size=(1, r), stride=(1, r)))
        else:
            m, kv = n, x
        if self.form == "split":
            return self.proj(self._split_heads(q.reshape(b, c, h, w), self.k(kv), self.v(kv), b, d, n, m, h, w))
        k = self.k(kv).reshape(bh, d, m)
        v = self.v(kv).reshape(bh, d, m)
        if self.form == "kq":
            attn = torch.bmm(k.transpose(1, 2), q).softmax(dim=1)  # (bh, m, n), normalised over keys
            out = torch.bmm(v, attn)  # (bh, d, n)
        else:
            attn = torch.bmm(q.transpose(1, 2), k).softmax(dim=-1)  # (bh, n, m)
            out = torch.bmm(v, attn.transpose(1, 2))
        return self.proj(out.reshape(b, c, h, w))

    def _split_heads(self, q, k, v, b, d, n, m, h, w):
        outs = []
        for i in range(self.num_heads):
            ch = slice(i * d, (i + 1) * d)
            qh = q[:, ch].reshape(b, 1, d, n)
            kh = k[:, ch].reshape(b, 1, d, m)
            vh = v[:, ch].reshape(b, 1, d, m)
            attn = torch.matmul(kh.transpose(-1, -2), qh).softmax(dim=2)  # (b, 1, m, n) over keys
            outs.append(torch.matmul(vh, attn).reshape(b, d, h, w))
        return torch.cat(outs, dim=1)


def bchw_attention_pass(model: nn.Module, form: str) -> PassReport:
    report = PassReport(f"bchw_attention_{form}", detail={"form": form})
    for name, m in model.named_modules():
        if isinstance(m, NTB) and isinstance(m.e_mhsa, EMHSA):
            m.e_mhsa = BCHWAttention(m.e_mhsa, form)
            report.changed.append(f"{name}.e_mhsa")
    return report


@register_pass("bchw_attention_kq", "E-MHSA on BCHW tensors, scores as k^T q (no full-map transpose)")
def bchw_kq(model: nn.Module) -> PassReport:
    return bchw_attention_pass(model, "kq")


@register_pass("bchw_attention_split", "E-MHSA on BCHW tensors, heads split by channel slices, all rank 4 "
                                       "(Neural Engine form)")
def bchw_split(model: nn.Module) -> PassReport:
    return bchw_attention_pass(model, "split")


@register_pass("bchw_attention_qk", "E-MHSA on BCHW tensors, scores as q^T k (softmax over the last axis)")
def bchw_qk(model: nn.Module) -> PassReport:
    return bchw_attention_pass(model, "qk")
