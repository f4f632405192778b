import os

import pytest
import torch

from edgevit.errors import CheckpointError, CheckpointMismatchError, OutputExistsError, UnsafeCheckpointError
from edgevit.models import create_model, load_weights, read_state_dict, save_weights
from edgevit.models.checkpoint import detect_layout

TINY = "nextvit_test_tiny"


def _outputs(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".bin"])
def test_official_and_timm_layouts_give_identical_outputs(tmp_path, tiny_model, tiny_input, suffix):
    official = save_weights(tiny_model, tmp_path / f"official{suffix}", layout="official")
    timm = save_weights(tiny_model, tmp_path / f"timm{suffix}", layout="timm")
    a, b = create_model(TINY), create_model(TINY)
    ra, rb = load_weights(a, official), load_weights(b, timm)
    assert (ra.layout, rb.layout) == ("official", "timm")
    ref = _outputs(tiny_model, tiny_input)
    assert torch.equal(_outputs(a, tiny_input), ref)
    assert torch.equal(_outputs(b, tiny_input), ref)
    for (k, v), v2 in zip(a.state_dict().items(), tiny_model.state_dict().values()):
        assert torch.equal(v, v2), k


def test_official_file_has_release_structure(tmp_path):
    # key names written from docs/NEXTVIT.md's description of the release files, not from the converter
    path = save_weights(create_model("nextvit_small"), tmp_path / "small.pth", layout="official")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model"}
    keys = set(raw["model"])
    for k in ["stem.0.conv.weight", "stem.0.norm.running_var", "stem.3.norm.weight",
              "features.0.patch_embed.conv.weight", "features.0.mhca.group_conv3x3.weight",
              "features.0.mhca.norm.bias", "features.0.mhca.projection.weight", "features.0.norm.weight",
              "features.0.mlp.conv1.weight", "features.0.mlp.conv2.bias",
              "features.6.norm1.weight", "features.6.e_mhsa.q.weight", "features.6.e_mhsa.norm.running_mean",
              "features.6.projection.conv.weight", "features.6.projection.norm.weight", "features.6.norm2.bias",
              "features.19.e_mhsa.proj.bias", "norm.weight", "proj_head.0.weight", "proj_head.0.bias"]:
        assert k in keys, k
    assert "features.19.e_mhsa.norm.weight" not in keys  # stage 4 has sr = 1: no pooling, no BatchNorm1d
    assert "features.1.patch_embed.conv.weight" not in keys  # 96 -> 96, stride 1: identity
    assert not any(k.startswith(("features.20.", "stages.", "head.")) for k in keys)
    assert raw["model"]["features.6.e_mhsa.q.weight"].shape == (192, 192)  # Linear (C_out, C_in)
    assert raw["model"]["features.0.mlp.conv1.weight"].shape == (288, 96, 1, 1)


def test_timm_file_has_timm_names(tmp_path, tiny_model):
    sd = read_state_dict(save_weights(tiny_model, tmp_path / "t.safetensors", layout="timm"))
    assert detect_layout(sd) == "timm"
    assert "stages.1.blocks.1.mlp.fc1.weight" in sd and "head.fc.weight" in sd


def test_planted_pickle_payload_is_not_executed(tmp_path, tiny_model):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    sd = dict(tiny_model.state_dict())
    path = tmp_path / "evil.pth"
    torch.save({"model": sd, "extra": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match="nothing in it was executed"):
        load_weights(create_model(TINY), path)
    assert not marker.exists()
    # and the same payload really does run under an unsafe loader, so the test above can fail
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_is_a_named_error(tmp_path, tiny_model, suffix):
    path = save_weights(tiny_model, tmp_path / f"w{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_weights(create_model(TINY), path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointError):
        load_weights(create_model(TINY), path)


def test_missing_key_is_listed_with_layout(tmp_path, tiny_model):
    sd = {k: v for k, v in tiny_model.state_dict().items() if k != "stages.1.blocks.1.e_mhsa.q.weight"}
    sd["stages.9.blocks.0.bogus"] = torch.zeros(1)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(CheckpointMismatchError) as e:
        load_weights(create_model(TINY), tmp_path / "w.pth")
    assert e.value.layout == "timm"
    assert e.value.missing == ["stages.1.blocks.1.e_mhsa.q.weight"]
    assert e.value.unexpected == ["stages.9.blocks.0.bogus"]
    assert "timm layout detected" in str(e.value)


def test_wrong_variant_lists_shape_mismatches(tmp_path, tiny_model):
    path = save_weights(tiny_model, tmp_path / "tiny.pth", layout="official")
    with pytest.raises(CheckpointMismatchError) as e:
        load_weights(create_model("nextvit_small"), path)
    err = e.value
    assert err.layout == "official" and err.mismatched and err.missing
    assert ("stem.0.conv.weight", (16, 3, 3, 3), (64, 3, 3, 3)) in err.mismatched
    assert "official layout detected" in str(err)


def test_head_replacement_is_explicit(tmp_path, tiny_model, tiny_input):
    path = save_weights(tiny_model, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointMismatchError, match="--reset-head"):
        load_weights(create_model(TINY, num_classes=5), path)
    m = create_model(TINY, num_classes=5)
    fresh_head = m.head.fc.weight.clone()
    report = load_weights(m, path, reset_head=True)
    assert report.head_reset
    assert torch.equal(m.head.fc.weight, fresh_head)
    with torch.no_grad():
        torch.testing.assert_close(m.forward_features(tiny_input), tiny_model.forward_features(tiny_input),
                                   rtol=0, atol=0)


def test_backbone_ignores_classifier(tmp_path, tiny_model):
    path = save_weights(tiny_model, tmp_path / "w.pth", layout="official")
    report = load_weights(create_model(TINY, features_only=True), path)
    assert sorted(report.ignored) == ["head.fc.bias", "head.fc.weight"]


def test_half_precision_and_module_prefix_checkpoints_load(tmp_path, tiny_model, tiny_input):
    sd = {"module." + k: (v.half() if v.is_floating_point() else v) for k, v in tiny_model.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "w.pth")
    m = create_model(TINY)
    load_weights(m, tmp_path / "w.pth")
    torch.testing.assert_close(_outputs(m, tiny_input), _outputs(tiny_model, tiny_input), rtol=0.05, atol=0.05)


def test_missing_num_batches_tracked_is_fine(tmp_path, tiny_model):
    sd = {k: v for k, v in tiny_model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "w.pth")
    assert load_weights(create_model(TINY), tmp_path / "w.pth").loaded == len(sd)


def test_hub_id_offline_says_to_pass_a_local_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants  # read once at import: set it where it is kept too (else 23 s of

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # network timeouts when the hub was imported earlier)
    with pytest.raises(CheckpointError, match="--weights PATH"):
        load_weights(create_model(TINY), "timm/nextvit_small.bd_in1k")  # offline: fails before any shape check


def test_missing_local_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(create_model(TINY), tmp_path / "nope.pth")


def test_save_never_overwrites_unasked(tmp_path, tiny_model):
    path = save_weights(tiny_model, tmp_path / "w.pth")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        save_weights(create_model(TINY), path)
    assert path.read_bytes() == before
    save_weights(tiny_model, path, overwrite=True, layout="official")
    assert detect_layout(read_state_dict(path)) == "official"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]

