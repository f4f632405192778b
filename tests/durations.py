"""The test run's time, watched: at the end of a whole run, its wall time against its budget and the tests that grew
most since the stored baseline (``tests/durations.json``; ``make test-durations`` writes it anew).

The budget is set for the machine the baseline was measured on. A short CPU calibration (the same single-threaded
convolutions here and there) scales it, so a slower machine is judged fairly. This only ever prints: timing decides
nothing about whether a run passes.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

BASELINE = Path(__file__).with_name("durations.json")
WRITE_ENV = "EDGEVIT_WRITE_DURATIONS"  # set by `make test-durations`
BUDGET_S = {"not slow": 600.0, "slow": 1800.0}  # the default run and the full-size tier, on the baseline's machine
GROWN_MIN_S = 2.0  # growth below this is noise on a shared 2-core machine


def calibrate() -> float:
    """Seconds for a fixed single-threaded torch workload (a Next-ViT-like stack of convolutions); best of five."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(8, 64, 56, 56, generator=gen)
        weights = [torch.randn(64, 64, 3, 3, generator=gen) * 0.05 for _ in range(4)]
        best = float("inf")
        with torch.no_grad():
            for _ in range(5):
                start = time.perf_counter()
                y = x
                for w in weights:
                    y = torch.nn.functional.conv2d(y, w, padding=1).relu()
                best = min(best, time.perf_counter() - start)
        return best
    finally:
        torch.set_num_threads(threads)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _tier(config) -> str | None:
    """'not slow' or 'slow' for a whole run (every test path, one of the two marker expressions), else None."""
    from _pytest.config import Config

    if config.args_source != Config.ArgsSource.TESTPATHS or config.getoption("keyword"):
        return None
    mark = (config.getoption("markexpr") or "").strip()
    return mark if mark in BUDGET_S else None


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


class _Recorder:
    def __init__(self, config):
        self.config = config
        self.start = time.monotonic()
        self.tests: dict[str, float] = {}

    def pytest_runtest_logreport(self, report):
        self.tests[report.nodeid] = self.tests.get(report.nodeid, 0.0) + report.duration

    def pytest_terminal_summary(self, terminalreporter):
        tier = _tier(self.config)
        if tier is None or not self.tests:
            return
        wall = time.monotonic() - self.start
        cal = calibrate()
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or getattr(self.config.option, "numprocesses", 0)
                      or 1)
        terminalreporter.section(f"test time ({tier!r} run)")
        base = json.loads(BASELINE.read_text()).get(tier) if BASELINE.exists() else None
        for line in summary(tier, wall, cal, self.tests, base, _cpu(), workers):
            terminalreporter.write_line(line)
        if os.environ.get(WRITE_ENV):
            data = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
            data[tier] = {"cpu": _cpu(), "workers": workers, "calibration_s": round(cal, 4),
                          "wall_s": round(wall, 1), "tests": {n: round(t, 2) for n, t in sorted(self.tests.items())}}
            BASELINE.write_text(json.dumps(data, indent=1) + "\n")
            terminalreporter.write_line(f"baseline written to {BASELINE}")


def summary(tier: str, wall: float, cal: float, tests: dict[str, float], base: dict | None, cpu: str,
            workers: int) -> list[str]:
    """The lines of the "test time" section: the wall time against the tier's budget scaled by ``cal`` over the
    baseline's calibration, and the tests that grew most (baseline durations scaled the same way)."""
    if not base:
        return [f"wall {_minutes(wall)} on {cpu} ({workers} workers); no baseline in {BASELINE.name} "
                "(make test-durations)"]
    scale = cal / base["calibration_s"]
    budget = BUDGET_S[tier] * scale
    lines = [f"wall {_minutes(wall)} on {cpu} ({workers} workers): {'within' if wall <= budget else 'OVER'} the "
             f"budget of {_minutes(BUDGET_S[tier])}, scaled x{scale:.2f} to {_minutes(budget)} for this CPU "
             f"(calibration {cal * 1e3:.0f} ms here, {base['calibration_s'] * 1e3:.0f} ms on the baseline's "
             f"{base['cpu']}; baseline wall {_minutes(base['wall_s'])})"]
    grown = sorted(((t - base["tests"].get(n, 0.0) * scale, n, t) for n, t in tests.items()), reverse=True)
    grown = [g for g in grown if g[0] >= GROWN_MIN_S][:10]
    if grown:
        lines.append("grew most since the baseline (scaled to this CPU; new tests count from 0):")
        lines += [f"  +{extra:6.1f} s  now {t:6.1f} s  {name}" for extra, name, t in grown]
    return lines


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller sees every worker's reports
        config.pluginmanager.register(_Recorder(config), "edgevit-durations")
