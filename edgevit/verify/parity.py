"""Parity of an artifact in its own runtime against the PyTorch reference, gated by the tolerance table."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevit._io import sha256_file
from edgevit.errors import CheckpointError, ConfigError, IntegrityError, ParityError
from edgevit.manifest import read_golden
from edgevit.verify.metrics import CLASS_OUTPUTS, OutputMetrics, compare, is_classifier
from edgevit.verify.tolerances import Tolerance, tolerance_for

log = logging.getLogger(__name__)


@dataclass
class ParityReport:
    target: str
    precision: str
    runtime: str
    tolerance: Tolerance
    sets: dict[str, list[OutputMetrics]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "runtime": self.runtime,
            "tolerance": {"target": self.target, "precision": self.precision, **self.tolerance.__dict__},
            "sets": {name: [m.to_dict() for m in ms] for name, ms in self.sets.items()},
            "failures": self.failures,
        }

    def table(self) -> str:
        w = max([8] + [len(d) for d in self.sets])  # "golden 800x1344" on multi-size artifacts
        rows = [f"parity {self.target}/{self.precision} in {self.runtime}: {'PASS' if self.passed else 'FAIL'}",
                f"  {'data':<{w}} {'output':<10} {'n':>4} {'max_abs':>10} {'max_rel':>10} {'cosine':>11} "
                f"{'cos mean':>11} {'top1 agree':>10} {'near-ties':>9} {'top5':>7}",
                "  (cosine: worst sample and mean; top1 agree: plain agreement with PyTorch's top class; near-ties: "
                "flips between classes closer than the row's error bound; top5: PyTorch's top class in the "
                "artifact's top 5)"]
        for data, ms in self.sets.items():
            for m in ms:
                t1 = "-" if m.top1_agreement is None else f"{m.top1_agreement:.1%}"
                nt = "-" if m.near_ties is None else str(m.near_ties)
                t5 = "-" if m.top5_agreement is None else f"{m.top5_agreement:.1%}"
                rows.append(f"  {data:<{w}} {m.name:<10} {m.samples:>4} {m.max_abs:>10.3g} {m.max_rel:>10.3g} "
                            f"{m.cosine_min:>11.8f} {m.cosine_mean:>11.8f} {t1:>10} {nt:>9} {t5:>7}")
        t = self.tolerance
        sets = "" if t.every_input else " (golden pair; sets of pictures: cosine mean and agreement)"
        rows.append(f"  limits: max_abs {t.max_abs:g}, max_rel {t.max_rel:g}, cosine >= {t.min_cosine}, "
                    f"top1 >= {t.min_top1:.0%} counting near-ties within {t.tie_rel:g} rel"
                    + (f", top5 >= {t.min_top5:.0%}" if t.min_top5 else "") + sets)
        rows += [f"  FAIL {f}" for f in self.failures]
        return "\n".join(rows)


def measure(report: ParityReport, data: str, runner, x: np.ndarray, reference: dict[str, np.ndarray],
            *, classification: bool) -> None:
    """Run ``runner`` on ``x``, compare every output with ``reference`` and record metrics and failures."""
    record(report, data, runner(x), reference, classification=classification)


def record(report: ParityReport, data: str, outs, reference: dict[str, np.ndarray], *, classification: bool) -> None:
    """Compare the artifact's outputs ``outs`` with ``reference``; record metrics and failures as set ``data``."""
    if len(outs) != len(reference):
        report.failures.append(f"{data}: artifact returned {len(outs)} outputs, reference has {len(reference)}")
        return
    ms = []
    for (name, ref), out in zip(reference.items(), outs):
        m = compare(name, ref, np.asarray(out), classification=classification and name in CLASS_OUTPUTS,
                    tie_rel=report.tolerance.tie_rel)
        ms.append(m)
        report.failures += [f"{data} {f}" for f in m.failures(report.tolerance, golden=data.startswith("golden"))]
    report.sets[data] = ms


