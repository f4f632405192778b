"""The TensorRT target: ``target.py`` (the ``Target``), ``export.py`` (the TensorRT-ready ONNX), ``checks.py`` (the
parser's operator list and Polygraphy lint), ``engine.py`` (the engine on a GPU server: build, run, bench)."""

from edgevit.targets.tensorrt.target import TensorRTTarget

__all__ = ["TensorRTTarget"]
