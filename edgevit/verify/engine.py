"""``edgevit build-engine``: build a tensorrt folder's engine on the GPU server and check it like every artifact.

The engine (``edgevit.targets.tensorrt.engine``) runs on the golden pair and ``--images`` against PyTorch under the
folder's tolerance row; on request every tensor is compared with ONNX Runtime by ``polygraphy run``. GPU name,
driver, CUDA driver and TensorRT versions and the build time go into the manifest's ``tensorrt.engine``.

Not executed in edgevit's own CI: no machine there has both a GPU and TensorRT (tests marked ``gpu``); every path
without them is tested.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgevit._io import atomic_file, check_writable, sha256_file
from edgevit.errors import ParityError
from edgevit.manifest import seal
from edgevit.targets.tensorrt.checks import polygraphy_cli
from edgevit.targets.tensorrt.engine import build_plan, engine_runner, gpu_info, tensorrt_folder
from edgevit.verify.parity import artifact_tolerance, verify_dir


def per_tensor_compare(folder: Path, manifest: dict) -> dict:
    """``polygraphy run`` of the ONNX in TensorRT (strongly typed) and ONNX Runtime with every tensor marked as an
    output, on the golden input: a diagnostic that names the first tensors where the two runtimes part (median
    elementwise relative error against the folder's row's ``max_rel``), not a gate; the gate is the engine's parity
    against PyTorch."""
    from edgevit.manifest import read_golden

    x, _ = read_golden(folder, manifest)
    build = manifest[manifest["target"]]["build"]
    tol = artifact_tolerance(manifest)
    inputs = folder / ".per_tensor_inputs.json"
    from polygraphy.json import save_json

    save_json([{build["profile"]["input"]: x.astype(np.float32)}], str(inputs))
    shape = "[" + ",".join(map(str, x.shape)) + "]"
    cmd = ["run", str(folder / manifest["artifact"]), "--trt", "--onnxrt", "--trt-outputs", "mark", "all",
           "--onnx-outputs", "mark", "all", "--load-inputs", str(inputs),
           "--trt-min-shapes", f"{build['profile']['input']}:{shape}",
           "--trt-opt-shapes", f"{build['profile']['input']}:{shape}",
           "--trt-max-shapes", f"{build['profile']['input']}:{shape}",
           "--strongly-typed", "--rtol", str(tol.max_rel), "--atol", "0", "--check-error-stat", "median"]
    try:
        r = polygraphy_cli(cmd, timeout=3600)
    finally:
        inputs.unlink(missing_ok=True)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "FAILED" in ln or "PASSED" in ln or "Error" in ln]
    return {"command": "polygraphy " + " ".join(cmd[:1] + ["model.onnx"] + cmd[2:]), "passed": r.returncode == 0,
            "summary": lines[-30:]}


def build_engine(folder: str | Path, *, images: str | Path | None = None, weights: str | None = None,
                 per_tensor: bool = False, overwrite: bool = False, on_progress=None):
    """Build ``model.plan`` in a tensorrt artifact folder, check it against PyTorch and record it in the manifest.

    Returns (the manifest's ``tensorrt.engine`` record, the engine's ParityReport). Raises MissingDependencyError
    (exit 5) without a GPU or TensorRT, OutputExistsError (exit 7) when an engine exists and ``overwrite`` is off,
    ParityError (exit 3) when the engine fails the folder's tolerance row (an existing engine is then left as it
    was).
    """
    say = on_progress or (lambda msg: None)
    folder = Path(folder)
    manifest = tensorrt_folder(folder)
    plan = folder / manifest[manifest["target"]]["build"]["plan"]
    check_writable(plan, overwrite, "engine")  # before minutes of building
    staged = folder / f".{plan.name}.staged"  # replaces the plan only once it passed
    try:
        build_s = build_plan(folder, manifest, staged, on_progress=say)
        import tensorrt as trt

        say("checking the engine against PyTorch")
        report = verify_dir(folder, images=images, weights=weights, runner=engine_runner(staged, manifest),
                            runtime=f"tensorrt {trt.__version__}", raise_on_failure=False)
        if not report.passed:
            raise ParityError(f"the TensorRT engine does not match PyTorch within the folder's tolerance row; no "
                              f"engine was kept:\n{report.table()}")
        os.replace(staged, plan)
    finally:
        staged.unlink(missing_ok=True)
    cache = folder / manifest[manifest["target"]]["build"]["timing_cache"]
    record = {"plan": plan.name, "plan_sha256": sha256_file(plan), "plan_bytes": plan.stat().st_size,
              "timing_cache": cache.name, "build_s": round(build_s, 1), "tensorrt": trt.__version__, **gpu_info(),
              "parity": report.to_dict()}
    if per_tensor:
        say("comparing every tensor with ONNX Runtime (polygraphy run)")
        record["per_tensor"] = per_tensor_compare(folder, manifest)
    manifest[manifest["target"]]["engine"] = record
    manifest["files"] = sorted(set(manifest["files"]) | {plan.name, cache.name})
    seal(folder, manifest)
    with atomic_file(folder / "manifest.json", overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
    return record, report