def verify_dir(folder: str | Path, *, images: str | Path | None = None, weights: str | None = None,
               threads: int | None = None, raise_on_failure: bool = True, runner=None,
               runtime: str | None = None, module: str | None = None) -> ParityReport:
    """Re-run the parity check of an existing artifact folder.

    The golden pair is always replayed. With ``images``, the PyTorch reference is rebuilt from the manifest's
    ``source`` (its weights file, ``weights`` to point at another copy, or its deterministic random init) and must
    hash to the manifest's ``weights_sha256``; a whole model built by a user module needs that module as ``module``
    (``rebuild_reference``: nothing named by the folder is imported). ``runner`` (with the name of its ``runtime``) checks another
    executable built from the artifact against the same references and tolerance row, e.g. a TensorRT engine
    (``edgevit build-engine``); by default the artifact runs in its target's desktop runtime.

    Example::

        report = edgevit.verify_dir("out/s_onnx", images="my_photos/", raise_on_failure=False)
        print(report.passed)
        print(report.table())
    """
    from edgevit.targets import RuntimeSpec, get_target

    from edgevit.manifest import GOLDEN_CHANGED, integrity_message, integrity_problems, read_manifest, tolerance_row

    folder = Path(folder)
    manifest = read_manifest(folder)
    problems = integrity_problems(folder, manifest)
    # a golden file changed in place is replayed and reported with the measurements (the report, --json included,
    # says what differs); every other problem stops here, before the artifact is run
    changed = [p for p in problems if p.endswith(GOLDEN_CHANGED)]
    if len(changed) < len(problems):
        raise IntegrityError(integrity_message(folder, problems, "verify checks the artifact its manifest describes"))
    artifact = folder / manifest["artifact"]
    target = get_target(manifest["target"])
    if runner is None:
        runner = target.load(artifact, RuntimeSpec.from_manifest(manifest), threads=threads)
        runtime = target.runtime_for(manifest.get(manifest["target"], {}).get("delegate"))
    key = tolerance_row(manifest)  # the table row the artifact was converted under
    report = ParityReport(target=key, precision=manifest["precision"], runtime=runtime,
                          tolerance=tolerance_for(key, manifest["precision"]))
    report.failures += [f"integrity: {p}" for p in changed]
    art_names = tuple(o["name"] for o in manifest["outputs"])
    classification = is_classifier(art_names)
    x, golden = read_golden(folder, manifest)
    measure(report, "golden", runner, x, golden, classification=classification)
    for entry in manifest["golden"].get("sizes", []):  # a multi-size artifact: every other size's golden pair
        x_s, golden_s = read_golden(folder, manifest, entry)
        measure(report, f"golden {entry['size'][0]}x{entry['size'][1]}", runner, x_s, golden_s,
                classification=classification)
    if images is not None:
        reference = rebuild_reference(manifest, weights, module)
        ref, outs = stream_images(manifest, images, runner, reference, art_names)
        record(report, "images", outs, ref, classification=classification)
    if raise_on_failure and not report.passed:
        raise ParityError(report.table())
    return report


IMAGE_CHUNK = 64  # pictures decoded, run and compared at a time: memory stays flat however large the folder


def stream_images(manifest: dict, folder: str | Path, runner, net, art_names) -> tuple[dict, list]:
    """The reference's and the artifact's outputs on every readable picture of ``folder``, decoded and run
    ``IMAGE_CHUNK`` at a time (only the outputs are kept), with a progress bar in the CLI. Unreadable files are
    skipped and named in one warning, as everywhere."""
    from edgevit._progress import rounds_bar
    from edgevit.models.factory import output_names
    from edgevit.preprocess import Preprocess, UnreadableImage, list_images, open_image, warn_skipped

    pre = Preprocess.from_manifest(manifest["preprocess"])
    raw_input = manifest["input"].get("pixels") == "raw_rgb_0_255"
    files = list_images(folder)
    chunks = range(0, len(files), IMAGE_CHUNK)
    on_chunk = rounds_bar(len(chunks), desc=f"verify {len(files)} pictures")
    refs: dict[str, list] = {n: [] for n in art_names}
    outs: list[list] = []
    skipped, used = [], 0
    for n, i in enumerate(chunks, 1):
        raws = []
        for path in files[i:i + IMAGE_CHUNK]:
            try:
                raws.append(pre.raw(open_image(path)))
            except UnreadableImage as e:
                skipped.append((path, str(e)))
        if raws:
            raw = np.stack(raws).astype(np.float32)
            norm = pre.normalize(raw)
            for name, r in reference_for_artifact(net, norm, output_names(net), art_names).items():
                refs[name].append(r)
            got = runner(raw if raw_input else norm)
            outs = outs or [[] for _ in got]
            for k, o in enumerate(got):
                outs[k].append(np.asarray(o))
            used += len(raws)
        if on_chunk:
            on_chunk(n)
    if not used:
        raise ConfigError(f"none of the images in {folder} could be read ({len(skipped)} skipped; first: "
                          f"{skipped[0][0]}: {skipped[0][1]})")
    warn_skipped(skipped, str(folder), used)
    return {k: np.concatenate(v) for k, v in refs.items()}, [np.concatenate(o) for o in outs]


