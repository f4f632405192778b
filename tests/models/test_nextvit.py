import math
from pathlib import Path

import pytest
import torch
from torch import nn

import edgevit

from edgevit.errors import ConfigError, ModelInputError
from edgevit.models import create_model, get_config, randomize_, register_config
from edgevit.models.complexity import count_macs, count_params
from edgevit.models.nextvit import EMHSA, NTB, NextViTConfig, make_divisible
from tests.numerics import assert_fp32_close

TINY = "nextvit_test_tiny"


@pytest.mark.parametrize("v,expected", [(192.0, 192), (384.0, 384), (768.0, 768), (288.0, 288), (72.0, 96),
                                        (48.0, 64), (100.0, 96), (10.0, 32), (16.0, 32), (80.0, 96)])
def test_make_divisible_rule(v, expected):
    # nearest multiple of 32 (ties up), >= 32, plus 32 if more than 10% was lost
    assert make_divisible(v, 32) == expected


def test_ntb_channel_split_matches_spec():
    model = create_model("nextvit_small")
    ntbs = [m for m in model.modules() if isinstance(m, NTB)]
    splits = [(m.mhsa_out_chs, m.mhca_out_chs) for m in ntbs]
    assert splits == [(192, 64), (384, 128), (384, 128), (768, 256)]
    assert [m.e_mhsa.sr_ratio for m in ntbs] == [4, 2, 2, 1]
    assert [m.e_mhsa.num_heads for m in ntbs] == [6, 12, 12, 24]


@pytest.mark.parametrize("name,depths,blocks", [
    ("nextvit_small", (3, 4, 10, 3), 20), ("nextvit_base", (3, 4, 20, 3), 30), ("nextvit_large", (3, 4, 30, 3), 40)])
def test_stage_plan(name, depths, blocks):
    cfg = get_config(name)
    plan = cfg.stage_plan()
    assert tuple(len(s) for s in plan) == depths
    assert sum(len(s) for s in plan) == blocks
    assert plan[0] == [("NCB", 96)] * 3
    assert plan[1][-1] == ("NTB", 256) and plan[1][:-1] == [("NCB", 192)] * 3
    assert plan[2][:5] == [("NCB", 384)] * 4 + [("NTB", 512)]
    assert plan[3][-1] == ("NTB", 1024)


@pytest.mark.parametrize("name,params_m", [("nextvit_small", 31.7), ("nextvit_base", 44.8), ("nextvit_large", 57.8)])
def test_param_counts_match_paper(name, params_m):
    assert abs(count_params(create_model(name)) / 1e6 - params_m) <= 0.1


def test_timm_layout_entry_count_small():
    # docs/NEXTVIT.md: Next-ViT-S has 472 state-dict entries in timm's layout, num_batches_tracked included
    assert len(create_model("nextvit_small").state_dict()) == 472


@pytest.mark.parametrize("name,gmacs", [
    ("nextvit_small", 5.8),
    pytest.param("nextvit_base", 8.3, marks=pytest.mark.slow),  # full-size: Next-ViT-B and -L
    pytest.param("nextvit_large", 10.8, marks=pytest.mark.slow)])
def test_macs_match_paper(name, gmacs):
    macs = count_macs(create_model(name), (224, 224)) / 1e9
    assert abs(macs - gmacs) / gmacs < 0.02


def test_tiny_forward_is_fast_and_shaped(tiny_model, tiny_input):
    with torch.no_grad():
        out = tiny_model(tiny_input)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def _ceil_halvings(n, times):
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


@pytest.mark.parametrize("h,w", [(64, 64), (96, 64), (64, 128), (100, 68), (32, 32)])
def test_features_mode_shapes(tiny_model, h, w):
    backbone = create_model(TINY, features_only=True)
    backbone.load_state_dict({k: v for k, v in tiny_model.state_dict().items() if not k.startswith("head.")})
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, h, w))
    chs = get_config(TINY).stage_out_chs
    assert len(maps) == 4
    for s, fmap in enumerate(maps):
        assert fmap.shape == (1, chs[s], _ceil_halvings(h, s + 2), _ceil_halvings(w, s + 2))


def test_features_mode_last_map_is_normalized(tiny_model, tiny_input):
    backbone = create_model(TINY, features_only=True)
    backbone.load_state_dict({k: v for k, v in tiny_model.state_dict().items() if not k.startswith("head.")})
    with torch.no_grad():
        maps = backbone(tiny_input)
        expected = tiny_model.forward_features(tiny_input)
        raw = tiny_model.stages(tiny_model.stem(tiny_input))
    torch.testing.assert_close(maps[-1], expected, rtol=0, atol=0)
    assert not torch.allclose(maps[-1], raw)


def test_num_classes_zero_returns_pooled_features(tiny_model, tiny_input):
    m = create_model(TINY, num_classes=0)
    m.load_state_dict({k: v for k, v in tiny_model.state_dict().items() if not k.startswith("head.")})
    with torch.no_grad():
        pooled = m(tiny_input)
        expected = tiny_model.forward_features(tiny_input).mean(dim=(2, 3))
    assert pooled.shape == (2, get_config(TINY).num_features)
    assert_fp32_close(pooled, expected)  # the head pools with its own kernel: its summation order may differ


