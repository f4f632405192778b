"""Checkpoint reading, layout detection, key remapping and saving for Next-ViT.

Two layouts exist in the wild (see docs/NEXTVIT.md, with sources):

* ``official``: the ByteDance release, ``{'model': state_dict}`` with a flat ``features.{i}`` list of blocks,
  ``mlp.conv1/conv2`` and ``proj_head.0``;
* ``timm``: ``stages.{s}.blocks.{b}``, ``mlp.fc1/fc2`` and ``head.fc``. edgevit's own modules use this one.

The official detection and segmentation checkpoints are mmdet/mmseg files, ``{'state_dict': ...}`` with the
backbone (official layout) under ``backbone.`` beside ``neck.``/head keys; ``dense_backbone`` takes the backbone
part (``official-mmdet``/``official-mmseg``) and says how its outputs are normalized.

Files are read without executing anything: safetensors, or ``torch.load(weights_only=True)``, which refuses any
pickled object that is not a tensor or a plain container.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgevit._io import atomic_file
from edgevit.errors import CheckpointError, CheckpointMismatchError, ConfigError, UnsafeCheckpointError
from edgevit.models.pretrained import CHECKPOINT_SUFFIXES, hub_download, missing_local_file
from edgevit.models.nextvit import NextViT, NextViTConfig

log = logging.getLogger(__name__)

LAYOUTS = ("official", "timm")


# ---------------------------------------------------------------------------------------------------------------
# Reading files


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file, unwrapping ``{'model': ...}``/``{'state_dict': ...}``.

    Never executes code from the file. Raises ``UnsafeCheckpointError`` for a file with pickled objects and
    ``CheckpointError`` for a missing, truncated or unrecognised file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist; pass the path to a .pth/.pt/.bin/.safetensors "
                              "file or a hub id such as timm/nextvit_small.bd_in1k")
    if path.suffix == ".safetensors":
        obj = _read_safetensors(path)
    else:
        obj = _read_torch(path)
    return _unwrap(obj, path)


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"could not read safetensors file {path}: {e}. The file may be truncated or not a "
                              "safetensors file; download it again") from e


def _read_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"refused to load {path}: it contains pickled objects other than tensors, which could run code when "
            "loaded, so nothing in it was executed. If you trust the file, re-save only its state dict "
            "(torch.save(obj['model'] if 'model' in obj else obj, 'clean.pth')) or convert it to .safetensors "
            f"on a trusted machine. Detail: {str(e).splitlines()[0]}") from e
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file; all mean the same here
        raise CheckpointError(f"could not read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}. "
                              "The file is truncated or not a PyTorch checkpoint; download it again") from e


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state dict (found {type(obj).__name__}); expected a dict of tensors "
                              "or {'model': state_dict}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}; expected a plain state dict")
    sd = {k.removeprefix("module."): v for k, v in obj.items()}
    check_finite(sd, str(path))
    return sd


def check_finite(sd: dict[str, torch.Tensor], source: str) -> None:
    """Refuse a state dict holding NaN or Inf in any floating tensor, or a negative BatchNorm ``running_var`` (whose
    square root the BN fold takes): such weights make every output non-finite, and the failure would surface far
    later as a parity error blamed on a rewrite pass or an exporter."""
    for name, t in sd.items():
        if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
            continue
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            raise CheckpointError(f"{source}: tensor {name} holds {n_nan} NaN and {n_inf} Inf of {t.numel()} "
                                  "values; the checkpoint is damaged or was saved from a diverged run: use an "
                                  "earlier or the released checkpoint")
        if name.endswith("running_var") and bool((t < 0).any()):
            raise CheckpointError(f"{source}: BatchNorm statistics {name} hold {int((t < 0).sum())} negative "
                                  "variances (smallest {:.3g}); a variance is never negative: the checkpoint is "
                                  "damaged".format(float(t.min())))


# ---------------------------------------------------------------------------------------------------------------
# Layouts


def detect_layout(sd: dict[str, torch.Tensor]) -> str:
    keys = list(sd)
    if any(k.startswith("features.") for k in keys):
        return "official"
    if any(k.startswith("stages.") for k in keys):
        return "timm"
    raise CheckpointError("cannot tell the checkpoint layout: no key starts with 'features.' (official release) or "
                          f"'stages.' (timm); first keys: {keys[:5]}")


@dataclass
class DenseBackbone:
    """The backbone part of an official detection/segmentation checkpoint."""

    state_dict: dict[str, torch.Tensor]  # official layout; extra_norm_list.{0,1,2} renamed to stage_norms.{i}
    feature_norms: str  # "none" (detection: with_extra_norm=False) or "all" (segmentation)
    layout: str  # "official-mmdet" or "official-mmseg"
    other_parts: dict[str, int]  # top-level prefixes that are not the backbone (neck, heads) -> key count
    unused: list[str]  # backbone keys the official forward never reads


def dense_backbone(sd: dict[str, torch.Tensor]) -> DenseBackbone | None:
    """The backbone of an official mmdet/mmseg checkpoint (keys under ``backbone.``), or None for a classifier one.

    The official dense-prediction backbone (bytedance/Next-ViT ``detection/nextvit.py``, ``segmentation/nextvit.py``)
    returns the last block of every stage; with ``with_extra_norm`` (the segmentation configs) stages 1-3 pass through
    ``extra_norm_list.{0,1,2}`` and stage 4 through ``norm``, and ``extra_norm_list.3`` exists but is never read.
    Without it (the detection configs) no output is normalized, and a ``norm`` left in the file is never read.
    """
    if not any(k.startswith("backbone.") for k in sd):
        return None
    backbone = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    other: dict[str, int] = {}
    for k in sd:
        if not k.startswith("backbone."):
            other[k.split(".")[0]] = other.get(k.split(".")[0], 0) + 1
    extra = any(k.startswith("extra_norm_list.") for k in backbone)
    if extra and not any(k.startswith("norm.") for k in backbone):
        raise CheckpointMismatchError(
            "this segmentation backbone checkpoint has extra_norm_list but no 'norm' for stage 4, which the "
            "official forward (with_extra_norm=True) applies to the last stage; the file is incomplete",
            layout="official-mmseg", missing=["backbone.norm.weight"], unexpected=[], mismatched=[])
    mapped, unused = {}, []
    for k, v in backbone.items():
        m = re.match(r"extra_norm_list\.(\d+)\.(.*)", k)
        if m and int(m.group(1)) < 3:
            mapped[f"stage_norms.{m.group(1)}.{m.group(2)}"] = v
        elif m or (not extra and k.startswith("norm.")):
            unused.append(k)
        else:
            mapped[k] = v
    return DenseBackbone(state_dict=mapped, feature_norms="all" if extra else "none",
                         layout="official-mmseg" if extra else "official-mmdet", other_parts=other, unused=unused)


def checkpoint_feature_norms(source: str | os.PathLike) -> str | None:
    """How the outputs of the backbone in ``source`` are normalized when it is an official detection ("none") or
    segmentation ("all") checkpoint; None for a classifier checkpoint."""
    dense = dense_backbone(read_state_dict(resolve_source(source)))
    return dense.feature_norms if dense else None


def _block_index(cfg: NextViTConfig) -> list[tuple[int, int]]:
    return [(s, b) for s, stage in enumerate(cfg.stage_plan()) for b in range(len(stage))]


_OFFICIAL_TO_TIMM = (("mlp.conv1.", "mlp.fc1."), ("mlp.conv2.", "mlp.fc2."))


def official_to_timm(sd: dict[str, torch.Tensor], cfg: NextViTConfig) -> dict[str, torch.Tensor]:
    """Map ``features.{i}`` to ``stages.{s}.blocks.{b}`` (by the config's depths) and rename MLP and head keys."""
    index = _block_index(cfg)
    out = {}
    for k, v in sd.items():
        m = re.match(r"features\.(\d+)\.(.*)", k)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            for a, b in _OFFICIAL_TO_TIMM:
                if rest.startswith(a):
                    rest = b + rest[len(a):]
            if i < len(index):
                s, b = index[i]
                k = f"stages.{s}.blocks.{b}.{rest}"
            else:  # left as is; it will be reported as unexpected
                k = f"features.{i}.{rest}"
        elif k.startswith("proj_head.0."):
            k = "head.fc." + k[len("proj_head.0."):]
        out[k] = v
    return out


def timm_to_official(sd: dict[str, torch.Tensor], cfg: NextViTConfig) -> dict[str, torch.Tensor]:
    flat = {sb: i for i, sb in enumerate(_block_index(cfg))}
    out = {}
    for k, v in sd.items():
        m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.*)", k)
        if m:
            s, b, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            for a, c in _OFFICIAL_TO_TIMM:
                if rest.startswith(c):
                    rest = a + rest[len(c):]
            k = f"features.{flat[(s, b)]}.{rest}"
        elif k.startswith("head.fc."):
            k = "proj_head.0." + k[len("head.fc."):]
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------------------------
# Resolving a weights source


