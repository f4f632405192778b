"""Whole models that contain Next-ViT: a user's detector or segmenter, built by a factory in the user's own file.

``edgevit convert --module path/to/file.py:factory`` imports that file (it is the user's code, run as they asked;
checkpoints are still only read as data) and calls ``factory()`` with no arguments. The result must be an
``nn.Module`` with an edgevit Next-ViT inside (``edgevit.create_model``); the deploy rewrites then apply to the
Next-ViT part and parity is checked on the whole model's outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from edgevit.config import parse_module_spec as parse_spec
from edgevit.errors import CheckpointMismatchError, ConfigError


def load_factory(spec: str):
    file, name = parse_spec(spec)
    module_name = "edgevit_user_" + hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]
    loader_spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    with user_code(f"importing --module file {file}"):
        loader_spec.loader.exec_module(module)
    factory = getattr(module, name, None)
    if not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module_name)
        raise ConfigError(f"{file} has no function {name!r}; functions defined there: {', '.join(found) or 'none'}")
    return factory


@contextlib.contextmanager
def user_code(what: str):
    """Run the user's own code: its exceptions, and a ``sys.exit`` inside it, become a ConfigError (exit 2) that
    names what was being done and ends with the frames of the user's own files, shown once; an interrupt stays an
    interrupt and edgevit's own errors pass through."""
    import traceback

    try:
        yield
    except (KeyboardInterrupt, ConfigError):
        raise
    except SystemExit as e:
        raise ConfigError(f"{what}: the user's code called sys.exit({e.code!r}); a --module factory must return a "
                          "model, not exit") from None
    except Exception as e:  # noqa: BLE001 - anything the user's code raises is theirs to fix: name it
        own = str(Path(__file__).resolve().parents[1])
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if not f.filename.startswith(own) and "site-packages" not in f.filename
                  and not f.filename.startswith("<")]
        where = "".join(traceback.format_list(frames[-5:])).rstrip()
        raise ConfigError(f"{what} failed: {type(e).__name__}: {e}" + (f"\n{where}" if where else "")) from None


class TupleOutputs(nn.Module):
    """A model returning a dict of tensors, returning them as a tuple in ``keys`` order (what exporters name)."""

    def __init__(self, model: nn.Module, keys: tuple[str, ...]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, x: torch.Tensor):
        out = self.model(x)
        return tuple(out[k] for k in self.keys)


def output_names_of(net: nn.Module, example: torch.Tensor) -> tuple[tuple[str, ...], nn.Module]:
    """The model's output names (its ``output_names`` attribute, a dict's keys, else ``output``/``out{i}``) and the
    module to export (dict outputs become a tuple)."""
    with torch.no_grad(), user_code(f"running the model's forward on a {tuple(example.shape)} input"):
        out = net(example)
    if isinstance(out, dict):
        if not all(isinstance(v, torch.Tensor) for v in out.values()):
            raise ConfigError("the model's dict output must map names to tensors")
        return tuple(out), TupleOutputs(net, tuple(out)).eval()
    outs = [out] if isinstance(out, torch.Tensor) else list(out) if isinstance(out, (list, tuple)) else None
    if outs is None or not all(isinstance(o, torch.Tensor) for o in outs):
        raise ConfigError(f"the model must return a tensor, a tuple/list of tensors or a dict of tensors, got "
                          f"{type(out).__name__}")
    declared = getattr(net, "output_names", None)
    if declared is not None:
        if len(declared) != len(outs):
            raise ConfigError(f"the model declares {len(declared)} output_names but returns {len(outs)} outputs")
        return tuple(declared), net
    return (("output",) if len(outs) == 1 else tuple(f"out{i}" for i in range(len(outs)))), net


def build_user_model(spec: str, *, model: str, weights: str | None, random_init: bool, seed: int,
                     img_size: tuple[int, int]) -> tuple[nn.Module, tuple[str, ...]]:
    """(eval-mode whole model to convert, its output names). ``weights``: a state dict of the whole model (read as
    data, strict); ``random_init``: the Next-ViT part gets edgevit's deterministic random weights with measured
    BatchNorm statistics, the rest the factory's initialization under ``seed``; neither: the factory's own."""
    from edgevit.models.checkpoint import read_state_dict, resolve_source
    from edgevit.models.nextvit import find_nextvit
    from edgevit.models.random_init import randomize_

    factory = load_factory(spec)
    with torch.random.fork_rng(), user_code(f"calling {spec}()"):  # deterministic, the caller's RNG untouched
        torch.manual_seed(seed)
        net = factory()
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--module factory {spec} returned {type(net).__name__}, not a torch.nn.Module")
    inner = find_nextvit(net)
    if not inner:
        raise ConfigError(f"the model built by {spec} contains no edgevit Next-ViT; build its backbone with "
                          "edgevit.create_model(..., features_only=True)")
    if inner[0][1].cfg.name != model:
        raise ConfigError(f"the model built by {spec} has a {inner[0][1].cfg.name} backbone; pass --model "
                          f"{inner[0][1].cfg.name} (it sets the preprocessing defaults and the golden pictures)")
    if random_init:
        for _, backbone in inner:
            randomize_(backbone, seed=seed)
    elif weights:
        sd = read_state_dict(resolve_source(weights))
        own = net.state_dict()
        missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in sd if k not in own]
        mismatched = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in sd if k in own
                      and sd[k].shape != own[k].shape]
        if missing or unexpected or mismatched:
            raise CheckpointMismatchError(
                f"{weights} does not fit the model built by {spec} (--weights takes the whole model's state dict): "
                f"missing {missing[:6]}, unexpected {unexpected[:6]}, shape mismatches {mismatched[:4]}",
                layout="whole-model", missing=missing, unexpected=unexpected, mismatched=mismatched)
        net.load_state_dict({**own, **sd})
    from edgevit.models.checkpoint import check_finite

    check_finite(net.state_dict(), f"the model built by {spec}" + (f" with {weights}" if weights else ""))
    net = net.eval()
    names, exported = output_names_of(net, torch.zeros(1, 3, *img_size))
    exported.edgevit_output_names = names  # what edgevit.models.factory.output_names reports for it
    return exported, names
