"""Parity metrics are what their names say: top-k agreement is the plain agreement rate with PyTorch's classes,
and the accuracy report on evaluation images uses the same numbers and names as verify --images."""

import numpy as np
import pytest

from edgevit.quantize.accuracy import accuracy_report, gate
from edgevit.verify.metrics import FP32_TIE, compare, topk_agreement
from edgevit.verify.tolerances import tolerance_for


def _plain_top1(ref, out):  # the independent definition
    return float(np.mean(np.argmax(ref, 1) == np.argmax(out, 1)))


def test_top1_is_the_plain_agreement_rate():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 10)) * 5
    out = ref + rng.normal(size=ref.shape) * 2.0  # enough noise to flip many close calls
    assert 0.3 < _plain_top1(ref, out) < 0.95
    assert topk_agreement(ref, out, 1) == pytest.approx(_plain_top1(ref, out))
    assert compare("logits", ref, out, classification=True).top1_agreement == pytest.approx(_plain_top1(ref, out))


def test_a_swap_within_thirty_percent_is_a_disagreement():
    # the issue-13 case: the old column treated classes within max_rel (0.3 for int8) of the top as ties
    ref = np.array([[10.0, 8.0, 0.0]])
    out = np.array([[8.0, 10.0, 0.0]])
    assert topk_agreement(ref, out, 1) == 0.0
    # and a tie within fp32 rounding may go either way
    tied = np.array([[10.0, 10.0 * (1 + FP32_TIE / 2), 0.0]])
    assert topk_agreement(tied, np.array([[10.0, 9.0, 0.0]]), 1) == 1.0


def test_top5_is_set_equality():
    ref = np.arange(10, dtype=float)[None]  # top-5 = {5..9}
    out = ref.copy()
    out[0, [4, 5]] = out[0, [5, 4]]  # classes 4 and 5 swap ranks 5 and 6
    assert topk_agreement(ref, out, 5) == 0.0 and topk_agreement(ref, out, 1) == 1.0


def test_accuracy_report_and_verify_use_one_set_of_numbers():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(7, 10)).astype(np.float32)
    out = (ref + rng.normal(size=ref.shape) * 0.8).astype(np.float32)
    m = compare("logits", ref, out, classification=True)
    rep = accuracy_report(ref, out, None, source="evaluation")
    for key in ("cosine_min", "cosine_mean", "sqnr_db", "top1_agreement", "top5_agreement"):
        assert rep[key] == pytest.approx(getattr(m, key)), key
    cos = [float(r @ o / np.linalg.norm(r) / np.linalg.norm(o)) for r, o in zip(ref.astype(float), out.astype(float))]
    assert rep["cosine_min"] == pytest.approx(min(cos))


def test_an_int8_artifact_agreeing_71_percent_fails_the_default_row():
    ref = np.eye(7, 10) * 10
    out = ref.copy()
    out[5], out[6] = np.eye(10)[0] * 10, np.eye(10)[1] * 10  # two of seven images change class: 5/7 = 71%
    rep = accuracy_report(ref, out, None, source="evaluation")
    assert rep["top1_agreement"] == pytest.approx(5 / 7)
    problems = gate(rep, tolerance_for("executorch", "int8"))
    assert any("top-1 agreement 71.43%" in p for p in problems)
    assert gate(accuracy_report(ref, ref, None, source="evaluation"), tolerance_for("executorch", "int8")) == []