def resolve_source(source: str | os.PathLike) -> Path:
    """A local file path, or a hub id (``timm/nextvit_small.bd_in1k``) fetched through huggingface_hub."""
    path = Path(source)
    if path.exists():
        return path
    text = str(source)
    missing = missing_local_file(text)
    if missing is not None:
        raise missing
    repo_id = text.split(":", 1)[1] if text.startswith(("hf-hub:", "hf_hub:")) else text
    log.info("fetching %s from the Hugging Face hub", repo_id)
    try:
        return hub_download(repo_id, "model.safetensors")
    except Exception as e:  # noqa: BLE001 - every hub failure (offline, 404, auth) gets the same advice
        raise CheckpointError(
            f"could not fetch {repo_id} from the Hugging Face hub ({type(e).__name__}: {str(e).splitlines()[0][:400]}). "
            "If this machine is offline, download model.safetensors on a connected machine and pass its local path "
            "with --weights PATH") from e


# ---------------------------------------------------------------------------------------------------------------
# Loading into a model


@dataclass
class LoadReport:
    source: str
    layout: str
    loaded: int
    head_reset: bool = False
    ignored: list[str] = field(default_factory=list)
    other_parts: dict[str, int] = field(default_factory=dict)  # dense checkpoints: neck/head prefixes, not loaded
    unused: list[str] = field(default_factory=list)  # dense checkpoints: backbone keys the official forward skips

    def __str__(self) -> str:
        extra = ", classifier head re-initialised" if self.head_reset else ""
        ign = f", {len(self.ignored)} classifier keys ignored" if self.ignored else ""
        parts = "".join(f", {n} {p}.* keys not part of the backbone (not loaded)" for p, n in self.other_parts.items())
        unused = f", unused by the official forward: {', '.join(self.unused)}" if self.unused else ""
        return f"loaded {self.loaded} tensors from {self.source} ({self.layout} layout{extra}{ign}{parts}{unused})"


