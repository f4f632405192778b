"""edgevit drift: per-block comparison in the artifact's runtime against PyTorch, naming the first block over
budget. The perturbed case changes one block's weights inside the artifact (and re-seals it, as a user's own
broken exporter would produce a consistent folder): drift must name exactly that block."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgevit._io import sha256_file
from edgevit.config import ConvertConfig
from edgevit.errors import ConfigError
from edgevit.manifest import read_manifest, seal, write_manifest
from edgevit.pipeline import convert
from edgevit.targets.onnx.drift import node_scopes
from edgevit.verify.drift import drift_dir

TINY_UNITS = ["stem", "stages.0.blocks.0", "stages.1.blocks.0", "stages.1.blocks.1", "stages.2.blocks.0",
              "stages.2.blocks.1", "stages.3.blocks.0", "logits"]


@pytest.fixture(scope="module")
def tiny_onnx(artifacts):
    return artifacts.get(model="nextvit_test_tiny", random_init=True, target="onnx")


def test_every_unit_is_compared_and_fp32_is_within_budget(tiny_onnx):
    report = drift_dir(tiny_onnx)
    assert [b.unit for b in report.blocks] == TINY_UNITS
    assert [b.kind for b in report.blocks][:4] == ["stem", "NCB", "NCB", "NTB"]
    assert report.first_over_budget is None
    assert all(b.cosine_min > 0.99999 for b in report.blocks)
    assert json.loads(json.dumps(report.to_dict()))["blocks"][0]["unit"] == "stem"


def _perturb(folder, unit):
    """Scale the weights of the first Conv exported from ``unit`` by 1.3 and re-seal the folder."""
    path = folder / "model.onnx"
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and unit in node_scopes(n) and n.input[1] in inits)
    w = inits[conv.input[1]]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(1.3), w.name))
    onnx.save(model, str(path))
    manifest = read_manifest(folder)
    manifest["artifact_sha256"] = sha256_file(path)
    seal(folder, manifest)
    write_manifest(folder, manifest)


def test_a_perturbed_block_is_named_first(tiny_onnx, tmp_path):
    import shutil

    folder = tmp_path / "perturbed"
    shutil.copytree(tiny_onnx, folder)
    _perturb(folder, "stages.2.blocks.0")
    report = drift_dir(folder)
    assert report.first_over_budget == "stages.2.blocks.0"
    before = [b for b in report.blocks if b.unit in TINY_UNITS[:4]]
    assert before and not any(b.over_budget for b in before)


def test_ort_drift_names_a_block_perturbed_inside_the_ort_file(artifacts, tiny_onnx, tmp_path):
    """The .ort side: the perturbed ONNX is turned into the folder's model.ort by the same converter the target
    uses, so the block must be found through the .ort's own graph (it keeps no module names)."""
    import shutil

    from edgevit.targets.onnx.ort_convert import convert_to_ort

    ort_dir = artifacts.copy(tmp_path / "ort", artifacts.get(model="nextvit_test_tiny", random_init=True, target="ort"))
    clean = drift_dir(ort_dir)
    assert [b.unit for b in clean.blocks] == TINY_UNITS
    assert clean.first_over_budget is None and all(b.cosine_min > 0.99999 for b in clean.blocks)

    onnx_copy = tmp_path / "onnx"
    shutil.copytree(tiny_onnx, onnx_copy)
    _perturb(onnx_copy, "stages.1.blocks.1")
    staged = tmp_path / "staged"
    staged.mkdir()
    convert_to_ort(onnx_copy / "model.onnx", staged)
    shutil.copy(staged / "model.ort", ort_dir / "model.ort")
    manifest = read_manifest(ort_dir)
    manifest["artifact_sha256"] = sha256_file(ort_dir / "model.ort")
    seal(ort_dir, manifest)
    write_manifest(ort_dir, manifest)
    report = drift_dir(ort_dir)
    assert report.first_over_budget == "stages.1.blocks.1"
    assert not any(b.over_budget for b in report.blocks[:3])


