"""The one interface every toolchain implements, and the target registry.

A target turns a (deployed) PyTorch model into one artifact file in a folder, and loads that artifact back in its
own desktop runtime for parity checks and benchmarks. A target owns everything about its toolchain: the options
only it takes (``options``: refused on other targets), its deployed form (``form``: a named entry of
``edgevit.rewrites.FORMS``), its tolerance rows (``tolerance_rows``, added to the one table on registration), the
distributions whose release changes its artifacts (``distributions``: the matrix's reuse keys), its desktop runtime
(``load``), its drift hook (``block_outputs``), what ``bench`` can run here (``bench_problem``, ``bench_runtime``)
and the lines the CLI prints for its artifacts (``summary_lines``). Nothing outside ``edgevit/targets/`` branches on
a target's name (``tests/test_layout.py``). Adding a toolchain = a module or folder under ``edgevit/targets/`` with
a ``@register_target`` class, plus one line in ``_TARGET_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgevit.errors import ConfigError, MissingDependencyError

# target name -> module that registers it (imported on first use, so the CLI stays fast)
_TARGET_MODULES = {
    "onnx": "edgevit.targets.onnx",
    "ort": "edgevit.targets.onnx",
    "executorch": "edgevit.targets.executorch",
    "coreml": "edgevit.targets.coreml",
    "litert": "edgevit.targets.litert",
    "tensorrt": "edgevit.targets.tensorrt",
    "coreai": "edgevit.targets.coreai",
}

# the packages every artifact depends on whatever its target (the matrix's reuse key adds each target's own)
CORE_DISTRIBUTIONS = ("edgevit", "torch", "numpy")

_REGISTRY: dict[str, type["Target"]] = {}


def register_target(cls: type["Target"]) -> type["Target"]:
    """Class decorator: register ``cls`` under ``cls.name`` and its ``tolerance_rows`` in the one tolerance table;
    a duplicate name is an error. Returns ``cls``."""
    from edgevit.verify.tolerances import add_rows

    if cls.name in _REGISTRY:
        raise ConfigError(f"target {cls.name!r} is already registered")
    if not cls.form:
        raise ConfigError(f"target {cls.name!r} names no deployed form (Target.form)")
    _REGISTRY[cls.name] = cls
    for key, rows in cls.tolerance_rows.items():
        add_rows(key, rows)
    return cls


def list_targets() -> list[str]:
    return sorted(_TARGET_MODULES)


def get_target(name: str) -> "Target":
    if name not in _TARGET_MODULES:
        raise ConfigError(f"unknown target {name!r}; supported targets: {', '.join(list_targets())}")
    if name not in _REGISTRY:
        importlib.import_module(_TARGET_MODULES[name])
    return _REGISTRY[name]()


def option_owners() -> dict[str, list[str]]:
    """ConvertConfig field -> the targets that take it, for every field some target owns (``Target.options``)."""
    owners: dict[str, list[str]] = {}
    for name in list_targets():
        for option in get_target(name).options:
            owners.setdefault(option, []).append(name)
    return owners


def check_target_options(cfg, target: "Target") -> None:
    """ConfigError (exit 2) when ``cfg`` sets a target's own option (anything but its default) that ``target`` does
    not take, naming the targets that do: an option is never accepted and ignored."""
    from dataclasses import fields

    from edgevit.config import ConvertConfig

    defaults = {f.name: f.default for f in fields(ConvertConfig)}
    for option, owners in option_owners().items():
        if getattr(cfg, option) != defaults[option] and not target.takes_option(option, cfg.delegate):
            flag = "--" + option.replace("_", "-")
            raise ConfigError(f"{flag} (recipe key {option}) is an option of {', '.join(owners)}; target "
                              f"{target.name}{' with delegate ' + cfg.delegate if cfg.delegate else ''} does not "
                              f"take it: drop it or choose one of those targets")


def distributions() -> tuple[str, ...]:
    """Every distribution whose release changes what some target's artifact is (the matrix's reuse key)."""
    names = list(CORE_DISTRIBUTIONS)
    for name in list_targets():
        names += [d for d in get_target(name).distributions if d not in names]
    return tuple(names)


def supported_combinations() -> list[tuple[str, str | None, str]]:
    """Every (target, delegate, precision) a target accepts; README's target tables list exactly these, and each
    has a conversion test on the shipped reference model (tests/targets/test_matrix.py)."""
    combos = []
    for name in list_targets():
        target = get_target(name)
        # ``None`` stands for the default delegate where a target names its delegates; list each once
        delegates = [d for d in target.delegates if d is not None] or [None]
        for delegate in delegates:
            for precision in target.precisions:
                if target.supports(precision, delegate) is None:
                    combos.append((name, delegate, precision))
    return combos


@dataclass(frozen=True, kw_only=True)
class IOSpec:
    """Names and shapes of the artifact's input and outputs."""

    input_name: str
    input_shape: tuple[int, ...]
    output_names: tuple[str, ...]
    dynamic_batch: bool = False
    dynamic_hw: bool = False  # one artifact for several input sizes (--img-sizes): height and width symbolic
    preprocess: dict | None = None  # the manifest's preprocess section
    labels: tuple[str, ...] | None = None
    provenance: dict | None = None  # weights file/hash, license, author: what an artifact's metadata may state


