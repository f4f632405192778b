"""The measured cost of a quantized (or fp16) artifact: agreement with fp32 PyTorch, cosine, SQNR, accuracy."""

from __future__ import annotations

import numpy as np

from edgevit.verify.metrics import OutputMetrics, compare


def accuracy_report(ref: np.ndarray, out: np.ndarray, labels: np.ndarray | None, *, source: str,
                    tol=None) -> dict:
    """``ref``/``out``: (N, classes) scores of fp32 PyTorch and of the artifact on the same N images. The metrics
    and their names are ``edgevit.verify.metrics.compare``'s, the ones ``verify --images`` prints; ``tol`` (the
    artifact's tolerance row) says which top-1 flips are near-ties."""
    m = compare("scores", ref, out, classification=np.ndim(ref) == 2, tie_rel=tol.tie_rel if tol else 0.0)
    rep = {"images": int(len(ref)), "source": source, "sqnr_db": m.sqnr_db, "cosine_mean": m.cosine_mean,
           "cosine_min": m.cosine_min, "max_abs": m.max_abs, "max_rel": m.max_rel}
    if m.top1_agreement is not None:
        rep["top1_agreement"] = m.top1_agreement
        rep["near_ties"] = m.near_ties
        rep["top5_agreement"] = m.top5_agreement
        if labels is not None:
            rep["top1_fp32"] = float((np.asarray(ref).argmax(1) == labels).mean())
            rep["top1_artifact"] = float((np.asarray(out).argmax(1) == labels).mean())
            rep["accuracy_drop_points"] = 100.0 * (rep["top1_fp32"] - rep["top1_artifact"])
    return rep


def gate(rep: dict, tol) -> list[str]:
    """The tolerance row on the evaluation images, by the same rule as ``verify --images``
    (``OutputMetrics.failures`` for a set of pictures): a reduced-precision artifact that agrees with fp32 on 71%
    of them fails here, whatever the single golden picture says."""
    m = OutputMetrics(name=f"evaluation ({rep['images']} {rep['source']} images)", samples=rep["images"],
                      max_abs=rep["max_abs"], max_rel=rep["max_rel"], cosine_min=rep["cosine_min"],
                      cosine_mean=rep["cosine_mean"], sqnr_db=rep["sqnr_db"],
                      top1_agreement=rep.get("top1_agreement"), top5_agreement=rep.get("top5_agreement"),
                      near_ties=rep.get("near_ties"))
    return m.failures(tol, golden=False)


def within_budget(rep: dict, *, max_accuracy_drop: float | None, min_agreement: float | None) -> bool:
    if max_accuracy_drop is not None and rep.get("accuracy_drop_points", float("inf")) > max_accuracy_drop:
        return False
    if min_agreement is not None and rep.get("top1_agreement", 0.0) < min_agreement:
        return False
    return True


def format_accuracy(rep: dict) -> str:
    ties = f" (+{rep['near_ties']} near-ties)" if rep.get("near_ties") else ""
    parts = [f"accuracy on {rep['images']} {rep['source']} images: top-1 agreement "
             f"{rep.get('top1_agreement', float('nan')):.2%}{ties}, cosine mean {rep['cosine_mean']:.5f} "
             f"(min {rep['cosine_min']:.5f}), SQNR {rep['sqnr_db']:.1f} dB"]
    if "top1_fp32" in rep:
        parts.append(f"  top-1 fp32 {rep['top1_fp32']:.2%} -> artifact {rep['top1_artifact']:.2%} "
                     f"(drop {rep['accuracy_drop_points']:.2f} points)")
    if rep.get("kept_float"):
        parts.append(f"  kept in float: {', '.join(rep['kept_float'])}")
    return "\n".join(parts)
