"""``edgevit drift``: where an artifact departs from PyTorch, block by block, in the artifact's own runtime.

Every Next-ViT unit (the stem, each NCB/NTB in order, the head's output) is compared between the artifact's runtime
and the fp32 PyTorch model the artifact was converted from, in its deployed form (the same module names the
exported graph carries), on the golden input and ``--images``. Each stage's output is its last block's row. The
runtime side comes from the target (``Target.block_outputs``): for ONNX, a debug copy of the artifact with the
block outputs added as graph outputs, run in onnxruntime; debug copies live in a temporary folder, never in the
artifact folder. The budget of a block is its tolerance row (``edgevit.verify.tolerances``): worst cosine and
max relative error; the first block over it is named.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevit._progress import StepCallback, Steps
from edgevit.errors import ConfigError
from edgevit.verify.metrics import compare
from edgevit.verify.tolerances import Tolerance, tolerance_for

log = logging.getLogger(__name__)


@dataclass
class BlockDrift:
    unit: str  # module path in the model: "stem", "stages.2.blocks.3", or the final output's name
    kind: str  # stem, NCB, NTB, output
    stage: int | None
    cosine_min: float
    sqnr_db: float
    max_rel: float
    over_budget: bool


@dataclass
class DriftReport:
    target: str
    precision: str
    runtime: str
    mechanism: str
    samples: int
    tolerance: Tolerance
    blocks: list[BlockDrift] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def first_over_budget(self) -> str | None:
        return next((b.unit for b in self.blocks if b.over_budget), None)

    def to_dict(self) -> dict:
        return {"target": self.target, "precision": self.precision, "runtime": self.runtime,
                "mechanism": self.mechanism, "samples": self.samples,
                "budget": {"min_cosine": self.tolerance.min_cosine, "max_rel": self.tolerance.max_rel},
                "first_over_budget": self.first_over_budget, "blocks": [asdict(b) for b in self.blocks],
                "notes": self.notes}

    def table(self) -> str:
        t = self.tolerance
        rows = [f"drift of {self.target}/{self.precision} in {self.runtime} vs PyTorch fp32 ({self.samples} inputs; "
                f"{self.mechanism})",
                f"  {'unit':<22} {'kind':<6} {'cosine (worst)':>15} {'SQNR dB':>9} {'max_rel':>10}"]
        for b in self.blocks:
            flag = "  <- over budget" if b.over_budget else ""
            rows.append(f"  {b.unit:<22} {b.kind:<6} {b.cosine_min:>15.7f} {b.sqnr_db:>9.1f} {b.max_rel:>10.3g}{flag}")
        rows.append(f"  budget per block: cosine >= {t.min_cosine}, max_rel <= {t.max_rel:g} "
                    f"(tolerance row {self.target}/{self.precision})")
        first = self.first_over_budget
        rows.append(f"  first block over budget: {first}" if first else "  every block within budget")
        rows += [f"  note: {n}" for n in self.notes]
        return "\n".join(rows)

    def html(self) -> str:
        import html

        cells = "".join(
            f"<tr{' class=over' if b.over_budget else ''}><td>{html.escape(b.unit)}</td><td>{b.kind}</td>"
            f"<td>{b.cosine_min:.7f}</td><td>{b.sqnr_db:.1f}</td><td>{b.max_rel:.3g}</td></tr>" for b in self.blocks)
        first = html.escape(self.first_over_budget or "none")
        return ("<!doctype html><meta charset=utf-8><title>edgevit drift</title>"
                "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}"
                "td:first-child{text-align:left}.over{background:#fdd}</style>"
                f"<h1>Drift: {html.escape(self.target)}/{html.escape(self.precision)} in "
                f"{html.escape(self.runtime)}</h1><p>{self.samples} inputs; {html.escape(self.mechanism)}. "
                f"Budget per block: cosine &ge; {self.tolerance.min_cosine}, max_rel &le; "
                f"{self.tolerance.max_rel:g}. First block over budget: <b>{first}</b>.</p>"
                "<table><tr><th>unit</th><th>kind</th><th>cosine (worst)</th><th>SQNR dB</th><th>max_rel</th></tr>"
                f"{cells}</table>")


def units_of(model) -> list[tuple[str, str, int | None]]:
    """(module path, kind, stage) of every unit in forward order: the stem, then each block of each stage."""
    from edgevit.models.nextvit import find_nextvit

    inner = find_nextvit(model)  # the model itself, or the backbone of a user's detector/segmenter
    if not inner:
        raise ConfigError(f"{type(model).__name__} contains no edgevit Next-ViT: drift has no blocks to follow")
    path, net = inner[0]
    at = f"{path}." if path else ""
    units = [(f"{at}stem", "stem", None)]
    for s, stage in enumerate(net.stages):
        for b, block in enumerate(stage.blocks):
            units.append((f"{at}stages.{s}.blocks.{b}", type(block).__name__, s))
    return units


def pytorch_block_outputs(model, x: np.ndarray, units: list[str]) -> dict[str, np.ndarray]:
    """Each unit's output for normalized inputs ``x``, captured with forward hooks on the deployed model."""
    import torch

    modules = dict(model.named_modules())
    captured: dict[str, list[np.ndarray]] = {u: [] for u in units}
    handles = [modules[u].register_forward_hook(
        lambda _m, _i, out, u=u: captured[u].append(out.detach().float().numpy().copy())) for u in units]
    try:
        with torch.no_grad():
            for i in range(len(x)):
                model(torch.from_numpy(x[i:i + 1]))
    finally:
        for h in handles:
            h.remove()
    return {u: np.concatenate(v) for u, v in captured.items()}


