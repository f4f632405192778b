"""Running an ``.mlpackage``: ``predict`` on macOS, edgevit's numpy simulator (``simulator.py``) elsewhere."""

from __future__ import annotations

import logging

import numpy as np

from edgevit.targets.base import Runner, RuntimeSpec
from edgevit.targets.common import run_batched
from edgevit.targets.coreml.simulator import can_predict, simulator_runner

log = logging.getLogger(__name__)


def _as_array(value, labels) -> np.ndarray:  # pragma: no cover - macOS only
    if isinstance(value, dict):
        return np.asarray([[value[label] for label in labels]], dtype=np.float32)
    return np.asarray(value, dtype=np.float32)


def load_package(artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
    names = list(spec.output_names)
    if can_predict():  # pragma: no cover - macOS only
        import coremltools as ct
        from PIL import Image

        model = ct.models.MLModel(str(artifact_path))

        def predict(x):
            outs = []
            for sample in x:
                feed = Image.fromarray(np.clip(sample.transpose(1, 2, 0), 0, 255).astype(np.uint8)) \
                    if spec.raw_pixels else sample[None]
                res = model.predict({spec.input_name: feed})
                outs.append([_as_array(res[n], spec.labels) for n in names])
            return [np.concatenate([o[i] for o in outs]) for i in range(len(names))]

        return lambda x: run_batched(predict, x, spec.batch)
    return simulator_runner(artifact_path, spec.input_name, names, spec.batch)
