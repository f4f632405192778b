"""Parity metrics are what their names say: top-1 agreement is the plain agreement rate with PyTorch's class, a
flip inside the row's error bound is a near-tie (reported, not failed), top-5 is "PyTorch's class is in the
artifact's top five", and the accuracy report on evaluation images applies the same rule and names as
verify --images."""

import numpy as np
import pytest

from edgevit.quantize.accuracy import accuracy_report, gate
from edgevit.verify.metrics import compare, top1_flips, top5_agreement
from edgevit.targets.base import supported_combinations
from edgevit.verify.tolerances import TOLERANCES, tolerance_for

supported_combinations()  # imports every target, which adds its rows to the one table


def _plain_top1(ref, out):  # the independent definition
    return float(np.mean(np.argmax(ref, 1) == np.argmax(out, 1)))


def test_top1_is_the_plain_agreement_rate():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 10)) * 5
    out = ref + rng.normal(size=ref.shape) * 2.0  # enough noise to flip many close calls
    assert 0.3 < _plain_top1(ref, out) < 0.95
    m = compare("logits", ref, out, classification=True, tie_rel=0.02)
    assert m.top1_agreement == pytest.approx(_plain_top1(ref, out))
    # near-ties are a subset of the flips, counted from the reference margins directly
    flips = np.flatnonzero(ref.argmax(1) != out.argmax(1))
    margins = ref[flips, ref.argmax(1)[flips]] - ref[flips, out.argmax(1)[flips]]
    expected = int(np.sum(margins <= 2 * 0.02 * np.abs(ref[flips]).max(1)))
    assert m.near_ties == expected and 0 < expected < len(flips)


def test_a_flip_within_the_row_error_is_a_near_tie_and_beyond_it_fails():
    fp16 = tolerance_for("coreml", "fp16")
    ref = np.array([[100.0, 99.5, 0.0]])  # margin 0.5 = 0.005 of the largest score: inside 2 * 0.02
    out = np.array([[99.6, 99.8, 0.1]])  # the classes swap; every score within 0.4 (0.4% of 100)
    m = compare("logits", ref, out, classification=True, tie_rel=fp16.tie_rel)
    assert m.top1_agreement == 0.0 and m.near_ties == 1
    assert m.failures(fp16) == []
    # the same swap with a clear margin (10 = 10%) is a real flip; it needs errors the row does not accept either
    ref2 = np.array([[100.0, 90.0, 0.0]])
    out2 = np.array([[94.0, 96.0, 0.0]])
    m2 = compare("logits", ref2, out2, classification=True, tie_rel=fp16.tie_rel)
    assert m2.near_ties == 0
    assert any("top-1 agreement 0.00% < 99.00%" in f for f in m2.failures(fp16))


def test_every_int8_flip_counts():
    # int8's max_rel (0.3) guards against broken artifacts; it is not an accuracy bound (issue 13)
    ref = np.array([[10.0, 8.0, 0.0]])
    out = np.array([[8.0, 10.0, 0.0]])
    assert tolerance_for("executorch", "int8").tie_rel == 0.0
    assert top1_flips(ref, out, tolerance_for("executorch", "int8").tie_rel) == (1, 0)
    assert top1_flips(ref, out, 0.3) == (1, 1)  # what the loose bound would have forgiven


def test_top5_means_the_reference_class_is_in_the_artifact_top_five():
    ref = np.arange(10, dtype=float)[None]  # PyTorch's class: 9
    out = ref.copy()
    out[0, [4, 5]] = out[0, [5, 4]]  # classes ranked 5th and 6th swap: the answer is unchanged
    assert top5_agreement(ref, out) == 1.0
    out2 = ref.copy()
    out2[0, 9] = -1.0  # PyTorch's class falls out of the artifact's top five
    assert top5_agreement(ref, out2) == 0.0
    assert top5_agreement(np.array([[0.0, 1.0, 2.0]]), np.array([[2.0, 1.0, 0.0]])) == 1.0  # <= 5 classes


def test_accuracy_report_and_verify_use_one_set_of_numbers():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(7, 10)).astype(np.float32)
    out = (ref + rng.normal(size=ref.shape) * 0.8).astype(np.float32)
    tol = tolerance_for("onnx", "fp16")
    m = compare("logits", ref, out, classification=True, tie_rel=tol.tie_rel)
    rep = accuracy_report(ref, out, None, source="evaluation", tol=tol)
    for key in ("cosine_min", "cosine_mean", "sqnr_db", "top1_agreement", "top5_agreement", "near_ties",
                "max_rel"):
        assert rep[key] == pytest.approx(getattr(m, key)), key
    cos = [float(r @ o / np.linalg.norm(r) / np.linalg.norm(o)) for r, o in zip(ref.astype(float), out.astype(float))]
    assert rep["cosine_min"] == pytest.approx(min(cos))


@pytest.mark.parametrize("row", sorted(TOLERANCES))
def test_convert_and_verify_judge_a_set_of_pictures_by_one_rule(row):
    """The issue-31 case: convert gated the mean cosine of its evaluation images, verify --images the worst one, so
    the same int8 artifact on the same 450 images passed one and failed the other."""
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(50, 10)) * 10
    ref[np.arange(50), np.arange(50) % 10] += 30  # clear winners
    out = ref + rng.normal(size=ref.shape) * 0.3
    out[7] = ref[7] + rng.normal(size=10) * 15  # one picture far off (cosine ~0.7), class kept
    out[7, ref[7].argmax()] = ref[7].max() + 50
    tol = TOLERANCES[row]
    m = compare("logits", ref, out, classification=True, tie_rel=tol.tie_rel)
    verify_says = m.failures(tol, golden=False)
    convert_says = gate(accuracy_report(ref, out, None, source="evaluation", tol=tol), tol)
    assert bool(verify_says) == bool(convert_says)
    # an int8 row judges a set by its mean cosine; every other row holds on every picture
    assert (not verify_says) == (not tol.every_input)


def test_an_int8_artifact_agreeing_71_percent_fails_the_default_row():
    ref = np.eye(7, 10) * 10
    out = ref.copy()
    out[5], out[6] = np.eye(10)[0] * 10, np.eye(10)[1] * 10  # two of seven images change class: 5/7 = 71%
    tol = tolerance_for("executorch", "int8")
    rep = accuracy_report(ref, out, None, source="evaluation", tol=tol)
    assert rep["top1_agreement"] == pytest.approx(5 / 7)
    problems = gate(rep, tol)
    assert any("top-1 agreement 71.43%" in p for p in problems)
    assert gate(accuracy_report(ref, ref, None, source="evaluation", tol=tol), tol) == []


def test_nan_outputs_fail_every_row():
    ref = np.eye(3, 10)
    out = ref.copy()
    out[1, 2] = np.nan
    for tol in TOLERANCES.values():
        m = compare("logits", ref, out, classification=True, tie_rel=tol.tie_rel)
        assert m.failures(tol) and m.failures(tol, golden=False)
