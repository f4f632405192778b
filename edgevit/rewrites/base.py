"""Rewrite passes: each is pure (returns a new model) and reports what it changed."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from edgevit.errors import ConfigError


@dataclass
class PassReport:
    name: str
    changed: list[str] = field(default_factory=list)  # module paths that were rewritten
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "changed": len(self.changed), "modules": self.changed, **self.detail}


PassFn = Callable[[nn.Module], PassReport]  # mutates the copy it is given, returns what it changed

_PASSES: dict[str, tuple[PassFn, str]] = {}


def register_pass(name: str, doc: str):
    """Decorator registering an in-place pass function under ``name``; returns the function unchanged."""

    def wrap(fn: PassFn) -> PassFn:
        if name in _PASSES:
            raise ConfigError(f"rewrite pass {name!r} is already registered")
        _PASSES[name] = (fn, doc)
        return fn

    return wrap


def get_pass(name: str) -> PassFn:
    if name not in _PASSES:
        raise ConfigError(f"unknown rewrite pass {name!r}; known: {', '.join(sorted(_PASSES))}")
    return _PASSES[name][0]


def list_passes() -> dict[str, str]:
    return {k: doc for k, (_, doc) in _PASSES.items()}


def apply_pass(name: str, model: nn.Module) -> tuple[nn.Module, PassReport]:
    """Run pass ``name`` on a deep copy of ``model``; the input model is never touched."""
    new = copy.deepcopy(model).eval()
    with torch.no_grad():
        report = get_pass(name)(new)
    report.name = name
    return new, report


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = a * x + b per channel: a = gamma / sqrt(var + eps), b = beta - mean * a."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return a, bn.bias - bn.running_mean * a


class ChannelAffine(nn.Module):
    """y = x * scale + shift per channel: what is left of a BatchNorm that nothing linear follows."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().reshape(1, -1, 1, 1))
        self.register_buffer("shift", shift.detach().clone().reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def static_shape(*dims) -> bool:
    """True when every dim is a plain int. Under an export with dynamic height/width the dims are symbolic, and a
    branch on them would be decided once for the example's size and baked into the graph (torch.onnx's exporter does
    not refuse it): shape-dependent shortcuts must then take the path that is exact for every size."""
    return all(isinstance(d, int) for d in dims)