@dataclass
class ExportResult:
    artifact: str  # file name inside the artifact folder
    extra_files: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # target-specific manifest section


@dataclass(frozen=True, kw_only=True)
class RuntimeSpec:
    """Everything a target's runtime needs to run an artifact, and nothing else.

    During conversion it comes from the export (``from_export``: the ``IOSpec`` plus the target's own
    ``ExportResult.details``); later from the artifact folder's manifest (``from_manifest``). Both carry the same
    fields, so ``Target.load`` never sees a half-built manifest.
    """

    input_name: str
    batch: int | None  # the batch baked into the artifact; None when it is dynamic
    output_names: tuple[str, ...]
    raw_pixels: bool  # True: the artifact takes 0-255 RGB (normalisation inside the model)
    labels: tuple[str, ...] | None = None
    details: dict[str, Any] = field(default_factory=dict)  # the target's manifest section
    layout: str = "NCHW"  # what the artifact's input tensor is; runners always take NCHW batches and convert

    @classmethod
    def from_export(cls, io_spec: IOSpec, result: ExportResult, *, raw_pixels: bool,
                    layout: str = "NCHW") -> "RuntimeSpec":
        return cls(input_name=io_spec.input_name, batch=None if io_spec.dynamic_batch else io_spec.input_shape[0],
                   output_names=tuple(io_spec.output_names), raw_pixels=raw_pixels, labels=io_spec.labels,
                   details=dict(result.details), layout=layout)

    @classmethod
    def from_manifest(cls, manifest: dict) -> "RuntimeSpec":
        batch = manifest["input"]["shape"][0]
        labels = manifest.get("labels")
        return cls(input_name=manifest["input"]["name"], batch=batch if isinstance(batch, int) else None,
                   output_names=tuple(o["name"] for o in manifest["outputs"]),
                   raw_pixels=manifest["input"].get("pixels") == "raw_rgb_0_255",
                   labels=tuple(labels) if labels else None, details=dict(manifest.get(manifest["target"], {})),
                   layout=manifest["input"].get("layout", "NCHW"))


Runner = Callable[[np.ndarray], list[np.ndarray]]


