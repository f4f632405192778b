"""LiteRT target: conversion with litert-torch, parity in the real LiteRT interpreter (XNNPACK), the manifest's
graph report, features mode, the `tflite` alias, and exit 5 when the runtime is missing. Every precision on the
shipped reference model is in tests/targets/test_matrix.py."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevit.config import ConvertConfig
from edgevit.manifest import read_manifest
from edgevit.pipeline import convert
from edgevit.targets import get_target
from edgevit.targets.base import RuntimeSpec
from edgevit.verify import verify_dir
from edgevit.verify.drift import deployed_reference
from tests.robustness.conftest import REPO, cli, expect


@pytest.fixture(scope="module")
def tiny_litert(artifacts):
    return artifacts.get(model="nextvit_test_tiny", random_init=True, target="tflite")


def test_fp32_runs_in_the_interpreter_like_pytorch(tiny_litert):
    m = read_manifest(tiny_litert)
    assert m["target"] == "litert" and m["artifact"] == "model.tflite" and m["parity"]["passed"]
    details = m["litert"]
    assert details["input_dtypes"] == ["float32"] and details["output_dtypes"] == ["float32"]
    assert details["transposes"] == details["op_counts"].get("TRANSPOSE", 0)
    assert details["xnnpack_partitions"] == 1 and details["op_counts"]["CONV_2D"] > 0
    # the rewrite section counts the original form's TRANSPOSE ops from its own fp32 conversion (the fp32 artifact
    # is the deployed form's): the rewrites must remove layout shuffles, not add them
    forms = m["rewrite"]["litert_transposes"]
    assert forms["deployed_form"] == details["transposes"] and forms["original_form"] > forms["deployed_form"]
    # fp32: XNNPACK takes every op (the partition walk accounts for all of them)
    assert details["not_delegated"] == {} and details["delegated_ops"] == sum(details["op_counts"].values())
    # independently of the golden pair: fresh inputs through the interpreter against the deployed PyTorch model
    _, deployed = deployed_reference(m, None)
    x = torch.Generator().manual_seed(3)
    x = torch.randn((3, 3, 64, 64), generator=x)
    with torch.no_grad():
        ref = deployed(x).numpy()
    out = get_target("litert").load(tiny_litert / "model.tflite", RuntimeSpec.from_manifest(m))(x.numpy())[0]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 2e-4 * np.abs(ref).max()
    assert verify_dir(tiny_litert).passed


def test_features_mode_names_four_outputs(tmp_path):
    r = convert(ConvertConfig(model="nextvit_test_tiny", random_init=True, target="litert", features=True,
                              out=str(tmp_path / "f")))
    m = read_manifest(r.out_dir)
    assert r.parity_passed and len(m["outputs"]) == 4
    assert [tuple(o["shape"][2:]) for o in m["outputs"]] == [(16, 16), (8, 8), (4, 4), (2, 2)]


_BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ai_edge_litert", "tflite_runtime", "litert_torch"):
                raise ImportError(f"blocked for the test: {name}")
            return None
    sys.meta_path.insert(0, Block())
""")


def test_missing_runtime_exits_5_naming_the_extra(tiny_litert, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(_BLOCK)
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    expect(cli("verify", tiny_litert, env=env), 5, "edgevit[litert]")
    expect(cli("convert", "--model", "nextvit_test_tiny", "--random-init", "--target", "litert", "--out",
               tmp_path / "o", env=env), 5, "edgevit[litert]")
    assert not (tmp_path / "o").exists()
    # the blocker really blocks: the same interpreter without it imports the runtime
    ok = subprocess.run([sys.executable, "-c", "import ai_edge_litert.interpreter"], capture_output=True)
    assert ok.returncode == 0


def test_tflite_is_an_alias_and_dynamic_batch_is_refused(tmp_path):
    assert ConvertConfig(model="nextvit_test_tiny", random_init=True, target="tflite", out="x").target == "litert"
    expect(cli("convert", "--model", "nextvit_test_tiny", "--random-init", "--target", "litert", "--dynamic-batch",
               "--out", tmp_path / "o"), 2, "fixed batch")


def _scale_tflite_conv(folder, unit, factor):
    """Scale, inside model.tflite, the filter of the first CONV_2D whose output litert-torch named in ``unit``'s
    scope (its bytes found once in the file), and re-seal the folder."""
    from ai_edge_litert.interpreter import Interpreter

    from edgevit._io import sha256_file
    from edgevit.manifest import seal, write_manifest
    from edgevit.targets.litert.graph import in_scope as _in_scope, module_scopes

    m = read_manifest(folder)
    _, deployed = deployed_reference(m, None)
    scope = module_scopes(deployed)[unit]
    path = folder / "model.tflite"
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    conv = next(op for op in it._get_ops_details() if op["op_name"] == "CONV_2D"
                and _in_scope(names[op["outputs"][0]], scope))
    weights = np.ascontiguousarray(it.get_tensor(conv["inputs"][1]))
    data = path.read_bytes()
    old = weights.tobytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, (weights * np.float32(factor)).astype(weights.dtype).tobytes()))
    m["artifact_sha256"] = sha256_file(path)
    seal(folder, m)
    write_manifest(folder, m)


