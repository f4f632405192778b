"""The same inputs give byte-identical artifacts: two conversions into differently named folders write the same
bytes in every file, and manifests that differ only in their step timings. The .ort and CoreML cases are the ones
that differed before (onnxruntime's hash-ordered kernel table; coremltools' random package UUIDs, map order,
conversion date and process-wide constant counter; ExecuTorch's random CoreML payload identifier); every other
(target, delegate, precision) is compared too. The first of the two is the run's shared reference conversion
(tests/artifacts.py), the one tests/targets/test_matrix.py checks."""

import hashlib
import json
import sys
from pathlib import Path

import pytest

from edgevit.config import ConvertConfig
from edgevit.pipeline import convert
from edgevit.targets import get_target
from edgevit.targets.base import supported_combinations


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def _manifest_without_timings(root: Path) -> dict:
    m = json.loads((root / "manifest.json").read_text())
    m.pop("timings_s")
    return m


def _convert_twice(artifacts, tmp_path, target, delegate=None, precision="fp32") -> tuple[Path, Path]:
    """The run's shared reference conversion of this combination, and the same conversion again into a folder
    with a longer name."""
    first = artifacts.reference(target, delegate, precision)
    options = artifacts.reference_options(target, delegate, precision)
    second = convert(ConvertConfig(**options, out=str(tmp_path / "second_with_a_longer_name"))).out_dir
    return first, second


def _assert_identical(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    assert [k for k in fa if fa[k] != fb[k]] == []
    assert _manifest_without_timings(a) == _manifest_without_timings(b)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason=".ort bytes are reproducible where the converter "
                    "can turn address randomization off for itself (Linux); elsewhere the manifest says they are not")
def test_ort_is_byte_identical_and_names_no_private_path(artifacts, tmp_path):
    a, b = _convert_twice(artifacts, tmp_path, "ort", precision="int8")
    _assert_identical(a, b)
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["ort"]["conversion"]["byte_reproducible"] is True
    text = (a / "model.required_operators.config").read_text() + json.dumps(manifest)
    assert ".partial" not in text and "/tmp" not in text and str(a.parent) not in text


def test_coreml_package_is_byte_identical(artifacts, tmp_path):
    a, b = _convert_twice(artifacts, tmp_path, "coreml", precision="fp16")
    _assert_identical(a, b)
    spec = (a / "model.mlpackage" / "Data" / "com.apple.CoreML" / "model.mlmodel").read_bytes()
    assert b"conversion_date" not in spec


def test_executorch_coreml_payload_is_byte_identical(artifacts, tmp_path):
    a, b = _convert_twice(artifacts, tmp_path, "executorch", "coreml", "fp16")
    _assert_identical(a, b)


DEFAULT = {("ort", None, "int8"), ("coreml", None, "fp16"), ("executorch", "coreml", "fp16")}  # tested above
# CoreML's pal8 is pal6's code path with another bit count (per-tensor k-means, edgevit/quantize/coreml_quant.py):
# pal6 stands for both, which saves a CoreML conversion of the run (pal4, grouped per 16 channels, is its own case)
SAME_PATH = {("coreml", None, "pal8")}
OTHERS = [c for c in supported_combinations() if c not in DEFAULT | SAME_PATH and get_target(c[0]).byte_reproducible]
NOT_BYTE_REPRODUCIBLE = [c for c in supported_combinations() if not get_target(c[0]).byte_reproducible]


@pytest.mark.parametrize("target,delegate,precision", OTHERS, ids=["-".join(filter(None, c)) for c in OTHERS])
def test_every_other_combination_is_byte_identical(artifacts, tmp_path, target, delegate, precision):
    a, b = _convert_twice(artifacts, tmp_path, target, delegate, precision)
    _assert_identical(a, b)


