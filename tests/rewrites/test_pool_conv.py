"""pools_as_depthwise_conv: window means as depthwise convolutions with 1/k weights are exact (bit-identical in
fp32: every weight is a power of two), keep the ceil-mode pool on odd maps, and leave no pool in LiteRT's form."""

import torch
import torch.nn.functional as F

from edgevit.rewrites import deploy
from edgevit.rewrites.base import apply_pass
from edgevit.rewrites.pool_conv import DepthwiseMean


def test_depthwise_mean_equals_the_pools_it_replaces():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 12, 20, generator=g) * 50
    for kernel in ((2, 2), (1, 4), (1, 16)):
        got = DepthwiseMean(8, kernel)(x)
        assert torch.equal(got, F.avg_pool2d(x, kernel, kernel)), kernel
    odd = torch.randn(2, 8, 7, 9, generator=g)
    want = F.avg_pool2d(odd, 2, 2, ceil_mode=True, count_include_pad=False)
    assert torch.equal(DepthwiseMean(8, (2, 2), ceil_fallback=True)(odd), want)


def test_litert_form_has_no_pool_left_and_is_bit_identical(tiny_model, tiny_input):
    before = deploy(tiny_model, "litert", passes=("fold_conv_bn", "merge_pre_bn", "delegate_friendly_ops")).model
    after, report = apply_pass("pools_as_depthwise_conv", before)
    # the tiny config: three stride-2 PatchEmbeds and the E-MHSAs with sr > 1
    assert any(c.endswith(".pool") for c in report.changed) and any(c.endswith("kv_pool") for c in report.changed)
    with torch.no_grad():
        assert torch.equal(before(tiny_input), after(tiny_input))
    graph = torch.export.export(after, (tiny_input,)).graph
    assert not [n for n in graph.nodes if "avg_pool" in str(n.target)]
    assert "pools_as_depthwise_conv" in deploy(tiny_model, "litert").reason or \
        "pools_as_depthwise_conv" in [r.name for r in deploy(tiny_model, "litert").reports]