def test_ort_int8_blocks_are_read_through_their_scales_and_layout(artifacts):
    """int8 .ort graphs hold quantized tensors, channels-last: each block is dequantized with its own scale and
    transposed back. A wrong tensor or layout gives cosines near 0; the right ones agree closely with PyTorch."""
    out = artifacts.reference("ort", precision="int8")
    report = drift_dir(out)
    assert [b.unit for b in report.blocks] == TINY_UNITS  # the shipped digits model has the tiny config's depths
    assert all(b.cosine_min > 0.99 for b in report.blocks), report.table()
    assert any("channels-last" in n for n in report.notes)


def test_executorch_drift_flags_a_pte_that_is_not_its_source(artifacts, tmp_path):
    """ExecuTorch drift re-lowers the artifact's source with block outputs added (an XNNPACK blob keeps no per-op
    outputs), so it localizes what lowering and the runtime do, not a change made inside a .pte. A .pte replaced by
    one lowered from a model with one block's weights scaled must not pass: the final row is the artifact's own
    output, over budget, and a note says the block rows describe a fresh lowering, not this file."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgevit.verify.drift import deployed_reference

    out = artifacts.copy(tmp_path / "et", artifacts.get(model="nextvit_test_tiny", random_init=True, target="executorch"))
    clean = drift_dir(out)
    assert [b.unit for b in clean.blocks] == TINY_UNITS
    assert clean.first_over_budget is None and all(b.cosine_min > 0.99999 for b in clean.blocks)

    manifest = read_manifest(out)
    _, deployed = deployed_reference(manifest, None)
    conv = next(m for m in deployed.stages[2].blocks[0].modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.mul_(1.3)
    example = torch.zeros(manifest["input"]["shape"])
    edge = to_edge_transform_and_lower(torch.export.export(deployed, (example,), strict=False),
                                       partitioner=[XnnpackPartitioner()])
    (out / "model.pte").write_bytes(edge.to_executorch().buffer)
    manifest["artifact_sha256"] = sha256_file(out / "model.pte")
    seal(out, manifest)
    write_manifest(out, manifest)
    report = drift_dir(out)
    assert report.first_over_budget == "logits"
    assert any("not what its source lowers to" in n for n in report.notes)


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 1))

    def forward(self, x):
        return x + self.conv(x)  # the residual add inside the block, as in an NCB


class _Residual(torch.nn.Module):
    """Four residual conv blocks: a graph small enough to lower in seconds, cut the way a Next-ViT is."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = torch.nn.Sequential(*(_Block() for _ in range(4)))
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def test_an_int8_debug_program_lowered_in_two_halves_computes_what_the_whole_computes(caplog):
    """A big int8 debug program (Next-ViT-S depth) is cut at one block's int8 output and its halves are lowered at
    once, the second in a child process. Forced on a small residual network here: every output of the two .pte
    programs run one after the other equals the whole program's bit for bit, the child did the lowering (no
    fallback warning), and a graph this small is not cut by default. (Next-ViT itself: the slow photodigits test
    below, whose final output equals the artifact's.)"""
    import logging

    from edgevit.targets.executorch.drift import _tapped, lower_halves, split_in_two
    from edgevit.targets.executorch.export import lower_to_buffer
    from edgevit.targets.executorch.runtime import executorch_runtime
    from edgevit.quantize.executorch_quant import quantize_xnnpack

    torch.manual_seed(0)
    net = _Residual().eval()
    units = ["stem", *(f"blocks.{i}" for i in range(4))]
    x = torch.randn(4, 3, 16, 16)
    quantized = quantize_xnnpack(_tapped(net, units).eval(), x[:1], x.numpy(), (), taps_from=1).module
    assert split_in_two(quantized, units) is None
    halves = split_in_two(quantized, units, min_nodes=0)
    assert halves is not None and halves.cut in units[1:-1]
    assert any(halves.in_first) and not all(halves.in_first)  # each half makes some of the outputs
    whole = lower_to_buffer(torch.export.export(quantized, (x[:1],), strict=False))
    with caplog.at_level(logging.WARNING, logger="edgevit.targets.executorch"):
        first, second = lower_halves(halves, x[:1])
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("edgevit.targets.executorch")]
    assert not ours, ours
    runtime = executorch_runtime()
    whole_m, first_m, second_m = (runtime.load_program(b).load_method("forward") for b in (whole, first, second))
    for i in range(len(x)):
        expected = whole_m.execute([x[i:i + 1]])
        a = first_m.execute([x[i:i + 1]])
        assert a[-1].dtype == torch.int8  # what crosses is the int8 tensor the whole program computes there
        got = halves.join(a, second_m.execute([a[-1]]))
        assert len(got) == len(expected) == len(units) + 1
        assert all(torch.equal(g, e) for g, e in zip(got, expected))


