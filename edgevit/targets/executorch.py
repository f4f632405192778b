"""ExecuTorch target: ``.pte`` lowered with ``to_edge_transform_and_lower``, run with ExecuTorch's Python runtime."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np

from edgevit._io import temp_dir
from edgevit.errors import ConfigError, ExportError
from edgevit.targets.base import (ExportResult, Runner, RuntimeSpec, Target, minor_release, register_target,
                                  run_batched)
from edgevit.verify.tolerances import FP16, FP32, INT8

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


@register_target
class ExecuTorchTarget(Target):
    name = "executorch"
    suffix = ".pte"
    delegates = ("xnnpack", "coreml", None)
    precisions = ("fp32", "fp16", "int8")
    needs_calibration = ("int8",)
    runtime = "executorch"
    toolchain = ("executorch",)
    # a graph with symbolic height/width does not export here: PatchEmbed's ceil-mode pools add guards torch.export
    # cannot prove over a size range ("Constraints violated (H, W)"), so each size is its own static method
    multi_size = "one method per size in one .pte (forward is the primary size, forward_<H>x<W> the others)"
    form = "executorch"
    options = ("etrecord", "min_ios")
    distributions = ("executorch", "coremltools", "torchao")
    # the CoreML delegate's payload is held like the coreml target's ML programs
    tolerance_rows = {"executorch": {"fp32": FP32, "int8": INT8},
                      "executorch-coreml": {"fp32": FP32, "fp16": FP16}}
    bench_runtime = "executorch"
    cost = 2.5

    def takes_option(self, option, delegate):
        if option == "min_ios":  # the CoreML delegate's deployment target
            return delegate == "coreml"
        return super().takes_option(option, delegate)

    def form_for(self, delegate):
        # the CoreML delegate's payload runs where the coreml target's ML programs do: it gets their form
        return "coreml" if delegate == "coreml" else self.form

    def bench_problem(self, folder, manifest):
        if manifest.get(self.name, {}).get("delegate") == "coreml":
            return ("the .pte delegates to CoreML, which cannot run here; CoreML predictions need macOS: use the iOS "
                    "app's benchmark screen and `edgevit profile ingest` to bring its numbers in")
        return None

    def summary_lines(self, manifest):
        details = manifest.get(self.name, {})
        deleg = details.get("delegation")
        if not deleg:
            return []
        lines = [f"delegation: {deleg['delegated_nodes']} nodes in {deleg['delegated_subgraphs']} "
                 f"{details['delegate']} subgraphs, {deleg['portable_nodes']} on portable kernels"]
        lines += [f"  portable: {op} x{n}" for op, n in deleg["portable_operators"].items()]
        return lines

    def check(self, precision, delegate=None):
        super().check(precision, delegate)
        if precision == "fp16" and delegate != "coreml":
            raise ConfigError("executorch fp16 is available with --delegate coreml; XNNPACK takes fp32 or int8 "
                              "(supported: fp32/int8 with xnnpack, fp16/fp32 with coreml)")
        if precision == "int8" and delegate == "coreml":
            raise ConfigError("executorch int8 is available with the xnnpack delegate (supported: fp32/int8 with "
                              "xnnpack, fp16/fp32 with coreml); for CoreML int8 use --target coreml")

    def runtime_for(self, delegate: str | None) -> str:
        if delegate == "coreml":
            from edgevit.targets.coreml_sim import runtime_name

            return f"{runtime_name()} on the .pte's CoreML delegate payload"
        return self.runtime

    def tolerance_key(self, cfg) -> str:
        return "executorch-coreml" if cfg.delegate == "coreml" else "executorch"

    def _partitioners(self, delegate: str | None, cfg=None):
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

    @staticmethod
    def _reproducible(delegate: str):
        if delegate != "coreml":
            return contextlib.nullcontext()
        from edgevit.targets.coreml import fresh_mil_names, reproducible_executorch_payload

        fresh_mil_names()
        return reproducible_executorch_payload()

    def check_options(self, cfg) -> None:
        if cfg.extra_sizes and (cfg.precision != "fp32" or (cfg.delegate or "xnnpack") != "xnnpack"):
            raise ConfigError("a multi-size .pte (--img-sizes) is built for fp32 with the xnnpack delegate here (an "
                              "int8 graph is quantized at one size); convert other precisions once per size with "
                              "--img-size")

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        import torch

        self.require("executorch.exir")
        from executorch.exir import to_edge_transform_and_lower

        delegate = cfg.delegate or "xnnpack"
        if io_spec.dynamic_batch:
            raise ConfigError("executorch artifacts have a fixed batch here; drop --dynamic-batch or use --batch N")
        extra = cfg.extra_sizes
        self.check_options(cfg)
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
                with self._reproducible(delegate):
                    edge = to_edge_transform_and_lower(methods if extra else exported,
                                                       partitioner=self._partitioners(delegate, cfg),
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

    def load(self, artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
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

    def drift_needs_calibration(self, spec: RuntimeSpec) -> bool:
        return spec.details.get("quantization") is not None and spec.details.get("delegate") != "coreml"

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
        """A debug program lowered the way the artifact was (same deployed graph, same quantizer on the same
        calibration inputs and float modules for int8, same XNNPACK delegate) with every block's output as an extra
        program output, run in ExecuTorch's runtime; its final output is compared with the artifact's in the
        notes. ``calibration`` (int8 only): the exact inputs the artifact was calibrated on."""
        import torch

        self.require("executorch.exir")
        delegate = spec.details.get("delegate")
        if delegate == "coreml":
            raise ConfigError("edgevit drift does not support ExecuTorch's CoreML delegate yet (its payload's values "
                              "are not named after the model's nodes); convert the same options with --target "
                              "coreml and run drift there. It supports: onnx, ort, executorch (xnnpack), "
                              "coreml, litert")
        if model is None:
            raise ConfigError("drift on a .pte needs the deployed PyTorch model it was exported from")
        quantization = spec.details.get("quantization")
        if quantization is not None and calibration is None:
            raise ConfigError("drift on an int8 .pte quantizes a debug copy again and needs the inputs the artifact "
                              "was calibrated on")
        tapped = _tapped(model, units).eval()
        example = torch.from_numpy(np.ascontiguousarray(x[:spec.batch or 1], np.float32))
        with torch.no_grad():
            tapped.flat = False
            shapes = [tuple(t.shape[1:]) for t in tapped(example)[len(spec.output_names):]]
            tapped.flat = True
        notes, halves = [], None
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), shared_provenance():
            warnings.simplefilter("ignore")
            if quantization is not None:
                from edgevit.quantize.executorch_quant import quantize_xnnpack

                keep = tuple(f"model.{m}" for m in quantization.get("kept_float", []))
                tapped = quantize_xnnpack(tapped, example, calibration, keep,
                                          taps_from=len(spec.output_names)).module
                halves = split_in_two(tapped, units)
            # the IR check is the artifact's own conversion's (the same graph plus output taps); this program is
            # checked against the artifact itself below (its final output), which a wrong lowering cannot pass
            if halves is None:
                buffers = [lower_to_buffer(torch.export.export(tapped, (example,), strict=False))]
            else:
                buffers = lower_halves(halves, example)
        runtime = executorch_runtime(threads)
        methods = [runtime.load_program(b).load_method("forward") for b in buffers]

        def fn(b: np.ndarray) -> list[np.ndarray]:
            outs = methods[0].execute([torch.from_numpy(b)])
            if halves is not None:
                outs = halves.join(outs, methods[1].execute([outs[-1]]))
            return [o.detach().numpy().copy() for o in outs]

        outs = run_batched(fn, np.ascontiguousarray(x, np.float32), spec.batch)
        plain = self.load(artifact_path, spec, threads=threads)(x)
        n_out = len(spec.output_names)  # the program's own outputs come first, then the taps
        got = {unit: outs[n_out + i].reshape(len(x), *shapes[i]) for i, unit in enumerate(units)}
        got[spec.output_names[0]] = plain[0]  # the final row is always the artifact's own output
        gap = float(np.abs(np.asarray(outs[0], np.float64) - plain[0]).max())
        scale = float(np.abs(plain[0]).max()) or 1.0
        if gap > 1e-3 * scale:
            notes.append(f"the artifact's final output differs from the debug program's (a fresh lowering of its "
                         f"source) by {gap:.3g}: this .pte is not what its source lowers to, and the block rows "
                         "describe the fresh lowering, not this file (a .pte edited, or made by another "
                         "edgevit or ExecuTorch release: re-convert it)")
        else:
            notes.append(f"the debug program's final output differs from the artifact's by at most {gap:.3g}")
        how = "quantized again on the artifact's calibration inputs, " if quantization is not None else ""
        if halves is not None:
            how += f"lowered in two halves at once, cut at {halves.cut}'s int8 output, "
        return got, f"a debug program lowered like the artifact ({how}block outputs as program outputs), in " \
                    "ExecuTorch (XNNPACK)", notes

    def import_runtime(self) -> None:
        executorch_runtime()

    def versions(self):
        from importlib.metadata import version

        return {"executorch": version("executorch")}

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "executorch", "min_version": minor_release(self.versions()["executorch"]),
                "why": f"written by ExecuTorch {self.versions()['executorch']}; an older runtime is not promised to "
                       "load a newer program, so edgevit asks for this minor release or newer"}


def _tapped(model, units: list[str]):
    """``model`` wrapped to return (its output, each unit's output in ``units`` order, flattened per sample), read
    by forward hooks while it runs (so torch.export traces them as outputs). Module paths inside become
    ``model.<path>``. Flattened because XNNPACK refuses to run an int8 program where a 4-D block output that is
    also a program output feeds the next stage's pooling ("Propagating input shapes failed"; the tiny config's
    stage-ending blocks); flattened outputs run (tests/verify/test_drift.py, the int8 .pte case)."""
    import torch

    class Tapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.flat = True

        def forward(self, x):
            taps = {}
            modules = dict(self.model.named_modules())
            hooks = [modules[u].register_forward_hook(lambda _m, _i, out, u=u: taps.__setitem__(u, out))
                     for u in units]
            try:
                out = self.model(x)
            finally:
                for h in hooks:
                    h.remove()
            outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)  # several outputs: features, detectors
            return (*outs, *(taps[u].flatten(1) if self.flat else taps[u] for u in units))

    return Tapped()


# The XNNPACK lowering of a quantized Next-ViT-S debug program is most of `edgevit drift`'s time on an int8 .pte (17
# passes, each re-interpreting the whole graph, in one Python process); cut in two at a block's int8 output, the
# halves lower at once in two processes (benchmarks/drift_time.py: 56 s vs 78 s for the whole drift, median of 3).
# A second process costs its imports, so graphs under this many nodes stay in one piece.
SPLIT_MIN_NODES = 1500
# the share of the graph left to the second process, which first spends a few seconds importing torch and ExecuTorch;
# a cut that leaves less than a quarter to either half is not worth a second process
SECOND_SHARE = 0.42


@dataclass
class Halves:
    """A quantized debug program cut in two where one tensor alone crosses: the int8 output of ``cut``'s quantize.
    ``first`` maps the input to the whole's outputs made before the cut, then that tensor; ``second`` maps the
    tensor to the rest. Both are the whole's own nodes (and constants), so each value is computed as in the whole."""
    first: object  # torch.fx.GraphModule
    second: object
    cut: str
    in_first: list[bool]  # for each output of the whole, in order: made by ``first``

    def join(self, first_outs, second_outs) -> list:
        a, b = iter(first_outs[:-1]), iter(second_outs)
        return [next(a) if f else next(b) for f in self.in_first]