@pytest.mark.parametrize("sr,n", [(1, 12), (2, 16), (2, 18), (4, 40), (3, 20)])
def test_emhsa_raster_pooling_matches_independent_reference(sr, n, emhsa_reference):
    make, reference = emhsa_reference
    attn = make(sr, seed=sr * 100 + n)
    x = torch.randn(2, n, 64)
    with torch.no_grad():
        assert_fp32_close(attn(x), reference(attn, x))


def test_emhsa_too_few_tokens_is_a_clear_error():
    attn = EMHSA(64, head_dim=32, sr_ratio=4).eval()
    with pytest.raises(ModelInputError, match="at least 16 tokens"):
        attn(torch.randn(1, 8, 64))


def test_bad_input_shape_is_a_clear_error(tiny_model):
    with pytest.raises(ModelInputError, match=r"\(B, 3, H, W\)"):
        tiny_model(torch.randn(1, 1, 64, 64))


def test_stochastic_depth_and_dropout_only_in_training():
    m = create_model(TINY, drop_path_rate=0.5, drop_rate=0.3)
    randomize_(m)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)
        m.train()
        torch.manual_seed(0)
        a = m(x)
        torch.manual_seed(1)
        b = m(x)
    assert not torch.allclose(a, b)
    dps = [mod.p for mod in m.modules() if type(mod).__name__ == "DropPath"]
    assert max(dps) == pytest.approx(0.5) and min(dps) == 0.0


def test_drop_path_linear_schedule_small():
    m = create_model("nextvit_small")
    # NCB's two paths share the block's rate; NTB scales 0.75 / 0.25; the MLP path carries the block rate
    rates = [blk.mlp_drop_path.p for stage in m.stages for blk in stage.blocks]
    expected = torch.linspace(0, 0.1, 20).tolist()
    assert rates == pytest.approx(expected)
    ntb = m.stages[3].blocks[-1]
    assert ntb.mhsa_drop_path.p == pytest.approx(0.075) and ntb.mhca_drop_path.p == pytest.approx(0.025)


def test_config_validation_errors():
    with pytest.raises(ConfigError, match="stage 3 depth"):
        NextViTConfig(name="bad", depths=(1, 1, 3, 1))
    with pytest.raises(ConfigError, match="multiple of head_dim"):
        NextViTConfig(name="bad", depths=(1, 1, 5, 1), ncb_chs=(100, 192, 384, 768))
    with pytest.raises(ConfigError, match="unknown model 'nextvit_smal'.*nextvit_small"):
        get_config("nextvit_smal")


def test_register_returns_config_and_rejects_duplicates():
    cfg = NextViTConfig(name="nextvit_test_registry_probe", depths=(1, 1, 5, 1))
    assert register_config(cfg) is cfg
    with pytest.raises(ConfigError, match="already registered"):
        register_config(cfg)


def test_random_init_is_deterministic_with_nontrivial_bn():
    a = randomize_(create_model(TINY), seed=3)
    b = randomize_(create_model(TINY), seed=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    bns = [m for m in a.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert all(m.running_mean.abs().max() > 1e-3 for m in bns)
    assert all((m.running_var - 1).abs().max() > 1e-3 for m in bns)
    assert all((m.weight - 1).abs().max() > 1e-3 for m in bns)


def test_random_init_keeps_attention_inputs_normalized_on_pictures_and_photos():
    """The BatchNorm statistics are measured on the pictures random weights are run on (golden pictures, photo crops,
    synthetic noise): Next-ViT-S's E-MHSA inputs then stay near unit scale on a golden picture and a real photo crop.
    With statistics measured on synthetic noise alone, the last one reached std 46 on a golden picture at 224
    (benchmarks/results/fp32_conditioning_synthetic_bn.txt)."""
    import numpy as np

    from edgevit.preprocess import Preprocess, golden_image, list_images, open_image

    net = randomize_(create_model("nextvit_small"))
    pre = Preprocess.for_size((224, 224))
    photo = list_images(Path(edgevit.__file__).parent / "assets" / "photodigits" / "eval")[0]
    x = torch.from_numpy(pre.normalize(np.stack([pre.raw(pre.resized(golden_image((224, 224), seed=0))),
                                                 pre.raw(pre.resized(open_image(photo)))])))
    stds = []
    hooks = [m.register_forward_hook(lambda m, i, o: stds.append(i[0].std(dim=(1, 2)))) for m in net.modules()
             if isinstance(m, EMHSA)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    assert len(stds) == 4
    assert max(float(s.max()) for s in stds) < 8.0, [s.tolist() for s in stds]


@pytest.mark.parametrize("target", ["onnx", "executorch", "coreml"])
def test_macs_of_deployed_forms_equal_the_original(tiny_model, target):
    """MACs are counted from the aten ops (FlopCounterMode), so a rewritten attention is counted like the original."""
    from edgevit.models.complexity import count_macs
    from edgevit.rewrites import deploy

    deployed = deploy(tiny_model, target, img_size=(64, 64)).model
    assert count_macs(deployed, (64, 64)) == count_macs(tiny_model, (64, 64)) > 0
