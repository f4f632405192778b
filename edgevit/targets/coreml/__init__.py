"""The Core ML target: ``target.py`` (the ``Target``), ``export.py`` (the ML program and its precisions),
``runtime.py`` (predict or the simulator), ``simulator.py`` + ``ops.py`` (a numpy interpreter of ML programs: the
Core ML runtime on Linux), ``drift.py`` (block values for ``edgevit drift``); quantizers in
``edgevit.quantize.coreml_quant``."""

from edgevit.targets.coreml.target import CoreMLTarget

__all__ = ["CoreMLTarget"]
