"""The measured cost of a quantized (or fp16) artifact: agreement with fp32 PyTorch, cosine, SQNR, accuracy."""

from __future__ import annotations

import numpy as np


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio, 10 log10(sum ref^2 / sum (out - ref)^2), in dB."""
    noise = float(np.sum((out.astype(np.float64) - ref) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


def accuracy_report(ref: np.ndarray, out: np.ndarray, labels: np.ndarray | None, *, source: str) -> dict:
    """``ref``/``out``: (N, classes) scores of fp32 PyTorch and of the artifact on the same N images."""
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64)
    r2, o2 = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    cos = (r2 * o2).sum(1) / np.maximum(np.linalg.norm(r2, axis=1) * np.linalg.norm(o2, axis=1), 1e-300)
    rep = {"images": int(len(ref)), "source": source, "sqnr_db": sqnr_db(ref, out),
           "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
    if ref.ndim == 2:
        rep["top1_agreement"] = float((ref.argmax(1) == out.argmax(1)).mean())
        if labels is not None:
            rep["top1_fp32"] = float((ref.argmax(1) == labels).mean())
            rep["top1_artifact"] = float((out.argmax(1) == labels).mean())
            rep["accuracy_drop_points"] = 100.0 * (rep["top1_fp32"] - rep["top1_artifact"])
    return rep


def within_budget(rep: dict, *, max_accuracy_drop: float | None, min_agreement: float | None) -> bool:
    if max_accuracy_drop is not None and rep.get("accuracy_drop_points", float("inf")) > max_accuracy_drop:
        return False
    if min_agreement is not None and rep.get("top1_agreement", 0.0) < min_agreement:
        return False
    return True


def format_accuracy(rep: dict) -> str:
    parts = [f"accuracy on {rep['images']} {rep['source']} images: top-1 agreement "
             f"{rep.get('top1_agreement', float('nan')):.2%}, cosine mean {rep['cosine_mean']:.5f} "
             f"(min {rep['cosine_min']:.5f}), SQNR {rep['sqnr_db']:.1f} dB"]
    if "top1_fp32" in rep:
        parts.append(f"  top-1 fp32 {rep['top1_fp32']:.2%} -> artifact {rep['top1_artifact']:.2%} "
                     f"(drop {rep['accuracy_drop_points']:.2f} points)")
    if rep.get("kept_float"):
        parts.append(f"  kept in float: {', '.join(rep['kept_float'])}")
    return "\n".join(parts)
