"""Every attention variant converts and passes parity on onnx, ort, executorch (every op inside XNNPACK), coreml
(the simulator) and litert (the LiteRT interpreter, every op inside XNNPACK), and `edgevit verify` re-checks the
folder from the manifest's `attention`. The tiny config with random weights."""

from __future__ import annotations

import pytest

from edgevit.config import ConvertConfig
from edgevit.manifest import read_manifest
from edgevit.pipeline import convert
from edgevit.verify import verify_dir

VARIANTS = ("avgpool", "xca", "hilo")
CASES = [pytest.param(v, t, id=f"{v}-{t}") for v in VARIANTS for t in ("onnx", "ort", "executorch", "coreml", "litert")]


@pytest.mark.parametrize("attention,target", CASES)
def test_variant_converts_and_verifies(tmp_path, attention, target):
    kw = {"min_ios": 16} if target == "coreml" else {}
    cfg = ConvertConfig(model="nextvit_test_tiny", random_init=True, attention=attention, target=target,
                        out=str(tmp_path / "o"), **kw)
    result = convert(cfg)
    m = read_manifest(result.out_dir)
    assert result.parity_passed and m["parity"]["passed"]
    assert m["source"]["attention"] == attention
    passes = [p["name"] for p in m["rewrite"]["passes"]]
    assert "merge_pre_bn" in passes and not any(p.startswith("bchw_attention") for p in passes)
    if target == "executorch":  # drop-in for E-MHSA: nothing of the variant falls outside the delegate
        assert m["executorch"]["delegation"]["portable_nodes"] == 0
        assert m["executorch"]["delegation"]["delegated_subgraphs"] == 1
    if target == "litert":  # the same in LiteRT: one XNNPACK partition holds every operator
        assert m["litert"]["not_delegated"] == {} and m["litert"]["xnnpack_partitions"] == 1
    assert verify_dir(result.out_dir).passed  # rebuilds the reference with the manifest's attention
