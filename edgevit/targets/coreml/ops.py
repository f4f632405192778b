"""The MIL operations of edgevit's CoreML simulator (``simulator.py``), each a numpy function registered by
name in ``OPS``: computed in float32 from its inputs, following the MIL operation definitions; ``UnsupportedOpError``
names an operation that is not here."""


from __future__ import annotations

from typing import Callable

import numpy as np

from edgevit.errors import EdgeVitError


class UnsupportedOpError(EdgeVitError):
    """The CoreML simulator met an operation it cannot evaluate."""

    exit_code = 6


OPS: dict[str, Callable] = {}


def op(*names: str):
    def wrap(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return wrap


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


# --- convolution and pooling -----------------------------------------------------------------------------------


def _pads(pad_type: str, pad, in_hw, kernel, strides, dilations, ceil_mode: bool = False):
    """(top, bottom, left, right) padding per MIL's pad_type rules."""
    if pad_type == "valid":
        return [0, 0, 0, 0]
    if pad_type == "custom":
        p = [int(v) for v in pad]
        return p
    out = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        eff = (k - 1) * d + 1
        total = max((int(np.ceil(size / s)) - 1) * s + eff - size, 0)
        small, big = total // 2, total - total // 2
        out += [big, small] if pad_type == "same_lower" else [small, big]
    return out


def _windows(x: np.ndarray, kernel, strides, dilations, out_hw) -> np.ndarray:
    """(N, C, oh, ow, kh, kw) view of a padded (N, C, H, W) array."""
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    oh, ow = out_hw
    s = x.strides
    return np.lib.stride_tricks.as_strided(x, shape=(n, c, oh, ow, kh, kw),
                                           strides=(s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw),
                                           writeable=False)


@op("conv")
def conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    x, w = _f(x), _f(weight)
    if x.ndim != 4:
        raise UnsupportedOpError(f"conv on a rank-{x.ndim} input (only 2-D convolution is simulated)")
    cout, cin_g, kh, kw = w.shape
    strides = [int(v) for v in (strides if strides is not None else [1, 1])]
    dilations = [int(v) for v in (dilations if dilations is not None else [1, 1])]
    groups = int(groups)
    t, b, left, r = _pads(str(pad_type), pad, x.shape[2:], (kh, kw), strides, dilations)
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    oh = (xp.shape[2] - ((kh - 1) * dilations[0] + 1)) // strides[0] + 1
    ow = (xp.shape[3] - ((kw - 1) * dilations[1] + 1)) // strides[1] + 1
    win = _windows(np.ascontiguousarray(xp), (kh, kw), strides, dilations, (oh, ow))
    n = x.shape[0]
    cin = x.shape[1]
    out = np.empty((n, cout, oh, ow), np.float32)
    cog = cout // groups
    for g in range(groups):
        cols = win[:, g * cin_g:(g + 1) * cin_g]  # (N, cin_g, oh, ow, kh, kw)
        cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh * ow, cin_g * kh * kw)
        wg = w[g * cog:(g + 1) * cog].reshape(cog, -1)
        out[:, g * cog:(g + 1) * cog] = (cols @ wg.T).transpose(0, 2, 1).reshape(n, cog, oh, ow)
    if cin != cin_g * groups:
        raise UnsupportedOpError(f"conv weight takes {cin_g * groups} channels, input has {cin}")
    if bias is not None:
        out += _f(bias).reshape(1, -1, 1, 1)
    return out


