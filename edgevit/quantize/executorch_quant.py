"""ExecuTorch int8: static pt2e quantization with ExecuTorch's XNNPACK quantizer (per-channel int8 weights,
per-tensor int8 activations), calibrated on real images, then lowered to the XNNPACK delegate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgevit.errors import ConfigError, ExportError
from edgevit.quantize.calibration import calibration_batches


def module_paths(node) -> list[str]:
    """Fully qualified names of the modules a torch.export node was traced in, outermost first."""
    stack = node.meta.get("nn_module_stack") or {}
    return [name.removeprefix("L['self'].") for name, _ in stack.values()]


def _in_any(paths: list[str], modules: tuple[str, ...]) -> str | None:
    for m in modules:
        if any(p == m or p.startswith(m + ".") for p in paths):
            return m
    return None


@dataclass
class Quantized:
    module: torch.nn.Module  # the converted pt2e graph (quantize/dequantize around every int8 op)
    kept_float: list[str]  # modules of ``keep_float`` that really matched graph nodes (in the order asked)
    observers: int  # activation observers that saw calibration data


def quantize_xnnpack(model, example: torch.Tensor, calibration: np.ndarray,
                     keep_float: tuple[str, ...] = (), *, taps_from: int | None = None) -> Quantized:
    """Quantize ``model`` for XNNPACK; modules named in ``keep_float`` (paths inside ``model``) stay in float.

    Every name in ``keep_float`` must match nodes of the traced graph, so the caller's record of what stayed in
    float is the truth; calibration must reach every observer.

    ``taps_from``: graph outputs from this position on are taps added for ``edgevit drift`` (a flatten of a block
    output); their observers sit out the calibration (`_park_tap_observers`). Otherwise the shared
    HistogramObserver sees every batch twice and settles on a slightly different scale (0.2226 vs 0.2228 on one
    of Next-ViT-S's residual adds), and the debug program no longer has the artifact's quantization (logits 0.94
    apart on a scale of 13).
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    # XNNPACKQuantizer.set_module_name(name, None) asserts ("not supported yet"); a node filter excludes instead
    if keep_float:
        quantizer.set_filter_function(lambda node: _in_any(module_paths(node), keep_float) is None)
        # the filter does not reach every annotator: residual adds and concats written in a kept block's own forward
        # were still quantized (18 quantize/dequantize pairs inside an all-float tiny model), so after annotating,
        # every annotation on a node inside a kept module is dropped (an outside reader still quantizes its input)
        annotate = quantizer.annotate

        def annotate_keeping_float(gm):
            gm = annotate(gm)
            for node in gm.graph.nodes:
                if _in_any(module_paths(node), keep_float):
                    node.meta.pop("quantization_annotation", None)
            return gm

        quantizer.annotate = annotate_keeping_float
    batch = example.shape[0]
    try:
        graph = torch.export.export(model, (example,), strict=False).module()
        matched = {m for node in graph.graph.nodes if (m := _in_any(module_paths(node), keep_float))}
        prepared = prepare_pt2e(graph, quantizer)
        parked = _park_tap_observers(prepared, taps_from) if taps_from is not None else {}
        with torch.no_grad():
            for x in calibration_batches(calibration, batch):
                prepared(torch.from_numpy(x))
        for name, observer in parked.items():
            setattr(prepared, name, observer)
        observers = [m for m in prepared.modules() if hasattr(m, "min_val") and hasattr(m, "max_val")]
        seen = sum(1 for m in observers if m.min_val.numel() and torch.isfinite(m.min_val).all())
        if observers and seen == 0:
            raise ExportError("calibration reached none of the int8 observers; the calibration images did not run "
                              "through the model")
        converted = convert_pt2e(prepared)
    except (ConfigError, ExportError):
        raise
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"pt2e int8 quantization for XNNPACK failed: {type(e).__name__}: {e}") from e
    missing = sorted(set(keep_float) - matched)
    if missing:
        raise ExportError(f"modules to keep in float were not found in the traced graph: {missing[:5]}; this is a "
                          "bug in the layer ranking (names must be paths inside the exported model)")
    return Quantized(module=converted, kept_float=[k for k in keep_float if k in matched], observers=seen)


def _park_tap_observers(prepared, taps_from: int) -> dict:
    """Replace the observers on the tap outputs (positions ``taps_from`` on) with identities for the calibration
    and return them to be put back before ``convert_pt2e``. The quantizer annotates a tap (a flatten) as sharing
    its input's quantization, so its observer is the very instance that observes the tapped tensor: left in place it
    sees every batch a second time (the HistogramObserver result depends on that) and the tap would change the
    quantization it is there to inspect."""
    output = next(n for n in prepared.graph.nodes if n.op == "output")
    parked = {}
    for node in output.args[0][taps_from:]:
        if node.op == "call_module" and hasattr(getattr(prepared, node.target), "calculate_qparams"):
            parked[node.target] = getattr(prepared, node.target)
            setattr(prepared, node.target, torch.nn.Identity())
    return parked


# benchmarks/int8_configs.py (results/int8_configs.json): the attention core or the residual adds in float, or
# per-tensor weights, move top-1 agreement by at most 2 of the 450 deep-reference images and 2 of the 7
# photographs: ties, the default stays
DETAILS = {"scheme": "int8 static (pt2e, ExecuTorch XNNPACKQuantizer)", "weights": "int8 per-channel symmetric",
           "configuration": "edgevit default (XNNPACKQuantizer's symmetric config, every op it annotates)",
           "activations": "int8 per-tensor (affine)",
           # read from the converted graph of the deployed form (token-layout attention)
           "attention": "q k^T runs in fp32 on int8-rounded q and k; its scaled scores are rounded to int8 before the "
                        "softmax (the quantizer annotates the scaling mul); softmax and attn @ v stay fp32"}
