"""Core AI target (``--target coreai``): Apple's successor of Core ML for neural networks (iOS/macOS 27), an
``.aimodel`` asset made with ``coreai-torch`` and checked in Apple's own Core AI runtime (``coreai-core``, whose
Linux wheel runs assets on the CPU). One folder owns it: ``target.py`` (the ``Target``: options, form, tolerance
rows, what bench and the CLI say), ``export.py`` (PyTorch -> ``.aimodel``, fp16, metadata), ``quantize.py``
(coreai-opt's int8 weights and W8A8) and ``runtime.py`` (the runner in Core AI's runtime)."""

from edgevit.targets.coreai.target import CoreAITarget

__all__ = ["CoreAITarget"]
