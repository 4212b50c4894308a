"""Average pooling, max pooling and global average pooling.

The windowed pools act on the last two (spatial) axes only, so they work the
same for (N, C, H, W) and channel-major (C, N, H, W) arrays; global average
pooling takes a ``layout`` to know which axis holds the channels.

Like im2col, the windowed pools loop over the kernel offsets (i, j): for one
offset, the pixel each output position sees forms one strided slice of the
(padded) input, so each offset costs one vectorised array operation.
"""
from ..backend import parallel_slices
from ._checks import array_module, check_dout, check_float, check_int, check_layout, check_ndim, output_size


def _window_slice(i, j, stride, out_h, out_w):
    # The input pixels that kernel offset (i, j) contributes to each of the out_h x out_w outputs.
    return (slice(None), slice(None), slice(i, i + stride * out_h, stride), slice(j, j + stride * out_w, stride))


def _pool_shape(op, x, kernel, stride, pad):
    array_module(op, x)
    check_ndim(op, "x", x, 4, "(N, C, H, W)")
    check_float(op, x=x)
    check_int(op, "kernel", kernel, 1)
    check_int(op, "stride", stride, 1)
    check_int(op, "pad", pad, 0)
    N, C, H, W = x.shape
    return N, C, output_size(op, H, kernel, stride, pad, "height"), output_size(op, W, kernel, stride, pad, "width")


def avgpool_forward(x, kernel=2, stride=2):
    """Mean over each kernel x kernel window (no padding, PyTorch's floor mode).

    x: (N, C, H, W) -> out: (N, C, (H - kernel) // stride + 1, (W - kernel) // stride + 1), cache.
    """
    xp = array_module("avgpool", x)
    N, C, out_h, out_w = _pool_shape("avgpool", x, kernel, stride, 0)
    out = xp.zeros((N, C, out_h, out_w), dtype=x.dtype)

    def pool(rows):                              # rows of the first axis: the CPU cores share them
        for i in range(kernel):
            for j in range(kernel):
                out[rows] += x[rows][_window_slice(i, j, stride, out_h, out_w)]
        out[rows] /= kernel * kernel

    parallel_slices(pool, N, xp, x.size)
    return out, (x.shape, kernel, stride)


def avgpool_backward(dout, cache):
    """Each input pixel gets dout / kernel**2 from every window it lies in.

    dout: (N, C, out_h, out_w) -> dx: (N, C, H, W).
    """
    x_shape, kernel, stride = cache
    xp = array_module("avgpool_backward", dout)
    N, C, H, W = x_shape
    out_h, out_w = (H - kernel) // stride + 1, (W - kernel) // stride + 1
    check_dout("avgpool_backward", dout, (N, C, out_h, out_w))
    share = dout / (kernel * kernel)
    dx = xp.zeros(x_shape, dtype=dout.dtype)

    def spread(rows):                            # rows of the first axis: the CPU cores share them
        for i in range(kernel):
            for j in range(kernel):
                dx[rows][_window_slice(i, j, stride, out_h, out_w)] += share[rows]

    parallel_slices(spread, N, xp, dx.size)
    return dx


def maxpool_forward(x, kernel=3, stride=2, pad=1):
    """Maximum over each kernel x kernel window; padding never wins (it is -inf).

    x: (N, C, H, W) -> out: (N, C, (H + 2*pad - kernel) // stride + 1, likewise for W), cache.
    """
    op = "maxpool"
    xp = array_module(op, x)
    N, C, out_h, out_w = _pool_shape(op, x, kernel, stride, pad)
    if 2 * pad > kernel:
        raise ValueError(f"{op}: pad {pad} must be at most half the kernel {kernel}, as in PyTorch")
    x_pad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-xp.inf) if pad else x
    out = x_pad[_window_slice(0, 0, stride, out_h, out_w)].copy()
    winner = xp.zeros(out.shape, dtype=xp.int32)   # which offset i*kernel + j holds the max
    for i in range(kernel):
        for j in range(kernel):
            window = x_pad[_window_slice(i, j, stride, out_h, out_w)]
            # Strictly greater keeps the first maximum, as PyTorch does; a NaN always wins.
            better = (window > out) | xp.isnan(window)
            out = xp.where(better, window, out)
            winner = xp.where(better, i * kernel + j, winner)
    return out, (x.shape, winner, kernel, stride, pad)


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
            dx_pad[_window_slice(i, j, stride, out_h, out_w)] += dout * (winner == i * kernel + j)
    return xp.ascontiguousarray(dx_pad[:, :, pad:pad + H, pad:pad + W])


def global_avgpool_forward(x, layout="NCHW"):
    """Mean over all pixels of each channel.

    x: (N, C, H, W), or (C, N, H, W) with layout="CNHW" -> out: (N, C) either way, cache.
    """
    op = "global_avgpool"
    array_module(op, x)
    check_layout(op, layout)
    check_ndim(op, "x", x, 4, "(N, C, H, W)" if layout == "NCHW" else "(C, N, H, W)")
    check_float(op, x=x)
    out = x.mean(axis=(2, 3))
    return (out if layout == "NCHW" else out.T), (x.shape, layout)


def global_avgpool_backward(dout, cache):
    """Every pixel of a channel gets an equal share of that channel's gradient.

    dout: (N, C) -> dx: shaped like x.
    """
    x_shape, layout = cache
    xp = array_module("global_avgpool_backward", dout)
    H, W = x_shape[2:]
    check_dout("global_avgpool_backward", dout, x_shape[:2] if layout == "NCHW" else x_shape[1::-1])
    dx = xp.empty(x_shape, dtype=dout.dtype)
    dx[...] = (dout / (H * W) if layout == "NCHW" else dout.T / (H * W))[:, :, None, None]
    return dx
