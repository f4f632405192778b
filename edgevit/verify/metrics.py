"""Parity metrics between an artifact's outputs and the PyTorch reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgevit.verify.tolerances import Tolerance


@dataclass
class OutputMetrics:
    """One output of an artifact against PyTorch over ``samples`` inputs. The same names are used by the accuracy
    report on evaluation images (``edgevit.quantize.accuracy``) and by ``verify --images``.

    ``top1_agreement`` is the plain share of samples whose top class is PyTorch's; ``near_ties`` counts the samples
    that disagree only because the reference's two classes are closer than the row's error bound allows to tell
    apart (``top1_flips``); ``top5_agreement`` is the share whose PyTorch top-1 class is in the artifact's top 5."""

    name: str
    samples: int
    max_abs: float
    max_rel: float
    cosine_min: float
    cosine_mean: float
    sqnr_db: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    near_ties: int | None = None

    def failures(self, tol: Tolerance, *, golden: bool = True) -> list[str]:
        """The tolerance row's checks. ``golden``: the sealed golden pair (every check of the row); otherwise a set of
        pictures (``--images``, evaluation images), where a row whose bounds do not hold on every input
        (``Tolerance.every_input`` False: int8) is judged by its mean cosine and agreement rate."""
        out = []
        every = golden or tol.every_input
        if every and not self.max_abs <= tol.max_abs:
            out.append(f"{self.name}: max abs error {self.max_abs:.3g} > {tol.max_abs:.3g}")
        if every and not self.max_rel <= tol.max_rel:
            out.append(f"{self.name}: max rel error {self.max_rel:.3g} > {tol.max_rel:.3g}")
        if every and not self.cosine_min >= tol.min_cosine:
            out.append(f"{self.name}: cosine {self.cosine_min:.7f} < {tol.min_cosine} (worst sample)")
        if not every and not self.cosine_mean >= tol.min_cosine:
            out.append(f"{self.name}: cosine mean {self.cosine_mean:.7f} < {tol.min_cosine}")
        if self.top1_agreement is not None:
            decided = self.top1_agreement + (self.near_ties or 0) / max(self.samples, 1)
            if decided < tol.min_top1 - 1e-12:
                ties = f" ({self.near_ties} more within the row's error: near-ties)" if self.near_ties else ""
                out.append(f"{self.name}: top-1 agreement {self.top1_agreement:.2%}{ties} < {tol.min_top1:.2%}")
        if self.top5_agreement is not None and self.top5_agreement < tol.min_top5 - 1e-12:
            out.append(f"{self.name}: top-5 agreement {self.top5_agreement:.2%} < {tol.min_top5:.2%}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


CLASS_OUTPUTS = ("logits", "probabilities")


def is_classifier(output_names) -> bool:
    return tuple(output_names) in (("logits",), ("probabilities",))


def top1_flips(ref: np.ndarray, out: np.ndarray, tie_rel: float) -> tuple[int, int]:
    """(samples whose top class differs from the reference's, how many of those are near-ties).

    A flip is a near-tie when the reference's margin between its own top class ``r`` and the artifact's ``a`` is
    within what errors the row accepts can cause: ``ref[r] - ref[a] <= 2 * tie_rel * max|ref|`` (per sample), since
    an error of at most ``e`` per score can close a margin of at most ``2 e``. ``tie_rel`` is the row's relative
    error bound (``Tolerance.tie_rel``); 0 makes every flip count."""
    r_top, o_top = ref.argmax(1), out.argmax(1)
    flips = np.flatnonzero(r_top != o_top)
    near = 0
    for i in flips:
        margin = float(ref[i, r_top[i]] - ref[i, o_top[i]])
        near += margin <= 2.0 * tie_rel * float(np.abs(ref[i]).max())
    return int(len(flips)), int(near)


def top5_agreement(ref: np.ndarray, out: np.ndarray) -> float:
    """Share of samples whose reference top-1 class is among the artifact's five highest scores (the standard
    top-5 reading; all classes when there are at most five)."""
    k = min(5, ref.shape[1])
    top = np.argsort(out, axis=1)[:, -k:]
    return float(np.mean([r in t for r, t in zip(ref.argmax(1), top)]))


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio, 10 log10(sum ref^2 / sum (out - ref)^2), in dB."""
    noise = float(np.sum((np.asarray(out, np.float64) - ref) ** 2))
    signal = float(np.sum(np.asarray(ref, np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


def compare(name: str, ref: np.ndarray, out: np.ndarray, *, classification: bool,
            tie_rel: float = 0.0) -> OutputMetrics:
    """Metrics of ``out`` against ``ref`` (both batched, first axis = sample).

    max_abs = max |out - ref|; max_rel = max_abs / max |ref|; cosine per sample over the flattened output (worst
    and mean); SQNR over everything; for classification outputs the top-1 agreement with its near-ties
    (``top1_flips`` with ``tie_rel``) and ``top5_agreement``.
    """
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"output {name}: artifact shape {out.shape} != reference shape {ref.shape}")
    if np.isnan(out).any():
        return OutputMetrics(name=name, samples=len(ref), max_abs=float("inf"), max_rel=float("inf"),
                             cosine_min=-1.0, cosine_mean=-1.0, sqnr_db=float("-inf"),
                             top1_agreement=0.0 if classification else None,
                             top5_agreement=0.0 if classification else None, near_ties=0 if classification else None)
    diff = np.abs(out - ref)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = max_abs / max(float(np.abs(ref).max()), 1e-12)
    r2, o2 = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    denom = np.linalg.norm(r2, axis=1) * np.linalg.norm(o2, axis=1)
    cos = np.where(denom > 0, (r2 * o2).sum(1) / np.maximum(denom, 1e-300), 1.0)
    m = OutputMetrics(name=name, samples=len(ref), max_abs=max_abs, max_rel=max_rel, cosine_min=float(cos.min()),
                      cosine_mean=float(cos.mean()), sqnr_db=sqnr_db(ref, out))
    if classification and ref.ndim == 2:
        flips, near = top1_flips(ref, out, tie_rel)
        m.top1_agreement = 1.0 - flips / len(ref)
        m.near_ties = near
        m.top5_agreement = top5_agreement(ref, out)
    return m
