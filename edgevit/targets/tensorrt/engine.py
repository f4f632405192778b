"""The TensorRT engine of a ``tensorrt`` artifact folder, built on the GPU server that will serve it (an engine is
tied to one GPU model and one TensorRT version), and run from Python; ``edgevit build-engine`` is
``edgevit.verify.engine``, which checks the engine against PyTorch and records it.

The engine is built from the folder's ``model.onnx`` (its precision already in the graph) with the manifest's
optimization profile and workspace, strongly typed, through Polygraphy's TensorRT loaders, with a timing cache
kept beside it (a second build on the same GPU reuses the measured tactics).

Not executed in edgevit's own CI: no machine there has both a GPU and TensorRT (tests/targets/test_tensorrt.py
marks those tests ``gpu``); every path without them is tested.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edgevit._io import atomic_file, sha256_file
from edgevit.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)


def gpu_info() -> dict | None:
    """Name, driver and CUDA driver version of GPU 0 from the NVIDIA driver (NVML); None without a usable GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable GPU here
        return None
    try:
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        return {"gpu": name.decode() if isinstance(name, bytes) else name,
                "driver": str(pynvml.nvmlSystemGetDriverVersion()),
                "cuda_driver_api": f"{cuda // 1000}.{cuda % 1000 // 10}"}
    finally:
        pynvml.nvmlShutdown()


def engine_problems() -> list[str]:
    """Why no engine can be built or run here; empty when a GPU and TensorRT are both usable."""
    problems = []
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        problems.append("TensorRT is not installed (pip install 'edgevit[tensorrt]')")
    try:
        import polygraphy.backend.trt  # noqa: F401
    except ImportError:
        problems.append("Polygraphy is not installed (pip install 'edgevit[tensorrt]')")
    if gpu_info() is None:
        problems.append("no usable NVIDIA GPU (the NVIDIA driver's NVML reports none)")
    return problems


def require_engine_toolchain(folder: str | Path) -> None:
    problems = engine_problems()
    if problems:
        raise MissingDependencyError(
            f"cannot build a TensorRT engine on this machine: {'; '.join(problems)}. The folder is complete without "
            f"an engine (the TensorRT-ready ONNX and its build settings); build it on the GPU server that will serve "
            f"it with: edgevit build-engine {folder}")


def tensorrt_folder(folder: Path) -> dict:
    from edgevit.manifest import open_artifact, read_manifest

    if read_manifest(folder)["target"] != "tensorrt":
        raise ConfigError(f"{folder} is a {read_manifest(folder)['target']} artifact; build-engine takes folders "
                          "made with edgevit convert --target tensorrt")
    return open_artifact(folder, "an engine built from it would not be what was verified")


def engine_runner(plan: Path, manifest: dict):
    """A callable running the engine at ``plan`` on any number of NCHW samples (chunks of at most the profile's
    max batch), returning the outputs in the manifest's order."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    profile = manifest["tensorrt"]["build"]["profile"]
    top = profile["max"][0]
    names = [o["name"] for o in manifest["outputs"]]
    runner = TrtRunner(EngineFromBytes(plan.read_bytes()))
    runner.activate()

    def run(x: np.ndarray) -> list[np.ndarray]:
        parts = [runner.infer({profile["input"]: np.ascontiguousarray(x[i:i + top], np.float32)})
                 for i in range(0, len(x), top)]
        return [np.concatenate([np.asarray(p[n], np.float32) for p in parts]) for n in names]

    run.runner = runner  # kept alive with the callable; bench reads its timing
    return run


def engine_from_onnx(onnx_path: Path, profile: dict, workspace_mib: int, cache: Path) -> bytes:
    """A strongly typed engine of ``onnx_path`` with one optimization profile (``{"input", "min", "opt", "max"}``,
    shapes as lists), reading and refreshing the timing cache at ``cache`` (written atomically)."""
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile

    shapes = Profile().add(profile["input"], min=tuple(profile["min"]), opt=tuple(profile["opt"]),
                           max=tuple(profile["max"]))
    with atomic_file(cache, overwrite=True) as new_cache:
        config = CreateConfig(profiles=[shapes], load_timing_cache=str(cache) if cache.is_file() else None,
                              memory_pool_limits={trt.MemoryPoolType.WORKSPACE: workspace_mib << 20})
        network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
        return bytes(EngineBytesFromNetwork(network, config=config, save_timing_cache=str(new_cache))())


def build_plan(folder: Path, manifest: dict, dest: Path, *, on_progress=None) -> float:
    """Build the folder's engine into ``dest`` and refresh the timing cache beside the ONNX (each written
    atomically); returns the build seconds."""
    require_engine_toolchain(folder)
    say = on_progress or (lambda msg: None)
    build = manifest["tensorrt"]["build"]
    cache = folder / build["timing_cache"]
    prof = build["profile"]
    say(f"building the TensorRT engine (profile batch {prof['min'][0]}-{prof['max'][0]}, opt {prof['opt'][0]}); "
        "minutes on a first build, faster with the timing cache")
    t0 = time.perf_counter()
    engine_bytes = engine_from_onnx(folder / manifest["artifact"], prof, build["workspace_mib"], cache)
    build_s = time.perf_counter() - t0
    with atomic_file(dest, overwrite=True) as tmp:
        Path(tmp).write_bytes(engine_bytes)
    return build_s


def bench_problem(folder: Path, manifest: dict) -> str | None:
    """Why ``edgevit bench`` cannot time this tensorrt folder here; None when it can."""
    engine = manifest.get("tensorrt", {}).get("engine")
    if not engine or not (folder / engine["plan"]).is_file():
        return (f"no TensorRT engine in {folder}: build it on the GPU server with edgevit build-engine {folder}; "
                "a tensorrt folder is timed as its engine, never as the ONNX on the CPU")
    problems = engine_problems()
    if problems:
        return "a TensorRT engine runs only on its GPU with TensorRT: " + "; ".join(problems)
    if sha256_file(folder / engine["plan"]) != engine["plan_sha256"]:
        return f"{engine['plan']} does not match the manifest's plan_sha256; rebuild it with edgevit build-engine"
    return None


def engine_bench_run(folder: Path, manifest: dict, x: np.ndarray):
    """A no-argument callable running the folder's engine once on ``x``, with the input copied to the GPU beforehand
    and the outputs left there: what it times is TensorRT's execution plus the stream synchronization."""
    prof = manifest["tensorrt"]["build"]["profile"]
    if not prof["min"][0] <= len(x) <= prof["max"][0]:
        raise ConfigError(f"{folder}: batch {len(x)} is outside the engine's profile ({prof['min'][0]}-"
                          f"{prof['max'][0]}); pass --batch within it or re-convert with --max-batch")
    return device_resident_run((folder / manifest["tensorrt"]["engine"]["plan"]).read_bytes(), prof["input"], x)


def device_resident_run(plan: bytes, input_name: str, x: np.ndarray):
    """A no-argument callable running the engine ``plan`` once on ``x``, already copied to the GPU, leaving the
    outputs there (``edgevit bench`` and benchmarks/tensorrt.py time it)."""
    from polygraphy import cuda
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    runner = TrtRunner(EngineFromBytes(plan))
    runner.activate()
    device = cuda.DeviceArray(shape=x.shape, dtype=np.float32)
    device.copy_from(np.ascontiguousarray(x, np.float32))

    def run():
        return runner.infer({input_name: device}, copy_outputs_to_host=False)

    run.keep = (runner, device)  # alive as long as the callable
    return run
