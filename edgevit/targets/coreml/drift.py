"""``edgevit drift`` on an ML program: its own intermediate values from the simulator, matched to Next-ViT
blocks by the torch.export node names coremltools keeps."""

from __future__ import annotations

import logging

import numpy as np

from edgevit.errors import ConfigError
from edgevit.targets.common import quiet, run_batched, unit_output_node
from edgevit.targets.coreml.export import _converted_module, _dynamic_dims

log = logging.getLogger(__name__)


def mlprogram_block_outputs(artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
    """The artifact's own intermediate values, read from the numpy simulator while it runs the program (CoreML's
    predict on macOS returns declared outputs only, so the simulator is used there too).

    An ML program keeps no module names, but coremltools names each value after the torch.export node it came
    from (``add_14``, plus ``_cast_fp16`` in an fp16 program); so the deployed model is exported once more,
    wrapped as the export wraps it, to learn which node leaves each unit. In an int8 program the unit's value
    is followed by quantize -> dequantize; the dequantized value (what the next unit reads) is compared."""
    if model is None:
        raise ConfigError("drift on an ML program needs the deployed PyTorch model it was converted from")
    import torch

    from edgevit.targets.coreml.simulator import CoreMLSimulator

    sim = CoreMLSimulator(artifact_path)
    softmax = tuple(spec.output_names) == ("probabilities",)
    net = _converted_module(model, spec.raw_pixels, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), softmax)  # names only
    inner = "model." if net is not model else ""
    example = torch.zeros((spec.batch or 1, *x.shape[1:]), dtype=torch.float32)
    with quiet():
        dynamic = _dynamic_dims([tuple(sz) for sz in spec.details.get("enumerated_sizes", [])])
        graph = torch.export.export(net, (example,), dynamic_shapes=dynamic,
                                    strict=False).run_decompositions({}).graph
    available = sim.value_names()
    found, notes, requantized = {}, [], 0
    for unit in units:
        node = unit_output_node(graph, inner + unit)
        name = next((n for n in (node, f"{node}_cast_fp16") if n in available), None) if node else None
        if name is None:
            notes.append(f"{unit}: its output ({node or 'not one node'}) is not a value of the ML program "
                         "(fused away or renamed); not compared")
            continue
        readers = sim.consumers(name)
        if len(readers) == 1 and readers[0][0] == "quantize":
            dequantized = [n for t, n in sim.consumers(readers[0][1]) if t == "dequantize"]
            if dequantized:
                name, requantized = dequantized[0], requantized + 1
        found[unit] = name
    if requantized:
        notes.append(f"{requantized} unit outputs are quantized in the program; their dequantized values (what "
                     "the next unit reads) are compared")
    final = spec.output_names[0]
    input_name = spec.input_name or sim.input_names[0]

    def fn(b: np.ndarray) -> list[np.ndarray]:
        outs = sim.run({input_name: b.astype(np.float32)}, extra=tuple(found.values()))
        last = np.asarray(outs[final], np.float32)
        return [last.reshape(b.shape[0], -1) if final == "probabilities" else last,
                *(np.asarray(outs[n], np.float32) for n in found.values())]

    values = run_batched(fn, np.ascontiguousarray(x, np.float32), spec.batch)
    got = {unit: values[1 + i] for i, unit in enumerate(found)}
    got[final] = values[0]
    return got, "the artifact's intermediate values in the CoreML simulator (numpy), matched to units by " \
                "the torch.export node names coremltools keeps", notes