def test_drift_reads_the_tflite_tensors_and_names_a_perturbed_block(tiny_litert, tmp_path):
    import shutil

    from edgevit.verify.drift import drift_dir

    clean = drift_dir(tiny_litert)
    assert [b.unit for b in clean.blocks] == ["stem", "stages.0.blocks.0", "stages.1.blocks.0", "stages.1.blocks.1",
                                              "stages.2.blocks.0", "stages.2.blocks.1", "stages.3.blocks.0", "logits"]
    assert clean.first_over_budget is None and all(b.cosine_min > 0.99999 for b in clean.blocks)
    folder = tmp_path / "perturbed"
    shutil.copytree(tiny_litert, folder)
    _scale_tflite_conv(folder, "stages.2.blocks.0", 1.3)
    report = drift_dir(folder)
    assert report.first_over_budget == "stages.2.blocks.0", report.table()
    assert not any(b.over_budget for b in report.blocks[:4])


def test_nhwc_layout_golden_pair_is_what_an_app_feeds(tiny_litert, tmp_path):
    """--layout nhwc: the model takes channels-last input; the manifest says so and the golden input is stored
    channels-last, so feeding the stored bytes straight to the interpreter (as an app does, no edgevit code in
    between) gives the golden output."""
    from edgevit.targets.litert.runtime import interpreter_class

    r = convert(ConvertConfig(model="nextvit_test_tiny", random_init=True, target="litert", layout="nhwc",
                              out=str(tmp_path / "nhwc")))
    m = read_manifest(r.out_dir)
    assert r.parity_passed and m["input"]["layout"] == "NHWC" and m["input"]["shape"] == [1, 64, 64, 3]
    stored = np.fromfile(r.out_dir / "golden" / "input.bin", dtype="<f4").reshape(1, 64, 64, 3)
    nchw = np.fromfile(tiny_litert / "golden" / "input.bin", dtype="<f4").reshape(1, 3, 64, 64)
    np.testing.assert_array_equal(stored, nchw.transpose(0, 2, 3, 1))  # same picture, channels last
    it = interpreter_class()(model_path=str(r.out_dir / "model.tflite"))
    it.allocate_tensors()
    assert list(it.get_input_details()[0]["shape"]) == [1, 64, 64, 3]
    it.set_tensor(it.get_input_details()[0]["index"], stored)
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])
    golden = np.fromfile(r.out_dir / "golden" / "logits.bin", dtype="<f4").reshape(out.shape)
    assert np.abs(out - golden).max() <= 2e-4 * np.abs(golden).max()
    assert verify_dir(r.out_dir).passed
    # one transpose fewer than the NCHW artifact of the same model: the input's moved into the model
    assert m["litert"]["transposes"] < read_manifest(tiny_litert)["litert"]["transposes"]


def test_bench_and_report_take_litert_folders(tiny_litert, tmp_path):
    """LiteRT folders go through `edgevit bench` (interpreter with XNNPACK, peak RSS in a child process, roofline)
    and into the report like the other targets."""
    from edgevit.bench.report import build_report
    from edgevit.bench.runner import RESULT_KEYS, bench

    (r,) = bench([tiny_litert], threads=2, warmup=1, runs=3, gemm=False)
    assert r["target"] == "litert" and set(RESULT_KEYS) <= set(r)
    assert 0 < r["p50_ms"] <= r["p90_ms"] and r["runs"] == 3
    assert r["peak_rss_mb"] > 10 and r["size_mb"] > 0 and r["macs"] > 0
    assert "LiteRT interpreter" in r["runtime"]
    paths = build_report([r], [], tmp_path / "report.html")
    page = paths["html"].read_text()
    assert "litert" in page and page.count("data:image/png;base64,") >= 1


