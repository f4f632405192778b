"""ONNX and ONNX Runtime Mobile (.ort) targets, run with onnxruntime on the desktop. ``target.py`` holds the two
``Target`` classes; ``export.py`` the export and precisions, ``ort_convert.py`` the .ort conversion in a child process,
``runtime.py`` the onnxruntime runner, ``drift.py`` the block outputs ``edgevit drift`` compares."""

from edgevit.targets.onnx.target import OnnxTarget, OrtTarget

__all__ = ["OnnxTarget", "OrtTarget"]
