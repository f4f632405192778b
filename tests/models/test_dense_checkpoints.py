"""Official detection (mmdet) and segmentation (mmseg) backbone checkpoints load into features mode exactly.

The reference is written here from the official code's structure (bytedance/Next-ViT ``detection/nextvit.py``,
``segmentation/nextvit.py``), with functional ops on the raw checkpoint tensors: no edgevit module is used. The
checkpoints are laid out as those files are: ``{'state_dict': ..., 'meta': ...}``, the backbone in the official
layout under ``backbone.`` (flat ``features.{i}``, ``mlp.conv1/conv2``, ``extra_norm_list.{i}``, ``norm``) beside
neck and head keys."""

import math

import pytest
import torch
import torch.nn.functional as F

from edgevit.config import ConvertConfig
from edgevit.errors import CheckpointMismatchError, ConfigError
from edgevit.manifest import read_manifest
from edgevit.models import create_model
from edgevit.models.checkpoint import load_weights
from edgevit.models.factory import build_model
from edgevit.pipeline import convert
from tests.numerics import assert_fp32_close

EPS = 1e-5
# the tiny config's architecture, stated here independently of edgevit's registry
DEPTHS, SR, HEAD_DIM = (1, 2, 2, 1), (8, 4, 2, 1), 32


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"],
                        False, 0.0, EPS)


def _patch_embed(x, sd, p, stride):
    if stride == 2:
        x = F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)
    if p + "conv.weight" in sd:
        x = _bn(F.conv2d(x, sd[p + "conv.weight"]), sd, p + "norm.")
    return x


