"""Native libraries that write to the process's stderr (file descriptor 2) directly, past Python.

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