def deployed_reference(manifest: dict, weights: str | None, module: str | None = None):
    """The PyTorch model the artifact was exported from: rebuilt from the manifest's source and put through the
    rewrite passes the manifest lists, so its module names and numbers are the exported graph's."""
    from edgevit.rewrites import deploy
    from edgevit.verify.parity import rebuild_reference

    net = rebuild_reference(manifest, weights, module)
    passes = tuple(p["name"] for p in manifest["rewrite"]["passes"])
    if not passes:
        return net, net
    from edgevit.manifest import input_hw

    size = input_hw(manifest)
    return net, deploy(net, manifest["target"], passes=passes, img_size=size).model


def in_reference_layout(unit: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` in PyTorch's layout ``shape``: as is or flattened (a target transposes channels-last tensors back
    itself, from its graph's layout, before returning them); anything else is an error, never a guess."""
    if value.shape == tuple(shape):
        return value
    if value.size == int(np.prod(shape)) and value.squeeze().shape == tuple(d for d in shape if d != 1):
        return value.reshape(shape)
    raise ConfigError(f"drift: the runtime's tensor for {unit} has shape {value.shape}, PyTorch's {tuple(shape)}; "
                      "they cannot be matched (report this with the artifact's manifest)")


def recorded_calibration(manifest: dict, calib_dir: str | Path | None = None) -> np.ndarray:
    """The exact inputs the artifact was calibrated on, rebuilt from the manifest's calibration record (its folder,
    or ``calib_dir`` where the images have moved; the same count and seed) and checked against the recorded
    sha256, so a debug copy quantized again on them gets the artifact's quantization parameters."""
    from edgevit.models.factory import embedded_data
    from edgevit.preprocess import Preprocess
    from edgevit.quantize.calibration import calibration_set, inputs_sha256

    record = manifest.get("calibration")
    if not record:
        raise ConfigError("this manifest has no calibration record (converted by an older edgevit), so drift "
                          "cannot quantize its debug copy the same way; convert the artifact again")
    folder = calib_dir or (embedded_data(manifest["model"], "calib") if record["folder"] == "shipped"
                           else record["folder"])
    if folder is None or not Path(folder).is_dir():
        raise ConfigError(f"drift quantizes a debug copy of this int8 artifact again on the images that calibrated "
                          f"it ({record['folder']}), which are not there; pass --calib-dir with the same images")
    images = calibration_set(folder, Preprocess.from_manifest(manifest["preprocess"]), record["count"],
                             seed=record["seed"])
    inputs = images.raw if manifest["input"].get("pixels") == "raw_rgb_0_255" else images.normalized
    inputs = np.ascontiguousarray(inputs, np.float32)
    if inputs_sha256(inputs) != record["inputs_sha256"]:
        raise ConfigError(f"the images in {folder} are not the ones that calibrated this artifact (their sha256 "
                          "differs from the manifest's calibration record); pass --calib-dir with the folder the "
                          f"artifact was converted with ({record['folder']}, count {record['count']}, seed "
                          f"{record['seed']})")
    return inputs


def drift_dir(folder: str | Path, *, images: str | Path | None = None, weights: str | None = None,
              threads: int | None = None, calib_dir: str | Path | None = None,
              on_step: StepCallback | None = None, module: str | None = None) -> DriftReport:
    """Per-block drift of the artifact folder ``folder`` (golden input, plus ``images``). ``calib_dir``: where
    the calibration images are now, for runtimes whose debug copy is quantized again (int8 ExecuTorch).
    ``on_step(name, "start" | "done", seconds)`` hears of each step (the CLI prints them). ``edgevit.drift`` is
    this function.

    Example::

        report = edgevit.drift("out/s_onnx_int8", images="my_photos/")
        print(report.table())
    """
    from edgevit.manifest import open_artifact, read_golden, tolerance_row
    from edgevit.preprocess import Preprocess
    from edgevit.targets import get_target
    from edgevit.targets.base import RuntimeSpec
    from edgevit.verify.parity import images_for, reference_for_artifact

    folder = Path(folder)
    manifest = open_artifact(folder, "drift measures the artifact its manifest describes")
    target = get_target(manifest["target"])
    delegate = manifest.get(manifest["target"], {}).get("delegate")
    key = tolerance_row(manifest)
    tol = tolerance_for(key, manifest["precision"])
    raw = manifest["input"].get("pixels") == "raw_rgb_0_255"
    pre = Preprocess.from_manifest(manifest["preprocess"])
    x_in, _ = read_golden(folder, manifest)
    x_norm = pre.normalize(x_in) if raw else x_in
    if images is not None:
        norm, art = images_for(manifest, images)
        x_norm, x_in = np.concatenate([x_norm, norm]), np.concatenate([x_in, art])
    steps = Steps(on_step, log)
    with steps("PyTorch reference, block by block"):
        net, deployed = deployed_reference(manifest, weights, module)
        units = units_of(deployed)
        names = [u for u, _, _ in units]
        ref = pytorch_block_outputs(deployed, x_norm, names)
        out_name = manifest["outputs"][0]["name"]
        from edgevit.models.factory import output_names

        ref[out_name] = reference_for_artifact(net, x_norm, output_names(net), (out_name,))[out_name]
    spec = RuntimeSpec.from_manifest(manifest)
    with steps(f"block outputs in {target.runtime_for(delegate)}"):
        calibration = recorded_calibration(manifest, calib_dir) if target.drift_needs_calibration(spec) else None
        got, mechanism, notes = target.block_outputs(folder / manifest["artifact"], spec, names, x_in,
                                                     threads=threads, model=deployed, calibration=calibration)
    report = DriftReport(target=key, precision=manifest["precision"], runtime=target.runtime_for(delegate),
                         mechanism=mechanism, samples=len(x_in), tolerance=tol, notes=list(notes))
    if len(manifest["outputs"]) > 1:  # features mode, a detector: the blocks are shared, the last row is one output
        report.notes.append(f"the final row is {out_name}, the first of the artifact's {len(manifest['outputs'])} "
                            "outputs; `edgevit verify` compares every output")
    for unit, kind, stage in [*units, (out_name, "output", None)]:
        if unit not in got:
            if not any(n.startswith(f"{unit}:") for n in report.notes):
                report.notes.append(f"{unit}: no runtime tensor found for it (fused away or renamed); not compared")
            continue
        value = in_reference_layout(unit, np.asarray(got[unit], np.float32), ref[unit].shape)
        m = compare(unit, ref[unit], value, classification=False)
        over = not (m.cosine_min >= tol.min_cosine and m.max_rel <= tol.max_rel)
        report.blocks.append(BlockDrift(unit=unit, kind=kind, stage=stage, cosine_min=m.cosine_min,
                                        sqnr_db=m.sqnr_db, max_rel=m.max_rel, over_budget=over))
    return report
