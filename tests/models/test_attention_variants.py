"""Attention variants (avgpool, xca, hilo): each against a direct computation written here from its definition, the
carry-over from E-MHSA weights, the deploy merges, checkpoints in both key layouts, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgevit.errors import CheckpointMismatchError, ConfigError, ModelInputError
from edgevit.models.attention import ATTENTIONS, variant_class
from edgevit.models.checkpoint import checkpoint_attention, load_weights, read_state_dict, save_weights
from edgevit.models.nextvit import EMHSA, NTB, create_model
from edgevit.models.random_init import randomize_
from edgevit.rewrites import deploy
from tests.numerics import assert_fp32_close

VARIANTS = [a for a in ATTENTIONS if a != "emhsa"]


def _random_attention(cls_or_emhsa, dim=64, head_dim=16, sr=2, seed=0):
    torch.manual_seed(seed)
    m = cls_or_emhsa(dim, head_dim=head_dim, sr_ratio=sr)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
        if m.norm is not None:  # a non-trivial BatchNorm so the merge and the carry-over are visible
            m.norm.running_mean.copy_(torch.randn(dim) * 0.3)
            m.norm.running_var.copy_(torch.rand(dim) + 0.5)
    return m.eval()


def _heads(t, nh):  # (B, C, H, W) -> (B, nh, d, H*W)
    b, c, h, w = t.shape
    return t.reshape(b, nh, c // nh, h * w)


def _conv(layer, x):
    return F.conv2d(x, layer.weight, layer.bias)


def _pool_norm(m, x):
    p = F.avg_pool2d(x, m.sr_ratio) if m.sr_ratio > 1 else x
    if m.norm is None:
        return p
    bn = m.norm
    return (p - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps) \
        * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]


def test_avgpool_matches_its_definition_and_equals_emhsa_where_1d_and_2d_pooling_coincide():
    cls = variant_class("avgpool")
    m = _random_attention(cls)
    x = torch.randn(2, 64, 6, 10)
    with torch.no_grad():
        q, p = _heads(_conv(m.q, x), 4), _pool_norm(m, x)
        k, v = _heads(_conv(m.k, p), 4), _heads(_conv(m.v, p), 4)
        a = torch.einsum("bhdn,bhdm->bhnm", q, k) / math.sqrt(16)
        out = torch.einsum("bhnm,bhdm->bhdn", a.softmax(-1), v).reshape(2, 64, 6, 10)
        assert_fp32_close(m(x), _conv(m.proj, out))
    # a map sr wide: AvgPool1d over sr*sr raster tokens averages exactly the sr x sr squares, so the carried-over
    # variant computes the original's function (tokens in, tokens out)
    orig = _random_attention(EMHSA, seed=1)
    m.carry_from(orig)
    x = torch.randn(2, 64, 8, 2)
    with torch.no_grad():
        tokens = orig(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 64, 8, 2)
        assert_fp32_close(m(x), tokens)
        # on a wider map they differ: this is a different function, not a relabelling
        x = torch.randn(2, 64, 8, 8)
        tokens = orig(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 64, 8, 8)
        assert (m(x) - tokens).abs().max() > 1e-2


def test_xca_matches_its_definition():
    m = _random_attention(variant_class("xca"))
    x = torch.randn(2, 64, 6, 10)
    with torch.no_grad():
        p = _pool_norm(m, x)
        q = F.normalize(_heads(_conv(m.q, p), 4), dim=-1)
        k = F.normalize(_heads(_conv(m.k, p), 4), dim=-1)
        a = (torch.einsum("bhcn,bhen->bhce", q, k) * m.temperature).softmax(-1)  # channels x channels
        out = torch.einsum("bhce,bhen->bhcn", a, _heads(_conv(m.v, x), 4)).reshape(2, 64, 6, 10)
        assert_fp32_close(m(x), _conv(m.proj, out))
    assert m.carry_from(_random_attention(EMHSA)) == ["temperature"]


@pytest.mark.parametrize("hw", [(6, 10), (5, 7)])  # (5, 7): padded windows at the bottom/right
def test_hilo_matches_a_window_by_window_computation(hw):
    m = _random_attention(variant_class("hilo"), dim=96, head_dim=16)  # 6 heads: 1 Hi, 5 Lo (alpha 0.9)
    assert (m.hi_heads, m.lo_heads) == (1, 5)
    h, w = hw
    x = torch.randn(2, 96, h, w)
    d, ws, ch = 16, 2, m.hi_chs
    with torch.no_grad():
        q = _conv(m.q, x)
        kh, vh = _conv(m.hi_k, x), _conv(m.hi_v, x)
        hi = torch.zeros(2, ch, h, w)
        for b in range(2):
            for head in range(m.hi_heads):
                c = slice(head * d, (head + 1) * d)
                for i0 in range(0, h, ws):
                    for j0 in range(0, w, ws):
                        cells = [(i, j) for i in range(i0, i0 + ws) for j in range(j0, j0 + ws)]
                        real = [(i, j) for i, j in cells if i < h and j < w]
                        keys = torch.stack([kh[b, c, i, j] if (i, j) in real else torch.zeros(d) for i, j in cells])
                        vals = torch.stack([vh[b, c, i, j] if (i, j) in real else torch.zeros(d) for i, j in cells])
                        for i, j in real:
                            s = (keys @ q[b, c, i, j] / math.sqrt(d)).softmax(0)
                            hi[b, c, i, j] = s @ vals
        p = _pool_norm(m, x)
        ql = _heads(q[:, ch:], m.lo_heads)
        kl, vl = _heads(_conv(m.lo_k, p), m.lo_heads), _heads(_conv(m.lo_v, p), m.lo_heads)
        a = (torch.einsum("bhdn,bhdm->bhnm", ql, kl) / math.sqrt(d)).softmax(-1)
        lo = torch.einsum("bhnm,bhdm->bhdn", a, vl).reshape(2, 96 - ch, h, w)
        assert_fp32_close(m(x), _conv(m.proj, torch.cat([hi, lo], 1)))


def test_hilo_carry_over_splits_keys_and_values_by_head():
    orig = _random_attention(EMHSA, dim=96, head_dim=16)
    m = variant_class("hilo")(96, head_dim=16, sr_ratio=2)
    assert m.carry_from(orig) == []
    ch = m.hi_chs
    assert torch.equal(m.hi_k.weight[:, :, 0, 0], orig.k.weight[:ch])
    assert torch.equal(m.lo_v.weight[:, :, 0, 0], orig.v.weight[ch:])
    assert torch.equal(m.lo_v.bias, orig.v.bias[ch:])
    assert torch.equal(m.norm.running_var, orig.norm.running_var)
    with pytest.raises(ConfigError, match="at least 2"):
        variant_class("hilo")(16, head_dim=16, sr_ratio=1)


@pytest.mark.parametrize("attention", VARIANTS)
def test_variant_model_deploys_exactly_and_merges_its_batchnorms(attention):
    net = randomize_(create_model("nextvit_test_tiny", attention=attention))
    assert all(n.e_mhsa.name == attention for n in net.modules() if isinstance(n, NTB))
    result = deploy(net, "onnx")  # raises RewriteParityError if a pass changes the function
    names = [r.name for r in result.reports]
    assert "bchw_attention_kq" not in names and "merge_pre_bn" in names
    merged = [c for r in result.reports if r.name == "merge_pre_bn" for c in r.changed if ".norm1->e_mhsa" in c]
    assert len(merged) == 3  # the three NTBs of the tiny config
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in result.model.modules())
    x = torch.randn(1, 3, 80, 48)  # another size than the probe's: still the same function
    with torch.no_grad():
        assert_fp32_close(result.model(x), net(x))
    assert "skipped" in result.reason


@pytest.mark.parametrize("layout", ["timm", "official"])
def test_variant_checkpoints_save_and_load_in_both_layouts(tmp_path, layout):
    for attention in VARIANTS:
        net = randomize_(create_model("nextvit_test_tiny", attention=attention), seed=3)
        path = save_weights(net, tmp_path / f"{attention}_{layout}.safetensors", layout=layout)
        again = create_model("nextvit_test_tiny", attention=attention)
        load_weights(again, path)
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
        sd = read_state_dict(path)
        assert any(k.startswith("features." if layout == "official" else "stages.") for k in sd)


def test_an_original_checkpoint_in_a_variant_model_points_to_adapt(tmp_path):
    path = save_weights(randomize_(create_model("nextvit_test_tiny")), tmp_path / "orig.safetensors")
    assert checkpoint_attention(read_state_dict(path)) == "emhsa"
    with pytest.raises(CheckpointMismatchError, match=r"holds 'emhsa' attention.*edgevit adapt --attention xca"):
        load_weights(create_model("nextvit_test_tiny", attention="xca"), path)
    hilo = save_weights(create_model("nextvit_test_tiny", attention="hilo"), tmp_path / "hilo.safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"holds 'hilo' attention.*--attention hilo"):
        load_weights(create_model("nextvit_test_tiny"), hilo)


def test_bad_attention_names_and_tiny_maps_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown attention 'xcit'.*avgpool, xca, hilo"):
        create_model("nextvit_test_tiny", attention="xcit")
    m = variant_class("avgpool")(64, head_dim=16, sr_ratio=4).eval()
    with pytest.raises(ModelInputError, match="at least 4x4 but got 2x8"):
        m(torch.randn(1, 64, 2, 8))
