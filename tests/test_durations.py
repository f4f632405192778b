"""The test run's time summary (tests/durations.py): budget scaled by the CPU calibration, growth since baseline."""

from tests.durations import BUDGET_S, summary

BASE = {"cpu": "Baseline CPU", "calibration_s": 0.5, "wall_s": 500.0,
        "tests": {"a": 10.0, "b": 100.0, "c": 1.0}}


def test_a_slower_machine_gets_a_proportionally_larger_budget():
    # calibration twice the baseline's: the 600 s budget becomes 1200 s; 1000 s is within it, 1300 s is not
    assert "within the budget of 10:00.0, scaled x2.00 to 20:00.0" in summary("not slow", 1000, 1.0, {}, BASE, "X",
                                                                                2)[0]
    assert "OVER" in summary("not slow", 1300, 1.0, {}, BASE, "X", 2)[0]
    assert BUDGET_S["not slow"] == 600


def test_growth_is_scaled_ranked_and_new_tests_count_from_zero():
    lines = summary("not slow", 100, 0.5, {"a": 30.0, "b": 101.0, "c": 1.5, "new": 9.0}, BASE, "X", 2)
    grown = [ln.split()[-1] for ln in lines[2:]]
    assert grown == ["a", "new"]  # +20 s and +9 s; b's +1 s and c's +0.5 s are below the 2 s noise floor


def test_without_a_baseline_it_says_how_to_make_one():
    assert "make test-durations" in summary("slow", 10, 0.1, {"a": 1.0}, None, "X", 1)[0]

