"""Frozen option sets. YAML recipes and CLI flags become these objects at once; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgevit.errors import ConfigError


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else f"; valid keys: {', '.join(sorted(valid))}"


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
    """

    model: str = "nextvit_small"
    target: str = "onnx"
    precision: str | None = None
    weights: str | None = None
    random_init: bool = False
    seed: int = 0
    img_size: int | tuple[int, int] | None = None
    batch: int = 1
    dynamic_batch: bool = False
    num_classes: int | None = None
    reset_head: bool = False
    features: bool = False
    labels: str | None = None
    images: str | None = None
    out: str = "out"
    overwrite: bool = False
    keep_failed: bool = False
    opset: int = 18
    rewrite: bool = True
    etrecord: bool = False
    input_type: str = "image"
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
    # preprocessing overrides; by default they come from the checkpoint (edgevit.models.pretrained)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    # CoreML metadata: recorded only when given (nothing is invented about a user's checkpoint)
    license: str | None = None
    author: str | None = None

    def __post_init__(self):
        if self.weights and self.random_init:
            raise ConfigError("pass either weights or random_init, not both")
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}")
        if self.opset < 17:
            raise ConfigError(f"ONNX opset must be >= 17, got {self.opset}")
        for key in ("img_size", "mean", "std"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))
        if self.labels is not None and not Path(self.labels).is_file():
            raise ConfigError(f"labels file {self.labels} does not exist; pass a text file with one class name a line")
        for key in ("images", "calib_dir", "eval_dir"):
            value = getattr(self, key)
            if value is not None and not Path(value).is_dir():
                raise ConfigError(f"{key.replace('_', '-')} folder {value} does not exist")
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


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML recipe into a dict of ConvertConfig options, validating every key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping of options at the top level")
    data.pop("description", None)
    # validate now, so the error names the recipe file rather than the merged options
    strict_from_dict(ConvertConfig, {k: v for k, v in data.items()
                                     if k not in ("labels", "images", "calib_dir", "eval_dir")},
                     where=f"recipe {path}")
    return data
