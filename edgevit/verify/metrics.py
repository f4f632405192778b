"""Parity metrics between an artifact's outputs and the PyTorch reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgevit.verify.tolerances import Tolerance


# Two reference scores this close (relative to the sample's largest reference magnitude) are equal within fp32
# rounding: either order is the reference's answer. Nothing wider counts as a tie, so top-k agreement is the plain
# agreement rate (issue 13: a tie width of max_rel, 0.3 for int8, made the column unable to fail).
FP32_TIE = 4 * float(np.finfo(np.float32).eps)


@dataclass
class OutputMetrics:
    """One output of an artifact against PyTorch over ``samples`` inputs. The same names are used by the accuracy
    report on evaluation images (``edgevit.quantize.accuracy``) and by ``verify --images``."""

    name: str
    samples: int
    max_abs: float
    max_rel: float
    cosine_min: float
    cosine_mean: float
    sqnr_db: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None

    def failures(self, tol: Tolerance) -> list[str]:
        out = []
        if not self.max_abs <= tol.max_abs:
            out.append(f"{self.name}: max abs error {self.max_abs:.3g} > {tol.max_abs:.3g}")
        if not self.max_rel <= tol.max_rel:
            out.append(f"{self.name}: max rel error {self.max_rel:.3g} > {tol.max_rel:.3g}")
        return out + agreement_failures(self.name, self.cosine_min, self.top1_agreement, self.top5_agreement, tol)

    def to_dict(self) -> dict:
        return asdict(self)


def agreement_failures(name: str, cosine_min: float, top1: float | None, top5: float | None,
                       tol: Tolerance) -> list[str]:
    """The direction and top-class checks of a tolerance row (also applied to evaluation images)."""
    out = []
    if not cosine_min >= tol.min_cosine:
        out.append(f"{name}: cosine {cosine_min:.7f} < {tol.min_cosine}")
    if top1 is not None and top1 < tol.min_top1:
        out.append(f"{name}: top-1 agreement {top1:.2%} < {tol.min_top1:.2%}")
    if top5 is not None and top5 < tol.min_top5:
        out.append(f"{name}: top-5 agreement {top5:.2%} < {tol.min_top5:.2%}")
    return out


CLASS_OUTPUTS = ("logits", "probabilities")


def is_classifier(output_names) -> bool:
    return tuple(output_names) in (("logits",), ("probabilities",))


def topk_agreement(ref: np.ndarray, out: np.ndarray, k: int) -> float:
    """Share of samples whose top-k class sets are the same in ``out`` as in ``ref`` (plain agreement rate).

    Only reference scores equal within fp32 rounding (``FP32_TIE``) tie: a class tied with the k-th may stand in
    for it."""
    k = min(k, ref.shape[1])
    agree = 0
    for r, o in zip(ref, out):
        tie = FP32_TIE * float(np.abs(r).max())
        kth = np.sort(r)[-k]
        strict = set(np.flatnonzero(r > kth + tie))  # must be in the artifact's top-k
        allowed = set(np.flatnonzero(r >= kth - tie))  # may be in it
        got = set(np.argsort(o)[-k:])
        agree += strict <= got <= allowed
    return agree / len(ref)


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio, 10 log10(sum ref^2 / sum (out - ref)^2), in dB."""
    noise = float(np.sum((np.asarray(out, np.float64) - ref) ** 2))
    signal = float(np.sum(np.asarray(ref, np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


def compare(name: str, ref: np.ndarray, out: np.ndarray, *, classification: bool) -> OutputMetrics:
    """Metrics of ``out`` against ``ref`` (both batched, first axis = sample).

    max_abs = max |out - ref|; max_rel = max_abs / max |ref|; cosine per sample over the flattened output (worst
    and mean); SQNR over everything; top-k agreement per ``topk_agreement`` for classification outputs.
    """
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"output {name}: artifact shape {out.shape} != reference shape {ref.shape}")
    if np.isnan(out).any():
        return OutputMetrics(name=name, samples=len(ref), max_abs=float("inf"), max_rel=float("inf"),
                             cosine_min=-1.0, cosine_mean=-1.0, sqnr_db=float("-inf"),
                             top1_agreement=0.0 if classification else None,
                             top5_agreement=0.0 if classification else None)
    diff = np.abs(out - ref)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = max_abs / max(float(np.abs(ref).max()), 1e-12)
    r2, o2 = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    denom = np.linalg.norm(r2, axis=1) * np.linalg.norm(o2, axis=1)
    cos = np.where(denom > 0, (r2 * o2).sum(1) / np.maximum(denom, 1e-300), 1.0)
    m = OutputMetrics(name=name, samples=len(ref), max_abs=max_abs, max_rel=max_rel, cosine_min=float(cos.min()),
                      cosine_mean=float(cos.mean()), sqnr_db=sqnr_db(ref, out))
    if classification and ref.ndim == 2:
        m.top1_agreement = topk_agreement(ref, out, 1)
        m.top5_agreement = topk_agreement(ref, out, 5)
    return m
