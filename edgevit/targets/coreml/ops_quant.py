"""The quantization and compression operations of the CoreML simulator (int8 W8A8 programs, int8 weights,
palettized weights), registered in ``ops.OPS`` on import; ``store`` rounds a value to the dtype an op declares."""



from __future__ import annotations

import numpy as np

from edgevit.targets.coreml.ops import UnsupportedOpError, _f, op


def _along(v, axis, ndim: int) -> np.ndarray:
    """A scalar or per-axis vector broadcast against a rank-``ndim`` tensor along ``axis``."""
    v = np.asarray(v, np.float32)
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    shape = [1] * ndim
    shape[int(axis) % ndim] = v.size
    return v.reshape(shape)


@op("constexpr_affine_dequantize")
def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    q = np.asarray(quantized_data).astype(np.float32)
    return (q - _along(zero_point, axis, q.ndim)) * _along(scale, axis, q.ndim)


@op("dequantize")
def dequantize(input, scale, zero_point=None, axis=None):  # noqa: A002 - MIL's parameter name
    q = np.asarray(input).astype(np.float32)
    ax = 0 if axis is None else axis
    zp = 0.0 if zero_point is None else _along(zero_point, ax, q.ndim)
    return (q - zp) * _along(scale, ax, q.ndim)


@op("quantize")
def quantize(input, scale, output_dtype, zero_point=None, axis=None):  # noqa: A002
    x = _f(input)
    ax = 0 if axis is None else axis
    zp = 0.0 if zero_point is None else _along(zero_point, ax, x.ndim)
    lo, hi, dt = {"int8": (-128, 127, np.int8), "uint8": (0, 255, np.uint8)}[str(output_dtype)]
    return np.clip(np.rint(x / _along(scale, ax, x.ndim) + zp), lo, hi).astype(dt)


@op("constexpr_lut_to_dense")
def constexpr_lut_to_dense(indices, lut, shape=None, vector_axis=None):
    """Palettized weights. iOS 16: ``indices`` packs log2(len(lut))-bit entries LSB-first, byte by byte,
    row-major, into ``shape``. iOS 18: ``indices`` has the output's shape and ``lut`` is
    (blocks per axis..., palettes, vector size), each block of the output having its own palette."""
    if shape is None:
        return _lut_ios18(np.asarray(indices), np.asarray(lut), vector_axis)
    lut = np.asarray(lut)
    n_bits = int(np.log2(lut.shape[0]))
    count = int(np.prod(shape))
    bits = np.unpackbits(np.asarray(indices, np.uint8), bitorder="little")[: count * n_bits]
    idx = (bits.reshape(count, n_bits).astype(np.int64) << np.arange(n_bits)).sum(1)
    return lut[idx].reshape([int(v) for v in shape])


def _lut_ios18(indices: np.ndarray, lut: np.ndarray, vector_axis) -> np.ndarray:
    if lut.shape[-1] != 1 or vector_axis is not None:
        raise UnsupportedOpError("vector palettization (constexpr_lut_to_dense with vector size > 1)")
    nd = indices.ndim
    if lut.ndim != nd + 2:
        raise UnsupportedOpError(f"constexpr_lut_to_dense: lut of rank {lut.ndim} for indices of rank {nd}")
    block = [indices.shape[i] // lut.shape[i] for i in range(nd)]
    grids = np.meshgrid(*[np.arange(n) // b for n, b in zip(indices.shape, block)], indexing="ij")
    return lut[(*grids, indices.astype(np.int64), 0)]


# --- the interpreter -----------------------------------------------------------------------------------------------


def store(dtype_str: str, value):
    """Round a result to the dtype the program declares for it (fp16 storage emulation)."""
    if isinstance(value, (str, bytes)):
        return value
    arr = np.asarray(value)
    if dtype_str == "fp16":
        return arr.astype(np.float16)
    if dtype_str == "fp32":
        return arr.astype(np.float32)
    if dtype_str.startswith("int") or dtype_str.startswith("uint"):
        return arr.astype(np.int64) if arr.dtype.kind == "f" else arr
    return arr
