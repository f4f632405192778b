"""E-MHSA with a 2-D key/value reduction: AvgPool2d(sr, sr) on the (B, C, H, W) map.

The original pools runs of sr*sr consecutive raster-order tokens (AvgPool1d), which crosses row ends; this variant
averages each sr x sr square, the reduction a 2-D image model means (proposed in the Next-ViT discussion that led to
timm's port). Every parameter has the same shape and meaning as E-MHSA's, so ``carry_from`` copies all of them; only
the pooling, hence the function, differs.

    q = Wq x,  k = Wk P(x),  v = Wv P(x),  P(x) = BN(AvgPool2d_sr(x))
    out = Wo (v softmax(q^T k / sqrt(d))^T)     per head, softmax over the keys (last axis)
"""

from __future__ import annotations

import torch

from edgevit.models.attention import QKVAttention


class AvgPoolAttention(QKVAttention):
    name = "avgpool"

    def input_paths(self) -> dict[str, str]:
        return {"q": "full", "k": "pooled", "v": "pooled"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        bh, d, n = b * self.num_heads, self.head_dim, h * w
        q = self.q(x).reshape(bh, d, n)
        p = self.pooled(x)
        m = p.shape[-2] * p.shape[-1]
        k = self.k(p).reshape(bh, d, m)
        v = self.v(p).reshape(bh, d, m)
        attn = (self.product(q.transpose(1, 2), k) * self.scale).softmax(dim=-1)  # (bh, n, m)
        attn = self.attn_drop(attn)
        out = self.product(v, attn.transpose(1, 2))  # (bh, d, n)
        return self.proj_drop(self.proj(out.reshape(b, c, h, w)))
