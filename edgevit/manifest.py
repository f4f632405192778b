"""The artifact folder's ``manifest.json`` and its golden input/output pair.

Folder layout::

    DIR/manifest.json
    DIR/<artifact>                      model.onnx | model.ort | model.pte ...
    DIR/golden/image.png                the raw picture (apps check their own preprocessing with it)
    DIR/golden/input.bin                preprocessed input, float32 little-endian, shape in the manifest
    DIR/golden/<output>.bin             PyTorch reference outputs, float32 little-endian

Raw ``.bin`` files (no header) keep the golden pair readable from Swift and Kotlin without a .npy parser.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edgevit._io import read_json
from edgevit.errors import ConfigError

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model", "target", "precision", "artifact", "input", "preprocess", "outputs",
                 "labels", "weights_sha256", "artifact_sha256", "versions", "parity", "golden")


def state_dict_sha256(model) -> str:
    """Hash of the weights: every tensor's name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def write_golden(folder: Path, image, x: np.ndarray, outputs: dict[str, np.ndarray]) -> dict:
    gdir = folder / "golden"
    gdir.mkdir()
    image.save(gdir / "image.png")
    x.astype("<f4").tofile(gdir / "input.bin")
    outs = []
    for name, arr in outputs.items():
        arr.astype("<f4").tofile(gdir / f"{name}.bin")
        outs.append({"name": name, "file": f"golden/{name}.bin", "shape": list(arr.shape), "dtype": "float32"})
    return {"image": "golden/image.png", "input": {"file": "golden/input.bin", "shape": list(x.shape),
                                                   "dtype": "float32"},
            "outputs": outs}


def read_golden(folder: Path, manifest: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    g = manifest["golden"]
    x = np.fromfile(folder / g["input"]["file"], dtype="<f4").reshape(g["input"]["shape"])
    outs = {o["name"]: np.fromfile(folder / o["file"], dtype="<f4").reshape(o["shape"]) for o in g["outputs"]}
    return x, outs


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"{folder} is not an edgevit artifact folder: no manifest.json in it")
    manifest = read_json(path)
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ConfigError(f"{path} lacks required keys {missing}; re-create the folder with edgevit convert")
    if manifest["format_version"] > FORMAT_VERSION:
        raise ConfigError(f"{path} has format_version {manifest['format_version']}, newer than this edgevit "
                          f"understands ({FORMAT_VERSION}); upgrade edgevit")
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
