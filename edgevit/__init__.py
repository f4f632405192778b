"""edgevit: Next-ViT from a PyTorch checkpoint to fast, verified on-device artifacts.

The public API is imported lazily so that ``import edgevit`` (and the CLI's ``--help``) does not pay for torch and
the toolchains::

    import edgevit
    model = edgevit.create_model("nextvit_small")
    edgevit.load_weights(model, "nextvit_small.pth")
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "create_model": "edgevit.models",
    "list_models": "edgevit.models",
    "get_config": "edgevit.models",
    "load_weights": "edgevit.models",
    "save_weights": "edgevit.models",
    "randomize_": "edgevit.models",
    "NextViT": "edgevit.models",
    "NextViTConfig": "edgevit.models",
    "model_info": "edgevit.info",
    "ConvertConfig": "edgevit.config",
    "convert": "edgevit.pipeline",
    "verify_dir": "edgevit.verify",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edgevit' has no attribute {name!r}")


def __dir__():
    return __all__
