"""What several targets' modules share and that is no part of the ``Target`` contract: running a fixed-batch artifact
over any number of samples, the minor release apps are asked for, a quiet block around a chatty converter, and the
torch.export node that leaves a module (drift's link between a Next-ViT block and a runtime's values)."""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Callable

import numpy as np


def quiet() -> contextlib.ExitStack:
    """Warnings off, stdout and stderr captured: converters that draw progress bars and warn about versions."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def stated(cfg, io_spec, checked_with: str) -> tuple[str, str, str]:
    """(author, license, description) for an artifact's own metadata: what is known, nothing invented. License and
    author are the user's ``--license`` / ``--author`` (left unstated otherwise); the weights are named by file and
    hash; ``checked_with`` names the runtime that gates parity."""
    prov = io_spec.provenance or {}
    mode = "features" if cfg.features else "classifier"
    description = (
        f"{cfg.model} ({mode}), {cfg.precision}, converted by edgevit {prov.get('edgevit', '')} from "
        f"{prov.get('weights', 'unknown weights')} (weights sha256 {str(prov.get('weights_sha256', ''))[:12]}); "
        f"parity against PyTorch gated with the {checked_with}, result in the artifact folder's manifest")
    return (prov.get("author") or "not stated (pass --author)",
            prov.get("license") or "not stated (pass --license; check your checkpoint's license)", description)


def unit_output_node(graph, path: str) -> str | None:
    """The name of the one node of ``graph`` inside module ``path`` whose value is used outside it (the unit's
    output), from torch.export's ``nn_module_stack``; None when there is not exactly one."""
    import torch

    def inside(node) -> bool:
        stack = node.meta.get("nn_module_stack") or {}
        return any(p == path or p.startswith(path + ".") for p, _ in stack.values())

    members = {n for n in graph.nodes if inside(n)}
    # under symbolic height/width a unit also hands sizes (SymInts) to later reshapes: those are not its output
    leaving = [n for n in members if any(u not in members for u in n.users)
               and isinstance(n.meta.get("val"), torch.Tensor)]
    return leaving[0].name if len(leaving) == 1 else None


def minor_release(version: str) -> str:
    """``1.31.1`` -> ``1.31.0``: edgevit asks apps for the converter's minor release, any patch of it."""
    major, minor = (version.split("+")[0].split(".") + ["0", "0"])[:2]
    return f"{major}.{minor}.0"


def run_batched(fn: Callable[[np.ndarray], list[np.ndarray]], x: np.ndarray, batch: int | None) -> list[np.ndarray]:
    """Run a fixed-batch artifact over any number of samples; the tail is padded and trimmed."""
    if batch is None or len(x) == batch:
        return fn(x)
    chunks = []
    for i in range(0, len(x), batch):
        part = x[i:i + batch]
        n = len(part)
        if n < batch:
            part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
        chunks.append([o[:n] for o in fn(part)])
    return [np.concatenate(outs) for outs in zip(*chunks)]
