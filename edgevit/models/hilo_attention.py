"""HiLo attention (LITv2, Pan et al. 2022) in the NTB: the heads split into a high-frequency group that attends
within non-overlapping ws x ws windows at full resolution and a low-frequency group whose keys and values are the
average-pooled map, designed to be fast on CPU and GPU alike.

Here (channels ``[0, C_hi)`` are the Hi heads, ``[C_hi, C)`` the Lo heads; ``alpha`` = Lo share of the heads):

    Hi: q, k, v at full resolution; softmax(q k^T / sqrt(d)) within each ws x ws window (ws = 2, LITv2's default).
        A map whose side is not a multiple of ws is padded at the bottom/right with zero keys and values; the padded
        queries are cropped away.
    Lo: q at full resolution, k and v from P(x) = BN(AvgPool2d_sr(x)) (the NTB's own reduction ratio, so a block
        that did not pool before, sr = 1, attends globally here too).
    out = Wo [Hi ; Lo]     (one projection over both groups, as E-MHSA's)

``carry_from`` copies q and proj whole, and splits E-MHSA's k and v by output rows: the Hi heads' rows into
``hi_k``/``hi_v``, the Lo heads' into ``lo_k``/``lo_v``; nothing is left new, but the Hi heads now see windows,
so ``edgevit adapt`` is still needed. Window partitioning uses reshapes and permutes of rank <= 5 (CoreML's limit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevit.errors import ConfigError
from edgevit.models.attention import BCHWAttention, conv1x1, copy_linear_into

ALPHA = 0.9  # LITv2's share of Lo heads
WINDOW = 2  # LITv2's window size


class HiLoAttention(BCHWAttention):
    name = "hilo"

    def __init__(self, dim: int, *, head_dim: int, sr_ratio: int, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 alpha: float = ALPHA, window: int = WINDOW):
        super().__init__(dim, head_dim=head_dim, sr_ratio=sr_ratio, attn_drop=attn_drop, proj_drop=proj_drop)
        if self.num_heads < 2:
            raise ConfigError(f"HiLo attention splits the heads into two groups and needs at least 2; width {dim} at "
                              f"head_dim {head_dim} has {self.num_heads}")
        lo = min(max(round(alpha * self.num_heads), 1), self.num_heads - 1)
        self.hi_heads, self.lo_heads, self.window = self.num_heads - lo, lo, window
        self.hi_chs, self.lo_chs = self.hi_heads * head_dim, lo * head_dim
        self.q = conv1x1(dim, dim)
        self.hi_k = conv1x1(dim, self.hi_chs)
        self.hi_v = conv1x1(dim, self.hi_chs)
        self.lo_k = conv1x1(dim, self.lo_chs)
        self.lo_v = conv1x1(dim, self.lo_chs)

    def extra_repr(self) -> str:
        return f"hi_heads={self.hi_heads}, lo_heads={self.lo_heads}, window={self.window}, sr={self.sr_ratio}"

    def input_paths(self) -> dict[str, str]:
        return {"q": "full", "hi_k": "full", "hi_v": "full", "lo_k": "pooled", "lo_v": "pooled"}

    def carry_from(self, src: nn.Module) -> list[str]:
        copy_linear_into(self.q, src.q)
        hi, lo = slice(0, self.hi_chs), slice(self.hi_chs, self.dim)
        copy_linear_into(self.hi_k, src.k, hi)
        copy_linear_into(self.hi_v, src.v, hi)
        copy_linear_into(self.lo_k, src.k, lo)
        copy_linear_into(self.lo_v, src.v, lo)
        self._carry_common(src)
        return []

    def _windows(self, t: torch.Tensor, b: int, nh: int, hp: int, wp: int) -> torch.Tensor:
        """(b, nh*d, hp, wp) -> (b*nh*windows, ws*ws, d)."""
        d, ws = self.head_dim, self.window
        t = t.reshape(b * nh * d, hp // ws, ws, wp // ws, ws).permute(0, 1, 3, 2, 4)
        t = t.reshape(b * nh, d, (hp // ws) * (wp // ws), ws * ws).permute(0, 2, 3, 1)
        return t.reshape(-1, ws * ws, d)

    def _unwindows(self, t: torch.Tensor, b: int, nh: int, hp: int, wp: int) -> torch.Tensor:
        d, ws = self.head_dim, self.window
        t = t.reshape(b * nh, (hp // ws) * (wp // ws), ws * ws, d).permute(0, 3, 1, 2)
        t = t.reshape(b * nh * d, hp // ws, wp // ws, ws, ws).permute(0, 1, 3, 2, 4)
        return t.reshape(b, nh * d, hp, wp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d, ws = self.head_dim, self.window
        q = self.q(x)
        # Hi: window attention at full resolution
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        qh, kh, vh = q[:, : self.hi_chs], self.hi_k(x), self.hi_v(x)
        if (hp, wp) != (h, w):
            pad = (0, wp - w, 0, hp - h)
            qh, kh, vh = F.pad(qh, pad), F.pad(kh, pad), F.pad(vh, pad)
        qw, kw, vw = (self._windows(t, b, self.hi_heads, hp, wp) for t in (qh, kh, vh))
        attn = self.attn_drop((self.product(qw, kw.transpose(1, 2)) * self.scale).softmax(dim=-1))  # (.., ws², ws²)
        hi = self._unwindows(self.product(attn, vw), b, self.hi_heads, hp, wp)
        if (hp, wp) != (h, w):
            hi = hi[:, :, :h, :w]
        # Lo: every query against the pooled map
        p = self.pooled(x)
        m, bl = p.shape[-2] * p.shape[-1], b * self.lo_heads
        ql = q[:, self.hi_chs:].reshape(bl, d, h * w)
        kl = self.lo_k(p).reshape(bl, d, m)
        vl = self.lo_v(p).reshape(bl, d, m)
        attn = self.attn_drop((self.product(ql.transpose(1, 2), kl) * self.scale).softmax(dim=-1))  # (bl, N, M)
        lo = self.product(vl, attn.transpose(1, 2)).reshape(b, self.lo_chs, h, w)
        return self.proj_drop(self.proj(torch.cat([hi, lo], dim=1)))
