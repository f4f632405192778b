"""LiteRT target (formerly TensorFlow Lite): ``.tflite`` from ``litert_torch.convert``, run in the LiteRT
interpreter with its XNNPACK delegate.

Precisions:
  fp32   as converted
  fp16   weights stored fp16 (ai-edge-quantizer FLOAT_CASTING, explicit dequantize): computed in fp32 by XNNPACK
         unless a device delegate chooses fp16
  int8w  dynamic range (ai-edge-quantizer ``dynamic_wi8_afp32``): int8 per-channel weights, float activations that
         XNNPACK quantizes on the fly
  int8   static (litert-torch's PT2E quantizer: int8 per-channel weights, int8 activations) calibrated on real
         images through the model's preprocessing. The converter folds a quantized graph input or output into the
         model's I/O type, so the ops that read the input and make the outputs stay float (the manifest lists
         them): the app feeds and reads float tensors.

The runtime is ``ai_edge_litert`` or, where only that is installed (a Raspberry Pi), ``tflite_runtime``, which has the
same Interpreter API (2.14 needs numpy < 2).

One folder: ``target.py`` (the ``Target``), ``export.py``, ``quantize.py``, ``runtime.py``, ``graph.py`` (graph
inspection) and ``drift.py``."""

from edgevit.targets.litert.target import LiteRTTarget

__all__ = ["LiteRTTarget"]