def load_weights(model: NextViT, source: str | os.PathLike, *, reset_head: bool = False) -> LoadReport:
    """Load a checkpoint of either layout into ``model`` in place.

    ``reset_head=True`` keeps the model's freshly initialised classifier when the checkpoint's has another class
    count (fine-tuning to new classes); without it such a mismatch is an error. A model without a classifier
    (``num_classes=0`` or features mode) ignores the checkpoint's head. Any other missing, unexpected or
    mis-shaped key raises ``CheckpointMismatchError`` listing them.

    Example::

        model = create_model("nextvit_small")
        load_weights(model, "nextvit_small_in1k.pth")
    """
    path = resolve_source(source)
    sd = read_state_dict(path)
    dense = dense_backbone(sd)
    if dense is not None:
        if not model.cfg.features_only or model.cfg.feature_norms != dense.feature_norms:
            raise CheckpointMismatchError(
                f"{source} is an official {dense.layout.split('-')[1]} backbone checkpoint: it has no classifier and "
                f"its four stage outputs are normalized as feature_norms={dense.feature_norms!r}; build the model with "
                f"create_model(..., features_only=True, feature_norms={dense.feature_norms!r}) (edgevit convert: "
                "--features; the CLI picks the normalization from the checkpoint)",
                layout=dense.layout, missing=[], unexpected=[], mismatched=[])
        sd = dense.state_dict
    layout = detect_layout(sd)
    if layout == "official":
        sd = official_to_timm(sd, model.cfg)
    report = _load_internal(model, sd, layout=dense.layout if dense else layout, source=str(source),
                            reset_head=reset_head)
    if dense is not None:
        report.other_parts, report.unused = dense.other_parts, dense.unused
        log.info("%s", report)
    return report