def _mhca(x, sd, p):
    w = sd[p + "group_conv3x3.weight"]
    out = F.relu(_bn(F.conv2d(x, w, padding=1, groups=w.shape[0] // HEAD_DIM), sd, p + "norm."))
    return F.conv2d(out, sd[p + "projection.weight"])


def _mlp(x, sd, p):
    x = F.relu(F.conv2d(x, sd[p + "conv1.weight"], sd[p + "conv1.bias"]))
    return F.conv2d(x, sd[p + "conv2.weight"], sd[p + "conv2.bias"])


def _e_mhsa(x, sd, p, sr):
    b, n, c = x.shape
    heads = c // HEAD_DIM
    q = F.linear(x, sd[p + "q.weight"], sd[p + "q.bias"]).reshape(b, n, heads, HEAD_DIM).permute(0, 2, 1, 3)
    kv = x
    if sr > 1:  # AvgPool1d(sr^2) over the raster-ordered tokens, then BatchNorm1d
        kv = F.avg_pool1d(x.transpose(1, 2), sr * sr, sr * sr)
        kv = F.batch_norm(kv, sd[p + "norm.running_mean"], sd[p + "norm.running_var"], sd[p + "norm.weight"],
                          sd[p + "norm.bias"], False, 0.0, EPS).transpose(1, 2)
    k = F.linear(kv, sd[p + "k.weight"], sd[p + "k.bias"]).reshape(b, -1, heads, HEAD_DIM).permute(0, 2, 3, 1)
    v = F.linear(kv, sd[p + "v.weight"], sd[p + "v.bias"]).reshape(b, -1, heads, HEAD_DIM).permute(0, 2, 1, 3)
    attn = ((q @ k) * HEAD_DIM ** -0.5).softmax(-1)
    return F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), sd[p + "proj.weight"], sd[p + "proj.bias"])


def official_dense_forward(sd, x, with_extra_norm):
    """The official backbone's forward on a state dict without the ``backbone.`` prefix."""
    for i in range(4):
        stride = 2 if i in (0, 3) else 1
        x = F.relu(_bn(F.conv2d(x, sd[f"stem.{i}.conv.weight"], stride=stride, padding=1), sd, f"stem.{i}.norm."))
    outs, idx = [], 0
    for stage, depth in enumerate(DEPTHS):
        for blk in range(depth):
            p, stride = f"features.{idx}.", 2 if stage > 0 and blk == 0 else 1
            x = _patch_embed(x, sd, p + "patch_embed.", stride)
            if p + "e_mhsa.q.weight" in sd:  # NTB
                _, _, h, w = x.shape
                out = _bn(x, sd, p + "norm1.").flatten(2).transpose(1, 2)
                x = x + _e_mhsa(out, sd, p + "e_mhsa.", SR[stage]).transpose(1, 2).reshape(x.shape)
                out = _patch_embed(x, sd, p + "projection.", 1)
                out = out + _mhca(out, sd, p + "mhca.")
                x = torch.cat([x, out], dim=1)
                x = x + _mlp(_bn(x, sd, p + "norm2."), sd, p + "mlp.")
            else:  # NCB
                x = x + _mhca(x, sd, p + "mhca.")
                x = x + _mlp(_bn(x, sd, p + "norm."), sd, p + "mlp.")
            idx += 1
        out = x
        if with_extra_norm:
            x = out = _bn(x, sd, f"extra_norm_list.{stage}." if stage < 3 else "norm.")
        outs.append(out)
    return outs


def _official_backbone_state(seed, with_extra_norm):
    """Random weights in the official layout (names as the official modules give them), from the tiny config's
    shapes; BatchNorm statistics random too, so that every norm matters."""
    src = create_model("nextvit_test_tiny", features_only=True,
                       feature_norms="all" if with_extra_norm else "none").state_dict()
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in src.items():
        k = k.replace("mlp.fc1.", "mlp.conv1.").replace("mlp.fc2.", "mlp.conv2.")
        if k.startswith("stages."):
            parts = k.split(".")
            s, b = int(parts[1]), int(parts[3])
            k = f"features.{sum(DEPTHS[:s]) + b}." + ".".join(parts[4:])
        if k.startswith("stage_norms."):
            k = "extra_norm_list." + k[len("stage_norms."):]
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("weight") and v.ndim == 1:
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(v.shape, generator=g) * (1 / math.sqrt(max(1, v[0].numel())) if v.ndim > 1 else 0.1)
    if with_extra_norm:  # the official module list has a 4th extra norm the forward never reads
        c = sd["norm.weight"].shape[0]
        for name in ("weight", "bias", "running_mean", "running_var"):
            sd[f"extra_norm_list.3.{name}"] = torch.full((c,), 7.0)
    return sd


def _mm_checkpoint(path, backbone, kind):
    sd = {f"backbone.{k}": v for k, v in backbone.items()}
    sd["neck.lateral_convs.0.conv.weight"] = torch.zeros(8, 32, 1, 1)
    sd["neck.fpn_convs.0.conv.weight"] = torch.zeros(8, 8, 3, 3)
    if kind == "det":
        sd["rpn_head.rpn_conv.weight"] = torch.zeros(8, 8, 3, 3)
        sd["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(81, 16)
    else:
        sd["decode_head.conv_seg.weight"] = torch.zeros(150, 8, 1, 1)
        sd["auxiliary_head.conv_seg.weight"] = torch.zeros(150, 8, 1, 1)
    torch.save({"meta": {"mmdet_version" if kind == "det" else "mmseg_version": "2.25.0", "epoch": 12},
                "state_dict": sd}, path)
    return path


@pytest.mark.parametrize("kind,extra", [("det", False), ("seg", True)])
def test_official_dense_checkpoint_matches_the_official_forward(tmp_path, kind, extra):
    backbone = _official_backbone_state(seed=3, with_extra_norm=extra)
    path = _mm_checkpoint(tmp_path / f"{kind}.pth", backbone, kind)
    net = build_model(model="nextvit_test_tiny", weights=str(path), random_init=False, features=True)
    assert net.cfg.feature_norms == ("all" if extra else "none")
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = net(x)
        want = official_dense_forward(backbone, x, extra)
    assert len(got) == 4
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert_fp32_close(g, w)


def test_the_neck_heads_and_unused_norms_are_reported_not_loaded(tmp_path, caplog):
    backbone = _official_backbone_state(seed=4, with_extra_norm=True)
    path = _mm_checkpoint(tmp_path / "seg.pth", backbone, "seg")
    net = create_model("nextvit_test_tiny", features_only=True, feature_norms="all")
    report = load_weights(net, path)
    assert report.layout == "official-mmseg"
    assert report.other_parts == {"neck": 2, "decode_head": 1, "auxiliary_head": 1}
    assert sorted(report.unused) == [f"extra_norm_list.3.{n}" for n in ("bias", "running_mean", "running_var",
                                                                         "weight")]
    assert "neck.* keys not part of the backbone" in str(report)


def test_a_dense_checkpoint_needs_features_mode_and_its_own_norms(tmp_path):
    path = _mm_checkpoint(tmp_path / "det.pth", _official_backbone_state(seed=5, with_extra_norm=False), "det")
    with pytest.raises(ConfigError, match="pass --features"):
        build_model(model="nextvit_test_tiny", weights=str(path), random_init=False)
    with pytest.raises(CheckpointMismatchError, match="feature_norms='none'"):
        load_weights(create_model("nextvit_test_tiny", features_only=True), path)
    # a backbone key the model does not have is still an error, not silently dropped
    bad = _official_backbone_state(seed=5, with_extra_norm=False)
    bad["features.0.mystery.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError, match="mystery"):
        load_weights(create_model("nextvit_test_tiny", features_only=True, feature_norms="none"),
                     _mm_checkpoint(tmp_path / "bad.pth", bad, "det"))


def test_a_segmentation_backbone_converts_and_verifies(tmp_path):
    path = _mm_checkpoint(tmp_path / "seg.pth", _official_backbone_state(seed=6, with_extra_norm=True), "seg")
    r = convert(ConvertConfig(model="nextvit_test_tiny", weights=str(path), features=True, target="onnx",
                              out=str(tmp_path / "o")))
    m = read_manifest(r.out_dir)
    assert r.parity_passed and [o["name"] for o in m["outputs"]] == ["stage1", "stage2", "stage3", "stage4"]
    assert m["source"]["feature_norms"] == "all"
