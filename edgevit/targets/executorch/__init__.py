"""The ExecuTorch target: ``target.py`` (the ``Target``), ``export.py`` (lowering, delegation report),
``runtime.py`` (ExecuTorch's runtime), ``drift.py`` (debug programs for ``edgevit drift``); its int8 quantizer is
``edgevit.quantize.executorch_quant`` (shared with the coreml target's W8A8)."""

from edgevit.targets.executorch.target import ExecuTorchTarget

__all__ = ["ExecuTorchTarget"]