def _load_internal(model: NextViT, sd: dict[str, torch.Tensor], *, layout: str, source: str,
                   reset_head: bool) -> LoadReport:
    own = model.state_dict()
    report = LoadReport(source=source, layout=layout, loaded=0)
    has_fc = "head.fc.weight" in own
    head_keys = [k for k in sd if k.startswith("head.fc.")]
    if head_keys and not has_fc:
        report.ignored = head_keys
        sd = {k: v for k, v in sd.items() if k not in head_keys}
    elif reset_head and has_fc:
        if "head.fc.weight" in sd and sd["head.fc.weight"].shape != own["head.fc.weight"].shape:
            sd = {k: v for k, v in sd.items() if k not in head_keys}
            report.head_reset = True

    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    if report.head_reset:
        missing = [k for k in missing if not k.startswith("head.fc.")]
    unexpected = [k for k in sd if k not in own]
    mismatched = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in sd
                  if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        message = _mismatch_message(source, layout, model.cfg.name, missing, unexpected, mismatched)
        theirs, ours = checkpoint_attention(sd), model.cfg.attention
        if theirs is not None and theirs != ours:
            how = ("carry it over with `edgevit adapt --attention {0} --weights CKPT --data IMAGES --out NEW` "
                   "(initialises the variant from it and distils), or convert it as it is with --attention {1}"
                   if theirs == "emhsa" else "build the model with --attention {1} (create_model(..., attention="
                   "'{1}'))").format(ours, theirs)
            message = (f"checkpoint {source} holds {theirs!r} attention but the model was built with {ours!r}: "
                       f"{how}\n{message}")
        raise CheckpointMismatchError(message, layout=layout, missing=missing, unexpected=unexpected,
                                      mismatched=mismatched)
    merged = dict(own)
    merged.update(sd)
    model.load_state_dict(merged, strict=True)
    report.loaded = len(sd)
    log.info("%s", report)
    return report


def checkpoint_attention(sd: dict[str, torch.Tensor]) -> str | None:
    """Which NTB attention a (timm-layout) state dict was saved from, by its keys and shapes; None if it has no
    NTB attention keys."""
    keys = [k for k in sd if ".e_mhsa." in k]
    if not keys:
        return None
    if any(k.endswith(".e_mhsa.temperature") for k in keys):
        return "xca"
    if any(".e_mhsa.hi_k." in k for k in keys):
        return "hilo"
    q = next((sd[k] for k in keys if k.endswith(".e_mhsa.q.weight")), None)
    if q is None:
        return None
    return "avgpool" if q.ndim == 4 else "emhsa"  # the variants' projections are 1x1 convolutions


def _mismatch_message(source, layout, name, missing, unexpected, mismatched) -> str:
    def show(items, n=8):
        items = [str(i) for i in items]
        more = f" ... and {len(items) - n} more" if len(items) > n else ""
        return ", ".join(items[:n]) + more

    lines = [f"checkpoint {source} ({layout} layout detected) does not fit model {name}:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {show(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {show(unexpected)}")
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}): "
                     + show(f"{k} checkpoint {a} vs model {b}" for k, a, b in mismatched))
    only_head = mismatched and all(k.startswith("head.fc.") for k, _, _ in mismatched) and not missing and not unexpected
    if only_head:
        lines.append("  only the classifier differs: pass --reset-head (reset_head=True) to train a new head")
    else:
        lines.append("  check that --model names the same variant (small/base/large) the checkpoint was trained as")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Saving


def save_weights(model: NextViT, path: str | os.PathLike, *, layout: str = "timm", overwrite: bool = False,
                 dtype: torch.dtype | None = None) -> Path:
    """Save ``model``'s weights in ``layout`` ('official' or 'timm'); ``.safetensors`` or a torch file by suffix.

    The official layout in a torch file is wrapped as ``{'model': state_dict}`` like the release files. ``dtype``
    (e.g. ``torch.float16``) casts the floating-point tensors; loading casts them back to the model's dtype.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown checkpoint layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    path = Path(path)
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise ConfigError(f"cannot tell the file format of {path}; use one of {', '.join(CHECKPOINT_SUFFIXES)}")
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    if layout == "official":
        sd = timm_to_official(sd, model.cfg)
    with atomic_file(path, overwrite=overwrite) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(sd, str(tmp), metadata={"format": "pt", "edgevit_model": model.cfg.name, "layout": layout,
                                              "edgevit_attention": model.cfg.attention})
        else:
            torch.save({"model": sd} if layout == "official" else sd, tmp)
    return path
