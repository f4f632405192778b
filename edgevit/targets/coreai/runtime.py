"""The ``.aimodel`` runner in Apple's Core AI runtime (``coreai-core``). On Linux ``asset.executable()`` lowers the
asset for the runtime's CPU path in a temporary folder; the model stays loaded for the runner's lifetime on an event
loop of its own, so parity over many pictures pays for the load once."""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path

import numpy as np

from edgevit._native import native_stderr_to_log
from edgevit.targets.base import Runner, RuntimeSpec
from edgevit.targets.common import run_batched

log = logging.getLogger(__name__)


class _Loaded:
    def __init__(self, path: Path, function: str = "main"):
        from coreai.authoring import AIModelAsset

        self.loop = asyncio.new_event_loop()
        self._context = AIModelAsset.load(path).executable()
        with native_stderr_to_log(log, "coreai runtime"):
            model = self.loop.run_until_complete(self._context.__aenter__())
            self.function = model.load_function(function)
        self._finalizer = weakref.finalize(self, _close, self.loop, self._context)

    def __call__(self, feed: dict) -> dict:
        with native_stderr_to_log(log, "coreai runtime"):
            return self.loop.run_until_complete(self.function(feed))


def _close(loop, context) -> None:
    try:
        loop.run_until_complete(context.__aexit__(None, None, None))
    finally:
        loop.close()


def asset_runner(artifact_path: Path, spec: RuntimeSpec) -> Runner:
    from coreai.runtime import NDArray

    loaded = _Loaded(Path(artifact_path))
    names = list(spec.output_names)

    def run(x: np.ndarray) -> list[np.ndarray]:
        outs = loaded({spec.input_name: NDArray(np.ascontiguousarray(x, np.float32))})
        return [np.asarray(outs[n].numpy() if hasattr(outs[n], "numpy") else outs[n], np.float32) for n in names]

    return lambda x: run_batched(run, x, spec.batch)
