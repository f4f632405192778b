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
    "deploy": "edgevit.rewrites",
    "verify_dir": "edgevit.verify",
    "drift": "edgevit.verify.drift:drift_dir",
    # not "bench": that name is the edgevit.bench subpackage, which replaces the attribute once it is imported
    "benchmark": "edgevit.bench.runner:bench",
}

# the curated API: each has an example in its docstring, and docs/api.md is generated from them (tools/api_doc.py)
DOCUMENTED = ("create_model", "load_weights", "model_info", "deploy", "ConvertConfig", "convert", "verify_dir",
              "drift", "benchmark")

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        module, _, attr = _API[name].partition(":")
        return getattr(importlib.import_module(module), attr or name)
    raise AttributeError(f"module 'edgevit' has no attribute {name!r}")


def __dir__():
    return __all__