class Target:
    """Base of every toolchain target."""

    name: str = ""
    suffix: str = ""
    precisions: tuple[str, ...] = ("fp32",)
    default_precision: str = "fp32"
    needs_calibration: tuple[str, ...] = ()  # precisions that need calibration images
    delegates: tuple[str | None, ...] = (None,)
    extra: str = ""  # pip extra that installs the toolchain ("" = core dependency)
    runtime: str = ""  # the desktop runtime that runs its artifacts
    toolchain: tuple[str, ...] = ()  # modules export needs; checked by plan (and --dry-run) before any work
    always_dynamic_batch: bool = False  # the artifact takes any batch whatever --dynamic-batch says
    # how one artifact serves several input sizes (--img-sizes), or None: one size per artifact on this target
    multi_size: str | None = None
    form: str = ""  # the deployed form its artifacts are exported from: a key of edgevit.rewrites.FORMS
    options: tuple[str, ...] = ()  # ConvertConfig fields only some targets take (check_target_options)
    distributions: tuple[str, ...] = ()  # pip distributions whose release changes its artifacts
    # tolerance row key (the target's name, or a delegate's row such as executorch-coreml) -> precision -> row; the
    # rows themselves are edgevit.verify.tolerances' FP32, FP16, WEIGHT_ONLY and INT8
    tolerance_rows: dict = {}
    bench_runtime: str = "onnxruntime"  # whose GEMM peak bench's roofline compares its artifacts against
    etdump: bool = False  # its runtime writes ETDump profiles (edgevit profile etdump)
    byte_reproducible: bool = True  # the same conversion writes the same artifact bytes (test_reproducible.py)
    cost: float = 1.0  # a matrix cell's relative time when none was measured (only the start order depends on it)

    def supports(self, precision: str, delegate: str | None = None) -> str | None:
        """Why this target does not make (``precision``, ``delegate``) artifacts, or None when it does."""
        try:
            self.check(precision, delegate)
        except ConfigError as e:
            return str(e)
        return None

    def takes_option(self, option: str, delegate: str | None) -> bool:
        """True when this target (with ``delegate``) uses ConvertConfig field ``option``."""
        return option in self.options

    def form_for(self, delegate: str | None) -> str:
        """The key of ``edgevit.rewrites.FORMS`` its artifacts (with ``delegate``) are exported from."""
        return self.form

    def bench_problem(self, folder: Path, manifest: dict) -> str | None:
        """Why ``edgevit bench`` cannot time this artifact on this machine, or None."""
        return None

    def bench_run(self, folder: Path, manifest: dict, x: np.ndarray) -> Callable[[], object] | None:
        """A target-specific timed call (e.g. an engine on a GPU), or None: bench times ``load``'s runner."""
        return None

    def summary_lines(self, manifest: dict) -> list[str]:
        """What ``edgevit convert`` prints about an artifact of this target beyond the common lines."""
        return []

    @classmethod
    def has_drift(cls) -> bool:
        """True where ``block_outputs`` is implemented (``edgevit drift`` supports the target)."""
        return cls.block_outputs is not Target.block_outputs

    def check(self, precision: str, delegate: str | None = None) -> None:
        if precision not in self.precisions:
            raise ConfigError(f"target {self.name} does not support precision {precision!r}; "
                              f"supported: {', '.join(self.precisions)}")
        if delegate not in self.delegates:
            shown = ", ".join(d or "(none)" for d in self.delegates)
            raise ConfigError(f"target {self.name} does not support delegate {delegate!r}; supported: {shown}")

    def check_options(self, cfg) -> None:
        """ConfigError for option values this target cannot honour (called by ``plan`` before any work)."""

    def runtime_for(self, delegate: str | None) -> str:
        """The desktop runtime that checks artifacts made with ``delegate``."""
        return self.runtime

    def tolerance_key(self, cfg) -> str:
        """Row of the tolerance table this target's artifacts are held to (a delegate may need its own)."""
        return self.name

    def takes_raw_pixels(self, cfg) -> bool:
        """True when the artifact takes raw 0-255 RGB pixels (normalisation inside the model)."""
        return False

    def input_kind(self, cfg) -> str:
        """The manifest's ``input.type``: ``image`` (a picture the app hands over as pixels) or ``tensor``."""
        return "image" if self.takes_raw_pixels(cfg) else "tensor"

    def output_names(self, cfg, names: tuple[str, ...], labels) -> tuple[str, ...]:
        """The artifact's output names; a target may turn ``logits`` into ``probabilities``."""
        return names

    def export(self, model, example, out_dir: Path, io_spec: IOSpec, cfg, *, calibration=None,
               keep_float: tuple[str, ...] = ()) -> ExportResult:
        """Write the artifact for ``model`` into ``out_dir``; ``cfg`` is the ConvertConfig (precision, opset...).

        ``calibration`` holds preprocessed calibration inputs (artifact format) for quantized precisions;
        ``keep_float`` names PyTorch modules that stay in floating point (accuracy-budget mode).
        """
        raise NotImplementedError

    def load(self, artifact_path: Path, spec: RuntimeSpec, *, threads: int | None = None) -> Runner:
        """A callable running the artifact in this target's desktop runtime on any number of samples."""
        raise NotImplementedError

    def block_outputs(self, artifact_path: Path, spec: RuntimeSpec, units: list[str], x: np.ndarray, *,
                      threads: int | None = None, model=None,
                      calibration: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], str, list[str]]:
        """``edgevit drift``'s runtime side: the output of each named module (``stages.2.blocks.3``...) and of the
        artifact's final output, computed by this target's runtime on ``x`` (artifact input format). ``model`` is
        the deployed fp32 PyTorch model the artifact was exported from, for runtimes whose artifact keeps no module
        names and must be matched against a re-trace of it; ``calibration`` the inputs the artifact was calibrated on,
        for runtimes whose debug copy is quantized again (``drift_needs_calibration``). Returns (tensors by unit or
        output name, how they were obtained, notes). Debug copies never go into the artifact folder."""
        able = ", ".join(n for n in list_targets() if get_target(n).has_drift())
        raise ConfigError(f"edgevit drift does not support target {self.name} yet; it supports: {able}")

    form_report_step: str | None = None  # the progress line of ``form_report``; None: the target has none

    def form_report(self, original, deployed, example, cfg, details: dict) -> dict:
        """Extra entries for the manifest's rewrite section comparing the original and the deployed form in this
        target's own graph (e.g. LiteRT's TRANSPOSE count), after the export (``details``: its manifest section);
        none by default."""
        return {}

    def drift_needs_calibration(self, spec: RuntimeSpec) -> bool:
        """True where ``block_outputs`` quantizes a debug copy again and needs the artifact's calibration inputs."""
        return False

    def versions(self) -> dict[str, str]:
        return {}

    def runtime_requirements(self, cfg) -> dict:
        """The oldest runtime that can load this target's artifacts (the manifest's ``runtime_requirements``; the
        apps check it on load): ``{"runtime": name, "min_version": "x.y.z", "why": reason}``."""
        return {}

    def import_runtime(self) -> None:
        """Import the desktop runtime ahead of timing, so load times measure the artifact, not the import."""
        if self.runtime:
            self.require(self.runtime)

    def check_toolchain(self) -> None:
        """MissingDependencyError (exit 5) naming the extra when a module export needs is not installed; looked up
        without importing it, so --dry-run stays fast and says what the real run would."""
        from importlib.util import find_spec

        for module in self.toolchain:
            try:
                found = find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                how = f"pip install 'edgevit[{self.extra}]'" if self.extra else "pip install edgevit (reinstall)"
                raise MissingDependencyError(f"target {self.name} needs {module}, which is not installed: {how}")

    def require(self, module: str):
        try:
            return importlib.import_module(module)
        except ImportError as e:
            how = f"pip install 'edgevit[{self.extra}]'" if self.extra else "pip install edgevit (reinstall)"
            raise MissingDependencyError(f"target {self.name} needs {module}, which is not installed: {how}") from e