@pytest.mark.slow  # full-size: Next-ViT-S depth
def test_a_next_vit_s_deep_int8_pte_is_lowered_in_two_halves_and_matches_the_artifact(tmp_path):
    """The deep reference (Next-ViT-S depth): its int8 debug program is big enough to be cut, and the final output
    of the two halves equals the artifact's."""
    out = tmp_path / "pd8"
    convert(ConvertConfig(model="nextvit_photodigits", target="executorch", precision="int8", out=str(out)))
    report = drift_dir(out)
    assert "lowered in two halves at once" in report.mechanism
    assert len(report.blocks) == 22 and report.blocks[-1].unit == "logits"
    assert any("differs from the artifact's by at most 0\n" in n + "\n" for n in report.notes), report.notes


def test_executorch_int8_drift_quantizes_the_debug_program_like_the_artifact(artifacts):
    """int8 .pte: the debug program is quantized again on the calibration inputs the manifest records. If that
    did not reproduce the artifact's quantization, its final output would differ from the artifact's and the note
    would say so; on the shipped digits model they are equal, and every block stays close to PyTorch."""
    out = artifacts.reference("executorch", "xnnpack", "int8")
    report = drift_dir(out)
    assert [b.unit for b in report.blocks] == TINY_UNITS  # the shipped digits model has the tiny config's depths
    assert all(0.99 < b.cosine_min < 0.99999 for b in report.blocks[:-1]), report.table()  # int8, not fp32
    assert any("differs from the artifact's by at most 0\n" in n + "\n" for n in report.notes), report.notes
    assert "quantized again" in report.mechanism


def test_int8_drift_refuses_calibration_images_that_are_not_the_recorded_ones(tmp_path):
    """The debug copy of an int8 .pte must see the artifact's calibration inputs: other images, a folder that is
    gone, or a manifest without the record are refused, each naming what to do (the matching case is the int8
    .pte test above: the debug program's output equals the artifact's)."""
    from PIL import Image

    from edgevit.preprocess import Preprocess
    from edgevit.verify.drift import recorded_calibration

    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"c{i}.png")
    manifest = {"model": "nextvit_test_tiny", "input": {"pixels": "normalized"},
                "preprocess": Preprocess.for_size((32, 32)).to_manifest(),
                "calibration": {"folder": str(folder), "count": None, "seed": 0, "images": 3,
                                "inputs_sha256": "0" * 64}}
    with pytest.raises(ConfigError, match="sha256 differs"):
        recorded_calibration(manifest)
    with pytest.raises(ConfigError, match="pass --calib-dir"):
        recorded_calibration(manifest, tmp_path / "gone")
    with pytest.raises(ConfigError, match="no calibration record"):
        recorded_calibration({k: v for k, v in manifest.items() if k != "calibration"})


