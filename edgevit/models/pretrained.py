"""The preprocessing a checkpoint comes with: input size, crop, interpolation, mean and std, each with its source.

A checkpoint is only right with the preprocessing it was trained with. Where that is written down, in order of
precedence (later wins):

1. edgevit's defaults for the model (``nextvit_small/base/large``: the published Next-ViT recipe, bicubic,
   crop 0.95 below 384 and 1.0 at 384 and above, ImageNet mean/std; see docs/NEXTVIT.md);
2. a hub id's tag: ``..._384`` means 384 x 384 input, crop 1.0 (timm's ``bd_in1k_384`` / ``bd_ssld_6m_in1k_384``);
3. the checkpoint's own configuration: a hub repository's ``config.json`` (timm writes ``pretrained_cfg`` there),
   or for a local file a sidecar next to it: ``<file stem>.json`` or the folder's ``config.json``. Keys are timm's
   (``input_size`` [3, H, W], ``crop_pct``, ``interpolation``, ``mean``, ``std``), at the top level or under
   ``pretrained_cfg``, plus edgevit's ``preprocess_geometry`` (``edgevit.preprocess.GEOMETRIES``: the resize/crop
   rule, timm's eval transform unless a checkpoint was trained with another; the shipped reference models were
   trained with ``edgevit-v1`` and their sidecars say so);
4. explicit options (``--img-size``, ``--mean``, ``--std``, ``--crop-pct``, ``--interpolation``).

``resolve_preprocess`` returns the values and, per key, where it came from; the manifest records both.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path

from edgevit.errors import CheckpointError, ConfigError
from edgevit.preprocess import GEOMETRIES, GEOMETRY, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS

log = logging.getLogger(__name__)

KEYS = ("img_size", "crop_pct", "interpolation", "mean", "std", "geometry")


def default_crop_pct(size: tuple[int, int]) -> float:
    """The published checkpoints' crop: 0.95 at 224, 1.0 at 384 and above."""
    return 1.0 if min(size) >= 384 else 0.95


def _from_pretrained_cfg(data: dict, where: str) -> dict:
    """timm-style keys -> ours, validated."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    cfg = data.get("pretrained_cfg", data)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: pretrained_cfg must be an object")
    out: dict = {}
    if "input_size" in cfg:
        size = cfg["input_size"]
        if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
            raise ConfigError(f"{where}: input_size must be [3, H, W], got {size!r}")
        out["img_size"] = (size[1], size[2])
    if "crop_pct" in cfg:
        out["crop_pct"] = float(cfg["crop_pct"])
    if "interpolation" in cfg:
        out["interpolation"] = str(cfg["interpolation"])
    for key in ("mean", "std"):
        if key in cfg:
            out[key] = tuple(float(v) for v in cfg[key])
    if "preprocess_geometry" in cfg:
        if cfg["preprocess_geometry"] not in GEOMETRIES:
            raise ConfigError(f"{where}: preprocess_geometry must be one of {', '.join(GEOMETRIES)}, got "
                              f"{cfg['preprocess_geometry']!r}")
        out["geometry"] = cfg["preprocess_geometry"]
    return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"preprocessing sidecar {path} is not valid JSON: {e}") from e


def sidecar_for(weights: Path) -> tuple[Path, dict] | None:
    """(``<stem>.json`` beside a local checkpoint, else the folder's ``config.json``; the preprocessing it states),
    for the first of them that states any."""
    for cand in (weights.with_suffix(".json"), weights.parent / "config.json"):
        if cand.is_file():
            data = _read_json(cand)
            found = _from_pretrained_cfg(data, str(cand)) if isinstance(data, dict) else {}
            if found:
                return cand, found
    return None


@functools.lru_cache(maxsize=1)
def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be asked from here, or None when it answers (any HTTP answer counts). One
    5-second probe per process: without it, huggingface_hub retries a dead connection five times (23 s) per file."""
    import os
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return None  # huggingface_hub's own offline mode: it reads its cache and fails at once
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=5).close()
    except urllib.error.HTTPError:
        return None
    except Exception as e:  # noqa: BLE001 - refused, DNS, timeout, proxy: all mean the same here
        return f"{constants.ENDPOINT} cannot be reached ({type(e).__name__})"
    return None


