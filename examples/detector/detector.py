"""A small detector with Next-ViT as its backbone: the stride-8/16/32 stage maps into an FPN, then one shared
anchor-free head per level (class scores and box distances), the YOLO-style layout users put Next-ViT into.
Written for edgevit's example; no third-party detector code.

    edgevit convert --module examples/detector/detector.py:build --model nextvit_small --random-init \\
        --img-size 640 --target onnx --out out/detector_onnx
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import edgevit


class FPNDetector(nn.Module):
    """Next-ViT features (strides 8, 16, 32) -> top-down FPN -> per level: ``p{3,4,5}_cls`` (B, classes, H, W)
    and ``p{3,4,5}_box`` (B, 4, H, W) distances to the box sides, in stride units."""

    output_names = ("p3_cls", "p3_box", "p4_cls", "p4_box", "p5_cls", "p5_box")

    def __init__(self, backbone: nn.Module, num_classes: int = 80, width: int = 64):
        super().__init__()
        self.backbone = backbone
        chs = backbone.cfg.stage_out_chs[1:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in chs)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in chs)
        self.tower = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.cls = nn.Conv2d(width, num_classes, 1)
        self.box = nn.Conv2d(width, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _, c3, c4, c5 = self.backbone(x)
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, size=c4.shape[-2:], mode="nearest")
        p3 = self.lateral[0](c3) + F.interpolate(p4, size=c3.shape[-2:], mode="nearest")
        outs = []
        for p, smooth in zip((p3, p4, p5), self.smooth):
            f = self.tower(smooth(p))
            outs += [self.cls(f), F.relu(self.box(f))]
        return tuple(outs)


def build(variant: str = "nextvit_small", num_classes: int = 80) -> FPNDetector:
    """The detector on an edgevit Next-ViT backbone (``--model`` names the variant; weights: ``--weights`` for the
    whole detector's state dict, or load the backbone's here with ``edgevit.load_weights``)."""
    return FPNDetector(edgevit.create_model(variant, features_only=True), num_classes=num_classes).eval()


def build_tiny() -> FPNDetector:
    """The same detector on the millisecond test backbone (edgevit's tests use it)."""
    return FPNDetector(edgevit.create_model("nextvit_test_tiny", features_only=True), num_classes=5, width=32).eval()
