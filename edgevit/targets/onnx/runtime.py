"""onnxruntime CPU sessions (spinning off) and the runner parity, bench and drift use."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgevit._native import default_threads
from edgevit.targets.base import Runner
from edgevit.targets.common import run_batched

log = logging.getLogger(__name__)


def make_session(path: Path, *, threads: int | None = None, optimize: bool = True):
    """An onnxruntime CPU session with thread spinning off (spinning threads steal cores from whatever runs next).
    ``optimize=False`` runs the graph exactly as stored (no onnxruntime graph rewrites)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    threads = default_threads(threads)
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def session_runner(path: Path, threads: int | None, *, optimize: bool = True) -> Runner:
    sess = make_session(path, threads=threads, optimize=optimize)
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    batch = fixed if isinstance(fixed, int) else None
    return lambda x: run_batched(lambda b: sess.run(None, {name: b.astype(np.float32)}), x, batch)
