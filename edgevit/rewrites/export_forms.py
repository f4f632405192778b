"""Exact operator substitutions that keep every op inside mobile delegates (ExecuTorch XNNPACK above all).

* PatchEmbed's AvgPool2d(2, ceil_mode=True, count_include_pad=False) equals a plain AvgPool2d(2) whenever H and W
  are even (no partial window exists), and XNNPACK rejects ceil_mode: the plain form is used for even maps (every
  multiple-of-32 input), the ceil form is kept for odd ones. Decided per call from the static shape at export; an
  export with dynamic height/width always gets the ceil form (exact for every size).
* The classifier's global mean becomes mean over (H, W) with keepdim=True + flatten, the only mean XNNPACK takes.
* Token-layout E-MHSA (kept where it is the faster form) gets 3-D bmm instead of broadcasting 4-D matmuls (which
  export as expand_copy, a portable op) and pools keys/values with a (1, r) avg_pool2d instead of AvgPool1d
  (which exports as unsqueeze/squeeze around a 2-D pool).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevit.models.nextvit import EMHSA, ClassifierHead, PatchEmbed, find_nextvit
from edgevit.rewrites.base import ChannelAffine, PassReport, bn_scale_shift, register_pass, static_shape


class EvenAvgPool2x2(nn.Module):
    """AvgPool2d(2, stride 2, ceil_mode=True, count_include_pad=False), as a plain pool on even maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if static_shape(*x.shape[-2:]) and x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
            return F.avg_pool2d(x, 2, 2)
        return F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)


class KeepdimMeanHead(nn.Module):
    def __init__(self, head: ClassifierHead):
        super().__init__()
        self.fc = head.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3), keepdim=True).flatten(1))


class WindowMean(nn.Module):
    """Mean over non-overlapping ``kernel`` windows (stride = kernel): the key/value reduction of the token-form
    attention, kept a module so that a later pass can swap how it is computed."""

    def __init__(self, kernel: tuple[int, int]):
        super().__init__()
        self.kernel = tuple(kernel)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=self.kernel, stride=self.kernel)


class TokenAttention(nn.Module):
    """E-MHSA on (B, N, C) tokens with 3-D bmm and a 2-D pool; same math as ``EMHSA``."""

    layout = "tokens"

    def __init__(self, src: EMHSA):
        super().__init__()
        self.num_heads, self.head_dim, self.scale = src.num_heads, src.head_dim, src.scale
        self.n_ratio = src.n_ratio if src.sr is not None else 1
        self.q, self.k, self.v, self.proj = src.q, src.k, src.v, src.proj
        if isinstance(src.norm, nn.BatchNorm1d):
            self.norm = ChannelAffine(*bn_scale_shift(src.norm))
        else:
            self.norm = nn.Identity()
        self.kv_pool = WindowMean((1, self.n_ratio)) if self.n_ratio > 1 else None

    def _heads(self, t: torch.Tensor, b: int, n: int) -> torch.Tensor:  # (B, N, C) -> (B*h, N, d)
        return t.reshape(b, n, self.num_heads, self.head_dim).permute(0, 2, 1, 3).reshape(-1, n, self.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r = self.n_ratio
        if r > 1:
            m = n // r
            t = x.transpose(1, 2).reshape(b, c, 1, n)
            if not static_shape(n) or m * r != n:
                t = t[..., : m * r]
            kv = self.norm(self.kv_pool(t)).reshape(b, c, m).transpose(1, 2)
        else:
            m, kv = n, x
        q = self._heads(self.q(x), b, n)
        k = self._heads(self.k(kv), b, m)
        v = self._heads(self.v(kv), b, m)
        attn = (torch.bmm(q, k.transpose(1, 2)) * self.scale).softmax(dim=-1)
        out = torch.bmm(attn, v).reshape(b, self.num_heads, n, self.head_dim).permute(0, 2, 1, 3).reshape(b, n, c)
        return self.proj(out)


@register_pass("delegate_friendly_ops", "exact substitutes for ops mobile delegates reject (ceil pool, mean, "
                                        "broadcast matmul, AvgPool1d)")
def delegate_friendly_ops(model: nn.Module) -> PassReport:
    report = PassReport("delegate_friendly_ops")
    for name, m in model.named_modules():
        if isinstance(m, PatchEmbed) and isinstance(m.pool, nn.AvgPool2d):
            m.pool = EvenAvgPool2x2()
            report.changed.append(f"{name}.pool")
        if isinstance(getattr(m, "e_mhsa", None), EMHSA):
            m.e_mhsa = TokenAttention(m.e_mhsa)
            report.changed.append(f"{name}.e_mhsa")
    for path, net in find_nextvit(model):  # the model itself, or the backbone(s) of a user's model
        if isinstance(net.head, ClassifierHead):
            net.head = KeepdimMeanHead(net.head)
            report.changed.append(f"{path}.head" if path else "head")
    return report
