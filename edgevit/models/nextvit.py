"""Next-ViT (Li et al., 2022, arXiv 2207.05501), written from the architecture facts in docs/NEXTVIT.md.

Read top to bottom: helpers, blocks (PatchEmbed, MHCA, Mlp, NCB, E-MHSA, NTB), the model, its config, and the
registered variants. The module names follow timm's layout (``stages.S.blocks.B``, ``mlp.fc1``, ``head.fc``) so a
timm checkpoint loads as is; ``edgevit.models.checkpoint`` maps the official release layout onto it.

Unlike timm, stage widths are config fields, so a tiny Next-ViT (``nextvit_test_tiny``) exists for fast tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from edgevit.errors import ConfigError, ModelInputError
from edgevit.models.attention import check_attention, variant_class

NORM_EPS = 1e-5


def make_divisible(v: float, divisor: int = 32, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (ties up), never below ``min_value``.

    If rounding lost more than 10% of ``v``, one more ``divisor`` is added (the MobileNet rule the reference uses).
    """
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``p`` in training, rescale the rest."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConvNormAct(nn.Module):
    """conv3x3 (no bias, padding 1) + BatchNorm + ReLU, the stem's unit."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_chs, eps=NORM_EPS)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class PatchEmbed(nn.Module):
    """Stride 2: AvgPool2d(2, ceil) + conv1x1 + BN; channel change: conv1x1 + BN; otherwise identity."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        if stride == 2:
            self.pool = nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)
        else:
            self.pool = nn.Identity()
        if stride == 2 or in_chs != out_chs:
            self.conv = nn.Conv2d(in_chs, out_chs, 1, bias=False)
            self.norm = nn.BatchNorm2d(out_chs, eps=NORM_EPS)
        else:
            self.conv = nn.Identity()
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.pool(x)))