def split_in_two(graph, units: list[str], min_nodes: int | None = None) -> Halves | None:
    """``graph`` (a converted pt2e GraphModule of ``_tapped``) cut after the unit whose int8 output leaves about
    ``SECOND_SHARE`` of the operator nodes to the second half, among the units where that output is the only value
    the rest reads from the first half. None where the graph is small (under ``min_nodes``, default
    ``SPLIT_MIN_NODES``), no unit qualifies, or the best cut leaves either half under a quarter of the graph."""
    import torch

    from edgevit.quantize.executorch_quant import module_paths

    nodes = list(graph.graph.nodes)
    if len(nodes) < (SPLIT_MIN_NODES if min_nodes is None else min_nodes):
        return None
    constant: set = set()  # weights and what is computed from weights alone: copied into the half that reads them
    for n in nodes:
        if n.op == "get_attr" or (n.op == "call_function" and n.all_input_nodes
                                  and all(a in constant for a in n.all_input_nodes)):
            constant.add(n)
    ops = [n for n in nodes if n.op == "call_function" and n not in constant]
    last: dict[str, object] = {}
    for n in ops:
        for path in module_paths(n):
            if path.startswith("model."):
                last[path.removeprefix("model.")] = n
    best = None
    for unit in units:
        out = last.get(unit)
        quant = [u for u in out.users if str(u.target).startswith("quantized_decomposed.quantize_per_tensor")] \
            if out is not None else []  # (not a dequantize_per_tensor, whose name contains it)
        if len(quant) != 1:
            continue
        cut = quant[0]
        second: set = set()
        for n in ops:
            if any(a is cut or a in second for a in n.all_input_nodes):
                second.add(n)
        reads = {a for n in second for a in n.all_input_nodes if a not in second and a not in constant}
        if reads != {cut} or not second:
            continue
        share = len(second) / len(ops)
        if best is None or abs(share - SECOND_SHARE) < abs(best[0] - SECOND_SHARE):
            best = (share, unit, cut, second)
    if best is None or not 0.25 <= best[0] <= 0.75:
        return None
    _, unit, cut, second = best
    output = nodes[-1]
    outs = list(output.args[0])
    placeholder = next(n for n in nodes if n.op == "placeholder")
    first_ops = [n for n in ops if n not in second]

    def module(calls, inputs, results):
        g = torch.fx.Graph()
        env = {old: g.placeholder(name) for old, name in inputs}

        def value(a):
            if a not in env:  # a constant: its own inputs first
                for b in a.all_input_nodes:
                    value(b)
                env[a] = g.node_copy(a, lambda b: env[b])
            return env[a]

        for n in calls:
            for a in n.all_input_nodes:
                value(a)
            env[n] = g.node_copy(n, lambda b: env[b])
        g.output(tuple(env[r] for r in results))
        return torch.fx.GraphModule(graph, g)

    in_first = [o not in second for o in outs]
    first = module(first_ops, [(placeholder, "x")], [o for o, f in zip(outs, in_first) if f] + [cut])
    rest = module([n for n in ops if n in second], [(cut, "boundary")], [o for o, f in zip(outs, in_first) if not f])
    return Halves(first=first, second=rest, cut=unit, in_first=in_first)


