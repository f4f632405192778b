"""Build the eval-mode model a conversion starts from, and name its outputs."""

from __future__ import annotations

from pathlib import Path

from edgevit.errors import ConfigError
from edgevit.models.checkpoint import load_weights
from edgevit.models.nextvit import create_model, get_config
from edgevit.models.random_init import randomize_


def build_model(*, model: str, weights: str | None, random_init: bool, seed: int = 0,
                num_classes: int | None = None, features: bool = False, reset_head: bool = False,
                attention: str = "emhsa"):
    """The eval-mode PyTorch model a conversion starts from."""
    if not weights and not random_init:
        weights = embedded_weights(model)
        if weights is None:
            raise ConfigError("no weights given: pass --weights PATH_OR_HUB_ID (a checkpoint or e.g. "
                              "timm/nextvit_small.bd_in1k), or --random-init for deterministic random weights")
    norms = None
    if weights and not random_init:
        from edgevit.models.checkpoint import checkpoint_feature_norms

        norms = checkpoint_feature_norms(weights)  # an official detection/segmentation backbone: no classifier
        if norms is not None and not features:
            raise ConfigError(f"{weights} is an official detection/segmentation backbone checkpoint (mmdet/mmseg "
                              "layout, the backbone under 'backbone.'): it has no classifier; pass --features to "
                              "convert its four stage outputs")
    net = create_model(model, num_classes=num_classes, features_only=features, feature_norms=norms,
                       attention=attention)
    if random_init:
        randomize_(net, seed=seed)
    else:
        load_weights(net, weights, reset_head=reset_head)
    return net.eval()


def output_names(net) -> tuple[str, ...]:
    declared = getattr(net, "edgevit_output_names", None)  # a whole model from --module (user_module)
    if declared is not None:
        return tuple(declared)
    if net.cfg.features_only:
        return ("stage1", "stage2", "stage3", "stage4")
    return ("logits",) if net.cfg.num_classes > 0 else ("embedding",)


ASSETS = Path(__file__).resolve().parents[1] / "assets"


def embedded_weights(model: str) -> str | None:
    """Path of the checkpoint shipped with the package for ``model`` (None if it ships none)."""
    name = get_config(model).embedded_weights
    if name is None:
        return None
    path = ASSETS / name
    if not path.is_file():
        raise ConfigError(f"the embedded checkpoint {path} of {model} is missing from this install; reinstall "
                          "edgevit or run tools/train_reference.py")
    return str(path)


def embedded_labels(model: str) -> str | None:
    name = get_config(model).embedded_labels
    return str(ASSETS / name) if name and (ASSETS / name).is_file() else None


def embedded_data(model: str, split: str) -> str | None:
    """The shipped ``calib`` or ``eval`` image folder of ``model``'s reference data set, if any."""
    name = get_config(model).embedded_data
    path = ASSETS / name / split if name else None
    return str(path) if path is not None and path.is_dir() else None
