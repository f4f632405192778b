"""Cross-covariance attention (XCA, from XCiT, El-Nouby et al. 2021) in the NTB: attention over channels.

Per head, the d x d matrix of cosines between the channels of q and k (each channel l2-normalised over the tokens)
times a learned per-head temperature, softmax over its last axis, mixes the channels of v at every token. Its cost
is linear in the number of tokens (d x d scores instead of N x M), which is what makes it pay at large inputs. As
proposed for Next-ViT, q and k are computed on the average-pooled map (AvgPool2d(sr, sr) + BatchNorm, the
original's key/value reduction): the channel covariance is estimated on the pooled tokens, and v keeps every token.

    Q = Wq P(x), K = Wk P(x), V = Wv x,   P(x) = BN(AvgPool2d_sr(x))
    A = softmax(t_h * (Q / |Q|) (K / |K|)^T)   (d x d per head; |.| the l2 norm over tokens)
    out = Wo (A V)

``carry_from`` copies q, k, v, proj and the BatchNorm from E-MHSA; the temperature starts at 1 (XCiT's
initialisation) and is learned by ``edgevit adapt``. The normalisation is ``q * rsqrt(sum q^2 + 1e-6)``: elementwise
ops and a spatial mean, which every target's delegate runs.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevit.models.attention import QKVAttention

_EPS = 1e-6  # inside the square root; representable in fp16


def _l2_normalise_tokens(t: torch.Tensor) -> torch.Tensor:
    """Each channel of a (B, C, H, W) map divided by its l2 norm over the H*W tokens."""
    n = float(t.shape[-2] * t.shape[-1])  # a float: an int scalar becomes an int64 constant cast outside XNNPACK
    return t * torch.rsqrt((t * t).mean(dim=(2, 3), keepdim=True) * n + _EPS)


class XCAttention(QKVAttention):
    name = "xca"

    def __init__(self, dim: int, *, head_dim: int, sr_ratio: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, head_dim=head_dim, sr_ratio=sr_ratio, attn_drop=attn_drop, proj_drop=proj_drop)
        self.temperature = nn.Parameter(torch.ones(self.num_heads, 1, 1))

    def input_paths(self) -> dict[str, str]:
        return {"q": "pooled", "k": "pooled", "v": "full"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        nh, d = self.num_heads, self.head_dim
        p = self.pooled(x)
        m = p.shape[-2] * p.shape[-1]
        q = _l2_normalise_tokens(self.q(p)).reshape(b * nh, d, m)
        k = _l2_normalise_tokens(self.k(p)).reshape(b * nh, d, m)
        attn = self.product(q, k.transpose(1, 2)).reshape(b, nh, d, d) * self.temperature
        attn = self.attn_drop(attn.softmax(dim=-1)).reshape(b * nh, d, d)
        out = self.product(attn, self.v(x).reshape(b * nh, d, h * w))  # (b*nh, d, N)
        return self.proj_drop(self.proj(out.reshape(b, c, h, w)))
