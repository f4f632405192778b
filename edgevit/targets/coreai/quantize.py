"""Core AI's quantizers, from ``coreai-opt`` (Apple's optimizer for Core AI): ``int8w`` is int8 weights, per output
channel, symmetric, with float activations (``QuantizerConfig.presets.w8()``); ``int8`` is W8A8, int8 weights and
int8 activations calibrated on ``--calib-dir`` (coreai-opt's default ``QuantizerConfig``, PT2E graph mode). Both run
on the deployed model with normalised inputs; ``finalize`` replaces the fake quantizers by Core AI's own quantize
ops, which the converter lowers."""

from __future__ import annotations

import numpy as np

from edgevit.targets.common import quiet

SCHEMES = {"int8w": "int8 weights (per-channel, symmetric), float activations: coreai-opt w8",
           "int8": "int8 weights (per-channel) and int8 activations calibrated on --calib-dir: coreai-opt W8A8"}


def quantize(model, example, precision: str, calibration: np.ndarray | None, keep_float: tuple[str, ...], *,
             mean, std):
    """(quantized module taking normalised input, the manifest's quantization section). ``example`` and
    ``calibration`` hold raw 0-255 pictures (the asset's input), normalised here as the asset's first operation
    does; ``keep_float`` names modules of ``model`` left in float (budget mode)."""
    import torch
    from coreai_opt.quantization import Quantizer, QuantizerConfig

    scale = np.asarray([1.0 / (255.0 * s) for s in std], np.float32).reshape(1, 3, 1, 1)
    shift = np.asarray([-m / s for m, s in zip(mean, std)], np.float32).reshape(1, 3, 1, 1)

    def normalised(raw) -> np.ndarray:
        return (np.asarray(raw, np.float32) * scale + shift).astype(np.float32)

    # prepare observes the example too: a raw one would widen every activation range 255-fold
    example = torch.from_numpy(normalised(example.numpy()))
    if precision == "int8w":
        config = QuantizerConfig.presets.w8()
        batches = [example]  # weights only: observing them needs one forward
    else:
        config = QuantizerConfig(module_name_configs={name: None for name in keep_float} or None)
        calib = normalised(calibration)
        n = example.shape[0]
        batches = [torch.from_numpy(_fill(calib[i:i + n], n)) for i in range(0, len(calib), n)]
    with quiet():
        quantizer = Quantizer(model, config)
        prepared = quantizer.prepare((example,))
        with torch.no_grad(), quantizer.calibration_mode():
            for batch in batches:
                prepared(batch)
        module = quantizer.finalize()
    details = {"scheme": SCHEMES[precision], "quantizer": "coreai-opt Quantizer (graph mode)"}
    if precision == "int8":
        details["calibration_images"] = int(len(calibration))
        details["kept_float"] = list(keep_float)
    return module, details


def _fill(part: np.ndarray, n: int) -> np.ndarray:
    """A short last batch filled with its own pictures again (the program's batch is fixed)."""
    if len(part) == n:
        return part
    return np.concatenate([part, part[np.arange(n - len(part)) % len(part)]])