def _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, reduce: str, exclude_pad: bool):
    x = _f(x)
    if x.ndim == 3:  # 1-D pooling as 2-D with a height of 1
        pad = None if pad is None else [0, 0, *[int(v) for v in pad]]
        out = _pool(x[:, :, None, :], [1, *np.atleast_1d(kernel_sizes)], [1, *np.atleast_1d(strides)], pad_type,
                    pad, ceil_mode, reduce, exclude_pad)
        return out[:, :, 0, :]
    k = [int(v) for v in kernel_sizes]
    s = [int(v) for v in strides]
    t, b, left, r = _pads(str(pad_type), pad, x.shape[2:], k, s, [1, 1])
    h, w = x.shape[2] + t + b, x.shape[3] + left + r
    if ceil_mode:
        oh, ow = -(-(h - k[0]) // s[0]) + 1, -(-(w - k[1]) // s[1]) + 1
    else:
        oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    extra_h = max((oh - 1) * s[0] + k[0] - h, 0)
    extra_w = max((ow - 1) * s[1] + k[1] - w, 0)
    fill = -np.inf if reduce == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (t, b + extra_h), (left, r + extra_w)), constant_values=fill)
    win = _windows(np.ascontiguousarray(xp), k, s, (1, 1), (oh, ow))
    if reduce == "max":
        return win.max(axis=(4, 5))
    total = win.sum(axis=(4, 5), dtype=np.float32)
    ones = np.pad(np.ones((1, 1) + x.shape[2:], np.float32), ((0, 0), (0, 0), (t, b + extra_h), (left, r + extra_w)))
    if exclude_pad:
        count = _windows(np.ascontiguousarray(ones), k, s, (1, 1), (oh, ow)).sum(axis=(4, 5))
    else:  # padding counts, the ceil-mode overhang does not
        inside = np.pad(np.ones((1, 1, x.shape[2] + t + b, x.shape[3] + left + r), np.float32),
                        ((0, 0), (0, 0), (0, extra_h), (0, extra_w)))
        count = _windows(np.ascontiguousarray(inside), k, s, (1, 1), (oh, ow)).sum(axis=(4, 5))
    return total / count


@op("avg_pool")
def avg_pool(x, kernel_sizes, strides, pad_type="valid", pad=None, exclude_padding_from_average=False,
             ceil_mode=False):
    return _pool(x, kernel_sizes, strides, pad_type, pad, bool(ceil_mode), "avg", bool(exclude_padding_from_average))


@op("max_pool")
def max_pool(x, kernel_sizes, strides, pad_type="valid", pad=None, ceil_mode=False):
    return _pool(x, kernel_sizes, strides, pad_type, pad, bool(ceil_mode), "max", True)


@op("upsample_nearest_neighbor")
def upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    """MIL's nearest-neighbour upsampling: output size floor(size * scale), output index i reads input index
    floor(i / scale) (PyTorch's nearest, and the FPN top-down path of a detector)."""
    x = _f(x)
    sh, sw = float(scale_factor_height), float(scale_factor_width)
    h, w = x.shape[-2:]
    rows = np.minimum(np.floor(np.arange(int(np.floor(h * sh))) / sh).astype(int), h - 1)
    cols = np.minimum(np.floor(np.arange(int(np.floor(w * sw))) / sw).astype(int), w - 1)
    return x[..., rows[:, None], cols[None, :]]


# --- linear algebra ----------------------------------------------------------------------------------------------


@op("linear")
def linear(x, weight, bias=None):
    y = _f(x) @ _f(weight).T
    return y + _f(bias) if bias is not None else y


@op("matmul")
def matmul(x, y, transpose_x=False, transpose_y=False):
    a, b = _f(x), _f(y)
    if transpose_x:
        a = np.swapaxes(a, -1, -2)
    if transpose_y:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


@op("softmax")
def softmax(x, axis=-1):
    x = _f(x)
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return e / e.sum(axis=int(axis), keepdims=True)


@op("batch_norm")
def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    x = _f(x)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - _f(mean).reshape(shape)) / np.sqrt(_f(variance).reshape(shape) + float(epsilon))
    if gamma is not None:
        y = y * _f(gamma).reshape(shape)
    if beta is not None:
        y = y + _f(beta).reshape(shape)
    return y


# --- elementwise ----------------------------------------------------------------------------------------------------

_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide, "maximum": np.maximum,
           "minimum": np.minimum, "pow": np.power}
for _name, _fn in _BINARY.items():
    OPS[_name] = (lambda fn: lambda x, y: fn(_f(x), _f(y)))(_fn)

