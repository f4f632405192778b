"""Parity metrics between an artifact's outputs and the PyTorch reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgevit.verify.tolerances import Tolerance


@dataclass
class OutputMetrics:
    name: str
    samples: int
    max_abs: float
    max_rel: float
    min_cosine: float
    top1: float | None = None
    top5: float | None = None

    def failures(self, tol: Tolerance) -> list[str]:
        out = []
        if not self.max_abs <= tol.max_abs:
            out.append(f"{self.name}: max abs error {self.max_abs:.3g} > {tol.max_abs:.3g}")
        if not self.max_rel <= tol.max_rel:
            out.append(f"{self.name}: max rel error {self.max_rel:.3g} > {tol.max_rel:.3g}")
        if not self.min_cosine >= tol.min_cosine:
            out.append(f"{self.name}: cosine {self.min_cosine:.7f} < {tol.min_cosine}")
        if self.top1 is not None and self.top1 < tol.min_top1:
            out.append(f"{self.name}: top-1 agreement {self.top1:.2%} < {tol.min_top1:.2%}")
        if self.top5 is not None and self.top5 < tol.min_top5:
            out.append(f"{self.name}: top-5 agreement {self.top5:.2%} < {tol.min_top5:.2%}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


CLASS_OUTPUTS = ("logits", "probabilities")


def is_classifier(output_names) -> bool:
    return tuple(output_names) in (("logits",), ("probabilities",))


def _topk_agreement(ref: np.ndarray, out: np.ndarray, k: int, tie_rel: float) -> float:
    """Share of samples whose top-k class sets agree; classes within ``tie_rel`` x the sample's largest
    reference magnitude of the k-th reference score are ties."""
    k = min(k, ref.shape[1])
    agree = 0
    for r, o in zip(ref, out):
        tie = tie_rel * float(np.abs(r).max())
        kth = np.sort(r)[-k]
        strict = set(np.flatnonzero(r > kth + tie))  # must be in the artifact's top-k
        allowed = set(np.flatnonzero(r >= kth - tie))  # may be in it
        got = set(np.argsort(o)[-k:])
        agree += strict <= got <= allowed
    return agree / len(ref)


def compare(name: str, ref: np.ndarray, out: np.ndarray, *, classification: bool, tie: float) -> OutputMetrics:
    """``tie``: relative score gap (to the sample's largest reference magnitude) under which classes tie."""
    """Metrics of ``out`` against ``ref`` (both batched, first axis = sample).

    max_abs = max |out - ref|; max_rel = max_abs / max |ref|; cosine per sample over the flattened output.
    """
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"output {name}: artifact shape {out.shape} != reference shape {ref.shape}")
    diff = np.abs(out - ref)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = max_abs / max(float(np.abs(ref).max()), 1e-12)
    r2, o2 = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    denom = np.linalg.norm(r2, axis=1) * np.linalg.norm(o2, axis=1)
    cos = np.where(denom > 0, (r2 * o2).sum(1) / np.maximum(denom, 1e-300), 1.0)
    m = OutputMetrics(name=name, samples=len(ref), max_abs=max_abs, max_rel=max_rel, min_cosine=float(cos.min()))
    if classification and ref.ndim == 2 and not np.isnan(out).any():
        m.top1 = _topk_agreement(ref, out, 1, tie)
        m.top5 = _topk_agreement(ref, out, 5, tie)
    elif classification:
        m.top1 = m.top5 = 0.0
    if np.isnan(out).any():
        m.max_abs = m.max_rel = float("inf")
        m.min_cosine = -1.0
    return m
