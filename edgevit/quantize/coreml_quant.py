"""CoreML quantization: W8A8 (calibrated pt2e int8 graph converted by coremltools), weight-only int8 and
palettization (coremltools.optimize.coreml), on top of fp16 compute."""

from __future__ import annotations

from edgevit.errors import ConfigError, ExportError

PALETTE_BITS = {"pal8": 8, "pal6": 6, "pal4": 4}
SCHEMES = {
    "int8": "W8A8: int8 per-channel weights and int8 activations calibrated on real images (pt2e graph, iOS 17+)",
    "int8w": "weight-only int8, per-channel symmetric (coremltools linear_quantize_weights), fp16 compute",
    "pal8": "8-bit palettized weights (k-means LUT per tensor), fp16 compute",
    "pal6": "6-bit palettized weights (k-means LUT per tensor), fp16 compute",
    "pal4": "4-bit palettized weights (k-means LUT per group of 16 output channels, iOS 18+), fp16 compute",
}


def check(precision: str, min_ios: int) -> None:
    if precision == "int8" and min_ios < 17:
        raise ConfigError("CoreML int8 activations need iOS 17+: pass --min-ios 17 (or use int8w, weight-only)")
    if precision == "pal4" and min_ios < 18:
        raise ConfigError("CoreML 4-bit grouped palettization needs iOS 18+: pass --min-ios 18 (or use pal6/pal8)")


def compress_weights(mlmodel, precision: str):
    """Weight-only schemes applied to a converted fp16 ML program."""
    import coremltools.optimize.coreml as cto

    try:
        if precision == "int8w":
            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"))
            return cto.linear_quantize_weights(mlmodel, config)
        bits = PALETTE_BITS[precision]
        if bits == 4:
            op_config = cto.OpPalettizerConfig(nbits=4, mode="kmeans", granularity="per_grouped_channel",
                                               group_size=16)
        else:
            op_config = cto.OpPalettizerConfig(nbits=bits, mode="kmeans")
        return cto.palettize_weights(mlmodel, cto.OptimizationConfig(global_config=op_config))
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"CoreML {precision} compression failed: {type(e).__name__}: {e}") from e