def hub_download(repo_id: str, filename: str) -> Path:
    """``filename`` of hub repository ``repo_id``: from the hub, or from huggingface_hub's cache when the hub cannot
    be reached (an ``OSError`` naming ``HF_HUB_OFFLINE`` and ``--weights PATH`` when it is not cached either)."""
    from huggingface_hub import hf_hub_download

    why = hub_unreachable()
    if why is None:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache
        raise OSError(f"the Hugging Face hub cannot be asked for {repo_id}/{filename}: {why}, and it is not in "
                      "huggingface_hub's cache (set HF_HUB_OFFLINE=1 to use only the cache)") from None


def _hub_config(repo_id: str) -> dict | None:
    try:
        return _read_json(hub_download(repo_id, "config.json"))
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - offline or missing: the tag and defaults still apply
        log.info("no config.json from the hub for %s (%s); using the tag and defaults", repo_id, type(e).__name__)
        return None


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
HUB_ID = re.compile(r"^(hf-hub:|hf_hub:)?[\w.-]+/[\w.-]+$")


def missing_local_file(source: str) -> CheckpointError | None:
    """The error for a ``--weights`` value that names a local file (a checkpoint suffix, or not shaped like the hub's
    ``org/name``) which does not exist; None for an existing file or a hub id. Checked before any hub request, so a
    mistyped path is not sent to the hub (and a dry run does not call it checked)."""
    text = str(source)
    path = Path(text)
    if path.exists() or (path.suffix not in CHECKPOINT_SUFFIXES and HUB_ID.match(text)):
        return None
    return CheckpointError(f"weights file {text} does not exist; pass an existing .pth/.pt/.bin/.safetensors file "
                           "or a hub id such as timm/nextvit_small.bd_in1k")


def checkpoint_preprocess(weights: str | None) -> tuple[dict, dict]:
    """(values, sources) the checkpoint itself says, from its tag and config; empty when it says nothing."""
    values: dict = {}
    sources: dict = {}
    if not weights:
        return values, sources
    path = Path(weights)
    if path.exists():
        side = sidecar_for(path)
        if side is not None:
            side, found = side
            values.update(found)
            sources.update({k: f"checkpoint sidecar {side.name}" for k in found})
        return values, sources
    missing = missing_local_file(weights)
    if missing is not None:
        raise missing
    repo_id = str(weights).split(":", 1)[1] if str(weights).startswith(("hf-hub:", "hf_hub:")) else str(weights)
    tag = repo_id.rsplit(".", 1)[1] if "." in repo_id.split("/")[-1] else ""
    m = re.search(r"_(\d{3,4})$", tag)
    if m:
        n = int(m.group(1))
        values.update(img_size=(n, n), crop_pct=1.0)
        sources.update(img_size=f"hub tag {tag}", crop_pct=f"hub tag {tag}")
    hub = _hub_config(repo_id)
    if hub is not None:
        found = _from_pretrained_cfg(hub, f"{repo_id}/config.json")
        values.update(found)
        sources.update({k: f"hub {repo_id}/config.json" for k in found})
    return values, sources


def resolve_preprocess(*, model_default_size: int, weights: str | None, overrides: dict | None = None
                       ) -> tuple[dict, dict]:
    """All of ``KEYS`` with their sources, by the precedence in the module docstring.

    ``weights``: the checkpoint file or hub id (the shipped checkpoint's path for a model that ships one).
    ``overrides``: explicit options; None values are ignored.
    """
    values: dict = {"img_size": (model_default_size, model_default_size), "interpolation": "bicubic",
                    "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "geometry": GEOMETRY}
    sources = {k: "edgevit default (Next-ViT recipe)" for k in KEYS}
    sources["geometry"] = "edgevit default (timm's eval transform)"
    found, where = checkpoint_preprocess(weights)
    values.update(found)
    sources.update(where)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = tuple(value) if isinstance(value, list) else value
            sources[key] = "option --" + key.replace("_", "-")
    if "crop_pct" not in values:
        values["crop_pct"] = default_crop_pct(values["img_size"])
        sources["crop_pct"] += f" for {values['img_size'][0]}x{values['img_size'][1]}"
    validate(values)
    return values, sources


def validate(values: dict) -> None:
    for key in ("mean", "std"):
        v = values[key]
        if len(v) != 3 or not all(isinstance(x, (int, float)) for x in v):
            raise ConfigError(f"{key} must be three numbers (R, G, B), got {v!r}")
    if not all(s > 0 for s in values["std"]):
        raise ConfigError(f"std must be positive, got {values['std']!r}")
    if not 0 < values["crop_pct"] <= 1:
        raise ConfigError(f"crop_pct must be in (0, 1], got {values['crop_pct']!r}")
    if values["interpolation"] not in INTERPOLATIONS:
        raise ConfigError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got "
                          f"{values['interpolation']!r}")