class MHCA(nn.Module):
    """Multi-head convolutional attention: grouped conv3x3 (one group per head) + BN + ReLU + conv1x1."""

    def __init__(self, chs: int, head_dim: int):
        super().__init__()
        self.group_conv3x3 = nn.Conv2d(chs, chs, 3, padding=1, groups=chs // head_dim, bias=False)
        self.norm = nn.BatchNorm2d(chs, eps=NORM_EPS)
        self.act = nn.ReLU()
        self.projection = nn.Conv2d(chs, chs, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.act(self.norm(self.group_conv3x3(x))))


class Mlp(nn.Module):
    """conv1x1 -> ReLU -> dropout -> conv1x1 -> dropout, hidden width make_divisible(C * ratio, 32)."""

    def __init__(self, chs: int, mlp_ratio: float, drop: float = 0.0):
        super().__init__()
        hidden = make_divisible(chs * mlp_ratio, 32)
        self.fc1 = nn.Conv2d(chs, hidden, 1, bias=True)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Conv2d(hidden, chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class NCB(nn.Module):
    """Next Convolution Block: PatchEmbed, x + MHCA(x), x + MLP(BN(x))."""

    def __init__(self, in_chs: int, out_chs: int, *, stride: int, head_dim: int, mlp_ratio: float,
                 drop_path: float, drop: float):
        super().__init__()
        self.patch_embed = PatchEmbed(in_chs, out_chs, stride)
        self.mhca = MHCA(out_chs, head_dim)
        self.attn_drop_path = DropPath(drop_path)
        self.norm = nn.BatchNorm2d(out_chs, eps=NORM_EPS)
        self.mlp = Mlp(out_chs, mlp_ratio, drop)
        self.mlp_drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self.attn_drop_path(self.mhca(x))
        return x + self.mlp_drop_path(self.mlp(self.norm(x)))


class EMHSA(nn.Module):
    """Efficient multi-head self-attention on tokens (B, N, C), as in the original release.

    Keys and values come from ``AvgPool1d(sr*sr)`` over the raster-ordered token axis followed by BatchNorm1d: runs of
    sr*sr consecutive tokens are averaged, crossing row boundaries, and trailing tokens that do not fill a run are
    dropped. This is not a 2-D sr x sr pool; the BCHW rewrite must reproduce it exactly.
    """

    layout = "tokens"  # takes (B, N, C); deploy rewrites swap in a (B, C, H, W) form

    def __init__(self, dim: int, *, head_dim: int, sr_ratio: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.dim = dim
        self.head_dim = head_dim
        self.num_heads = dim // head_dim
        self.scale = head_dim ** -0.5
        self.q = nn.Linear(dim, dim, bias=True)
        self.k = nn.Linear(dim, dim, bias=True)
        self.v = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        self.n_ratio = sr_ratio ** 2
        if sr_ratio > 1:
            self.sr = nn.AvgPool1d(self.n_ratio, stride=self.n_ratio)
            self.norm = nn.BatchNorm1d(dim, eps=NORM_EPS)
        else:
            self.sr = None
            self.norm = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h, d = self.num_heads, self.head_dim
        q = self.q(x).reshape(b, n, h, d).permute(0, 2, 1, 3)
        if self.sr is not None:
            if n < self.n_ratio:
                raise ModelInputError(
                    f"E-MHSA with spatial reduction {self.sr_ratio} needs at least {self.n_ratio} tokens but got {n}; "
                    "use a larger input image (at least 32x32 for the released Next-ViT configs)")
            kv = self.norm(self.sr(x.transpose(1, 2))).transpose(1, 2)
        else:
            kv = x
        k = self.k(kv).reshape(b, -1, h, d).permute(0, 2, 3, 1)
        v = self.v(kv).reshape(b, -1, h, d).permute(0, 2, 1, 3)
        attn = ((q @ k) * self.scale).softmax(dim=-1)
        attn = self.attn_drop(attn)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class NTB(nn.Module):
    """Next Transformer Block: E-MHSA on the first C1 channels, MHCA on the other C2, concat, MLP."""

    def __init__(self, in_chs: int, out_chs: int, *, stride: int, sr_ratio: int, head_dim: int, mlp_ratio: float,
                 mix_block_ratio: float, drop_path: float, drop: float, attn_drop: float, attention: str = "emhsa"):
        super().__init__()
        self.mhsa_out_chs = make_divisible(int(out_chs * mix_block_ratio), 32)
        self.mhca_out_chs = out_chs - self.mhsa_out_chs
        if self.mhca_out_chs <= 0:
            raise ConfigError(f"NTB with {out_chs} output channels leaves no MHCA channels "
                              f"(E-MHSA takes {self.mhsa_out_chs}); use a wider NTB")
        self.patch_embed = PatchEmbed(in_chs, self.mhsa_out_chs, stride)
        self.norm1 = nn.BatchNorm2d(self.mhsa_out_chs, eps=NORM_EPS)
        # the attention slot keeps its name (e_mhsa) for every variant, so checkpoint keys keep their layout
        attn_cls = EMHSA if attention == "emhsa" else variant_class(attention)
        self.e_mhsa = attn_cls(self.mhsa_out_chs, head_dim=head_dim, sr_ratio=sr_ratio, attn_drop=attn_drop,
                               proj_drop=drop)
        self.mhsa_drop_path = DropPath(drop_path * mix_block_ratio)
        self.projection = PatchEmbed(self.mhsa_out_chs, self.mhca_out_chs, stride=1)
        self.mhca = MHCA(self.mhca_out_chs, head_dim)
        self.mhca_drop_path = DropPath(drop_path * (1 - mix_block_ratio))
        self.norm2 = nn.BatchNorm2d(out_chs, eps=NORM_EPS)
        self.mlp = Mlp(out_chs, mlp_ratio, drop)
        self.mlp_drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        out = self.norm1(x)
        if self.e_mhsa.layout == "tokens":
            b, c, h, w = out.shape
            tokens = out.flatten(2).transpose(1, 2)  # b c h w -> b (h w) c, raster order
            out = self.e_mhsa(tokens).transpose(1, 2).reshape(b, c, h, w)
        else:
            out = self.e_mhsa(out)
        x = x + self.mhsa_drop_path(out)
        out = self.projection(x)
        out = out + self.mhca_drop_path(self.mhca(out))
        x = torch.cat([x, out], dim=1)
        return x + self.mlp_drop_path(self.mlp(self.norm2(x)))


class Stage(nn.Module):
    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ClassifierHead(nn.Module):
    """Global average pool, dropout, linear; ``fc`` is Identity when num_classes == 0."""

    def __init__(self, in_chs: int, num_classes: int, drop: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x.mean(dim=(2, 3))))


# ---------------------------------------------------------------------------------------------------------------
# Config


FEATURE_NORMS = ("last", "none", "all")


@dataclass(frozen=True, kw_only=True)
class NextViTConfig:
    """Every architectural choice of a Next-ViT, widths included.

    Stage ``s`` holds ``depths[s]`` blocks. Stage 1 is all NCBs at ``ncb_chs[0]``. Stages 2 and 4 are NCBs at
    ``ncb_chs[s]`` then one NTB at ``ntb_chs[s-1]``. Stage 3 repeats (``stage3_ncbs`` x NCB, NTB).
    """

    name: str
    depths: tuple[int, int, int, int]
    stem_chs: tuple[int, int, int] = (64, 32, 64)
    ncb_chs: tuple[int, int, int, int] = (96, 192, 384, 768)
    ntb_chs: tuple[int, int, int] = (256, 512, 1024)
    stage3_ncbs: int = 4
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    head_dim: int = 32
    ncb_mlp_ratio: float = 3.0
    ntb_mlp_ratio: float = 2.0
    mix_block_ratio: float = 0.75
    drop_path_rate: float = 0.1
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    num_classes: int = 1000
    features_only: bool = False
    # features mode: which stage maps are normalized. "last": the final BatchNorm on stage 4 (timm's features, a
    # classifier checkpoint); "none": the four raw stage outputs (the official detection backbone, mmdet configs with
    # with_extra_norm=False); "all": a BatchNorm after every stage, stages 1-3 ``stage_norms`` (official
    # ``extra_norm_list.0-2``) and stage 4 ``norm`` (the official segmentation backbone, with_extra_norm=True); there
    # the next stage reads the normalized map, as in the official forward.
    feature_norms: str = "last"
    # the NTB's attention: "emhsa" (the original) or a variant (edgevit.models.attention: avgpool, xca, hilo)
    attention: str = "emhsa"
    default_img_size: int = 224
    pretrained_tags: tuple[str, ...] = field(default=(), compare=False)
    embedded_weights: str | None = None  # checkpoint shipped in edgevit/assets, used when no weights are given
    embedded_labels: str | None = None
    embedded_data: str | None = None  # assets/<name>/{calib,eval}: calibration and labeled held-out images

    def __post_init__(self):
        if len(self.depths) != 4 or any(d < 1 for d in self.depths):
            raise ConfigError(f"{self.name}: depths must be four positive ints, got {self.depths}")
        unit = self.stage3_ncbs + 1
        if self.depths[2] % unit:
            raise ConfigError(f"{self.name}: stage 3 depth {self.depths[2]} must be a multiple of "
                              f"{unit} (stage3_ncbs={self.stage3_ncbs} NCBs + 1 NTB)")
        for c in (*self.ncb_chs, *self.ntb_chs):
            if c % self.head_dim:
                raise ConfigError(f"{self.name}: every width must be a multiple of head_dim={self.head_dim}, got {c}")
        if self.num_classes < 0:
            raise ConfigError(f"{self.name}: num_classes must be >= 0, got {self.num_classes}")
        if self.feature_norms not in FEATURE_NORMS:
            raise ConfigError(f"{self.name}: feature_norms must be one of {', '.join(FEATURE_NORMS)}, got "
                              f"{self.feature_norms!r}")
        if self.feature_norms != "last" and not self.features_only:
            raise ConfigError(f"{self.name}: feature_norms={self.feature_norms!r} describes a backbone's outputs; it "
                              "needs features mode (features_only=True, --features)")
        check_attention(self.attention)
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"{self.name}: drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    def stage_plan(self) -> list[list[tuple[str, int]]]:
        """Per stage, the (block type, out channels) of every block."""
        d1, d2, d3, d4 = self.depths
        unit = [("NCB", self.ncb_chs[2])] * self.stage3_ncbs + [("NTB", self.ntb_chs[1])]
        return [
            [("NCB", self.ncb_chs[0])] * d1,
            [("NCB", self.ncb_chs[1])] * (d2 - 1) + [("NTB", self.ntb_chs[0])],
            unit * (d3 // len(unit)),
            [("NCB", self.ncb_chs[3])] * (d4 - 1) + [("NTB", self.ntb_chs[2])],
        ]

    @property
    def num_features(self) -> int:
        return self.stage_plan()[-1][-1][1]

    @property
    def stage_out_chs(self) -> tuple[int, int, int, int]:
        return tuple(stage[-1][1] for stage in self.stage_plan())


class NextViT(nn.Module):
    """Next-ViT for classification (``forward`` -> logits) or as a backbone (``features_only`` -> four maps).

    ``forward_features`` returns the normalized last stage map (B, C, H/32, W/32); ``forward_head`` pools it and
    applies the classifier. In features mode ``forward`` returns the four stage maps at strides 4, 8, 16 and 32,
    normalized as ``cfg.feature_norms`` says: by default the last one by the final BatchNorm; the official
    detection backbone normalizes none, the official segmentation backbone every one (bytedance/Next-ViT
    ``detection/nextvit.py`` and ``segmentation/nextvit.py``, ``with_extra_norm``).
    """

    def __init__(self, cfg: NextViTConfig):
        super().__init__()
        self.cfg = cfg
        s0, s1, s2 = cfg.stem_chs
        self.stem = nn.Sequential(
            ConvNormAct(3, s0, stride=2),
            ConvNormAct(s0, s1),
            ConvNormAct(s1, s2),
            ConvNormAct(s2, s2, stride=2),
        )
        plan = cfg.stage_plan()
        total = sum(len(stage) for stage in plan)
        dpr = torch.linspace(0, cfg.drop_path_rate, total).tolist() if total > 1 else [0.0]
        in_chs, idx, stages = s2, 0, []
        for s, stage in enumerate(plan):
            blocks = []
            for b, (kind, out_chs) in enumerate(stage):
                stride = 2 if (s > 0 and b == 0) else 1
                if kind == "NCB":
                    blocks.append(NCB(in_chs, out_chs, stride=stride, head_dim=cfg.head_dim,
                                      mlp_ratio=cfg.ncb_mlp_ratio, drop_path=dpr[idx], drop=cfg.drop_rate))
                else:
                    blocks.append(NTB(in_chs, out_chs, stride=stride, sr_ratio=cfg.sr_ratios[s],
                                      head_dim=cfg.head_dim, mlp_ratio=cfg.ntb_mlp_ratio,
                                      mix_block_ratio=cfg.mix_block_ratio, drop_path=dpr[idx],
                                      drop=cfg.drop_rate, attn_drop=cfg.attn_drop_rate,
                                      attention=cfg.attention))
                in_chs, idx = out_chs, idx + 1
            stages.append(Stage(blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        # the detection backbone has no final BatchNorm: its checkpoints carry none
        self.norm = nn.Identity() if cfg.feature_norms == "none" else nn.BatchNorm2d(in_chs, eps=NORM_EPS)
        if cfg.feature_norms == "all":
            self.stage_norms = nn.ModuleList(nn.BatchNorm2d(c, eps=NORM_EPS) for c in cfg.stage_out_chs[:3])
        self.head = None if cfg.features_only else ClassifierHead(in_chs, cfg.num_classes, cfg.drop_rate)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def _check_input(self, x: torch.Tensor):
        if x.ndim != 4 or x.shape[1] != 3:
            raise ModelInputError(f"Next-ViT takes (B, 3, H, W) images, got a tensor of shape {tuple(x.shape)}")

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs, before the final BatchNorm."""
        self._check_input(x)
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.norm(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor):
        if self.cfg.features_only and self.cfg.feature_norms == "all":
            # the official segmentation backbone normalizes each stage's output in place: the next stage reads
            # the normalized map
            self._check_input(x)
            x, outs = self.stem(x), []
            for stage, norm in zip(self.stages, [*self.stage_norms, self.norm]):
                x = norm(stage(x))
                outs.append(x)
            return outs
        if self.cfg.features_only:
            outs = self.forward_stages(x)
            outs[-1] = self.norm(outs[-1])  # Identity for "none"
            return outs
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------------------------
# Registered variants

_REGISTRY: dict[str, NextViTConfig] = {}


def register_config(cfg: NextViTConfig) -> NextViTConfig:
    """Register a named config; a duplicate name is an error, and the config is returned unchanged."""
    if cfg.name in _REGISTRY:
        raise ConfigError(f"model name {cfg.name!r} is already registered")
    _REGISTRY[cfg.name] = cfg
    return cfg


_IN1K_TAGS = ("bd_in1k", "bd_in1k_384", "bd_ssld_6m_in1k", "bd_ssld_6m_in1k_384")

register_config(NextViTConfig(name="nextvit_small", depths=(3, 4, 10, 3), drop_path_rate=0.1,
                              pretrained_tags=_IN1K_TAGS))
register_config(NextViTConfig(name="nextvit_base", depths=(3, 4, 20, 3), drop_path_rate=0.2,
                              pretrained_tags=_IN1K_TAGS))
register_config(NextViTConfig(name="nextvit_large", depths=(3, 4, 30, 3), drop_path_rate=0.2,
                              pretrained_tags=_IN1K_TAGS))
# A Next-ViT with every block type and branch (stride-2 NTB, sr 4/2/1, NCB stacks) that runs in milliseconds.
register_config(NextViTConfig(name="nextvit_test_tiny", depths=(1, 2, 2, 1), stem_chs=(16, 16, 16),
                              ncb_chs=(32, 64, 96, 128), ntb_chs=(128, 160, 192), stage3_ncbs=1,
                              drop_path_rate=0.1, num_classes=10, default_img_size=64))
# The trained reference model shipped with the package (tools/train_reference.py): the tiny architecture trained
# on scikit-learn's 8x8 handwritten digits, upsampled to 64x64 RGB. Quantization accuracy is measured on it.
register_config(NextViTConfig(name="nextvit_digits", depths=(1, 2, 2, 1), stem_chs=(16, 16, 16),
                              ncb_chs=(32, 64, 96, 128), ntb_chs=(128, 160, 192), stage3_ncbs=1,
                              drop_path_rate=0.05, num_classes=10, default_img_size=64,
                              embedded_weights="nextvit_digits.safetensors", embedded_labels="digits_labels.txt",
                              embedded_data="digits"))
# The deep reference model (tools/train_photodigits.py): Next-ViT-S's 20 blocks (depths 3/4/10/3, the same NCB/NTB
# pattern and sr ratios) at reduced widths, trained on the digit scans composited onto photographs at 64x64; hard
# enough that fp32 is well below 100%, so quantization schemes can differ on it.
register_config(NextViTConfig(name="nextvit_photodigits", depths=(3, 4, 10, 3), stem_chs=(16, 16, 32),
                              ncb_chs=(32, 64, 128, 256), ntb_chs=(128, 256, 512), drop_path_rate=0.1,
                              num_classes=10, default_img_size=64,
                              embedded_weights="nextvit_photodigits.safetensors",
                              embedded_labels="digits_labels.txt", embedded_data="photodigits"))


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_config(name: str) -> NextViTConfig:
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}.{hint}") from None


def find_nextvit(model: nn.Module) -> list[tuple[str, "NextViT"]]:
    """Every edgevit Next-ViT inside ``model`` (itself included, path ""), outermost first: the backbone of a
    user's detector or segmenter."""
    found = []
    for name, m in model.named_modules():
        if isinstance(m, NextViT) and not any(name.startswith(f"{outer}.") for outer, _ in found if outer):
            found.append((name, m))
    return found


def create_model(name: str, *, num_classes: int | None = None, features_only: bool = False,
                 drop_path_rate: float | None = None, drop_rate: float | None = None,
                 feature_norms: str | None = None, attention: str | None = None) -> NextViT:
    """Build a registered Next-ViT with fresh (untrained) weights, in eval mode.

    ``attention`` swaps every NTB's E-MHSA for a variant (``edgevit.models.attention.ATTENTIONS``).

    Example::

        model = create_model("nextvit_small", num_classes=10)
        logits = model(torch.randn(1, 3, 224, 224))
    """
    cfg = get_config(name)
    overrides = {"features_only": features_only}
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if drop_path_rate is not None:
        overrides["drop_path_rate"] = drop_path_rate
    if drop_rate is not None:
        overrides["drop_rate"] = drop_rate
    if feature_norms is not None:
        overrides["feature_norms"] = feature_norms
    if attention is not None:
        overrides["attention"] = attention
    return NextViT(replace(cfg, **overrides)).eval()
