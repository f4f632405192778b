"""``edgevit drift`` on a ``.pte``: a debug program lowered like the artifact with every block's output as an
extra program output (int8: quantized again on the artifact's calibration inputs; a large one cut in two halves
lowered at once in two processes)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np

from edgevit._io import temp_dir
from edgevit.errors import ConfigError
from edgevit.targets.common import run_batched
from edgevit.targets.executorch.export import lower_to_buffer, shared_provenance
from edgevit.targets.executorch.runtime import executorch_runtime, load_program

log = logging.getLogger(__name__)


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
            [sys.executable, "-c", "import sys; from edgevit.targets.executorch.export import lower_saved; "
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


def pte_block_outputs(artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
    """A debug program lowered the way the artifact was (same deployed graph, same quantizer on the same
    calibration inputs and float modules for int8, same XNNPACK delegate) with every block's output as an extra
    program output, run in ExecuTorch's runtime; its final output is compared with the artifact's in the
    notes. ``calibration`` (int8 only): the exact inputs the artifact was calibrated on."""
    import torch

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
    plain = load_program(artifact_path, spec, threads=threads)(x)
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