def lower_to_buffer(exported) -> bytes:
    """An exported program lowered to XNNPACK the way ``export`` lowers an artifact; the ``.pte`` bytes."""
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), shared_provenance():
        warnings.simplefilter("ignore")
        edge = to_edge_transform_and_lower(exported, partitioner=ExecuTorchTarget()._partitioners("xnnpack"),
                                           compile_config=EdgeCompileConfig(_check_ir_validity=False))
        return edge.to_executorch().buffer


def lower_saved(src: str, dst: str) -> None:
    """The second process of ``lower_halves``: a saved exported program (``torch.export.save``) lowered to ``dst``."""
    from pathlib import Path

    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e  # noqa: F401  registers the int8 ops

    Path(dst).write_bytes(lower_to_buffer(torch.export.load(src)))  # read only after this process exits with 0


def lower_halves(halves: Halves, example) -> list[bytes]:
    """Both halves lowered at once: the second in a child process (``lower_saved``), the first here. Where the child
    fails, its half is lowered here after the first (its error goes to the log)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch

    with torch.no_grad():
        boundary = halves.first(example)[-1]
    with temp_dir("drift") as tmp:
        src, dst = Path(tmp) / "second.pt2", Path(tmp) / "second.pte"
        second = torch.export.export(halves.second, (boundary,), strict=False)
        torch.export.save(second, src)
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; from edgevit.targets.executorch import lower_saved; "
                                   "lower_saved(sys.argv[1], sys.argv[2])", str(src), str(dst)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})
        try:
            first = lower_to_buffer(torch.export.export(halves.first, (example,), strict=False))
            _, err = child.communicate()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if child.returncode == 0 and dst.is_file():
            return [first, dst.read_bytes()]
        log.warning("lowering the second half of the debug program in a child process failed (exit %s); lowering "
                    "it here instead: %s", child.returncode, (err or "").strip()[-2000:])
        return [first, lower_to_buffer(second)]


def executorch_runtime(threads: int | None = None):
    """ExecuTorch's Python runtime with its thread pool started (sized to ``threads`` when given); the native
    ``[cpuinfo_utils.cpp ...]`` lines this prints go to the log (``-v``), not the terminal."""
    from edgevit._native import default_threads, native_stderr_to_log

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

    from edgevit.targets.coreml_sim import simulator_runner

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
