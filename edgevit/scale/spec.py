"""The matrix SPEC: the axes of a conversion matrix (models with their weights, targets, precisions, sizes) and the
options every cell shares, with the same strict keys and types as recipes (``ConvertConfig``).

Example ``matrix.yaml``::

    models:
      - model: nextvit_small
        weights: checkpoints/nextvit_small_in1k.safetensors
      - model: nextvit_base
        weights: checkpoints/nextvit_base_in1k.safetensors
    targets: [onnx, ort, executorch, "executorch:coreml", coreml]
    precisions: [fp32, int8]
    sizes: [224, 384]
    calib_dir: data/calib
    eval_dir: data/eval          # labelled: one subfolder per class
    options: {batch: 1, calib_count: 256}

Relative paths are read from the SPEC file's folder. A (target, precision) pair the target does not offer is a
cell marked ``unsupported`` with the target's reason, not an error: a matrix names axes, not a list of cells. A shared
option that is some targets' own (``opset``, ``min_ios``, ``layout``...: ``Target.options``) goes to the cells of the
targets that take it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevit.config import ConvertConfig, parse_img_size, read_yaml_mapping, strict_from_dict
from edgevit.errors import ConfigError

# the keys of a models entry: what says which network and weights a cell converts
MODEL_KEYS = ("model", "name", "weights", "random_init", "seed", "module", "num_classes", "reset_head", "features",
              "labels")
# ConvertConfig keys a SPEC sets through its axes or the matrix owns; ``options`` may not set them
AXIS_KEYS = ("model", "target", "delegate", "precision", "img_size", "img_sizes", "out", "overwrite", "weights",
             "random_init", "seed", "module", "num_classes", "reset_head", "features", "labels", "calib_dir",
             "eval_dir", "images")
PATH_KEYS = ("weights", "labels", "calib_dir", "eval_dir", "images")


@dataclass(frozen=True)
class Cell:
    """One (model, target, precision, size) of a matrix: its folder name and the options of its ``convert``."""

    id: str
    options: dict[str, Any]  # ConvertConfig keys, ``out`` excluded (the matrix gives each cell its folder)
    unsupported: str | None = None  # the target's reason, when it does not offer this combination

    def config(self, out: str | os.PathLike, **changes) -> ConvertConfig:
        where = f"matrix cell {self.id}"
        try:
            return ConvertConfig.from_dict({**self.options, "out": str(out), **changes}, where=where)
        except ConfigError as e:
            if str(e).startswith(where):
                raise
            raise ConfigError(f"{where}: {e}") from e


@dataclass(frozen=True, kw_only=True)
class MatrixSpec:
    """The axes of a conversion matrix; ``cells()`` is their product."""

    models: list[dict[str, Any]]
    targets: list[str]
    precisions: list[str]
    sizes: list[int | str] = field(default_factory=list)  # [] = each model's default size
    calib_dir: str | None = None
    eval_dir: str | None = None
    images: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for key in ("models", "targets", "precisions", "sizes"):
            value = getattr(self, key)
            if not isinstance(value, list):
                raise ConfigError(f"matrix spec: {key} must be a list, got {type(value).__name__}")
            if not value and key != "sizes":
                raise ConfigError(f"matrix spec: {key} is empty; name at least one")
        for i, entry in enumerate(self.models):
            if not isinstance(entry, dict) or "model" not in entry:
                raise ConfigError(f"matrix spec: models[{i}] must be a mapping with at least a 'model' key (and "
                                  f"its weights), got {entry!r}")
            unknown = [k for k in entry if k not in MODEL_KEYS]
            if unknown:
                raise ConfigError(f"matrix spec: models[{i}] has unknown key {unknown[0]!r}; a models entry takes "
                                  f"{', '.join(MODEL_KEYS)} (shared options go under 'options')")
        for key in ("targets", "precisions"):
            bad = [v for v in getattr(self, key) if not isinstance(v, str)]
            if bad:
                raise ConfigError(f"matrix spec: {key} must be names, got {bad[0]!r}")
        self._check_names()
        for s in self.sizes:
            parse_img_size(s)
        if not isinstance(self.options, dict):
            raise ConfigError("matrix spec: options must be a mapping of convert options")
        owned = [k for k in self.options if k in AXIS_KEYS]
        if owned:
            raise ConfigError(f"matrix spec: options sets {owned[0]!r}, which a matrix sets per cell (models, "
                              "targets, precisions, sizes, calib_dir/eval_dir/images) or owns (out, overwrite)")
        ids = [self.model_id(m) for m in self.models]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ConfigError(f"matrix spec: two models entries are both called {dup[0]!r}; give each a distinct "
                              "'name'")

    def _check_names(self) -> None:
        """A target, delegate or precision that no target knows is a typo, not an "unsupported" cell (issue 32:
        ``targets: [onxx]`` made a matrix of unsupported cells that exited 0)."""
        import difflib

        from edgevit.targets.base import list_targets, supported_combinations

        combos = supported_combinations()
        known_targets = list_targets()
        known_delegates = sorted({f"{t}:{d}" for t, d, _ in combos if d is not None})
        known_precisions = sorted({p for _, _, p in combos})

        def hint(value, known):
            close = difflib.get_close_matches(value, known, n=1)
            return f" (did you mean {close[0]!r}?)" if close else ""

        for spec in self.targets:
            target, _, delegate = spec.partition(":")
            if target not in known_targets:
                raise ConfigError(f"matrix spec: unknown target {target!r}{hint(target, known_targets)}; targets: "
                                  f"{', '.join(known_targets)}")
            if delegate and spec not in known_delegates:
                raise ConfigError(f"matrix spec: unknown delegate {spec!r}{hint(spec, known_delegates)}; "
                                  f"delegates: {', '.join(known_delegates)}")
        for precision in self.precisions:
            if precision not in known_precisions:
                raise ConfigError(f"matrix spec: unknown precision {precision!r}"
                                  f"{hint(precision, known_precisions)}; precisions: {', '.join(known_precisions)}")

    @staticmethod
    def model_id(entry: dict) -> str:
        return str(entry.get("name") or entry["model"])

    def cells(self) -> list[Cell]:
        """Every (model, target[:delegate], precision, size), each checked as a ``ConvertConfig`` now, so a bad
        value is reported before any conversion starts."""
        from edgevit.targets import get_target
        from edgevit.targets.base import option_owners

        owned = option_owners()
        out = []
        for entry in self.models:
            model = {k: v for k, v in entry.items() if k != "name"}
            for target_spec in self.targets:
                target, _, delegate = target_spec.partition(":")
                # a shared option that is some targets' own (opset, min_ios...) goes to the cells whose target takes it
                shared = {k: v for k, v in self.options.items()
                          if k not in owned or get_target(target).takes_option(k, delegate or None)}
                for precision in self.precisions:
                    for size in self.sizes or [None]:
                        options = {**shared, **model, "target": target, "precision": precision,
                                   **({"delegate": delegate} if delegate else {}),
                                   **({"img_size": size} if size is not None else {}),
                                   **{k: getattr(self, k) for k in ("calib_dir", "eval_dir", "images")
                                      if getattr(self, k) is not None}}
                        h_w = "" if size is None else "_{}x{}".format(*parse_img_size(size))
                        cell_id = f"{self.model_id(entry)}_{target}{'-' + delegate if delegate else ''}_" \
                                  f"{precision}{h_w}"
                        reason = get_target(target).supports(precision, delegate or None)
                        cell = Cell(id=cell_id, options=options, unsupported=reason)
                        if reason is None:
                            cell.config("cell")  # strict keys and types now, naming the cell
                        out.append(cell)
        return out


def load_spec(path: str | os.PathLike) -> MatrixSpec:
    """Read a YAML SPEC; relative paths are taken from the SPEC file's folder."""
    path = Path(path)
    data = read_yaml_mapping(path, "matrix spec", "axes (models, targets, precisions, ...)")
    base = path.resolve().parent

    def resolved(key: str, value):
        if key in PATH_KEYS and isinstance(value, str) and not Path(value).is_absolute() and (base / value).exists():
            return str(base / value)
        if key == "module" and isinstance(value, str) and ":" in value and not Path(value).is_absolute():
            file, _, factory = value.rpartition(":")
            return f"{base / file}:{factory}" if (base / file).exists() else value
        return value

    for key in ("calib_dir", "eval_dir", "images"):
        if key in data:
            data[key] = resolved(key, data[key])
    if isinstance(data.get("models"), list):
        data["models"] = [{k: resolved(k, v) for k, v in m.items()} if isinstance(m, dict) else m
                          for m in data["models"]]
    try:
        return strict_from_dict(MatrixSpec, data, where=f"matrix spec {path}")
    except TypeError as e:  # a required axis missing
        raise ConfigError(f"matrix spec {path}: {e}; a SPEC needs models, targets and precisions") from e


def cell_key(cell: Cell, versions: dict[str, str], hashes: dict[str, str] | None = None) -> str:
    """What a cell's artifact depends on: its options, the content of every file or folder they name (weights,
    labels, images, the module file), and the toolchain versions. Equal keys: the artifact can be reused.
    ``hashes``: content hashes already computed in this run, by path (cells share their folders and weights)."""
    import json

    h = hashlib.sha256()
    h.update(json.dumps({"options": cell.options, "versions": versions}, sort_keys=True, default=str).encode())
    for key in (*PATH_KEYS, "module"):
        value = cell.options.get(key)
        if isinstance(value, str):
            target = value.rpartition(":")[0] if key == "module" else value
            if hashes is None or target not in hashes:
                content = _content_hash(Path(target))
                if hashes is None:
                    h.update(key.encode() + content.encode())
                    continue
                hashes[target] = content
            h.update(key.encode() + hashes[target].encode())
    return h.hexdigest()


def _content_hash(path: Path) -> str:
    """sha256 over a file, or over a folder's files (relative names and contents, sorted); '' when absent (a hub
    id: its revision is part of the options)."""
    from edgevit._io import sha256_file

    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()
    return ""

