"""Average pooling, max pooling and global average pooling.

Like im2col, the windowed pools loop over the kernel offsets (i, j): for one offset, the pixel
each output position sees forms one strided slice of the (padded) input (``conv.offset_slice``),
so each offset costs one vectorised array operation.
"""
from typing import NamedTuple

from ._checks import array_module, check_dout, check_float, check_int, check_ndim, output_size
from .conv import offset_slice


def _pool_shape(op, x, kernel, stride, pad):
    array_module(op, x)
    check_ndim(op, "x", x, 4, "(N, C, H, W)")
    check_float(op, x=x)
    check_int(op, "kernel", kernel, 1)
    check_int(op, "stride", stride, 1)
    check_int(op, "pad", pad, 0)
    N, C, H, W = x.shape
    return N, C, output_size(op, H, kernel, stride, pad, "height"), output_size(op, W, kernel, stride, pad, "width")


class AvgPoolCache(NamedTuple):
    """What ``avgpool_backward`` needs: no values, only where they came from."""
    x_shape: tuple      # (N, C, H, W)
    kernel: int
    stride: int


def avgpool_forward(x, kernel=2, stride=2):
    """Mean over each kernel x kernel window (no padding, PyTorch's floor mode).

    x: (N, C, H, W) -> out: (N, C, (H - kernel) // stride + 1, (W - kernel) // stride + 1),
    cache: an AvgPoolCache(x_shape, kernel, stride).
    """
    xp = array_module("avgpool", x)
    N, C, out_h, out_w = _pool_shape("avgpool", x, kernel, stride, 0)
    out = xp.zeros((N, C, out_h, out_w), dtype=x.dtype)
    for i in range(kernel):
        for j in range(kernel):
            out += x[offset_slice(i, j, stride, out_h, out_w)]
    out /= kernel * kernel
    return out, AvgPoolCache(tuple(x.shape), kernel, stride)


def avgpool_backward(dout, cache):
    """Each input pixel gets dout / kernel**2 from every window it lies in.

    dout: (N, C, out_h, out_w) -> dx: (N, C, H, W).
    """
    x_shape, kernel, stride = cache
    xp = array_module("avgpool_backward", dout)
    N, C, H, W = x_shape
    out_h = output_size("avgpool_backward", H, kernel, stride, 0, "height")
    out_w = output_size("avgpool_backward", W, kernel, stride, 0, "width")
    check_dout("avgpool_backward", dout, (N, C, out_h, out_w))
    share = dout / (kernel * kernel)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    for i in range(kernel):
        for j in range(kernel):
            dx[offset_slice(i, j, stride, out_h, out_w)] += share
    return dx


class MaxPoolCache(NamedTuple):
    """What ``maxpool_backward`` needs: which input pixel won each window."""
    x_shape: tuple      # (N, C, H, W)
    winner: object      # (N, C, out_h, out_w) int32: the winning offset i * kernel + j of each window
    kernel: int
    stride: int
    pad: int


def maxpool_forward(x, kernel=3, stride=2, pad=1):
    """Maximum over each kernel x kernel window; padding never wins (it is -inf).

    x: (N, C, H, W) -> out: (N, C, (H + 2*pad - kernel) // stride + 1, likewise for W),
    cache: a MaxPoolCache(x_shape, winner, kernel, stride, pad).
    """
    op = "maxpool"
    xp = array_module(op, x)
    N, C, out_h, out_w = _pool_shape(op, x, kernel, stride, pad)
    if 2 * pad > kernel:
        raise ValueError(f"{op}: pad {pad} must be at most half the kernel {kernel}, as in PyTorch")
    x_pad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-xp.inf) if pad else x
    out = x_pad[offset_slice(0, 0, stride, out_h, out_w)].copy()
    winner = xp.zeros(out.shape, dtype=xp.int32)
    for i in range(kernel):
        for j in range(kernel):
            window = x_pad[offset_slice(i, j, stride, out_h, out_w)]
            # Strictly greater keeps the first maximum, as PyTorch does; a NaN always wins.
            better = (window > out) | xp.isnan(window)
            out = xp.where(better, window, out)
            winner = xp.where(better, i * kernel + j, winner)
    return out, MaxPoolCache(tuple(x.shape), winner, kernel, stride, pad)


def maxpool_backward(dout, cache):
    """Each window's gradient goes to the one input pixel that was its maximum.

    dout: (N, C, out_h, out_w) -> dx: (N, C, H, W).
    """
    x_shape, winner, kernel, stride, pad = cache
    xp = array_module("maxpool_backward", dout, winner)
    check_dout("maxpool_backward", dout, winner.shape)
    N, C, H, W = x_shape
    out_h, out_w = winner.shape[2:]
    dx_pad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dout.dtype)
    for i in range(kernel):
        for j in range(kernel):
            dx_pad[offset_slice(i, j, stride, out_h, out_w)] += dout * (winner == i * kernel + j)
    return xp.ascontiguousarray(dx_pad[:, :, pad:pad + H, pad:pad + W])


class GlobalAvgPoolCache(NamedTuple):
    """What ``global_avgpool_backward`` needs."""
    x_shape: tuple      # (N, C, H, W)


def global_avgpool_forward(x):
    """Mean over all pixels of each channel.

    x: (N, C, H, W) -> out: (N, C), cache: a GlobalAvgPoolCache(x_shape).
    """
    op = "global_avgpool"
    array_module(op, x)
    check_ndim(op, "x", x, 4, "(N, C, H, W)")
    check_float(op, x=x)
    return x.mean(axis=(2, 3)), GlobalAvgPoolCache(tuple(x.shape))


def global_avgpool_backward(dout, cache):
    """Every pixel of a channel gets an equal share of that channel's gradient.

    dout: (N, C) -> dx: (N, C, H, W).
    """
    (x_shape,) = cache
    xp = array_module("global_avgpool_backward", dout)
    N, C, H, W = x_shape
    check_dout("global_avgpool_backward", dout, (N, C))
    dx = xp.empty(x_shape, dtype=dout.dtype)
    dx[...] = (dout / (H * W))[:, :, None, None]
    return dx
