"""One artifact, several input sizes (``--img-sizes``): ONNX/ORT/TensorRT graphs with dynamic height and width, an
ExecuTorch method, a LiteRT signature per size, CoreML enumerated shapes; a golden pair and a parity check per size, sizes whose
maps are odd and whose token counts are not multiples of sr^2 included; what a target cannot do is a named error."""

import numpy as np
import pytest

import edgevit.rewrites.bchw_attention as bchw
import edgevit.rewrites.export_forms as forms
from edgevit.config import ConvertConfig, parse_img_sizes
from edgevit.errors import ConfigError
from edgevit.manifest import integrity_problems, read_manifest
from edgevit.pipeline import convert
from edgevit.verify import verify_dir
from tests.robustness.conftest import REPO, cli, expect

# 100x70 on the tiny config: PatchEmbed pools a 25x18 map, then odd 13x9 and 7x5 ones (partial ceil-mode windows), and
# the E-MHSAs see 117 tokens with sr^2 = 16 and 35 with sr^2 = 4: neither a multiple, so trailing tokens are dropped
SIZES = "64,100x70,96x160"


def test_parse_img_sizes():
    assert parse_img_sizes("512,640,800x1344") == ((512, 512), (640, 640), (800, 1344))
    with pytest.raises(ConfigError, match="more than once"):
        parse_img_sizes("640,640x640")
    with pytest.raises(ConfigError, match="too small"):
        parse_img_sizes("640,16")
    with pytest.raises(ConfigError, match="first of --img-sizes"):
        ConvertConfig(img_size=224, img_sizes="640,224", out="o")


