"""Attention variants for the NTB's E-MHSA slot: a registry, and what every variant shares.

``create_model(..., attention=...)`` picks one of ``ATTENTIONS``:

* ``emhsa``: the original (``nextvit.EMHSA``, tokens, raster-order AvgPool1d keys/values);
* ``avgpool``: E-MHSA on (B, C, H, W) with keys/values pooled by a 2-D AvgPool2d(sr, sr) (``avgpool_attention.py``);
* ``xca``: cross-covariance attention over channels, q/k average-pooled by sr (``xca_attention.py``);
* ``hilo``: LITv2's HiLo, heads split into local-window and pooled-global groups (``hilo_attention.py``).

The variants change the function, so released E-MHSA weights do not fit them as they are: ``carry_from`` copies
every E-MHSA parameter that has a place in the variant, and ``edgevit adapt`` distils the rest. A variant reads its
input as a (B, C, H, W) map (``layout = "bchw"``), keeps E-MHSA's parameter names where they mean the same thing
(``q``, ``k``, ``v``, ``proj``, ``norm``: 1x1 convolutions, the BatchNorm of the pooled map), so a variant
checkpoint saves and loads in both key layouts (official ``features.i`` and timm ``stages.s.blocks.b``) through the
same maps as the original's.

Adding a variant: one module with a class deriving ``BCHWAttention`` (``QKVAttention`` when it keeps E-MHSA's q, k,
v) and one line in ``_VARIANT_MODULES``.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
from torch import nn

from edgevit.errors import ConfigError, ModelInputError

ATTENTIONS = ("emhsa", "avgpool", "xca", "hilo")
_VARIANT_MODULES = {
    "avgpool": ("edgevit.models.avgpool_attention", "AvgPoolAttention"),
    "xca": ("edgevit.models.xca_attention", "XCAttention"),
    "hilo": ("edgevit.models.hilo_attention", "HiLoAttention"),
}
NORM_EPS = 1e-5  # as nextvit.NORM_EPS


def check_attention(name: str) -> str:
    if name not in ATTENTIONS:
        raise ConfigError(f"unknown attention {name!r}; choose one of {', '.join(ATTENTIONS)}")
    return name


def variant_class(name: str) -> type["BCHWAttention"]:
    """The module class of attention variant ``name`` (not ``emhsa``, which lives in ``nextvit``)."""
    check_attention(name)
    if name not in _VARIANT_MODULES:
        raise ConfigError(f"{name!r} is the original E-MHSA, not a variant")
    module, cls = _VARIANT_MODULES[name]
    return getattr(importlib.import_module(module), cls)


class BatchedProduct(nn.Module):
    """``torch.bmm`` of the attention variants, as a module so that a target's form can change how it is written.

    With ``pair_as_two`` (set by the ``products_pair_as_two`` rewrite, in LiteRT's form only) a batched product of
    one matrix pair is computed as a batch of two copies, the first kept: with a batch of one pair the TFLite
    converter can turn ``bmm`` into FULLY_CONNECTED with an activation as its weights, which XNNPACK does not take
    (HiLo's window attention on the tiny config's 2x2 map left 2 of them outside the delegate,
    ``tests/targets/test_variant_conversions.py``). The same numbers and one more product, only where the batch is a
    static 1 (one head over one window or one pooled map: small maps or few channels). Not for ExecuTorch, whose
    XNNPACK partitioner leaves that concatenation outside the delegate."""

    def __init__(self):
        super().__init__()
        self.pair_as_two = False

    def extra_repr(self) -> str:
        return f"pair_as_two={self.pair_as_two}"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.pair_as_two and isinstance(a.shape[0], int) and a.shape[0] == 1:
            return torch.bmm(torch.cat([a, a]), torch.cat([b, b]))[:1]
        return torch.bmm(a, b)


def conv1x1(chs_in: int, chs_out: int) -> nn.Conv2d:
    return nn.Conv2d(chs_in, chs_out, 1, bias=True)


def copy_linear_into(conv: nn.Conv2d, linear: nn.Linear, rows: slice = slice(None)) -> None:
    """``conv`` (1x1) takes ``linear``'s weights (output rows ``rows``): the same map on a BCHW tensor."""
    with torch.no_grad():
        w = linear.weight[rows]
        conv.weight.copy_(w.reshape(*w.shape, 1, 1))
        conv.bias.copy_(linear.bias[rows])


class BCHWAttention(nn.Module):
    """Shared parts of the variants: shapes, the pooled branch, and the description of which projection reads the
    full map and which the pooled one (``input_paths``, used by the pre-BatchNorm merge).

    The pooled branch is ``norm(AvgPool2d(sr, sr)(x))`` with floor semantics (trailing rows/columns that do not
    fill a window are dropped, like the original's trailing tokens); ``norm`` is a BatchNorm over channels
    (E-MHSA's BatchNorm1d, same parameters).
    """

    layout = "bchw"
    name = ""

    def __init__(self, dim: int, *, head_dim: int, sr_ratio: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % head_dim:
            raise ConfigError(f"attention width {dim} is not a multiple of head_dim {head_dim}")
        self.dim, self.head_dim, self.num_heads = dim, head_dim, dim // head_dim
        self.scale = head_dim ** -0.5
        self.sr_ratio = sr_ratio
        self.norm = nn.BatchNorm1d(dim, eps=NORM_EPS) if sr_ratio > 1 else None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.proj = conv1x1(dim, dim)
        self.product = BatchedProduct()

    def input_paths(self) -> dict[str, str]:
        """``{projection name: "full" | "pooled"}``: which input each 1x1 projection reads."""
        raise NotImplementedError

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        if self.sr_ratio == 1:
            return x
        h, w = x.shape[-2:]
        if h < self.sr_ratio or w < self.sr_ratio:
            raise ModelInputError(f"{self.name} attention with spatial reduction {self.sr_ratio} needs a map of at "
                                  f"least {self.sr_ratio}x{self.sr_ratio} but got {h}x{w}; use a larger input image")
        p = F.avg_pool2d(x, self.sr_ratio, self.sr_ratio)
        if self.norm is None:  # merged into the projections by the deploy rewrite
            return p
        b, c, ph, pw = p.shape
        return self.norm(p.reshape(b, c, ph * pw)).reshape(b, c, ph, pw)

    def carry_from(self, src: nn.Module) -> list[str]:
        """Copy the E-MHSA ``src``'s parameters that have a place here; returns the names of what is left new."""
        raise NotImplementedError

    def _carry_common(self, src: nn.Module) -> None:
        copy_linear_into(self.proj, src.proj)
        if self.norm is not None and src.norm is not None:
            self.norm.load_state_dict(src.norm.state_dict())


class QKVAttention(BCHWAttention):
    """A variant with E-MHSA's three full-width projections q, k, v (1x1 convolutions), all carried over."""

    def __init__(self, dim: int, *, head_dim: int, sr_ratio: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, head_dim=head_dim, sr_ratio=sr_ratio, attn_drop=attn_drop, proj_drop=proj_drop)
        self.q = conv1x1(dim, dim)
        self.k = conv1x1(dim, dim)
        self.v = conv1x1(dim, dim)

    def carry_from(self, src: nn.Module) -> list[str]:
        for name in ("q", "k", "v"):
            copy_linear_into(getattr(self, name), getattr(src, name))
        self._carry_common(src)
        return [n for n, _ in self.named_parameters(recurse=False)]  # a variant's own parameters start fresh