def _scale_coreml_conv(folder, unit, factor):
    """Scale, inside the .mlpackage's weight file, the weights of the first conv torch.export places in ``unit``,
    and re-seal the folder. The blob's metadata (MIL storage format: sentinel, dtype, size, data offset) is read
    from the file itself; the weights stay where they are."""
    import struct

    import coremltools as ct
    import torch

    from edgevit.targets.coreml.export import _converted_module
    from edgevit.verify.drift import deployed_reference

    manifest = read_manifest(folder)
    _, deployed = deployed_reference(manifest, None)
    classifier = [o["name"] for o in manifest["outputs"]] == ["probabilities"]
    net = _converted_module(deployed, manifest["input"]["pixels"] == "raw_rgb_0_255", (0.0,) * 3, (1.0,) * 3,
                            classifier)
    graph = torch.export.export(net, (torch.zeros(manifest["input"]["shape"]),), strict=False) \
        .run_decompositions({}).graph
    conv = next(n.name for n in graph.nodes if n.target == torch.ops.aten.conv2d.default and any(
        p.startswith(f"model.{unit}.") for p, _ in (n.meta.get("nn_module_stack") or {}).values()))
    package = folder / "model.mlpackage"
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    ops = list(spec.mlProgram.functions["main"].block_specializations.values())[0].operations
    by_output = {o.outputs[0].name: o for o in ops if o.outputs}
    conv_op = next(o for o in ops if o.type == "conv" and o.outputs[0].name in (conv, conv + "_cast_fp16"))
    weight = by_output[conv_op.inputs["weight"].arguments[0].name]
    blob = weight.attributes["val"].blobFileValue
    path = next(package.rglob("weight.bin"))
    data = bytearray(path.read_bytes())
    sentinel, dtype, size, offset = struct.unpack_from("<IIQQ", data, blob.offset)
    assert sentinel == 0xDEADBEEF
    kind = {1: np.float16, 2: np.float32}[dtype]  # MIL storage: 1 = fp16, 2 = fp32
    values = np.frombuffer(bytes(data[offset:offset + size]), dtype=kind) * kind(factor)
    data[offset:offset + size] = values.astype(kind).tobytes()
    path.write_bytes(bytes(data))
    manifest["artifact_sha256"] = sha256_file(package)
    seal(folder, manifest)
    write_manifest(folder, manifest)


def test_coreml_drift_reads_the_programs_own_values_and_names_a_perturbed_block(tmp_path):
    """CoreML: the block values are the ML program's own, read while the simulator runs it, so a change made inside
    the .mlpackage (one conv's weights scaled in its weight file) must be named, and nothing before it."""
    import shutil

    out = tmp_path / "cm"
    convert(ConvertConfig(model="nextvit_test_tiny", random_init=True, target="coreml", precision="fp32",
                          out=str(out)))
    clean = drift_dir(out)
    assert [b.unit for b in clean.blocks] == TINY_UNITS
    assert clean.first_over_budget is None and all(b.cosine_min > 0.99999 for b in clean.blocks), clean.table()
    perturbed = tmp_path / "perturbed"
    shutil.copytree(out, perturbed)
    _scale_coreml_conv(perturbed, "stages.2.blocks.0", 1.3)
    report = drift_dir(perturbed)
    assert report.first_over_budget == "stages.2.blocks.0", report.table()
    assert not any(b.over_budget for b in report.blocks[:4])


def test_a_runtime_without_a_mechanism_says_so_and_where_to_go(tmp_path):
    """ExecuTorch's CoreML delegate has no drift mechanism (its payload's values are not named after the model's
    nodes): refused before any work, naming what to run instead."""
    from edgevit.targets import get_target
    from edgevit.targets.base import RuntimeSpec

    spec = RuntimeSpec(input_name="x", batch=1, output_names=("logits",), raw_pixels=False,
                       details={"delegate": "coreml"})
    with pytest.raises(ConfigError, match="--target coreml and run drift there"):
        get_target("executorch").block_outputs(tmp_path / "model.pte", spec, [], np.zeros((1, 3, 8, 8)))
