"""Deploy rewrites: exact passes, each checked against the untouched model, and the form chosen per runtime.

``deploy(model, target)`` runs the target's passes in order on copies of the model; after every pass the new
model must match the original (fp32, the ("eager", "fp32") row of the tolerance table) on probe images, else
``RewriteParityError`` names the pass and the first block whose output drifted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from edgevit.errors import ConfigError, ParityError
# importing the pass modules registers their passes
from edgevit.rewrites import bchw_attention, export_forms, fold_bn, merge_prebn, pair_products, pool_conv  # noqa: F401
from edgevit.rewrites.base import PassReport, apply_pass, list_passes

log = logging.getLogger(__name__)

_BN_FOLDS = ("fold_conv_bn", "merge_pre_bn")

# The named deployed forms, each named after the runtime it was measured for, and why in one sentence; a target
# names the one its artifacts are exported from (``Target.form``). The measurements behind each choice are in
# docs/FORMS.md (figures live in benchmarks/results/, not in every user's manifest).
FORMS: dict[str, tuple[tuple[str, ...], str]] = {
    "onnx": (_BN_FOLDS + ("bchw_attention_kq", "delegate_friendly_ops"),
             "BN folded; BCHW attention with k^T q scores, which never transposes a full activation map "
             "(docs/FORMS.md#onnx-ort-tensorrt)"),
    "ort": (_BN_FOLDS + ("bchw_attention_kq", "delegate_friendly_ops"),
            "as onnx: the .ort file is the same graph optimised for the CPU EP (docs/FORMS.md#onnx-ort-tensorrt)"),
    "tensorrt": (_BN_FOLDS + ("bchw_attention_kq", "delegate_friendly_ops"),
                 "as onnx: the TensorRT-ready ONNX is the onnx target's graph (docs/FORMS.md#onnx-ort-tensorrt)"),
    "coreml": (_BN_FOLDS + ("bchw_attention_split", "delegate_friendly_ops"),
               "BN folded; channels-first attention split per head, every activation rank 4, no transposes: "
               "Apple's Neural Engine guidance (docs/FORMS.md#coreml-and-executorch-with-the-coreml-delegate)"),
    "executorch": (_BN_FOLDS + ("delegate_friendly_ops",),
                   "BN folded; token-layout attention as the model writes it, every op in XNNPACK "
                   "(docs/FORMS.md#executorch-xnnpack)"),
    "litert": (_BN_FOLDS + ("delegate_friendly_ops", "pools_as_depthwise_conv", "products_pair_as_two"),
               "BN folded; token-layout attention, one form for every precision, window means as depthwise "
               "convolutions (docs/FORMS.md#litert)"),
}


# passes whose subject a Next-ViT may not have at all: changing nothing is then right, not a sign of a misapplied pass
MAY_FIND_NOTHING = ("products_pair_as_two",)


class RewriteParityError(ParityError):
    def __init__(self, message: str, *, pass_name: str, block: str | None):
        super().__init__(message)
        self.pass_name = pass_name
        self.block = block


@dataclass
class DeployResult:
    model: nn.Module
    target: str
    reason: str
    reports: list[PassReport] = field(default_factory=list)
    parity: list[dict] = field(default_factory=list)

    def to_manifest(self) -> dict:
        return {"form": "deployed", "reason": self.reason,
                "passes": [dict(r.to_dict(), parity=p) for r, p in zip(self.reports, self.parity)]}


def forms_for(form: str) -> tuple[tuple[str, ...], str]:
    """(passes, reason) of a named form; an unknown name is an error, never another form's passes."""
    if form not in FORMS:
        raise ConfigError(f"no deployed form is named {form!r}; forms: {', '.join(FORMS)} (a target names its own "
                          "with Target.form)")
    return FORMS[form]


def probe_images(img_size: tuple[int, int], n: int = 2, seed: int = 7) -> torch.Tensor:
    from edgevit.models.random_init import synthetic_images

    return synthetic_images(n, img_size, seed=seed)


