"""ExecuTorch's Python runtime (thread pool, native log) and the runner of a ``.pte``; a CoreML-delegated
``.pte`` runs its payload in the CoreML runtime (or edgevit's simulator)."""

from __future__ import annotations

import logging

import numpy as np

from edgevit._io import temp_dir
from edgevit.errors import ConfigError
from edgevit.targets.base import Runner, RuntimeSpec
from edgevit.targets.common import run_batched

log = logging.getLogger(__name__)


def executorch_runtime(threads: int | None = None):
    """ExecuTorch's Python runtime with its thread pool started (sized to ``threads`` when given); the native
    ``[cpuinfo_utils.cpp ...]`` lines this prints go to the log (``-v``), not the terminal."""
    from edgevit._native import default_threads, native_stderr_to_log
    from edgevit.targets.executorch.target import ExecuTorchTarget  # the target imports this module

    threads = default_threads(threads)
    with native_stderr_to_log(log, "executorch runtime"):
        ExecuTorchTarget().require("executorch.runtime")
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        runtime = Runtime.get()
        if threads and portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
        portable_lib._threadpool_get_thread_count()  # starts the pool (and its cpuinfo probe) now
    return runtime


def set_threads(threads: int) -> None:
    """Size ExecuTorch's own thread pool (XNNPACK uses it; torch.set_num_threads does not reach it)."""
    executorch_runtime(threads)


def coreml_delegate_runner(artifact_path, spec: RuntimeSpec) -> Runner:
    """The ExecuTorch runtime here has no CoreML backend: extract the delegate's ML program from the .pte and run
    it in the CoreML simulator (or predict on macOS). The whole graph must be one CoreML delegate for this."""
    from pathlib import Path

    from executorch.backends.apple.coreml import executorchcoreml
    from executorch.exir._serialize._program import _extract_delegate_payload

    from edgevit.targets.coreml.simulator import simulator_runner

    deleg = spec.details["delegation"]
    if deleg["portable_nodes"] or deleg["delegated_subgraphs"] != 1:
        raise ConfigError("this .pte mixes CoreML and portable kernels; its parity can only be checked on a device")
    payload = _extract_delegate_payload(Path(artifact_path).read_bytes(), "coreml")
    if payload is None:
        raise ConfigError(f"{artifact_path} holds no CoreML delegate payload")
    # the simulator reads the whole program and its weights when built, so the unpacked copy is not kept
    with temp_dir("etcoreml") as tmp:
        if not executorchcoreml.unflatten_directory_contents(payload, tmp):
            raise ConfigError(f"could not unpack the CoreML delegate payload of {artifact_path}")
        packages = sorted(Path(tmp).rglob("*.mlpackage"))
        if not packages:
            raise ConfigError(f"the CoreML delegate payload of {artifact_path} holds no .mlpackage")
        return simulator_runner(packages[0], None, list(spec.output_names), spec.batch)


def load_program(artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
    import torch

    if spec.details.get("delegate") == "coreml":
        return coreml_delegate_runner(artifact_path, spec)
    runtime = executorch_runtime(threads)
    program = runtime.load_program(str(artifact_path))
    names = spec.details.get("methods") or {}
    methods = {}

    def fn(x: np.ndarray) -> list[np.ndarray]:
        size = f"{x.shape[2]}x{x.shape[3]}"
        name = names.get(size, "forward")  # a multi-size .pte: the method made for this input's size
        if name not in methods:
            methods[name] = program.load_method(name)
        outs = methods[name].execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])
        return [o.detach().numpy().copy() for o in outs]

    return lambda x: run_batched(fn, x, spec.batch)
