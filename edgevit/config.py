"""Frozen option sets. YAML recipes and CLI flags become these objects at once; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import difflib
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgevit.errors import ConfigError


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else f"; valid keys: {', '.join(sorted(valid))}"


def parse_img_size(value: int | str | tuple[int, int]) -> tuple[int, int]:
    """``224`` -> (224, 224); ``"384x256"`` -> (384, 256) as (H, W)."""
    if isinstance(value, tuple):
        h, w = value
    elif isinstance(value, int):
        h = w = value
    else:
        parts = str(value).lower().replace(",", "x").split("x")
        try:
            if len(parts) > 2:
                raise ValueError
            h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        except ValueError:
            raise ConfigError(f"image size {value!r} is not N or HxW (for example 224 or 384x256)") from None
    if h < 32 or w < 32:
        raise ConfigError(f"image size {h}x{w} is too small: Next-ViT needs at least 32x32")
    return h, w


def parse_img_sizes(value: str) -> tuple[tuple[int, int], ...]:
    """``"512,640,800x1344"`` -> ((512, 512), (640, 640), (800, 1344)): comma-separated N or HxW, in order, no
    repeats."""
    sizes = tuple(parse_img_size(part.strip()) for part in str(value).split(",") if part.strip())
    if not sizes:
        raise ConfigError(f"--img-sizes {value!r} names no size; pass a comma-separated list such as 512,640,800x1344")
    repeated = sorted({f"{h}x{w}" for h, w in sizes if sizes.count((h, w)) > 1})
    if repeated:
        raise ConfigError(f"--img-sizes lists {', '.join(repeated)} more than once")
    return sizes


MAX_IMG_SIDE = 4096  # one 4096 x 4096 Next-ViT-S forward needs ~20 GB of activations; bigger sizes are typos
MAX_BATCH = 256
# other names users know a target by
TARGET_ALIASES = {"tflite": "litert"}

# ONNX opsets the artifact can really carry (tests/targets/test_opset.py exports the shipped model at both ends):
# torch 2.13's exporter writes opset 18 natively and its down-converter cannot rewrite Next-ViT's ReduceMean for 17
# (it then leaves the model at 18 without an error); onnxruntime 1.31 refuses models above opset 26.
MIN_OPSET, MAX_OPSET = 18, 26


def _type_error(name: str, value, expected: str) -> ConfigError:
    if isinstance(value, str):
        hint = "; in YAML write it unquoted (e.g. true, 2, 0.5)"
    elif expected == "text":
        hint = f'; in YAML quote it: {name}: "{value}"'
    else:
        hint = ""
    return ConfigError(f"option {name} must be {expected}, got {value!r} ({type(value).__name__}){hint}")


def check_value(name: str, annotation: str, value) -> None:
    """``value`` against a field's declared type (the annotation string): booleans are real booleans (a YAML
    ``"false"`` string is not false), integers are not booleans, strings are strings."""
    if value is None:
        if "None" not in annotation:
            raise _type_error(name, value, annotation)
        return
    base = annotation.replace(" | None", "")
    if base == "bool":
        if not isinstance(value, bool):
            raise _type_error(name, value, "true or false")
    elif base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(name, value, "an integer")
    elif base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(name, value, "a number")
    elif base == "str":
        if not isinstance(value, str):
            raise _type_error(name, value, "text")
    elif base.startswith("tuple[float"):
        if not (isinstance(value, (list, tuple)) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise _type_error(name, value, "three numbers (R, G, B)")
    elif base == "int | tuple[int, int]":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str) or (
            isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        if not ok:
            raise _type_error(name, value, "N, [H, W] or \"HxW\"")


def strict_from_dict(cls, data: dict[str, Any], *, where: str):
    """Build dataclass ``cls`` from ``data``; an unknown key is an error naming it and the closest valid one."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of options, got {type(data).__name__}")
    valid = [f.name for f in fields(cls) if f.init]
    for key in data:
        if key not in valid:
            raise ConfigError(f"{where}: unknown key {key!r}{_closest(key, valid)}")
    return cls(**data)


