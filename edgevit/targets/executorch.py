"""ExecuTorch target: ``.pte`` lowered with ``to_edge_transform_and_lower``, run with ExecuTorch's Python runtime."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np

from edgevit.errors import ConfigError, ExportError
from edgevit.targets.base import ExportResult, Runner, Target, register_target, run_batched

log = logging.getLogger(__name__)

# graph bookkeeping nodes that are not operators and never need a kernel
_NOT_OPERATORS = {"getitem", "output", "placeholder"}


def delegation_report(edge_program) -> dict:
    """Which operators went to the delegate and which fell back to portable kernels, from ExecuTorch's devtools."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_program.exported_program().graph_module)
    ops = {}
    for op, b in sorted(info.delegation_by_operator.items()):
        if op in _NOT_OPERATORS:
            continue
        ops[op] = {"delegated": b.delegated, "portable": b.non_delegated}
    portable = {op: c["portable"] for op, c in ops.items() if c["portable"]}
    return {
        "delegated_subgraphs": info.num_delegated_subgraphs,
        "delegated_nodes": sum(c["delegated"] for c in ops.values()),
        "portable_nodes": sum(portable.values()),
        "portable_operators": portable,
        "operators": ops,
    }


@register_target
class ExecuTorchTarget(Target):
    name = "executorch"
    suffix = ".pte"
    delegates = ("xnnpack", None)
    runtime = "executorch"

    def _partitioners(self, delegate: str | None):
        if delegate in (None, "xnnpack"):
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

            return [XnnpackPartitioner()]
        raise ConfigError(f"executorch delegate {delegate!r} is not supported; use xnnpack")

    def export(self, model, example, out_dir, io_spec, cfg) -> ExportResult:
        import torch

        self.require("executorch.exir")
        from executorch.exir import to_edge_transform_and_lower

        delegate = cfg.delegate or "xnnpack"
        if io_spec.dynamic_batch:
            raise ConfigError("executorch artifacts have a fixed batch here; drop --dynamic-batch or use --batch N")
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                exported = torch.export.export(model, (example,), strict=False)
                edge = to_edge_transform_and_lower(exported, partitioner=self._partitioners(delegate),
                                                   generate_etrecord=cfg.etrecord)
                report = delegation_report(edge)
                program = edge.to_executorch()
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"ExecuTorch lowering failed: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from e
        path = out_dir / "model.pte"
        path.write_bytes(program.buffer)
        extra, details = [], {"delegate": delegate, "delegation": report}
        if cfg.etrecord:
            # the ETRecord maps on-device ETDump events back to graph nodes (edgevit profile ingest)
            program.get_etrecord().save(str(out_dir / "model.etrecord"))
            extra.append("model.etrecord")
            details["etrecord"] = "model.etrecord"
        if report["portable_nodes"]:
            log.info("operators outside the %s delegate: %s", delegate, report["portable_operators"])
        return ExportResult(artifact=path.name, extra_files=extra, details=details)

    def load(self, artifact_path, manifest, *, threads=None) -> Runner:
        import torch

        self.require("executorch.runtime")
        from executorch.runtime import Runtime

        if threads:
            set_threads(threads)
        method = Runtime.get().load_program(str(artifact_path)).load_method("forward")
        batch = manifest["input"]["shape"][0]

        def fn(x: np.ndarray) -> list[np.ndarray]:
            outs = method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])
            return [o.detach().numpy().copy() for o in outs]

        return lambda x: run_batched(fn, x, batch)

    def import_runtime(self) -> None:
        self.require("executorch.runtime").Runtime.get()

    def versions(self):
        from importlib.metadata import version

        return {"executorch": version("executorch")}


def set_threads(threads: int) -> None:
    """Size ExecuTorch's own thread pool (XNNPACK uses it; torch.set_num_threads does not reach it)."""
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
