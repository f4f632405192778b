"""The artifact folder's ``manifest.json`` and its golden input/output pair.

Folder layout::

    DIR/manifest.json
    DIR/<artifact>                      model.onnx | model.ort | model.pte ...
    DIR/golden/image.png                the raw picture (apps check their own preprocessing with it)
    DIR/golden/input.bin                preprocessed input, float32 little-endian, shape in the manifest
    DIR/golden/<output>.bin             PyTorch reference outputs, float32 little-endian
    DIR/golden/<H>x<W>/...              the same for each other size of a multi-size artifact (--img-sizes)

Raw ``.bin`` files (no header) keep the golden pair readable from Swift and Kotlin without a .npy parser.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edgevit._io import sha256_file
from edgevit.errors import ConfigError, IntegrityError

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


def write_golden(folder: Path, pictures: list, x: np.ndarray, outputs: dict[str, np.ndarray], *,
                 resize_check: tuple | None = None, layout: str = "NCHW") -> dict:
    """Write the golden batch (one picture per batch entry, each stored at the resize size, so an app's
    preprocessing of it is crop + normalise and exactly reproducible), and optionally the resize check: a picture
    that needs resizing and its preprocessed input, which apps compare their own resize against."""
    gdir = folder / "golden"
    gdir.mkdir()
    names = ["image.png"] + [f"image_{i}.png" for i in range(1, len(pictures))]
    for name, picture in zip(names, pictures):
        picture.save(gdir / name)
    x = to_layout(x, layout)  # what the app feeds
    x.astype("<f4").tofile(gdir / "input.bin")
    outs = []
    for name, arr in outputs.items():
        arr.astype("<f4").tofile(gdir / f"{name}.bin")
        outs.append({"name": name, "file": f"golden/{name}.bin", "shape": list(arr.shape), "dtype": "float32"})
    out = {"image": "golden/image.png", "images": [f"golden/{n}" for n in names],
           "input": {"file": "golden/input.bin", "shape": list(x.shape), "dtype": "float32"}, "outputs": outs}
    if resize_check is not None:
        source, arr = resize_check
        source.save(gdir / "resize_source.png")
        arr = to_layout(arr, layout)
        arr.astype("<f4").tofile(gdir / "resize_input.bin")
        out["resize_check"] = {"image": "golden/resize_source.png", "width": source.width, "height": source.height,
                               "input": {"file": "golden/resize_input.bin", "shape": list(arr.shape),
                                         "dtype": "float32"}}
    return out


def write_golden_size(folder: Path, size: tuple[int, int], pictures: list, x: np.ndarray,
                      outputs: dict[str, np.ndarray], *, layout: str = "NCHW") -> dict:
    """The golden pair of one more input size of a multi-size artifact, in ``golden/<H>x<W>/``: the pictures at that
    size, the input as the artifact takes it, PyTorch's outputs."""
    sub = f"golden/{size[0]}x{size[1]}"
    gdir = folder / sub
    gdir.mkdir(parents=True)
    names = [f"image_{i}.png" if i else "image.png" for i in range(len(pictures))]
    for name, picture in zip(names, pictures):
        picture.save(gdir / name)
    x = to_layout(x, layout)
    x.astype("<f4").tofile(gdir / "input.bin")
    outs = []
    for name, arr in outputs.items():
        arr.astype("<f4").tofile(gdir / f"{name}.bin")
        outs.append({"name": name, "file": f"{sub}/{name}.bin", "shape": list(arr.shape), "dtype": "float32"})
    return {"size": list(size), "images": [f"{sub}/{n}" for n in names],
            "input": {"file": f"{sub}/input.bin", "shape": list(x.shape), "dtype": "float32"}, "outputs": outs}


# the manifest content apps and verify rely on; its hash is recorded, so an edit shows
# what the first sealed manifests covered; every seal covers at least these
SEALED_KEYS_V1 = ("model", "target", "precision", "artifact", "artifact_sha256", "input", "preprocess", "outputs",
                  "labels", "golden", "runtime_requirements", "weights_sha256")
# new seals also cover the source (the user module's path and sha256, which verify --module checks) and the row of
# the tolerance table the artifact is held to (the unsealed parity section only reports it)
SEALED_KEYS = SEALED_KEYS_V1 + ("source", "tolerance_row")
# the rows an artifact of each target may be held to, for seals made before tolerance_row was sealed
_ROWS = {"executorch": ("executorch", "executorch-coreml")}


