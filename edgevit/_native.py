"""Native runtimes: their output past Python, and their thread count.

Native libraries write to the process's stderr (file descriptor 2) directly, past Python.

ExecuTorch's runtime prints ``[cpuinfo_utils.cpp:NN] ...`` lines when its thread pool starts, and importing it
prints torchao's extension-loading notes; they would drown the CLI's own output. ``native_stderr_to_log`` sends
fd 2 to a temporary file for the duration and replays what was written into the log at INFO level (``edgevit -v``
shows it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

from edgevit.errors import ConfigError

THREADS_ENV = "EDGEVIT_THREADS"


@contextlib.contextmanager
def native_stderr_to_log(logger: logging.Logger, what: str):
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreters): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                if line.strip():
                    logger.info("%s: %s", what, line)


def default_threads(threads: int | None) -> int | None:
    """The thread count a runtime edgevit starts (ONNX Runtime, ExecuTorch, LiteRT) gets: ``threads`` when the
    caller gave one, else ``EDGEVIT_THREADS`` when set, else None (the runtime's own default: every core). Two
    processes sharing a machine (a parallel test run, a serving host) set ``EDGEVIT_THREADS=1`` so that their
    thread pools do not fight over the same cores."""
    if threads:
        return threads
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{THREADS_ENV}={raw!r} is not a positive whole number of threads; "
                          f"set it to e.g. 1 or unset it to use every core")
    return int(raw)


@contextlib.contextmanager
def torch_threads(threads: int):
    """PyTorch's intra-op thread count set to ``threads`` for the block, then put back: code that runs inside a
    caller's process (an inline matrix cell, an inline evaluation shard, a timing) must not leave it changed, since
    PyTorch's float sums can round differently with another thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
