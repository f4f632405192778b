"""Whole models with Next-ViT inside (``--module FILE.py:FACTORY``): the example detector of examples/detector/ is
deployed (rewrites on the backbone only, parity on the detector's outputs), converted, verified (also on real images,
rebuilding the reference from its factory), and bad factories or weights are named errors."""

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from edgevit.config import ConvertConfig
from edgevit.errors import CheckpointMismatchError, ConfigError
from edgevit.manifest import read_manifest
from edgevit.models.random_init import randomize_
from edgevit.pipeline import convert
from edgevit.rewrites import deploy
from edgevit.verify import verify_dir
from tests.robustness.conftest import REPO, cli, expect

EXAMPLE = REPO / "examples" / "detector" / "detector.py"
TINY = f"{EXAMPLE}:build_tiny"
SIZE = "96x160"  # non-square; the full-size detector (Next-ViT-S at 640, 800x1344) runs in the slow test below
IMAGES = REPO / "edgevit" / "assets" / "digits" / "eval" / "3"


def _detector():
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from detector import build_tiny
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    det = build_tiny()
    randomize_(det.backbone, seed=0)
    return det.eval()


def test_deploy_rewrites_the_backbone_of_a_whole_model_and_checks_its_outputs():
    det = _detector()
    result = deploy(det, "onnx", img_size=(96, 160))
    changed = [m for r in result.reports for m in r.changed]
    assert changed and all(m.startswith("backbone.") for m in changed)
    assert type(result.model.lateral[0]) is torch.nn.Conv2d and result.model.tower is not det.tower
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(det(x), result.model(x)):
            assert a.shape == b.shape
            assert float((a - b).abs().max() / a.abs().max()) < 5e-5  # the eager tolerance row


@pytest.mark.parametrize("target", ["onnx", "executorch", "ort", "coreml", "litert"])
def test_the_example_detector_converts_and_verifies(tmp_path, target):
    r = convert(ConvertConfig(model="nextvit_test_tiny", module=TINY, random_init=True, img_size=SIZE,
                              target=target, precision="fp32", out=str(tmp_path / "o")))
    m = read_manifest(r.out_dir)
    assert r.parity_passed
    assert [o["name"] for o in m["outputs"]] == ["p3_cls", "p3_box", "p4_cls", "p4_box", "p5_cls", "p5_box"]
    assert [o["shape"][-2:] for o in m["outputs"][::2]] == [[12, 20], [6, 10], [3, 5]]  # strides 8, 16, 32
    assert m["source"]["module"] == f"{EXAMPLE}:build_tiny" and m["num_classes"] is None
    assert all(p["modules"][0].startswith("backbone.") for p in m["rewrite"]["passes"])
    report = verify_dir(r.out_dir, images=IMAGES if target == "onnx" else None, module=TINY)
    assert report.passed and ("images" in report.to_dict()["sets"]) == (target == "onnx")
    from edgevit.verify.drift import drift_dir  # it follows the backbone's blocks inside the detector

    drift = drift_dir(r.out_dir, module=TINY)
    units = [b.unit for b in drift.blocks]
    assert units[0] == "backbone.stem" and units[-1] == "p3_cls" and len(units) == 8, drift.notes
    assert all(b.cosine_min > 0.99999 for b in drift.blocks) and drift.first_over_budget is None


# every target at 640; the largest size in one runtime (the four at 800x1344 took 240-322 s each with two xdist
# workers, the slow tier's largest cost; benchmarks/detector_sizes.py records the whole table)
DETECTION_CASES = [("640", t) for t in ("onnx", "ort", "executorch", "coreml")] + [("800x1344", "onnx")]


@pytest.mark.slow  # full-size: Next-ViT-S at detection sizes
@pytest.mark.parametrize("size,target", DETECTION_CASES, ids=[f"{s}-{t}" for s, t in DETECTION_CASES])
def test_the_full_size_detector_converts_and_verifies_at_detection_sizes(tmp_path, target, size):
    r = convert(ConvertConfig(model="nextvit_small", module=f"{EXAMPLE}:build", random_init=True, img_size=size,
                              target=target, precision="fp32", out=str(tmp_path / "o")))
    m = read_manifest(r.out_dir)
    h, w = (int(v) for v in (size.split("x") if "x" in size else (size, size)))
    assert r.parity_passed and m["input"]["shape"][-2:] == [h, w]
    assert [o["shape"][-2:] for o in m["outputs"][::2]] == [[-(-h // s), -(-w // s)] for s in (8, 16, 32)]
    assert verify_dir(r.out_dir).passed


def test_whole_model_weights_load_strictly_and_are_checked_on_verify(tmp_path):
    det = _detector()
    weights = tmp_path / "det.pth"
    torch.save(det.state_dict(), weights)
    r = convert(ConvertConfig(model="nextvit_test_tiny", module=TINY, weights=str(weights), img_size=SIZE,
                              out=str(tmp_path / "o")))
    assert r.parity_passed and verify_dir(r.out_dir, images=IMAGES, module=TINY).passed
    bad = dict(det.state_dict())
    bad.pop("cls.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError, match="cls.weight"):
        convert(ConvertConfig(model="nextvit_test_tiny", module=TINY, weights=str(tmp_path / "bad.pth"),
                              img_size=SIZE, out=str(tmp_path / "b")))


def test_bad_modules_are_named_errors(tmp_path):
    with pytest.raises(ConfigError, match="FILE.py:FACTORY"):
        ConvertConfig(module="detector.py", out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="do not apply"):
        ConvertConfig(module=TINY, features=True, out=str(tmp_path / "a"))
    user = tmp_path / "user.py"
    user.write_text(textwrap.dedent("""
        import torch, edgevit
        def plain():
            return torch.nn.Conv2d(3, 8, 3)
        def small():
            return torch.nn.Sequential(edgevit.create_model("nextvit_test_tiny", features_only=True))
        def raises():
            return {}["no such key"]
        def needs(arg):
            return arg
        def exits():
            import sys
            sys.exit(0)
        class Broken(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = edgevit.create_model("nextvit_small", features_only=True)
            def forward(self, x):
                raise RuntimeError("forward is broken")
        def broken():
            return Broken()
    """))
    cases = [(f"{user}:missing", "functions defined there: Broken, broken, exits, needs, plain, raises, small"),
             (f"{user}:plain", "contains no edgevit Next-ViT"),
             (f"{user}:small", "pass --model nextvit_test_tiny"),
             # the user's code failing is a named error (exit 2) ending with their own file's frames, not exit 1
             (f"{user}:raises", "calling .*raises\\(\\) failed: KeyError: 'no such key'\\n.*user.py"),
             (f"{user}:needs", "calling .*needs\\(\\) failed: TypeError"),
             (f"{user}:exits", "called sys.exit\\(0\\)"),
             (f"{user}:broken", "running the model's forward .* failed: RuntimeError: forward is broken")]
    for spec, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            convert(ConvertConfig(model="nextvit_small", module=spec, random_init=True, out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_cli_module_dry_run_and_missing_file(tmp_path):
    r = cli("convert", "--model", "nextvit_test_tiny", "--module", TINY, "--random-init", "--img-size", SIZE,
            "--out", tmp_path / "o", "--dry-run")
    expect(r, 0)
    expect(cli("convert", "--module", f"{tmp_path}/nope.py:build", "--out", tmp_path / "o"), 2, "not an existing .py")
    assert not Path(tmp_path / "o").exists()
