"""ExecuTorch int8: static pt2e quantization with ExecuTorch's XNNPACK quantizer (per-channel int8 weights,
per-tensor int8 activations), calibrated on real images, then lowered to the XNNPACK delegate."""

from __future__ import annotations

import numpy as np
import torch

from edgevit.errors import ExportError


def quantize_xnnpack(model, example: torch.Tensor, calibration: np.ndarray, keep_float: tuple[str, ...] = ()):
    """The model with quantize/dequantize around every op XNNPACK runs in int8 (a torch GraphModule)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    for name in keep_float:
        quantizer.set_module_name(name, None)
    batch = example.shape[0]
    try:
        graph = torch.export.export(model, (example,), strict=False).module()
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for i in range(0, len(calibration) - batch + 1, batch):
                prepared(torch.from_numpy(np.ascontiguousarray(calibration[i:i + batch], dtype=np.float32)))
        return convert_pt2e(prepared)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"pt2e int8 quantization for XNNPACK failed: {type(e).__name__}: {e}") from e


DETAILS = {"scheme": "int8 static (pt2e, ExecuTorch XNNPACKQuantizer)", "weights": "int8 per-channel symmetric",
           "activations": "int8 per-tensor (affine)", "float_ops": "attention matmuls and softmax stay fp32"}
