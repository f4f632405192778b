"""Model facts for ``edgevit info``: size, compute and per-stage shapes at an input size."""

from __future__ import annotations

from edgevit.config import MAX_IMG_SIDE, parse_img_size
from edgevit.errors import ConfigError


def model_info(name: str, img_size: int | str | tuple[int, int] | None = None, *,
               num_classes: int | None = None) -> dict:
    """Parameters, MACs and per-stage output shapes of a registered model at ``img_size``.

    Example::

        >>> model_info("nextvit_small", 224)["params"]
        31763368
    """
    import torch

    from edgevit.models import create_model, get_config
    from edgevit.models.complexity import count_macs, count_params

    cfg = get_config(name)
    h, w = parse_img_size(img_size if img_size is not None else cfg.default_img_size)
    if max(h, w) > MAX_IMG_SIDE:  # the shapes are measured with a forward pass: a typo would exhaust memory
        raise ConfigError(f"--img-size {h}x{w} exceeds {MAX_IMG_SIDE} a side, the largest size edgevit converts")
    model = create_model(name, num_classes=num_classes)
    backbone = create_model(name, features_only=True)
    with torch.no_grad():
        maps = backbone(torch.zeros(1, 3, h, w))
    stages = []
    for s, (stage_plan, fmap) in enumerate(zip(cfg.stage_plan(), maps)):
        stages.append({
            "stage": s + 1,
            "stride": 4 * 2 ** s,
            "shape": list(fmap.shape),
            "blocks": [kind for kind, _ in stage_plan],
            "channels": [c for _, c in stage_plan],
        })
    return {
        "model": name,
        "img_size": [h, w],
        "params": count_params(model),
        "macs": count_macs(model, (h, w)),
        "num_classes": model.cfg.num_classes,
        "depths": list(cfg.depths),
        "stem_channels": list(cfg.stem_chs),
        "stages": stages,
    }


def format_info(info: dict) -> str:
    lines = [f"{info['model']} at {info['img_size'][0]}x{info['img_size'][1]}",
             f"  parameters : {info['params'] / 1e6:.2f} M ({info['params']:,})",
             f"  MACs       : {info['macs'] / 1e9:.3f} G ({info['macs']:,})",
             f"  classes    : {info['num_classes']}",
             f"  stem       : conv3x3 x4 -> {info['stem_channels']}",
             "  stage  stride  output shape          blocks"]
    for st in info["stages"]:
        kinds = " ".join(f"{k}{c}" for k, c in zip(st["blocks"], st["channels"]))
        lines.append(f"  {st['stage']:<6} {st['stride']:<7} {str(tuple(st['shape'])):<21} {kinds}")
    return "\n".join(lines)
