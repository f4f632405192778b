"""Scale-aware float comparisons for the suite: two fp32 computations of the same function in different orders
(another kernel, GEMM blocking, fused ops, another CPU's vector width) differ by rounding that grows with the
values' magnitude and the reduction length, never by a fixed absolute amount. A bound of 1e-5 absolute passed on
the AMD EPYC the suite was written on and failed on an Intel Xeon with AMX (2.0e-5 on feature maps of magnitude
~10, issue 31), so every such comparison here is relative to the largest magnitude of the expected tensor.

``FP32_REL`` is the tolerance table's row for two fp32 PyTorch computations of one network
(``tolerance_for("eager", "fp32").max_rel``, justified there by measurement); a wrong computation (a misplaced
axis, a missing term) is off by a large fraction of that magnitude, so the bound still fails it.
"""

from __future__ import annotations

import numpy as np

from edgevit.verify.tolerances import tolerance_for

FP32_REL = tolerance_for("eager", "fp32").max_rel


def _np(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def max_rel_error(got, want) -> float:
    """max |got - want| / max |want|."""
    g, w = _np(got), _np(want)
    assert g.shape == w.shape, f"shape {g.shape} != {w.shape}"
    return float(np.abs(g - w).max() / max(np.abs(w).max(), np.finfo(np.float32).tiny)) if w.size else 0.0


def assert_fp32_close(got, want, *, rel: float = FP32_REL, what: str = "") -> None:
    """``got`` equals ``want`` up to fp32 reordering: max |got - want| <= rel * max |want|."""
    err = max_rel_error(got, want)
    assert err <= rel, f"{what + ': ' if what else ''}max |got - want| / max |want| = {err:.3g} > {rel:.3g}"