_UNARY = {"relu": lambda x: np.maximum(x, 0), "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "tanh": np.tanh,
          "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "identity": lambda x: x, "square": np.square}
for _name, _fn in _UNARY.items():
    OPS[_name] = (lambda fn: lambda x: fn(_f(x)))(_fn)


@op("leaky_relu")
def leaky_relu(x, alpha=0.01):
    x = _f(x)
    return np.where(x >= 0, x, x * float(alpha))


@op("rsqrt")
def rsqrt(x, epsilon=1e-12):
    return 1.0 / np.sqrt(_f(x) + float(epsilon))


@op("inverse")
def inverse(x, epsilon=1e-4):
    return 1.0 / (_f(x) + float(epsilon))


@op("clip")
def clip(x, alpha, beta):
    return np.clip(_f(x), float(alpha), float(beta))


@op("gelu")
def gelu(x, mode="EXACT"):
    from math import erf, sqrt

    x = _f(x)
    if str(mode) == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return (0.5 * x * (1 + np.vectorize(erf)(x / sqrt(2)))).astype(np.float32)


# --- reductions and shapes --------------------------------------------------------------------------------------


def _reduce(fn):
    def impl(x, axes=None, keep_dims=False):
        ax = None if axes is None else tuple(int(a) for a in np.atleast_1d(axes))
        return fn(_f(x), axis=ax, keepdims=bool(keep_dims))
    return impl


OPS["reduce_mean"] = _reduce(np.mean)
OPS["reduce_sum"] = _reduce(np.sum)
OPS["reduce_max"] = _reduce(np.max)
OPS["reduce_min"] = _reduce(np.min)


@op("reshape")
def reshape(x, shape):
    shape = [int(v) for v in np.atleast_1d(shape)]
    shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return np.reshape(x, shape)


@op("transpose")
def transpose(x, perm):
    return np.transpose(x, [int(p) for p in perm])


@op("concat")
def concat(values, axis, interleave=False):
    if interleave:
        raise UnsupportedOpError("concat with interleave=True")
    # shape arithmetic of a program with enumerated shapes concatenates scalars (gather of one dim) into a shape
    return np.concatenate([np.atleast_1d(np.asarray(v)) for v in values], axis=int(axis))


@op("squeeze")
def squeeze(x, axes=None):
    return np.squeeze(x, axis=None if axes is None else tuple(int(a) for a in np.atleast_1d(axes)))


@op("expand_dims")
def expand_dims(x, axes):
    out = np.asarray(x)
    for a in sorted(int(v) for v in np.atleast_1d(axes)):
        out = np.expand_dims(out, a if a >= 0 else out.ndim + 1 + a)
    return out


@op("slice_by_index")
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    x = np.asarray(x)
    nd = x.ndim
    stride = np.ones(nd, int) if stride is None else np.asarray(stride, int)
    begin_mask = np.zeros(nd, bool) if begin_mask is None else np.asarray(begin_mask, bool)
    end_mask = np.zeros(nd, bool) if end_mask is None else np.asarray(end_mask, bool)
    sl = []
    for i in range(nd):
        b = None if begin_mask[i] else int(begin[i])
        e = None if end_mask[i] else int(end[i])
        sl.append(slice(b, e, int(stride[i])))
    out = x[tuple(sl)]
    if squeeze_mask is not None and np.any(squeeze_mask):
        out = np.squeeze(out, axis=tuple(i for i, s in enumerate(squeeze_mask) if s))
    return out


@op("slice_by_size")
def slice_by_size(x, begin, size):
    sl = tuple(slice(int(b), None if int(s) == -1 else int(b) + int(s)) for b, s in zip(begin, size))
    return np.asarray(x)[sl]


@op("cast")
def cast(x, dtype):
    return np.asarray(x).astype({"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16,
                                 "bool": bool, "int8": np.int8, "uint8": np.uint8}[str(dtype)])


@op("shape")
def shape(x):
    return np.asarray(np.shape(x), np.int32)


@op("gather")
def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    """MIL gather: x's entries at ``indices`` along ``axis`` (negative indices count from the end)."""
    if batch_dims:
        raise UnsupportedOpError(f"gather with batch_dims={batch_dims} is not simulated")
    x = np.asarray(x)
    axis = int(axis)
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.take(x, idx, axis=axis)


@op("classify")
def classify(probabilities, classes):
    p = np.asarray(probabilities).reshape(-1)
    labels = list(classes)
    return labels[int(np.argmax(p))], p.astype(np.float32)


# --- compressed weights and quantization (iOS16+ constexpr ops, iOS17 quantize/dequantize) ---------------
