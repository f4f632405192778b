"""PyTorch -> ``.pte``: ``to_edge_transform_and_lower`` with the XNNPACK or CoreML partitioner, int8 through
``edgevit.quantize.executorch_quant``, one method per size, the delegation report, and what keeps the bytes
reproducible (the CoreML payload's names and metadata, the ETRecord's provenance)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

from edgevit.errors import ConfigError, ExportError
from edgevit.targets.base import ExportResult

log = logging.getLogger(__name__)


# graph bookkeeping nodes that are not operators and never need a kernel
_NOT_OPERATORS = {"getitem", "output", "placeholder"}


def delegation_report(edge_program, method: str = "forward") -> dict:
    """Which operators of ``method`` went to the delegate and which fell back to portable kernels, from ExecuTorch's
    devtools."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_program.exported_program(method).graph_module)
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


@contextlib.contextmanager
def shared_provenance():
    """Node provenance shared instead of deep-copied while a program is quantized, exported and lowered.

    Every fx pass records where each new node came from (``node.meta["from_node"]``, a list of
    ``torch.fx.traceback.NodeSource``), and each record deep-copies the whole chain of the node it came from, so
    the copying grows with every pass; ExecuTorch's lowering runs dozens of passes. No pass mutates a NodeSource
    after it is made (its ``from_node`` is only assigned in its constructor and when read back from a file), so
    sharing them keeps the same provenance. The ``.pte`` and the provenance are the same with and without it
    (``tests/targets/test_reproducible.py::test_shared_provenance_lowers_the_same_pte_and_restores_torch``); the
    time saved is measured by ``benchmarks/executorch_lowering.py``. Restored on exit."""
    from torch.fx.traceback import NodeSource

    had = "__deepcopy__" in vars(NodeSource)
    before = vars(NodeSource).get("__deepcopy__")
    NodeSource.__deepcopy__ = lambda self, memo: self
    try:
        yield
    finally:
        if had:
            NodeSource.__deepcopy__ = before
        else:
            del NodeSource.__deepcopy__


def method_name(size: tuple[int, int]) -> str:
    return f"forward_{size[0]}x{size[1]}"


def lower_to_buffer(exported) -> bytes:
    """An exported program lowered to XNNPACK the way ``export`` lowers an artifact; the ``.pte`` bytes."""
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), shared_provenance():
        warnings.simplefilter("ignore")
        edge = to_edge_transform_and_lower(exported, partitioner=partitioners("xnnpack"),
                                           compile_config=EdgeCompileConfig(_check_ir_validity=False))
        return edge.to_executorch().buffer


def lower_saved(src: str, dst: str) -> None:
    """The second process of ``lower_halves``: a saved exported program (``torch.export.save``) lowered to ``dst``."""
    from pathlib import Path

    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e  # noqa: F401  registers the int8 ops

    Path(dst).write_bytes(lower_to_buffer(torch.export.load(src)))  # read only after this process exits with 0


def partitioners(delegate: str | None, cfg=None):
    """The ExecuTorch partitioner of ``delegate`` (XNNPACK, or CoreML at ``cfg``'s deployment target and precision)."""
    if delegate in (None, "xnnpack"):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return [XnnpackPartitioner()]
    if delegate == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        target = {16: ct.target.iOS16, 17: ct.target.iOS17, 18: ct.target.iOS18}[cfg.min_ios]
        specs = CoreMLBackend.generate_compile_specs(
            compute_precision=ct.precision.FLOAT16 if cfg.precision == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=target)
        return [CoreMLPartitioner(compile_specs=specs)]
    raise ConfigError(f"executorch delegate {delegate!r} is not supported; use xnnpack or coreml")


def reproducible(delegate: str):
    """CoreML delegate payloads made byte-reproducible (fresh MIL names, fixed package metadata); nothing for
    XNNPACK."""
    if delegate != "coreml":
        return contextlib.nullcontext()
    from edgevit.targets.coreml.export import fresh_mil_names, reproducible_executorch_payload

    fresh_mil_names()
    return reproducible_executorch_payload()


def export_pte(model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
    import torch
    from executorch.exir import to_edge_transform_and_lower

    delegate = cfg.delegate or "xnnpack"
    if io_spec.dynamic_batch:
        raise ConfigError("executorch artifacts have a fixed batch here; drop --dynamic-batch or use --batch N")
    extra = cfg.extra_sizes
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()), shared_provenance():  # coremltools draws pass bars
            warnings.simplefilter("ignore")
            if cfg.precision == "int8":
                from edgevit.quantize.executorch_quant import quantize_xnnpack

                quantized = quantize_xnnpack(model, example, calibration, keep_float)
                model = quantized.module
            exported = torch.export.export(model, (example,), strict=False)
            methods = {"forward": exported}
            for h, w in extra:
                shaped = torch.zeros(*example.shape[:2], h, w)  # each method is exported at its own size
                methods[method_name((h, w))] = torch.export.export(model, (shaped,), strict=False)
            with reproducible(delegate):
                edge = to_edge_transform_and_lower(methods if extra else exported,
                                                   partitioner=partitioners(delegate, cfg),
                                                   generate_etrecord=cfg.etrecord)
            report = delegation_report(edge)
            per_size = {method_name(sz): delegation_report(edge, method_name(sz)) for sz in extra}
            program = edge.to_executorch()
    except (ConfigError, ExportError):
        raise
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"ExecuTorch lowering failed: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from e
    path = out_dir / "model.pte"
    path.write_bytes(program.buffer)
    extra_files, details = [], {"delegate": delegate, "delegation": report}
    if extra:
        shape = tuple(example.shape[2:])
        details["methods"] = {f"{shape[0]}x{shape[1]}": "forward",
                              **{f"{h}x{w}": method_name((h, w)) for h, w in extra}}
        details["method_portable_nodes"] = {m: r["portable_nodes"] for m, r in per_size.items()}
    if cfg.precision == "int8":
        from edgevit.quantize.executorch_quant import DETAILS

        details["quantization"] = dict(DETAILS, calibration_images=int(len(calibration)),
                                       kept_float=quantized.kept_float)
    if cfg.etrecord:
        # the ETRecord maps on-device ETDump events back to graph nodes (edgevit profile ingest)
        program.get_etrecord().save(str(out_dir / "model.etrecord"))
        extra_files.append("model.etrecord")
        details["etrecord"] = "model.etrecord"
    if report["portable_nodes"]:
        log.info("operators outside the %s delegate: %s", delegate, report["portable_operators"])
    return ExportResult(artifact=path.name, extra_files=extra_files, details=details)