def content_sha256(manifest: dict, keys: tuple[str, ...] | None = None) -> str:
    """Hash of the sealed part of a manifest (canonical JSON of ``keys``: by default ``SEALED_KEYS``; to check a
    seal, the keys it recorded, never fewer than ``SEALED_KEYS_V1``)."""
    sealed = {k: manifest.get(k) for k in (keys or SEALED_KEYS)}
    return hashlib.sha256(json.dumps(sealed, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def golden_files(golden: dict) -> list[dict]:
    """Every file entry of the golden section (pictures, input, outputs, resize check) as {"file", "sha256"?}."""
    entries = [{"file": f} for f in golden.get("images", [golden["image"]])]
    entries.append(golden["input"])
    entries += golden["outputs"]
    if "resize_check" in golden:
        entries += [{"file": golden["resize_check"]["image"]}, golden["resize_check"]["input"]]
    for extra in golden.get("sizes", []):  # the other sizes of a multi-size artifact
        entries += [{"file": f} for f in extra["images"]] + [extra["input"]] + extra["outputs"]
    return entries


def seal(folder: Path, manifest: dict) -> None:
    """Record the sha256 of every golden file and of the sealed manifest content (``manifest["integrity"]``)."""
    hashes = {e["file"]: sha256_file(folder / e["file"]) for e in golden_files(manifest["golden"])}
    manifest["golden"]["sha256"] = hashes
    manifest["integrity"] = {"content_sha256": content_sha256(manifest), "sealed_keys": list(SEALED_KEYS)}


def integrity_problems(folder: Path, manifest: dict) -> list[str]:
    """What no longer matches: an edited manifest, a missing or changed artifact or golden file, a path that leaves
    the folder (a symlink to elsewhere, ``..``), an edited tolerance row. Empty when intact.

    The seal is a checksum anyone can recompute: it shows accidents and edits, not forgery."""
    seal_info = manifest.get("integrity")
    if seal_info is None:
        return ["the manifest carries no integrity record (made by an older edgevit): re-convert to seal it"]
    recorded = seal_info.get("sealed_keys") if isinstance(seal_info, dict) else None
    keys = tuple(dict.fromkeys([*SEALED_KEYS_V1, *(k for k in (recorded or []) if isinstance(k, str))]))
    if not isinstance(seal_info, dict) or content_sha256(manifest, keys) != seal_info.get("content_sha256"):
        # nothing else in it can be trusted, not even its shape
        return ["manifest.json was edited after conversion (its sealed content no longer hashes to "
                "integrity.content_sha256)"]
    problems = _escaping_links(folder)
    try:
        problems += _file_problems(folder, manifest)
        row = manifest["parity"]["tolerance"]["target"]
        if "tolerance_row" in keys:
            if row != manifest.get("tolerance_row"):
                problems.append(f"parity.tolerance.target was edited to {row!r}; the sealed tolerance_row is "
                                f"{manifest.get('tolerance_row')!r}")
        elif row not in _ROWS.get(manifest["target"], (manifest["target"],)):
            problems.append(f"parity.tolerance.target {row!r} is not a row a {manifest['target']} artifact is held to "
                            "(the manifest was edited)")
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        problems.append(f"manifest.json is damaged ({type(e).__name__}: {e}) although its seal matches: it was "
                        "edited and sealed again by hand")
    return problems


GOLDEN_CHANGED = "was changed after conversion (sha256 differs from the manifest)"


def tolerance_row(manifest: dict) -> str:
    """The tolerance table's row the artifact is held to (sealed in new manifests; ``integrity_problems`` checks
    the reported one against it, or, for older seals, against the artifact's target)."""
    return manifest.get("tolerance_row") or manifest["parity"]["tolerance"]["target"]


def open_artifact(folder: str | Path, purpose: str) -> dict:
    """The manifest of an intact artifact folder, for every command that reads one (verify, bench, drift, evaluate,
    profile, matrix reuse, build-engine); ``IntegrityError`` (exit 3) naming every problem otherwise. ``purpose``
    says why intactness matters to the command ("its timings would describe another model")."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    problems = integrity_problems(folder, manifest)
    if problems:
        raise IntegrityError(integrity_message(folder, problems, purpose))
    return manifest


def integrity_message(folder: Path, problems: list[str], purpose: str) -> str:
    return f"{folder}: {'; '.join(problems)}; {purpose}. Re-convert it"


def _inside(folder: Path, name) -> Path | None:
    """``folder/name`` when ``name`` is a relative path that stays inside ``folder``, else None."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        return None
    return folder / name


def _shape_problems(manifest: dict) -> list[str]:
    """The structure every command relies on, checked before any of it is used (a hand-sealed manifest)."""
    def sizes(shape, symbolic: bool = False) -> bool:  # positive ints (or dim names, e.g. "batch")
        return isinstance(shape, list) and all((isinstance(d, int) and not isinstance(d, bool) and d > 0)
                                               or (symbolic and isinstance(d, str)) for d in shape)

    problems = []
    shape = manifest["input"]["shape"]
    if not (sizes(shape, symbolic=True) and len(shape) == 4):
        problems.append(f"input.shape {shape!r} is not four positive sizes")
    outputs = manifest["outputs"]
    if not isinstance(outputs, list) or not outputs or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        problems.append("outputs is not a list of named outputs")
    for entry in golden_files(manifest["golden"]):
        if "shape" in entry and not sizes(entry["shape"]):
            problems.append(f"the shape of {entry.get('file')} is {entry['shape']!r}, not a list of positive sizes")
    return problems


SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
_validator = None


def schema_problems(manifest: dict) -> list[str]:
    """Where ``manifest`` departs from ``manifest.schema.json`` (docs/manifest.md), each naming the key path; empty
    when it conforms. Checked when edgevit writes a manifest and when a command opens a folder."""
    global _validator
    if _validator is None:
        import jsonschema

        _validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    found = sorted(_validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"manifest key {'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message[:300]} (schema "
            f"{SCHEMA_PATH.name})" for e in found]


def _file_problems(folder: Path, manifest: dict) -> list[str]:
    problems = _shape_problems(manifest) or schema_problems(manifest)
    if problems:
        return problems
    artifact = _inside(folder, manifest["artifact"])
    if artifact is None:
        problems.append(f"the artifact name {manifest['artifact']!r} leaves the folder")
    elif not artifact.exists():
        problems.append(f"the artifact {manifest['artifact']} is missing")
    elif sha256_file(artifact) != manifest["artifact_sha256"]:
        problems.append(f"the artifact {manifest['artifact']} was changed after conversion (sha256 differs from "
                        "artifact_sha256)")
    for name, digest in manifest["golden"].get("sha256", {}).items():
        path = _inside(folder, name)
        if path is None:
            problems.append(f"the golden file name {name!r} leaves the folder")
        elif not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name} {GOLDEN_CHANGED}")
    for entry in golden_files(manifest["golden"]):  # a raw .bin is read by its shape: the two must agree
        path = _inside(folder, entry["file"])
        if "shape" in entry and path is not None and path.is_file():
            need = 4 * int(np.prod([int(d) for d in entry["shape"]]))
            if path.stat().st_size != need:
                problems.append(f"{entry['file']} holds {path.stat().st_size} bytes, not the {need} its shape "
                                f"{entry['shape']} in the manifest needs")
    return problems


def _escaping_links(folder: Path) -> list[str]:
    """Symlinks in the folder that lead out of it, dangle or loop (a folder is read as what it holds)."""
    import errno
    import os

    root = folder.resolve()
    problems = []
    for dirpath, dirnames, filenames in os.walk(folder):  # does not follow links to folders
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            rel = path.relative_to(folder)
            try:
                target = path.resolve(strict=True)
            except (RuntimeError, OSError) as e:  # Python < 3.13 raises RuntimeError for a loop, later ELOOP
                loop = isinstance(e, RuntimeError) or e.errno == errno.ELOOP
                problems.append(f"{rel} is a symlink loop" if loop else f"{rel} is a symlink to nothing "
                                f"({os.readlink(path)})")
                continue
            if not target.is_relative_to(root):
                problems.append(f"{rel} is a symlink to {target}, outside the folder")
    return problems


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """An NCHW batch in ``layout`` (NCHW or NHWC)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


def input_layout(manifest: dict) -> str:
    return manifest["input"].get("layout", "NCHW")


def input_hw(manifest: dict) -> tuple[int, int]:
    """The artifact's input height and width, whatever its layout."""
    shape = manifest["input"]["shape"]
    return (shape[1], shape[2]) if input_layout(manifest) == "NHWC" else (shape[2], shape[3])


def read_golden(folder: Path, manifest: dict, entry: dict | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The golden input as an NCHW batch (stored in the artifact's layout) and the golden outputs; ``entry``: one of
    ``golden["sizes"]`` (a multi-size artifact's other sizes) instead of the primary pair."""
    g = entry if entry is not None else manifest["golden"]
    x = np.fromfile(folder / g["input"]["file"], dtype="<f4").reshape(g["input"]["shape"])
    if input_layout(manifest) == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    outs = {o["name"]: np.fromfile(folder / o["file"], dtype="<f4").reshape(o["shape"]) for o in g["outputs"]}
    return x, outs


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"{folder} is not an edgevit artifact folder: no manifest.json in it")
    # a folder that holds a manifest.json we cannot read was damaged or edited after conversion: exit 3, as verify
    # promises for tampering (a folder without one is simply not an artifact folder: exit 2 above)
    try:
        manifest = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{path} is not valid JSON ({e}): the manifest was damaged or edited after "
                             "conversion; re-convert the folder") from None
    missing = [k for k in REQUIRED_KEYS if k not in manifest] if isinstance(manifest, dict) else list(REQUIRED_KEYS)
    if missing:
        raise IntegrityError(f"{path} lacks required keys {missing}: the manifest was damaged or edited after "
                             "conversion; re-convert the folder")
    if manifest["format_version"] > FORMAT_VERSION:
        raise ConfigError(f"{path} has format_version {manifest['format_version']}, newer than this edgevit "
                          f"understands ({FORMAT_VERSION}); upgrade edgevit")
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
    problems = schema_problems(json.loads(text))  # the manifest as the file will hold it
    if problems:  # edgevit wrote something its own contract does not allow: a bug, not the user's input
        raise RuntimeError("edgevit built a manifest that does not match its schema (please report this bug):\n  "
                           + "\n  ".join(problems))
    (folder / "manifest.json").write_text(text)
