"""The one tolerance table, keyed by (row, precision). Nothing else widens or narrows these numbers.

The rows are defined here (``FP32``, ``FP16``, ``WEIGHT_ONLY``, ``INT8``, each with its measurements); which row a
target's precision is held to is the target's own statement (``Target.tolerance_rows``, under
``edgevit/targets/``), added to this table when the target registers (``add_rows``).

``max_rel`` is the largest absolute difference divided by the largest magnitude of the reference output (so it is
stable where single logits are near zero). ``min_cosine`` bounds the worst sample's cosine.

``min_top1`` bounds the top-1 agreement with PyTorch, where a flip between two classes whose reference margin is
within ``2 * tie_rel * max|scores|`` (what an error of ``tie_rel`` relative per score can cause) is a *near-tie*:
reported, never counted against the row. ``tie_rel`` is the row's ``max_rel`` where that bounds the arithmetic
error (fp32, fp16, weight-only), and 0 for int8, whose ``max_rel`` is a loose guard against broken artifacts, not
an accuracy bound: every int8 flip counts. ``min_top5`` bounds the share of samples whose PyTorch top-1 class is
in the artifact's top five (0: reported, not gated).

One rule for every set of pictures (``edgevit.verify.metrics.OutputMetrics.failures``): the golden pair is held to
every check; a set of pictures (``--images`` at convert and verify, the accuracy report's evaluation images,
``edgevit evaluate``) is held to every check too where ``every_input`` is True (arithmetic error bounds hold on any
picture), and to the *mean* cosine and the top-1/top-5 agreement where it is False (int8: a held-out picture's
activations beyond the calibration ranges are clipped, so one picture's largest error is not a verdict on the
artifact; ``edgevit drift`` shows where the worst one goes wrong).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevit.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    max_abs: float
    max_rel: float
    min_cosine: float
    min_top1: float
    min_top5: float
    tie_rel: float  # the relative error per score within which a top-1 flip is a near-tie (module docstring)
    every_input: bool = True  # max_abs / max_rel / worst cosine hold on any picture, not only on the golden pair


# fp32: export and runtime re-associate sums (fused convs, different GEMM blocking), so errors grow with depth:
# 1e-5 relative on the tiny config, 1.4e-5 (ORT) to 3.4e-5 (XNNPACK) on Next-ViT-S.
# max_abs is loose because random-init logits reach ~200 (trained ones ~20); max_rel carries the fp32 check.
FP32 = Tolerance(max_abs=5e-2, max_rel=2e-4, min_cosine=0.99999, min_top1=1.0, min_top5=1.0, tie_rel=2e-4)

# fp16: max_abs is loose because random-init Next-ViT-S logits reach ~180 (seen on CoreML: 2.4 abs, 1.3% rel,
# cosine 0.99992); max_rel and cosine carry the check
# Reduced precisions also gate on top-1 agreement over the evaluation images (a 71%-agreeing int8 artifact fails by
# default); top-5 is reported there, not gated.
FP16 = Tolerance(max_abs=5.0, max_rel=2e-2, min_cosine=0.999, min_top1=0.99, min_top5=0.0, tie_rel=2e-2)
# weight-only compression (int8 weights, 8-bit palettes) on fp16 compute
WEIGHT_ONLY = Tolerance(max_abs=float("inf"), max_rel=0.05, min_cosine=0.995, min_top1=0.98, min_top5=0.0,
                        tie_rel=0.05)
INT8 = Tolerance(max_abs=float("inf"), max_rel=0.3, min_cosine=0.97, min_top1=0.95, min_top5=0.0, tie_rel=0.0,
                 every_input=False)

TOLERANCES: dict[tuple[str, str], Tolerance] = {
    # deploy rewrites, PyTorch eager vs eager: only the rounding of folded weights differs (seen: 5e-6 to 8e-6 on
    # Next-ViT-S, up to 2.6e-5 on the tiny config's stage-4 map with unclamped Gaussian inputs)
    ("eager", "fp32"): Tolerance(max_abs=1e-2, max_rel=5e-5, min_cosine=0.999999, min_top1=1.0, min_top5=1.0,
                                 tie_rel=5e-5),
}


def add_rows(key: str, rows: dict[str, Tolerance]) -> None:
    """Add a target's rows (``key``: the target's name or a delegate's row; precision -> row). A key/precision that
    is already in the table with another row is an error: nothing widens a row by registering twice."""
    for precision, row in rows.items():
        if not isinstance(row, Tolerance):
            raise ConfigError(f"tolerance row {key}/{precision} is not a Tolerance")
        if TOLERANCES.setdefault((key, precision), row) is not row:
            raise ConfigError(f"tolerance row {key}/{precision} is already defined differently")


def tolerance_for(target: str, precision: str) -> Tolerance:
    try:
        return TOLERANCES[(target, precision)]
    except KeyError:
        known = ", ".join(f"{t}/{p}" for t, p in TOLERANCES)
        raise ConfigError(f"no tolerance is defined for {target}/{precision}; defined: {known}") from None
