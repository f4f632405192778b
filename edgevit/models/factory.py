"""Build the eval-mode model a conversion starts from, and name its outputs."""

from __future__ import annotations

from edgevit.errors import ConfigError
from edgevit.models.checkpoint import load_weights
from edgevit.models.nextvit import create_model
from edgevit.models.random_init import randomize_


def build_model(*, model: str, weights: str | None, random_init: bool, seed: int = 0,
                num_classes: int | None = None, features: bool = False, reset_head: bool = False):
    """The eval-mode PyTorch model a conversion starts from."""
    if not weights and not random_init:
        raise ConfigError("no weights given: pass --weights PATH_OR_HUB_ID (a checkpoint or e.g. "
                          "timm/nextvit_small.bd_in1k), or --random-init for deterministic random weights")
    net = create_model(model, num_classes=num_classes, features_only=features)
    if random_init:
        randomize_(net, seed=seed)
    else:
        load_weights(net, weights, reset_head=reset_head)
    return net.eval()


def output_names(net) -> tuple[str, ...]:
    if net.cfg.features_only:
        return ("stage1", "stage2", "stage3", "stage4")
    return ("logits",) if net.cfg.num_classes > 0 else ("embedding",)
