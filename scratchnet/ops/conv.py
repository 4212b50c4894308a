"""2-D convolution as im2col + one matrix product (GEMM).

A convolution slides F filters of shape (C, kh, kw) over the input. Written out,

    out[n, f, p, q] = b[f] + sum over c, i, j of  w[f, c, i, j] * x_padded[n, c, s*p + i, s*q + j]

im2col copies every window the filters see into one column of a matrix with C*kh*kw rows, so
that all filters on all windows are a single product ``w.reshape(F, C*kh*kw) @ col``.

im2col loops over the kh*kw kernel offsets, never over pixels: for a fixed offset (i, j) the
pixels read by all outputs form one strided slice of the padded input (``offset_slice``), so
each offset is one array copy. col2im, the backward, runs the same loop with ``+=``; inside one
offset no pixel is touched twice, so ``+=`` is correct without ``np.add.at``, and a pixel that
several windows saw receives the sum of their gradients.

``scratchnet.fast.conv`` computes the same convolution faster (kn2row, a channel-major layout).
"""
from typing import NamedTuple

from ._checks import array_module, check_conv_arguments, check_dout, check_ndim, output_size


def offset_slice(i, j, stride, out_h, out_w):
    """Index of the pixels that kernel offset (i, j) reads for all out_h x out_w outputs (the last two axes)."""
    return (Ellipsis, slice(i, i + stride * out_h, stride), slice(j, j + stride * out_w, stride))


def im2col(x, kh, kw, stride=1, pad=0):
    """Unfold every kh x kw window of ``x`` into a column.

    x: (N, C, H, W) -> col: (C*kh*kw, N*out_h*out_w), where
    ``col[(c, i, j), (n, p, q)] = x_padded[n, c, stride*p + i, stride*q + j]``.
    """
    xp = array_module("im2col", x)
    check_ndim("im2col", "x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    out_h = output_size("im2col", H, kh, stride, pad, "height")
    out_w = output_size("im2col", W, kw, stride, pad, "width")
    x_pad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    col = xp.empty((C, kh, kw, N, out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = x_pad[offset_slice(i, j, stride, out_h, out_w)].transpose(1, 0, 2, 3)
    return col.reshape(C * kh * kw, N * out_h * out_w)


def col2im(col, x_shape, kh, kw, stride=1, pad=0):
    """The adjoint of im2col: add every column back onto the pixels it was copied from.

    col: (C*kh*kw, N*out_h*out_w) -> dx: x_shape = (N, C, H, W).
    """
    xp = array_module("col2im", col)
    N, C, H, W = x_shape
    out_h = output_size("col2im", H, kh, stride, pad, "height")
    out_w = output_size("col2im", W, kw, stride, pad, "width")
    col = col.reshape(C, kh, kw, N, out_h, out_w)
    dx_pad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_pad[offset_slice(i, j, stride, out_h, out_w)] += col[:, i, j].transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(dx_pad[:, :, pad:pad + H, pad:pad + W])


class ConvCache(NamedTuple):
    """What ``conv2d_backward`` needs from the forward pass."""
    x_shape: tuple      # (N, C, H, W)
    col: object         # im2col(x): (C*kh*kw, N*out_h*out_w)
    w: object           # (F, C, kh, kw)
    has_bias: bool
    stride: int
    pad: int


def conv2d_forward(x, w, b=None, stride=1, pad=0):
    """Convolution (cross-correlation, as in PyTorch) of x with F filters: im2col, then one GEMM.

    x: (N, C, H, W), w: (F, C, kh, kw), b: (F,) or None
    -> out: (N, F, out_h, out_w) with out_h = (H + 2*pad - kh) // stride + 1 (out_w likewise),
       cache: a ConvCache(x_shape, col, w, has_bias, stride, pad) for ``conv2d_backward``.
    """
    xp, out_h, out_w = check_conv_arguments("conv2d", x, w, b, stride, pad)
    N = x.shape[0]
    F, _, kh, kw = w.shape
    col = im2col(x, kh, kw, stride, pad)                     # (C*kh*kw, N*out_h*out_w)
    out = w.reshape(F, -1) @ col                             # (F, N*out_h*out_w): every filter on every window
    if b is not None:
        out += b[:, None]
    out = out.reshape(F, N, out_h, out_w).transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(out), ConvCache(tuple(x.shape), col, w, b is not None, stride, pad)


def conv2d_backward(dout, cache):
    """Gradients of the convolution: the forward's one product, differentiated.

    dout: (N, F, out_h, out_w) -> dx: (N, C, H, W), dw: (F, C, kh, kw), db: (F,) or None.
    """
    w, stride, pad = cache.w, cache.stride, cache.pad
    array_module("conv2d_backward", dout, w)
    N, C, H, W = cache.x_shape
    F, _, kh, kw = w.shape
    out_h = output_size("conv2d_backward", H, kh, stride, pad, "height")
    out_w = output_size("conv2d_backward", W, kw, stride, pad, "width")
    check_dout("conv2d_backward", dout, (N, F, out_h, out_w))
    dout_mat = dout.transpose(1, 0, 2, 3).reshape(F, -1)     # (F, N*out_h*out_w): columns ordered as col's
    dw = (dout_mat @ cache.col.T).reshape(w.shape)
    db = dout_mat.sum(axis=1) if cache.has_bias else None
    dx = col2im(w.reshape(F, -1).T @ dout_mat, cache.x_shape, kh, kw, stride, pad)
    return dx, dw, db
