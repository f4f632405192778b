import pytest
import torch
from torch import nn

from edgevit.errors import ConfigError
from edgevit.models import create_model, randomize_
from edgevit.models.nextvit import NTB
from edgevit.rewrites import FORMS, RewriteParityError, deploy
from edgevit.rewrites.base import apply_pass, register_pass
from edgevit.rewrites.bchw_attention import BCHWAttention
from edgevit.verify.tolerances import tolerance_for
from tests.numerics import assert_fp32_close

TINY = "nextvit_test_tiny"
ALL_PASS_LISTS = {
    "fold": ("fold_conv_bn",),
    "merge": ("merge_pre_bn",),
    "fold+merge": ("fold_conv_bn", "merge_pre_bn"),
    "bchw_kq": ("bchw_attention_kq",),
    "bchw_qk": ("fold_conv_bn", "merge_pre_bn", "bchw_attention_qk"),
    "bchw_split": ("fold_conv_bn", "merge_pre_bn", "bchw_attention_split"),
    "delegate_ops": ("delegate_friendly_ops",),
    **{f"target_{t}": FORMS[t][0] for t in FORMS},
}


def _model(features=False, num_classes=None, seed=0):
    return randomize_(create_model(TINY, features_only=features, num_classes=num_classes), seed=seed)


def _out(model, x):
    with torch.no_grad():
        y = model(x)
    return list(y) if isinstance(y, list) else [y]


@pytest.mark.parametrize("passes", list(ALL_PASS_LISTS.values()), ids=list(ALL_PASS_LISTS))
@pytest.mark.parametrize("size", [(64, 64), (100, 68), (96, 128)], ids=["square", "odd-tokens", "wide"])
@pytest.mark.parametrize("mode", ["classify", "features", "embedding"])
def test_passes_are_exact_on_every_branch(passes, size, mode):
    # (100, 68): stage-2 maps of 13x9 = 117 tokens, not a multiple of sr*sr = 16 (5 trailing tokens dropped);
    # odd map sizes also exercise the ceil-mode pooling branch
    model = _model(features=mode == "features", num_classes=0 if mode == "embedding" else None, seed=len(passes))
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(3))
    new = deploy(model, passes=passes, img_size=size).model
    tol = tolerance_for("eager", "fp32")
    for a, b in zip(_out(model, x), _out(new, x)):
        assert (b - a).abs().max() <= tol.max_rel * a.abs().max()
        assert (b - a).abs().max() <= tol.max_abs


def test_deploy_is_pure_and_leaves_no_batchnorm():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for target in FORMS:
        new = deploy(model, target).model
        assert not [n for n, m in new.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) == 31


def test_pass_reports_name_what_changed():
    model = _model()
    _, fold = apply_pass("fold_conv_bn", model)
    assert "stem.0.conv+norm" in fold.changed and "stages.1.blocks.1.projection.conv+norm" in fold.changed
    _, merge = apply_pass("merge_pre_bn", model)
    assert "stages.1.blocks.1.norm1->e_mhsa.q/k/v(+norm)" in merge.changed
    assert "stages.3.blocks.0.norm1->e_mhsa.q/k/v" in merge.changed  # sr = 1: no BatchNorm1d to compose
    assert "norm->head.fc" in merge.changed
    _, merge_feat = apply_pass("merge_pre_bn", _model(features=True))
    assert "norm->ChannelAffine" in merge_feat.changed


def test_required_pass_that_changes_nothing_is_an_error():
    once = deploy(_model(), passes=("fold_conv_bn",)).model
    with pytest.raises(ConfigError, match="fold_conv_bn changed nothing"):
        deploy(once, passes=("fold_conv_bn",))


def test_unknown_pass():
    with pytest.raises(ConfigError, match="unknown rewrite passes"):
        deploy(_model(), passes=("fold_everything",))


@register_pass("_test_broken_pass", "perturbs one block (test only)")
def _broken(model):
    from edgevit.rewrites.base import PassReport

    blk = model.stages[2].blocks[1]
    blk.mlp.fc2.bias.add_(0.5)
    return PassReport("_test_broken_pass", changed=["stages.2.blocks.1.mlp.fc2"])


def test_broken_pass_is_named_with_its_block():
    with pytest.raises(RewriteParityError) as e:
        deploy(_model(), passes=("fold_conv_bn", "_test_broken_pass"))
    assert e.value.pass_name == "_test_broken_pass"
    assert e.value.block == "stages.2.blocks.1"
    assert "stages.2.blocks.1" in str(e.value)


@pytest.mark.parametrize("form", ["kq", "qk", "split"])
@pytest.mark.parametrize("sr,h,w", [(1, 3, 5), (2, 4, 4), (2, 3, 5), (4, 5, 7), (4, 8, 6)])
def test_bchw_attention_matches_raster_token_reference(form, sr, h, w, emhsa_reference):
    make, reference = emhsa_reference
    attn = make(sr, seed=sr + h * w)
    with torch.no_grad():
        fast = BCHWAttention(attn, form).eval()
        x = torch.randn(2, 64, h, w)
        ref = reference(attn, x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 64, h, w)
        assert_fp32_close(fast(x), ref)


def test_bchw_swaps_every_ntb():
    new = deploy(_model(), passes=("bchw_attention_kq",)).model
    ntbs = [m for m in new.modules() if isinstance(m, NTB)]
    assert len(ntbs) == 3 and all(isinstance(m.e_mhsa, BCHWAttention) for m in ntbs)


def test_form_reasons_are_one_sentence_pointing_to_the_docs():
    """Manifest reasons carry no benchmark figures (those live in benchmarks/results/ and docs/FORMS.md), and the
    page each one points to exists."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs/FORMS.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", page, re.M)}
    for target, (_, reason) in FORMS.items():
        assert len(reason) <= 200 and not re.search(r"\d\.\d|\d+x\b|benchmarks/results", reason), (target, reason)
        link = re.search(r"docs/FORMS\.md#([a-z0-9-]+)", reason)
        assert link and link.group(1) in anchors, (target, reason)
