"""PyTorch -> ``.tflite`` with litert-torch: float conversion (channel-last I/O for ``--layout nhwc``), one
signature per size, the precisions (``quantize.py``), the graph report, and the TRANSPOSE counts of both forms
(cached per architecture in ``EDGEVIT_CACHE``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgevit._io import temp_dir
from edgevit.errors import ConfigError, ExportError, MissingDependencyError
from edgevit.targets.base import ExportResult
from edgevit.targets.litert.graph import graph_report
from edgevit.targets.litert.quantize import ai_edge_quantize, io_modules, pt2e_int8
from edgevit.targets.litert.runtime import SIGNATURE, interpreter_class, no_default_delegates, quiet, signature_name

log = logging.getLogger(__name__)


def write_tflite(model, example, path: Path, *, calibration: np.ndarray | None = None,
                 keep_float: tuple[str, ...] | None = None, **int8_options) -> None:
    """``model`` converted to ``path``: fp32, or int8 as the target converts it when ``calibration`` is given
    (``keep_float`` defaults to the float-I/O modules; ``int8_options`` go to ``pt2e_int8``). For the benchmarks,
    which convert many forms outside the pipeline."""
    import litert_torch

    with quiet():
        if calibration is None:
            litert_torch.convert(model, (example,)).export(str(path))
            return
        from litert_torch.quantize.quant_config import QuantConfig

        keep = io_modules(model, example) if keep_float is None else keep_float
        converted, quantizer, _ = pt2e_int8(model, example, calibration, keep, **int8_options)
        litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(
            str(path))


def source_digest() -> str:
    """sha256 of the edgevit source a form's graph is made from (models, rewrites, this target): an edited block or
    pass changes every cache key, where the printed module structure alone might not."""
    import hashlib

    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for path in sorted([*root.joinpath("models").glob("*.py"), *root.joinpath("rewrites").glob("*.py"),
                        *Path(__file__).parent.glob("*.py")]):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def cached_transposes(model, example, layout: str) -> int:
    """TRANSPOSE ops in the fp32 .tflite of ``model``. The count depends on the graph's structure, not its weights,
    so it is cached per (module structure, input shape, layout, converter version, and the source of edgevit's model
    and rewrite code: ``source_digest``) in EDGEVIT_CACHE (default ~/.cache/edgevit): the first conversion of an
    architecture pays one extra conversion per form counted this way (Next-ViT-S at 224 on 2 cores: 57 s for two,
    benchmarks/results/litert_form_transposes_small.txt, measured before an fp32 artifact's own count was used for
    its deployed form), later ones none."""
    import hashlib
    import json
    import os
    from importlib.metadata import version

    key = hashlib.sha256(json.dumps([str(model), list(example.shape), layout, version("litert-torch"),
                                     source_digest()]).encode()).hexdigest()
    cache = Path(os.environ.get("EDGEVIT_CACHE") or Path.home() / ".cache" / "edgevit") / "litert_transposes.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):  # a cache damaged into another JSON value only costs a recount
        known = {}
    if isinstance(known.get(key), int):
        return known[key]
    log.info("counting the TRANSPOSE ops of one form in LiteRT (one fp32 conversion; cached in %s)", cache)
    import litert_torch

    if layout == "nhwc":
        model = litert_torch.to_channel_last_io(model, args=[0]).eval()
        example = example.permute(0, 2, 3, 1).contiguous()
    with temp_dir("litert") as tmp, quiet():
        path = Path(tmp) / "form.tflite"
        litert_torch.convert(model, (example,)).export(str(path))
        Interpreter = interpreter_class()
        ops = Interpreter(model_path=str(path), **no_default_delegates())._get_ops_details()
    count = sum(1 for op in ops if op["op_name"] == "TRANSPOSE")
    try:  # a cache that cannot be written only costs time
        cache.parent.mkdir(parents=True, exist_ok=True)
        known[key] = count
        tmp_file = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp_file.write_text(json.dumps(known))
        os.replace(tmp_file, cache)
    except OSError:
        pass
    return count


def export_tflite(model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
    import litert_torch

    path = out_dir / "model.tflite"
    details: dict = {"layout": cfg.layout.upper()}
    inner = ""  # where the model's modules sit in what is converted
    if cfg.layout == "nhwc":  # the converter's channel-last I/O: the model permutes its NHWC input itself
        model, inner = litert_torch.to_channel_last_io(model, args=[0]).eval(), "wrapped."
        keep_float = tuple(inner + k for k in keep_float)
        example = example.permute(0, 2, 3, 1).contiguous()
        if calibration is not None:
            calibration = np.ascontiguousarray(calibration.transpose(0, 2, 3, 1))
    extra = cfg.extra_sizes

    def convert_float(net, target: Path) -> None:
        """The float model, with one more signature per extra size (each traced at its own static size)."""
        if not extra:
            litert_torch.convert(net, (example,)).export(str(target))
            return
        converter = litert_torch.signature(SIGNATURE, net, (example,))
        for h, w in extra:
            shape = (*example.shape[:2], h, w) if cfg.layout != "nhwc" else (example.shape[0], h, w,
                                                                               example.shape[3])
            converter = converter.signature(signature_name((h, w)), net, (torch.zeros(shape),))
        converter.convert().export(str(target))

    import torch

    try:
        with quiet():
            if cfg.precision == "int8":
                from litert_torch.quantize.quant_config import QuantConfig

                io_float = io_modules(model, example)
                converted, quantizer, kept = pt2e_int8(model, example, calibration,
                                                        tuple(keep_float) + io_float)
                litert_torch.convert(converted, (example,),
                                     quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
                details["quantization"] = {
                    "scheme": "int8 static (PT2E, litert-torch PT2EQuantizer)",
                    "weights": "int8 per-channel symmetric", "activations": "int8 per-tensor",
                    "adds_and_concatenations": "int8, annotated by edgevit (litert-torch's own annotators "
                                               "match none on a non-strict export; docs/FORMS.md#litert)",
                    "attention_scores": "float: q @ k^T stays a float BATCH_MATMUL inside XNNPACK "
                                        "(docs/FORMS.md#litert)",
                    "calibration_images": int(len(calibration)),
                    "float_io_modules": [k.removeprefix(inner) for k in io_float],
                    "why_float_io": "the converter folds a quantized graph input/output into the model's I/O "
                                    "type; these modules stay float so the app feeds and reads float",
                    "kept_float": [k.removeprefix(inner) for k in kept if k in keep_float]}
            elif cfg.precision in ("fp16", "int8w"):
                with temp_dir("litert") as tmp:
                    float_path = Path(tmp) / "float.tflite"
                    convert_float(model, float_path)
                    ai_edge_quantize(float_path, path, cfg.precision)
                details["quantization"] = {
                    "scheme": {"fp16": "fp16 weights (ai-edge-quantizer FLOAT_CASTING), fp32 compute",
                               "int8w": "dynamic range (ai-edge-quantizer dynamic_wi8_afp32): int8 per-channel "
                                        "weights, activations quantized at run time"}[cfg.precision]}
            else:
                convert_float(model, path)
    except (ConfigError, ExportError, MissingDependencyError):
        raise
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"LiteRT conversion failed: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from e
    report = graph_report(path)
    if any(d != "float32" for d in report["input_dtypes"] + report["output_dtypes"]):
        raise ExportError(f"the LiteRT model's inputs/outputs are {report['input_dtypes']} / "
                          f"{report['output_dtypes']}, not float32; this is a bug in edgevit's int8 path")
    details.update(report)
    details["signature"] = SIGNATURE
    if extra:
        h, w = (example.shape[1], example.shape[2]) if cfg.layout == "nhwc" else tuple(example.shape[2:])
        details["signatures"] = {f"{h}x{w}": SIGNATURE, **{f"{a}x{b}": signature_name((a, b)) for a, b in extra}}
    return ExportResult(artifact=path.name, details=details)
