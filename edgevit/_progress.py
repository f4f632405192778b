"""Progress bars for long steps (image loading, export rounds, benchmark rounds), drawn with tqdm.

The library draws none by default; the CLI turns them on (``enable(True)``), and tqdm itself keeps quiet when
stderr is not a terminal, so logs and CI output stay clean.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
_enabled = False
StepCallback = Callable[[str, str, float], None]  # (step, "start" | "done", seconds so far)


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


def progress(items: Iterable[T], *, desc: str, total: int | None = None) -> Iterable[T]:
    if not _enabled:
        return items
    from tqdm import tqdm

    # disable=None: tqdm draws only on a TTY
    return tqdm(items, desc=f"edgevit: {desc}", total=total, disable=None, leave=False, unit="it")


def rounds_bar(total: int, *, desc: str):
    """An ``on_round(r)`` callback drawing a bar of ``total`` rounds (a no-op when progress is off)."""
    if not _enabled:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"edgevit: {desc}", disable=None, leave=False, unit="round")

    def on_round(r: int) -> None:
        bar.update(1)
        if r >= total:
            bar.close()

    return on_round


def steps_bar(total: int, *, desc: str, initial: int = 0):
    """A tqdm bar over ``total`` steps starting at ``initial`` (a resumed run), or None when progress is off; the
    caller updates it, sets its postfix (e.g. the loss) and closes it."""
    if not _enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"edgevit: {desc}", disable=None, leave=False, unit="step")


class Steps:
    """Named steps of a long command: ``with steps("export"):`` logs the start, keeps the step's time in
    ``timings`` and tells ``callback`` (the CLI prints "edgevit: export ..." / "done in 12.3s")."""

    def __init__(self, callback: StepCallback | None, logger: logging.Logger | None = None):
        self.callback = callback
        self.log = logger or logging.getLogger(__name__)
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        if self.callback:
            self.callback(name, "start", start - self.t0)
        self.log.info("%s ...", name)
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)
        if self.callback:
            self.callback(name, "done", self.timings[name])