def test_one_onnx_artifact_serves_every_listed_size(tmp_path):
    r = convert(ConvertConfig(model="nextvit_test_tiny", random_init=True, target="onnx", img_sizes=SIZES,
                              out=str(tmp_path / "o")))
    m = read_manifest(r.out_dir)
    assert r.parity_passed
    assert m["input"]["sizes"] == [[64, 64], [100, 70], [96, 160]] and m["input"]["shape"] == [1, 3, 64, 64]
    assert [e["size"] for e in m["golden"]["sizes"]] == [[100, 70], [96, 160]]
    assert set(m["parity"]["sets"]) == {"golden", "golden 100x70", "golden 96x160"}
    import onnx

    dims = onnx.load(str(r.out_dir / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims][2:] == ["height", "width"]
    report = verify_dir(r.out_dir)
    assert report.passed and set(report.sets) == set(m["parity"]["sets"])
    # the golden pair of every size is sealed like the primary one
    extra = r.out_dir / m["golden"]["sizes"][0]["input"]["file"]
    extra.write_bytes(b"\0" + extra.read_bytes()[1:])
    assert any("100x70/input.bin" in p for p in integrity_problems(r.out_dir, m))


def test_the_per_size_check_catches_a_graph_specialized_to_one_size(tmp_path, monkeypatch):
    """Without the size-generic paths, torch.onnx's exporter bakes the example's even-map pooling and trailing-token
    choice into the dynamic graph without complaint; the other sizes' parity must then fail, not pass."""
    monkeypatch.setattr(forms, "static_shape", lambda *dims: True)
    monkeypatch.setattr(bchw, "static_shape", lambda *dims: True)
    r = convert(ConvertConfig(model="nextvit_test_tiny", random_init=True, target="onnx", img_sizes="64,100x70",
                              out=str(tmp_path / "o"), keep_failed=True))
    m = read_manifest(r.out_dir)
    assert not r.parity_passed
    assert all(f.startswith("golden 100x70") for f in m["parity"]["failures"]), m["parity"]["failures"]
    assert m["parity"]["sets"]["golden"][0]["max_rel"] < 2e-4


def test_one_pte_holds_a_method_per_size(tmp_path):
    """torch.export refuses symbolic height/width on the deployed graph (ceil-mode pool guards), so each size is a
    static method of the same .pte; the runner picks the method by the input's size."""
    r = convert(ConvertConfig(model="nextvit_test_tiny", random_init=True, target="executorch", img_sizes="64,100x70",
                              out=str(tmp_path / "o")))
    m = read_manifest(r.out_dir)
    assert r.parity_passed and m["executorch"]["methods"] == {"64x64": "forward", "100x70": "forward_100x70"}
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(str(r.out_dir / "model.pte"))
    assert set(program.method_names) == {"forward", "forward_100x70"}
    assert verify_dir(r.out_dir).passed


def test_coreml_enumerated_shapes_serve_every_listed_size(tmp_path):
    """One ML program with enumerated input shapes (multiples of 32), run at each size by the simulator (its
    shape arithmetic: shape -> gather -> concat of scalars)."""
    r = convert(ConvertConfig(model="nextvit_test_tiny", random_init=True, target="coreml", precision="fp32",
                              img_sizes="64,96x160", out=str(tmp_path / "o")))
    m = read_manifest(r.out_dir)
    assert r.parity_passed and set(m["parity"]["sets"]) == {"golden", "golden 96x160"}
    import coremltools as ct

    spec = ct.utils.load_spec(str(r.out_dir / "model.mlpackage"))
    enumerated = spec.description.input[0].type.imageType.enumeratedSizes.sizes
    assert [(e.height, e.width) for e in enumerated] == [(64, 64), (96, 160)]
    assert verify_dir(r.out_dir).passed
    from edgevit.verify.drift import drift_dir  # finds every unit's value in the symbolic program too

    drift = drift_dir(r.out_dir)
    assert len(drift.blocks) == 8 and not drift.notes and drift.first_over_budget is None, drift.notes  # 7 units + logits


def test_one_tflite_holds_a_signature_per_size(tmp_path):
    """One .tflite, a signature per size (weights stored once), in the channels-last layout an Android app feeds."""
    r = convert(ConvertConfig(model="nextvit_test_tiny", random_init=True, target="litert", layout="nhwc",
                              img_sizes="64,100x70", out=str(tmp_path / "o")))
    m = read_manifest(r.out_dir)
    assert r.parity_passed and m["litert"]["signatures"] == {"64x64": "serving_default", "100x70": "serving_100x70"}
    assert m["golden"]["sizes"][0]["input"]["shape"] == [1, 100, 70, 3]  # stored in the artifact's layout
    from edgevit.targets.litert.runtime import interpreter_class

    it = interpreter_class()(model_path=str(r.out_dir / "model.tflite"))
    assert set(it.get_signature_list()) == {"serving_default", "serving_100x70"}
    assert verify_dir(r.out_dir).passed


def test_tensorrt_profile_spans_the_listed_sizes(tmp_path):
    """The TensorRT-ready ONNX takes any height/width; the engine's optimization profile is the box around the listed
    sizes (opt: the primary one), and Polygraphy's lint runs the graph at the primary shape."""
    r = convert(ConvertConfig(model="nextvit_test_tiny", random_init=True, target="tensorrt", img_sizes="64,100x70,96x160",
                              out=str(tmp_path / "o")))
    build = read_manifest(r.out_dir)["tensorrt"]["build"]
    assert r.parity_passed and set(r.manifest["parity"]["sets"]) == {"golden", "golden 100x70", "golden 96x160"}
    assert build["profile"] == {"input": "image", "min": [1, 3, 64, 64], "opt": [1, 3, 64, 64],
                                "max": [1, 3, 100, 160]}
    assert "--maxShapes=image:1x3x100x160" in build["trtexec"]


@pytest.mark.parametrize("args,sizes,needle", [
    (("--target", "litert", "--precision", "int8", "--calib-dir", str(REPO / "edgevit/assets/digits/calib")), "64,96",
     "fp32, fp16 and int8w"),
    (("--target", "executorch", "--precision", "int8"), "64,96", "fp32 with the xnnpack delegate"),
    (("--target", "coreml"), "64,100x70", "multiples of 32"),
])
def test_one_size_per_artifact_elsewhere_is_a_named_error(tmp_path, args, sizes, needle):
    r = cli("convert", "--model", "nextvit_test_tiny", "--random-init", *args, "--img-sizes", sizes,
            "--out", tmp_path / "o")
    expect(r, 2, needle)
    assert not (tmp_path / "o").exists()
    np.testing.assert_equal(parse_img_sizes("64"), ((64, 64),))