def _flat(out) -> list[torch.Tensor]:
    """A model's outputs as a flat list of tensors (a tensor, a list/tuple, a dict in key order, nested)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    raise ConfigError(f"a model output of type {type(out).__name__} is not a tensor, list, tuple or dict of tensors")


def _compare(ref: list[torch.Tensor], new: list[torch.Tensor]) -> dict:
    from edgevit.verify.metrics import compare

    worst = None
    for i, (a, b) in enumerate(zip(ref, new)):
        m = compare(f"out{i}", a.numpy(), b.numpy(), classification=False)
        if worst is None or m.max_rel > worst.max_rel:
            worst = m
    return worst


def deploy(model: nn.Module, target: str = "onnx", *, passes: tuple[str, ...] | None = None,
           img_size: tuple[int, int] | None = None, check: bool = True) -> DeployResult:
    """Return the deployed form ``target`` (a name of ``FORMS``: a target's ``Target.form``) of ``model`` with one
    report per pass; ``model`` is untouched.

    Example::

        result = deploy(model, "executorch", img_size=(224, 224))
        fast = result.model
    """
    from edgevit.verify.tolerances import tolerance_for

    if passes is not None:  # the caller's list (drift replays a manifest's): ``target`` names no form then
        unknown = [p for p in passes if p not in list_passes()]
        if unknown:
            raise ConfigError(f"unknown rewrite passes {unknown}; known: {', '.join(list_passes())}")
        chosen, reason = tuple(passes), "passes chosen by the caller"
    else:
        chosen, reason = forms_for(target)
    from edgevit.models.nextvit import find_nextvit

    inner = find_nextvit(model)
    if not inner:
        raise ConfigError(f"deploy rewrites Next-ViT blocks, and {type(model).__name__} contains no edgevit Next-ViT "
                          "(build the backbone with edgevit.create_model)")
    variants = sorted({net.cfg.attention for _, net in inner} - {"emhsa"})
    if variants and passes is None:
        # an attention variant is already written on BCHW tensors: the E-MHSA layout rewrites do not apply to it
        chosen = tuple(p for p in chosen if not p.startswith("bchw_attention_"))
        reason += (f". Attention variant {', '.join(variants)}: already on BCHW tensors, so the E-MHSA attention "
                   "rewrites are skipped; the BatchNorm merges fold into its projections")
    size = img_size or (inner[0][1].cfg.default_img_size,) * 2
    x = probe_images(size)
    tol = tolerance_for("eager", "fp32")
    from edgevit.models.checkpoint import check_finite

    check_finite(model.state_dict(), "the model to rewrite")
    with torch.no_grad():
        reference = _flat(model.eval()(x))
    _check_finite_outputs(reference, "the original model")
    result = DeployResult(model=model, target=target, reason=reason)
    current = model
    for name in chosen:
        new, report = apply_pass(name, current)
        if not report.changed and name in MAY_FIND_NOTHING:
            continue  # its subject is absent from this model (e.g. no variant's batched product): nothing to record
        if not report.changed:
            raise ConfigError(f"rewrite pass {name} changed nothing in {type(model).__name__}: it is required for "
                              f"target {target}; the model is already rewritten or not a Next-ViT")
        # finite weights in, non-finite out: a BatchNorm whose scale overflows when folded (a tiny running_var)
        check_finite(new.state_dict(), f"the weights made by rewrite pass {name} from finite ones (a BatchNorm "
                                       "with a near-zero running_var overflows when folded)")
        metrics = {}
        if check:
            with torch.no_grad():
                m = _compare(reference, _flat(new(x)))
            metrics = {"max_abs": m.max_abs, "max_rel": m.max_rel, "cosine_min": m.cosine_min}
            if m.failures(tol):
                block = _first_drifting_block(model, new, x, tol)
                raise RewriteParityError(
                    f"rewrite pass {name} broke parity" + (f" in block {block}" if block else "") + ": "
                    + "; ".join(m.failures(tol)), pass_name=name, block=block)
        log.info("pass %s: %d changes, max_rel %.2e", name, len(report.changed), metrics.get("max_rel", 0.0))
        result.reports.append(report)
        result.parity.append(metrics)
        current = new
    result.model = current
    return result


def _check_finite_outputs(outs: list[torch.Tensor], what: str) -> None:
    from edgevit.errors import CheckpointError

    for i, t in enumerate(outs):
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{what} computes non-finite values in output {i} on ordinary pictures although "
                                  "its weights are finite: weights this large overflow fp32; check the checkpoint")


def _first_drifting_block(ref: nn.Module, new: nn.Module, x: torch.Tensor, tol) -> str | None:
    """Name of the first stem unit or block whose output differs beyond ``tol`` (module names are kept by passes)."""
    from edgevit.models.nextvit import find_nextvit

    inner = find_nextvit(ref)
    prefix = f"{inner[0][0]}." if inner and inner[0][0] else ""

    def capture(model):
        outs, handles = {}, []
        for full, m in model.named_modules():
            if not full.startswith(prefix):
                continue
            name = full[len(prefix):]
            if name.startswith("stem.") and name.count(".") == 1 or name.count(".") == 3 and ".blocks." in name:
                handles.append(m.register_forward_hook(lambda mod, i, o, name=full: outs.__setitem__(name, o)))
        with torch.no_grad():
            model(x)
        for h in handles:
            h.remove()
        return outs

    a, b = capture(ref), capture(new)
    for name, out in a.items():
        if name in b:
            m = _compare([out], [b[name]])
            if m.failures(tol):
                return name
    return None


def aten_op_counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Operator counts of the model's torch.export graph (what every toolchain starts from)."""
    from collections import Counter

    with torch.no_grad():
        graph = torch.export.export(model, (example,), strict=False).graph
    counts = Counter(str(n.target).replace("aten.", "").split(".")[0] for n in graph.nodes
                     if n.op == "call_function")
    return dict(sorted(counts.items()))
