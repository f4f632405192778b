"""PyTorch -> ``.aimodel``: the deployed model behind its input normalisation, exported with ``torch.export`` and
Core AI's decomposition table, converted by ``coreai_torch.TorchConverter`` and saved as an asset whose metadata
carries the author, license, description and edgevit's manifest summary."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from edgevit.errors import ExportError
from edgevit.targets.base import ExportResult
from edgevit.targets.common import quiet, stated

log = logging.getLogger(__name__)


@contextlib.contextmanager
def reproducible_names(seed: int = 0):
    """coreai's authoring layer names each composite function it emits with a random suffix drawn from
    ``secrets.choice`` (``coreai.authoring.func`` and ``graph_builder``), so two conversions of one model differ in
    those names and nothing else. While converting, the suffixes come from a generator seeded here instead: the same
    model gives the same bytes (``tests/targets/test_reproducible.py``). Put back afterwards."""
    import random

    from coreai.authoring import func, graph_builder

    draw = random.Random(seed).choice
    saved = [(m, m.choice) for m in (func, graph_builder) if hasattr(m, "choice")]
    for m, _ in saved:
        m.choice = draw
    try:
        yield
    finally:
        for m, original in saved:
            m.choice = original


def wrapped(model, mean, std, fp16: bool):
    """``model`` taking raw 0-255 RGB (float32): ``x * (1 / (255 std)) - mean / std`` per channel first. For fp16
    the weights and every activation are float16 and the input and output stay float32 (the casts are the first and
    last ops), so an app feeds and reads float32 either way."""
    import torch
    from torch import nn

    dtype = torch.float16 if fp16 else torch.float32

    class RawPixels(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model.to(dtype)
            self.register_buffer("scale", torch.tensor([1.0 / (255.0 * s) for s in std]).reshape(1, 3, 1, 1))
            self.register_buffer("shift", torch.tensor([-m / s for m, s in zip(mean, std)]).reshape(1, 3, 1, 1))

        def forward(self, x):
            y = self.model((x * self.scale + self.shift).to(dtype))
            if isinstance(y, (tuple, list)):
                return tuple(t.float() for t in y)
            return y.float()

    return RawPixels().eval()


def to_program(net, example, input_name: str, output_names, *, debug: bool = False):
    """(exported program, AIProgram) of ``net``: ``torch.export`` with Core AI's decomposition table, then
    coreai-torch. Release mode for artifacts (operation ids only: no stack traces carrying this machine's paths);
    debug mode for drift's copy, whose debug information maps torch.export nodes to Core AI operations."""
    import coreai_torch
    import torch

    mode = coreai_torch.TorchConverter.Mode.DEBUG if debug else coreai_torch.TorchConverter.Mode.RELEASE
    with quiet(), torch.no_grad():
        program = torch.export.export(net, (example,), strict=False).run_decompositions(coreai_torch.get_decomp_table())
        with reproducible_names():
            ai = coreai_torch.TorchConverter(mode=mode).add_exported_program(
                program, input_names=[input_name], output_names=list(output_names)).to_coreai()
    return program, ai


def export_asset(model, example, out_dir: Path, io_spec, cfg, *, min_os: str, calibration=None,
                 keep_float: tuple[str, ...] = ()) -> ExportResult:
    import copy

    import torch
    from coreai.authoring import OSVersion
    from coreai.runtime import AIModelAssetMetadata

    pre = io_spec.preprocess
    fp16 = cfg.precision == "fp16"
    quantization = None
    inner = copy.deepcopy(model)
    if cfg.precision in ("int8", "int8w"):
        from edgevit.targets.coreai.quantize import quantize

        try:
            inner, quantization = quantize(inner, example, cfg.precision, calibration, tuple(keep_float),
                                           mean=pre["mean"], std=pre["std"])
        except Exception as e:  # noqa: BLE001 - the optimizer's failure is this target's export error
            raise ExportError(f"coreai-opt {cfg.precision} quantization failed: {type(e).__name__}: {e}") from e
    net = wrapped(inner, pre["mean"], pre["std"], fp16)
    raw = torch.zeros(tuple(example.shape), dtype=torch.float32)  # the shape is what export needs
    path = out_dir / "model.aimodel"
    try:
        _, ai_program = to_program(net, raw, io_spec.input_name, io_spec.output_names)
        with quiet():
            metadata = AIModelAssetMetadata()
            _describe(metadata, cfg, io_spec)
            asset = ai_program.save_asset(path, metadata=metadata, minimum_os=OSVersion.v27)
            # save_asset stamps the wall-clock time (the manifest records when the folder was made) and writes the
            # keys in hash order: the same metadata, written the same way every time
            asset.update_metadata(lambda m: setattr(m, "creation_date", None))
            meta = path / "metadata.json"
            meta.write_text(json.dumps(json.loads(meta.read_text()), indent=2, sort_keys=True) + "\n")
            summary = asset.summary(include_statistics=True)
    except Exception as e:  # noqa: BLE001 - any converter failure is this target's export error
        first = str(e).splitlines()[0] if str(e) else ""
        raise ExportError(f"Core AI conversion failed: {type(e).__name__}: {first}") from e
    ops = dict(sorted(summary.operation_distribution, key=lambda kv: -kv[1]))
    details = {
        "precision": cfg.precision,
        "normalization": {"mean": list(pre["mean"]), "std": list(pre["std"])},  # the model's first operation
        "input_hw": list(example.shape[2:]),
        "minimum_os": min_os,
        "function": "main",
        "inputs": {n: t for n, t in summary.function_inputs("main")},
        "outputs": {n: t for n, t in summary.function_outputs("main")},
        "compute_types": list(summary.compute_types),
        "normalization_in_model": True,
        "op_counts": ops,
        "transposes": ops.get("transpose", 0),
        "converter_mode": "release",
        # MLIR bytecode keeps each value's use-list order, which follows the converting process's memory: two
        # conversions compute bit-identical outputs from assets whose main.mlirb bytes differ;
        # tests/targets/test_reproducible.py checks the outputs and every other file instead
        "byte_reproducible": False,
    }
    if quantization:
        details["quantization"] = quantization
    return ExportResult(artifact=path.name, details=details)


def _describe(metadata, cfg, io_spec) -> None:
    """Author, license and description (``common.stated``: nothing invented), and edgevit's manifest summary."""
    metadata.author, metadata.license, metadata.model_description = stated(
        cfg, io_spec, "Core AI runtime (coreai-core; input float32 RGB 0-255, NCHW)")
    summary = {"model": cfg.model, "target": "coreai", "precision": cfg.precision, "pixels": "raw_rgb_0_255",
               "preprocess": io_spec.preprocess, "outputs": list(io_spec.output_names),
               "labels": list(io_spec.labels) if io_spec.labels else []}
    # the metadata takes JSON values without null: a missing value is left out
    metadata.set_custom("edgevit.manifest", _without_nulls(json.loads(json.dumps(summary, default=str))))


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value