def _lower_tiny_int8(shared: bool) -> tuple[bytes, list]:
    import contextlib

    import numpy as np
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgevit.models import create_model, randomize_
    from edgevit.quantize.executorch_quant import quantize_xnnpack
    from edgevit.rewrites import deploy
    from edgevit.targets.executorch.export import shared_provenance

    torch.manual_seed(0)
    net = deploy(randomize_(create_model("nextvit_test_tiny")), "executorch", img_size=(64, 64)).model
    calib = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    example = torch.from_numpy(calib[:1])
    with shared_provenance() if shared else contextlib.nullcontext():
        module = quantize_xnnpack(net, example, calib).module
        exported = torch.export.export(module, (example,), strict=False)
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        program = edge.to_executorch()
    def plain(d: dict) -> dict:  # graph_id is the graph object's address, different in every run
        return {**{k: v for k, v in d.items() if k != "graph_id"}, "from_node": [plain(f) for f in d["from_node"]]}

    provenance = [[plain(s.to_dict()) for s in n.meta.get("from_node", [])]
                  for n in edge.exported_program().graph_module.graph.nodes]
    return program.buffer, provenance


def test_shared_provenance_lowers_the_same_pte_and_restores_torch():
    """`shared_provenance` (node provenance shared instead of deep-copied, ~15% off ExecuTorch lowering) changes
    nothing in the program nor in the provenance ETRecord would carry, and leaves torch as it found it."""
    from torch.fx.traceback import NodeSource

    plain, plain_from = _lower_tiny_int8(shared=False)
    shared, shared_from = _lower_tiny_int8(shared=True)
    assert "__deepcopy__" not in vars(NodeSource)  # restored
    assert hashlib.sha256(plain).hexdigest() == hashlib.sha256(shared).hexdigest()
    assert any(plain_from) and plain_from == shared_from


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason=".ort bytes are reproducible where the converter "
                    "can turn address randomization off for itself (Linux); elsewhere the manifest says they are not")
def test_ort_conversion_is_byte_identical_five_times_from_a_cold_cache(artifacts, tmp_path, monkeypatch):
    """Issue 32: 2 of 9 conversions wrote other .ort bytes; the first conversion on a fresh install (its child
    compiling its modules) differed from the next. Five conversions of one ONNX, the first with a cold cache."""
    from edgevit.targets.onnx.ort_convert import convert_to_ort

    monkeypatch.setenv("EDGEVIT_CACHE", str(tmp_path / "cache"))
    a = artifacts.reference("onnx")
    digests = []
    for i in range(5):
        out = tmp_path / f"ort{i}"
        out.mkdir()
        info = convert_to_ort(a / "model.onnx", out)
        assert info["byte_reproducible"] is True
        digests.append(hashlib.sha256((out / "model.ort").read_bytes()).hexdigest())
    assert len(set(digests)) == 1, digests


@pytest.mark.parametrize("target,delegate,precision", NOT_BYTE_REPRODUCIBLE,
                         ids=["-".join(filter(None, c)) for c in NOT_BYTE_REPRODUCIBLE])
def test_a_target_that_is_not_byte_reproducible_says_so_and_computes_the_same(artifacts, tmp_path, target, delegate,
                                                                              precision):
    """Core AI: MLIR bytecode keeps use-list orders that follow the converting process's memory, so the program file
    differs between two conversions. Everything else in the folder is byte-identical, the manifest differs only in
    the artifact's hash and size, and both artifacts compute bit-identical outputs on the golden input in their
    runtime."""
    import numpy as np

    from edgevit.manifest import read_golden
    from edgevit.targets.base import RuntimeSpec

    a, b = _convert_twice(artifacts, tmp_path, target, delegate, precision)
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    differ = [k for k in fa if fa[k] != fb[k]]
    assert all(k.startswith(json.loads((a / "manifest.json").read_text())["artifact"]) for k in differ), differ
    assert all(not k.endswith(("metadata.json", ".json", ".bin", ".png")) for k in differ), differ
    ma, mb = _manifest_without_timings(a), _manifest_without_timings(b)
    assert ma[target]["byte_reproducible"] is False
    for m in (ma, mb):  # the program file's hash and size (use-list orders can differ by a byte's varint)
        m.pop("artifact_sha256"), m.pop("artifact_bytes"), m.pop("integrity")
    assert ma == mb
    t = get_target(target)
    x, _ = read_golden(a, ma)
    outs = [t.load(folder / ma["artifact"], RuntimeSpec.from_manifest(ma))(x) for folder in (a, b)]
    for oa, ob in zip(*outs):
        np.testing.assert_array_equal(oa, ob)
