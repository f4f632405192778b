"""``edgevit drift`` on an ``.aimodel`` (fp32, fp16): Next-ViT block outputs read from Apple's Core AI runtime.

The artifact is converted in release mode (operation ids, no stack traces), which keeps no link from its operations
back to PyTorch's. So the deployed model is exported once more exactly as the artifact was (same wrapper and
precision) and converted in debug mode into a temporary asset; coreai-torch's debug information maps each
torch.export node to the Core AI operation that computes it, and the runtime's ``IntermediateLogger`` (through
``coreai_torch.debugging``'s ``CoreAIInspector``) returns those operations' values while the asset runs. A unit's
value is the one node inside its module that is used outside it (torch.export's ``nn_module_stack``). The debug
copy's final output is compared with the artifact's in the notes; the final row is always the artifact's own output.
The debug copy never goes into the artifact folder. int8w/int8 assets are refused: coreai-opt's quantized graph
loses its module paths when exported again (measured: matching by node provenance named the wrong tensors), so its
blocks cannot be named.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import tempfile
from pathlib import Path

import numpy as np

from edgevit._native import native_stderr_to_log
from edgevit.errors import ConfigError
from edgevit.targets.common import quiet, unit_output_node
from edgevit.targets.coreai.export import to_program, wrapped

log = logging.getLogger(__name__)

QUANTIZED = ("int8w", "int8")


def debug_program(model, spec, calibration):
    """(the exported program of the artifact's graph, the AIProgram converted from it in debug mode)."""
    import torch

    details = spec.details
    norm = details["normalization"]
    example = torch.zeros((spec.batch or 1, 3, *details["input_hw"]), dtype=torch.float32)
    net = wrapped(copy.deepcopy(model), norm["mean"], norm["std"], details["precision"] == "fp16")
    return to_program(net, example, spec.input_name, spec.output_names, debug=True)


def asset_block_outputs(artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
    if model is None:
        raise ConfigError("drift on a Core AI asset needs the deployed PyTorch model it was converted from")
    if spec.details.get("precision") in QUANTIZED:
        raise ConfigError(f"edgevit drift does not support {spec.details['precision']} Core AI assets yet: "
                          "coreai-opt's quantized graph loses its module paths when it is exported again, so its "
                          "operations cannot be named by Next-ViT block; drift the fp16 asset of the same model, or "
                          "an int8 artifact of --target coreml, onnx or executorch")
    from edgevit.targets.coreai.runtime import asset_runner

    with quiet():  # coreai-torch warns on import about torch releases it has not been validated with
        from coreai_torch.debugging.torch_utils import get_torch_to_coreai_output_mapping

    program, ai = debug_program(model, spec, calibration)
    mapping = get_torch_to_coreai_output_mapping(ai)
    found, notes = {}, []
    for unit in units:
        node = unit_output_node(program.graph, "model." + unit)
        if node is None or node not in mapping:
            notes.append(f"{unit}: its output ({node or 'not one node'}) has no Core AI operation of its own "
                         "(fused into another or not one node); not compared")
            continue
        found[unit] = mapping[node].target_op_id
    with tempfile.TemporaryDirectory(prefix="edgevit-drift-") as tmp:
        with quiet():
            asset = ai.save_asset(Path(tmp) / "debug.aimodel")
        values = asyncio.run(_intermediates(asset, Path(tmp), spec, found, np.ascontiguousarray(x, np.float32)))
    final = spec.output_names[0]
    got = {unit: values[unit] for unit in found if unit in values}
    missing = [u for u in found if u not in values]
    if missing:
        notes.append(f"the runtime logged no value for {', '.join(missing)}; not compared")
    plain = asset_runner(Path(artifact_path), spec)(x)
    got[final] = plain[0]
    gap = float(np.abs(np.asarray(values[final], np.float64) - plain[0]).max())
    notes.append(f"the debug copy's final output differs from the artifact's by at most {gap:.3g}")
    return got, ("a debug conversion of the artifact's graph (debug information kept), its operations' values logged "
                 "by the Core AI runtime (IntermediateLogger, CPU path)"), notes


async def _intermediates(asset, tmp: Path, spec, ops: dict[str, int], x: np.ndarray) -> dict[str, np.ndarray]:
    """Each unit's value and the final output, batch by batch (the asset's batch is fixed; a short tail is padded)."""
    from coreai.runtime import AIModel, NDArray
    from coreai_torch.debugging.inspector import CoreAIInspector

    lowered = tmp / "debug.aimodelx"
    lowered.mkdir()
    # what AIModelAsset.executable() does on Linux, with the debug information the logger needs kept
    asset._write_odix(lowered, enable_debug_info=True)
    with native_stderr_to_log(log, "coreai runtime"):
        model = await AIModel.load(path=lowered)
    inspector = CoreAIInspector(model=model, function_name="main")
    batch = spec.batch or len(x)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        with quiet(), native_stderr_to_log(log, "coreai runtime"):
            res = await inspector.get_intermediates_for_ops(list(ops.values()), {spec.input_name: NDArray(chunk)})
        for unit, op in ops.items():
            outs = res.get(op)
            if outs and outs[0] is not None:
                value = outs[0].numpy() if hasattr(outs[0], "numpy") else outs[0]
                parts.setdefault(unit, []).append(np.asarray(value, np.float32)[:n])
        if not ops:  # nothing to log: the inspector does not run the asset, so run it for the final output
            res_fn = model.load_function("main")
            with native_stderr_to_log(log, "coreai runtime"):
                last = {k: v.numpy() for k, v in (await res_fn({spec.input_name: NDArray(chunk)})).items()}
        else:
            last = inspector.last_outputs or {}
        parts.setdefault(spec.output_names[0], []).append(np.asarray(last[spec.output_names[0]], np.float32)[:n])
    return {k: np.concatenate(v) for k, v in parts.items() if len(v) * batch >= len(x)}