@dataclass(frozen=True, kw_only=True)
class ConvertConfig:
    """Everything ``edgevit convert`` needs. Build with keywords, ``from_dict`` or ``load_recipe``.

    ``weights`` is a local file or a hub id; ``random_init`` uses deterministic random weights (smoke runs).
    ``img_size`` is N or (H, W). ``images`` is a folder of real images to check parity on besides the golden
    input. ``keep_failed`` keeps an artifact whose parity check failed (marked as failed in its manifest).

    Example::

        cfg = edgevit.ConvertConfig(model="nextvit_small", weights="my_finetuned.pth", target="executorch",
                                    precision="int8", calib_dir="my_photos/", out="out/s_int8")
        cfg = cfg.replace(target="coreml", min_ios=17, out="out/s_coreml_int8")  # another target, same model
    """

    model: str = "nextvit_small"
    module: str | None = None  # FILE.py:FACTORY building a whole model (detector, segmenter) around a Next-ViT
    target: str = "onnx"
    precision: str | None = None
    weights: str | None = None
    random_init: bool = False
    seed: int = 0
    img_size: int | tuple[int, int] | None = None
    # several input sizes served by one artifact ("512,640,800x1344"); the first is the primary size (golden picture
    # for the apps, calibration, bench); each target's mechanism is its Target.multi_size
    img_sizes: str | None = None
    batch: int = 1
    dynamic_batch: bool = False
    num_classes: int | None = None
    reset_head: bool = False
    features: bool = False
    attention: str = "emhsa"  # the NTB attention: emhsa (original) or a variant, edgevit.models.attention
    labels: str | None = None
    images: str | None = None
    out: str = "out"
    overwrite: bool = False
    keep_failed: bool = False
    opset: int = 18
    rewrite: bool = True
    etrecord: bool = False
    input_type: str = "image"
    layout: str = "nchw"  # litert: "nhwc" takes channels-last input (an Android bitmap's pixel order)
    min_ios: int = 16
    compute_units: str = "all"
    calib_dir: str | None = None
    calib_count: int = 128
    calib_method: str = "minmax"
    eval_dir: str | None = None
    eval_count: int | None = None
    max_accuracy_drop: float | None = None
    min_agreement: float | None = None
    delegate: str | None = None
    # tensorrt: the optimization profile spans batch 1 .. max_batch (opt: batch); builder workspace; build the engine
    # right after converting (needs a GPU and the tensorrt extra)
    max_batch: int | None = None
    workspace_mib: int = 4096
    build: bool = False
    # preprocessing overrides; by default they come from the checkpoint (edgevit.models.pretrained)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    # CoreML metadata: recorded only when given (nothing is invented about a user's checkpoint)
    license: str | None = None
    author: str | None = None

    @property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """``img_sizes`` parsed ((H, W) each, the primary first); () when not given."""
        return parse_img_sizes(self.img_sizes) if self.img_sizes is not None else ()

    @property
    def extra_sizes(self) -> tuple[tuple[int, int], ...]:
        """The sizes after the primary one of a multi-size conversion; () for one size."""
        return self.sizes[1:]

    def __post_init__(self):
        for f in fields(self):
            check_value(f.name, str(f.type), getattr(self, f.name))
        object.__setattr__(self, "target", TARGET_ALIASES.get(self.target, self.target))
        if self.img_size is not None:
            h, w = parse_img_size(tuple(self.img_size) if isinstance(self.img_size, list) else self.img_size)
            if max(h, w) > MAX_IMG_SIDE:
                raise ConfigError(f"image size {h}x{w} is larger than edgevit's bound of {MAX_IMG_SIDE} a side "
                                  "(activations alone would need tens of GB); pass a size such as 224, 384 or 640x640")
        if self.img_sizes is not None:
            sizes = self.sizes
            big = [f"{h}x{w}" for h, w in sizes if max(h, w) > MAX_IMG_SIDE]
            if big:
                raise ConfigError(f"image size {big[0]} is larger than edgevit's bound of {MAX_IMG_SIDE} a side")
            if self.img_size is not None and parse_img_size(
                    tuple(self.img_size) if isinstance(self.img_size, list) else self.img_size) != sizes[0]:
                raise ConfigError(f"--img-size {self.img_size} is not the first of --img-sizes {self.img_sizes}; the "
                                  "first listed size is the primary one: drop --img-size or list it first")
        if self.batch > MAX_BATCH:
            raise ConfigError(f"batch {self.batch} is larger than edgevit's bound of {MAX_BATCH}; artifacts bake the "
                              "batch in, use --dynamic-batch (onnx/ort) for variable batches")
        if self.max_batch is not None and not 1 <= self.max_batch <= MAX_BATCH:
            raise ConfigError(f"max_batch must be 1 to {MAX_BATCH}, got {self.max_batch}")
        if self.workspace_mib < 16:
            raise ConfigError(f"workspace_mib must be >= 16 (TensorRT's suggested minimum is 16 MiB), got "
                              f"{self.workspace_mib}")
        if self.module is not None:
            parse_module_spec(self.module)
            clash = [k for k, v in (("features", self.features), ("num_classes", self.num_classes is not None),
                                    ("reset_head", self.reset_head), ("labels", self.labels is not None)) if v]
            if clash:
                raise ConfigError(f"--module converts the whole model its factory builds, with that model's own "
                                  f"outputs; {', '.join(clash)} do not apply to it")
        if self.eval_count is not None and self.eval_count < 1:
            raise ConfigError(f"eval_count must be >= 1, got {self.eval_count}")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 100:
            raise ConfigError(f"max_accuracy_drop is in top-1 points, 0 to 100, got {self.max_accuracy_drop}")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        _check_out(self.out)
        if self.weights and self.random_init:
            raise ConfigError("pass either weights or random_init, not both")
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            why = ("torch's exporter cannot down-convert Next-ViT below opset 18" if self.opset < MIN_OPSET
                   else f"onnxruntime 1.31 reads models up to opset {MAX_OPSET}")
            raise ConfigError(f"ONNX opset {self.opset} is not supported ({why}); pass --opset {MIN_OPSET} to "
                              f"{MAX_OPSET} (default 18)")
        for key in ("img_size", "mean", "std"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))
        if self.labels is not None and not Path(self.labels).is_file():
            raise ConfigError(f"labels file {self.labels} does not exist; pass a text file with one class name a line")
        for key in ("images", "calib_dir", "eval_dir"):
            value = getattr(self, key)
            if value is not None and not Path(value).is_dir():
                raise ConfigError(f"{key.replace('_', '-')} folder {value} does not exist")
        # the name itself is checked in pipeline.plan (the registry lives in edgevit.models.attention)
        if self.attention != "emhsa" and self.module is not None:
            raise ConfigError("attention is a property of the model --module builds; build its backbone with "
                              "create_model(..., attention=...) instead of passing --attention")
        if self.layout not in ("nchw", "nhwc"):
            raise ConfigError(f"layout must be nchw or nhwc, got {self.layout!r}")
        if self.calib_method not in ("minmax", "entropy", "percentile"):
            raise ConfigError(f"calib_method must be one of minmax, entropy, percentile; got {self.calib_method!r}")
        if self.calib_count < 1:
            raise ConfigError(f"calib_count must be >= 1, got {self.calib_count}")
        if self.max_accuracy_drop is not None and self.min_agreement is not None:
            raise ConfigError("pass either max_accuracy_drop or min_agreement, not both")
        if self.max_accuracy_drop is not None and self.eval_dir is None:
            raise ConfigError("--max-accuracy-drop needs labeled evaluation images: --eval-dir DIR/<class>/*.png")
        if self.min_agreement is not None and not 0 < self.min_agreement <= 1:
            raise ConfigError(f"min_agreement is a fraction in (0, 1], got {self.min_agreement}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "options") -> "ConvertConfig":
        return strict_from_dict(cls, data, where=where)

    def replace(self, **changes) -> "ConvertConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_STAGING_EXTRA = 32  # "." + name + ".<pid>.<random>.partial" (_io.atomic_dir)
_NAME_MAX = 255 - _STAGING_EXTRA  # the common limit of a file name (ext4, APFS, NTFS), in bytes


def _check_out(out: str) -> None:
    """The output folder: not the working folder or one of its parents, not under a file, writable."""
    if not out.strip():
        raise ConfigError("--out is empty; name the artifact folder to write, e.g. --out out/s_onnx")
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"--out {out.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8 (manifests, logs and "
                          "the apps name folders in UTF-8); choose a folder name in UTF-8") from None
    path = Path(out).expanduser()
    too_long = [part for part in path.parts[1:] if len(os.fsencode(part)) > _NAME_MAX]
    if too_long:  # the staging folder's name adds up to 32 characters to the last one
        raise ConfigError(f"--out names a folder {len(os.fsencode(too_long[0]))} bytes long ({too_long[0][:40]}...); "
                          f"file systems take {_NAME_MAX + _STAGING_EXTRA} and the staging folder adds "
                          f"{_STAGING_EXTRA}: choose a name of at most {_NAME_MAX} bytes")
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise ConfigError(f"--out {out} is the working folder or one of its parents; name a new folder for the "
                          "artifact, e.g. --out out/model")
    parent = resolved.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out} cannot be created: {parent} is a file, not a folder")
    try:  # a real write: os.access says yes to root on read-only mounts and pseudo file systems
        probe = tempfile.NamedTemporaryFile(dir=parent, prefix=".edgevit-write-probe-")
        probe.close()
    except OSError as e:
        raise ConfigError(f"--out {out} cannot be written: {parent} refuses new files ({e.strerror}); choose "
                          "another folder") from None


def parse_module_spec(spec: str) -> tuple[Path, str]:
    """``FILE.py:FACTORY`` (``--module``) -> (file, factory name), checked without importing anything."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise ConfigError(f"--module takes FILE.py:FACTORY (a Python file and the function in it that builds the "
                          f"model), got {spec!r}")
    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        raise ConfigError(f"--module file {file} is not an existing .py file")
    return file, name


def read_yaml_mapping(path: str | os.PathLike, what: str, top: str) -> dict[str, Any]:
    """The mapping at the top of YAML file ``path`` (``what``: "recipe", "matrix spec"; ``top``: what the mapping
    holds, for the error), without its free-text ``description``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{what} {path} is not a YAML text file: {str(e).splitlines()[0][:200]}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a mapping of {top} at the top level")
    data.pop("description", None)
    return data


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML recipe into a dict of ConvertConfig options, validating every key."""
    data = read_yaml_mapping(path, "recipe", "options")
    # validate now, so the error names the recipe file rather than the merged options
    strict_from_dict(ConvertConfig, {k: v for k, v in data.items()
                                     if k not in ("labels", "images", "calib_dir", "eval_dir")},
                     where=f"recipe {path}")
    return data