def images_for(manifest: dict, folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(normalized images for PyTorch, images as the artifact takes them)."""
    from edgevit.preprocess import Preprocess, load_images

    pre = Preprocess.from_manifest(manifest["preprocess"])
    raw, _ = load_images(folder, pre, raw=True)
    norm = pre.normalize(raw)
    return norm, (raw if manifest["input"].get("pixels") == "raw_rgb_0_255" else norm)


def artifact_tolerance(manifest: dict) -> Tolerance:
    """The row of the tolerance table an artifact folder is held to (its sealed ``tolerance_row``). A target adds its
    rows to the table when it registers, so the target is looked up first: a process that never converted or ran one
    (an ``edgevit evaluate`` driver whose shards ran elsewhere) has the row too."""
    from edgevit.manifest import tolerance_row
    from edgevit.targets import get_target

    get_target(manifest["target"])
    return tolerance_for(tolerance_row(manifest), manifest["precision"])


def reference_for_artifact(net, x: np.ndarray, names, art_names) -> dict[str, np.ndarray]:
    """PyTorch outputs for normalized ``x`` under the artifact's output names (softmax for a classifier)."""
    ref = reference_outputs(net, x, {"outputs": [{"name": n} for n in names]})
    if tuple(art_names) == ("probabilities",) and tuple(names) == ("logits",):
        logits = ref["logits"].astype(np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return {"probabilities": (e / e.sum(axis=1, keepdims=True)).astype(np.float32)}
    return ref


def reference_outputs(model, x: np.ndarray, manifest: dict, chunk: int = 8) -> dict[str, np.ndarray]:
    import torch

    names = [o["name"] for o in manifest["outputs"]]
    outs: list[list[np.ndarray]] = []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            y = model(torch.from_numpy(x[i:i + chunk]))
            y = list(y) if isinstance(y, (list, tuple)) else [y]
            outs.append([t.numpy() for t in y])
    return {n: np.concatenate(parts) for n, parts in zip(names, zip(*outs))}


def rebuild_reference(manifest: dict, weights: str | None = None, module: str | None = None):
    """The PyTorch model the artifact was converted from, checked against the manifest's weights hash.

    An artifact folder is data: the user module a whole model was built from (``--module FILE.py:FACTORY`` at
    convert) is imported only when the caller passes it as ``module`` (the CLI's ``--module``), never from the
    path the manifest names; it must hash to the sha256 the manifest recorded for it (exit 3 otherwise)."""
    from edgevit.models.factory import build_model
    from edgevit.manifest import state_dict_sha256

    src = dict(manifest["source"])
    if weights is not None:
        src["weights"] = weights
    from edgevit.models.factory import embedded_weights

    if src.get("module") and module is None:
        raise ConfigError(f"this artifact was converted from the user module {src['module']}; edgevit never imports "
                          "code that an artifact folder names. To rebuild its PyTorch reference, pass --module "
                          "FILE.py:FACTORY (the option convert took) with the module you trust")
    if module is not None and not src.get("module"):
        raise ConfigError(f"--module {module} was given, but this artifact was not converted from a user module "
                          f"(it is {src['model']}); leave --module out")
    if src.get("module"):  # a whole model from its factory (--module): the factory's own weights are allowed
        from edgevit.manifest import input_hw
        from edgevit.models.user_module import build_user_model

        file = Path(module.rpartition(":")[0])
        recorded = src.get("module_sha256")
        if recorded is not None and file.is_file() and sha256_file(file) != recorded:
            raise IntegrityError(f"--module {file} does not hash to the module_sha256 the manifest recorded for "
                                 f"{src['module']}: pass the module the artifact was converted from")
        model, _ = build_user_model(module, model=src["model"], weights=src.get("weights"),
                                    random_init=src.get("random_init", False), seed=src.get("seed", 0),
                                    img_size=input_hw(manifest))
    elif not src.get("random_init") and not src.get("weights") and embedded_weights(src["model"]) is None:
        raise CheckpointError("the manifest names no reference weights; pass --weights PATH to compare on --images")
    else:
        model = build_model(model=src["model"], weights=src.get("weights"), random_init=src.get("random_init", False),
                            seed=src.get("seed", 0), num_classes=src.get("num_classes"),
                            features=src.get("features", False), reset_head=src.get("reset_head", False),
                            attention=src.get("attention", "emhsa"))
    if state_dict_sha256(model) != manifest["weights_sha256"]:
        raise CheckpointError("the rebuilt reference weights do not hash to the manifest's weights_sha256; pass the "
                              "checkpoint the artifact was converted from with --weights PATH")
    return model