def test_nhwc_is_a_litert_option(tmp_path):
    expect(cli("convert", "--model", "nextvit_test_tiny", "--random-init", "--target", "onnx", "--layout", "nhwc",
               "--out", tmp_path / "o"), 2, "--layout (recipe key layout) is an option of litert")


_RUN_IN_TFLITE_RUNTIME = textwrap.dedent("""
    import json, sys
    import numpy as np
    from tflite_runtime.interpreter import Interpreter
    folder = sys.argv[1]
    m = json.load(open(f"{folder}/manifest.json"))
    it = Interpreter(model_path=f"{folder}/model.tflite")
    run = it.get_signature_runner("serving_default")
    (key,) = run.get_input_details()
    x = np.fromfile(f"{folder}/{m['golden']['input']['file']}", "<f4").reshape(m["golden"]["input"]["shape"])
    out = np.asarray(run(**{key: x})["output_0"], np.float64).ravel()
    ref = np.fromfile(f"{folder}/{m['golden']['outputs'][0]['file']}", "<f4").astype(np.float64)
    print(out @ ref / np.linalg.norm(out) / np.linalg.norm(ref))
""")


def _tflite_runtime_site() -> Path:
    """tflite-runtime 2.14 and numpy < 2 in a site folder of their own, installed from PyPI once per checkout
    (.cache/, like the apps' toolchains)."""
    site = REPO / ".cache" / "tflite-runtime-2.14.0-site"
    if not (site / ".complete").is_file():
        shutil.rmtree(site, ignore_errors=True)
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site),
                              "tflite-runtime==2.14.0", "numpy<2"], capture_output=True, text=True, timeout=600)
        if pip.returncode != 0:
            pytest.fail(f"could not install tflite-runtime 2.14 from PyPI: {pip.stderr[-2000:]}")
        (site / ".complete").touch()
    return site


def test_tflite_runtime_fallback_runs_what_it_computes_right_and_refuses_int8w(artifacts, tmp_path):
    """The real tflite-runtime 2.14 (its last release; needs numpy < 2, so it gets its own site folder from PyPI,
    laid over this environment's with ai_edge_litert blocked). fp32 NHWC: `edgevit verify` runs it there and
    passes. int8w: tflite_runtime computes it wrongly (shown by running it directly against the golden output),
    so edgevit refuses it with exit 5 naming ai-edge-litert instead of reporting a parity failure; fp16 and int8
    match their golden outputs there."""
    site = _tflite_runtime_site()
    (tmp_path / "sitecustomize.py").write_text(_BLOCK.replace('("ai_edge_litert", "tflite_runtime", "litert_torch")',
                                                             '("ai_edge_litert",)'))
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{site}{os.pathsep}{REPO}"}
    fp32 = convert(ConvertConfig(model="nextvit_digits", target="litert", layout="nhwc", out=str(tmp_path / "fp32")))
    r = cli("verify", fp32.out_dir, env=env)
    expect(r, 0)
    assert "tflite_runtime" in r.stdout + r.stderr
    # the reduced precisions: the run's shared conversions of the reference model (tests/artifacts.py)
    int8w = artifacts.reference("litert", precision="int8w")
    expect(cli("verify", int8w, env=env), 5, "ai-edge-litert>=2.3")
    (tmp_path / "run.py").write_text(_RUN_IN_TFLITE_RUNTIME)
    folders = {"fp32": fp32.out_dir, "int8w": int8w}
    for precision in ("fp16", "int8"):
        folders[precision] = artifacts.reference("litert", precision=precision)
    direct = {}
    for name, folder in folders.items():
        p = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(folder)], capture_output=True, text=True,
                           env={**os.environ, **env})
        assert p.returncode == 0, p.stderr[-2000:]
        direct[name] = float(p.stdout.split()[-1])
    assert direct["fp32"] > 0.99999 and direct["fp16"] > 0.9999 and direct["int8"] > 0.999, direct
    assert direct["int8w"] < 0.9, direct  # the reason int8w is refused
