"""2-D convolution as im2col + one matrix multiplication (GEMM).

A convolution slides a (C, kh, kw) filter over the input. im2col copies every
window the filter sees into one column of a matrix, so that all F filters
applied to all windows become a single product::

    w.reshape(F, C*kh*kw) @ col      col: (N, C*kh*kw, out_h*out_w)

im2col and col2im loop over the kh*kw kernel offsets, not over output pixels:
for a fixed offset (i, j) the input pixels that offset sees form one strided
slice, so each offset is a single array copy (im2col) or a single ``+=``
(col2im). Inside one offset no pixel is touched twice, which is why the plain
``+=`` is correct and no ``np.add.at`` is needed.
"""
from ._checks import array_module, check_channels, check_dout, check_float, check_int, check_ndim, output_size


def im2col(x, kh, kw, stride=1, pad=0):
    """Unfold every kh x kw window of ``x`` into a column.

    x: (N, C, H, W) -> col: (N, C*kh*kw, out_h*out_w), where
    ``col[n, (c, i, j), (p, q)] = x_padded[n, c, stride*p + i, stride*q + j]``.
    """
    xp = array_module("im2col", x)
    N, C, H, W = x.shape
    out_h = output_size("im2col", H, kh, stride, pad, "height")
    out_w = output_size("im2col", W, kw, stride, pad, "width")
    x_pad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    col = xp.empty((N, C, kh, kw, out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, :, i, j] = x_pad[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride]
    return col.reshape(N, C * kh * kw, out_h * out_w)


def col2im(col, x_shape, kh, kw, stride=1, pad=0):
    """The adjoint of im2col: add every column back onto the pixels it was copied from.

    col: (N, C*kh*kw, out_h*out_w) -> dx: x_shape = (N, C, H, W). A pixel seen
    by several windows receives the sum of their gradients.
    """
    xp = array_module("col2im", col)
    N, C, H, W = x_shape
    out_h = output_size("col2im", H, kh, stride, pad, "height")
    out_w = output_size("col2im", W, kw, stride, pad, "width")
    col = col.reshape(N, C, kh, kw, out_h, out_w)
    dx_pad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_pad[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += col[:, :, i, j]
    if pad:
        return xp.ascontiguousarray(dx_pad[:, :, pad:pad + H, pad:pad + W])
    return dx_pad


def _is_pointwise(kh, kw, stride, pad):
    # A 1x1, stride-1, unpadded convolution needs no im2col: x itself is the column matrix.
    return kh == kw == 1 and stride == 1 and pad == 0


def conv2d_forward(x, w, b=None, stride=1, pad=0):
    """Convolution (cross-correlation, as in PyTorch) of x with F filters.

    x: (N, C, H, W), w: (F, C, kh, kw), b: (F,) or None
    -> out: (N, F, out_h, out_w) with out_h = (H + 2*pad - kh) // stride + 1 (likewise out_w),
       cache for ``conv2d_backward``.
    """
    op = "conv2d"
    array_module(op, x, w, b)
    check_ndim(op, "x", x, 4, "(N, C, H, W)")
    check_ndim(op, "w", w, 4, "(F, C, kh, kw)")
    check_float(op, x=x, w=w, b=b)
    check_int(op, "stride", stride, 1)
    check_int(op, "pad", pad, 0)
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    check_channels(op, "x", C, "w", w.shape, w.shape[1])
    if b is not None and b.shape != (F,):
        raise ValueError(f"{op}: b must have shape ({F},) to match w of shape {tuple(w.shape)}, got {tuple(b.shape)}")
    out_h = output_size(op, H, kh, stride, pad, "height")
    out_w = output_size(op, W, kw, stride, pad, "width")

    if _is_pointwise(kh, kw, stride, pad):
        col = x.reshape(N, C, H * W)
    else:
        col = im2col(x, kh, kw, stride, pad)
    out = w.reshape(F, -1) @ col                  # (F, K) @ (N, K, L) -> (N, F, L)
    if b is not None:
        out += b[:, None]
    out = out.reshape(N, F, out_h, out_w)
    cache = (x.shape, col, w, b is not None, stride, pad)
    return out, cache


def conv2d_backward(dout, cache):
    """Gradients of the convolution.

    dout: (N, F, out_h, out_w) -> dx: (N, C, H, W), dw: (F, C, kh, kw), db: (F,) or None.
    """
    x_shape, col, w, has_bias, stride, pad = cache
    xp = array_module("conv2d_backward", dout, w)
    N = x_shape[0]
    F, _, kh, kw = w.shape
    check_dout("conv2d_backward", dout, (N, F) + _spatial_out(x_shape, kh, kw, stride, pad))
    dout_mat = dout.reshape(N, F, -1)                                  # (N, F, L)

    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    dw = xp.tensordot(dout_mat, col, axes=([0, 2], [0, 2]))           # sum over n and L: (F, K)
    dcol = w.reshape(F, -1).T @ dout_mat                               # (K, F) @ (N, F, L) -> (N, K, L)
    if _is_pointwise(kh, kw, stride, pad):
        dx = dcol.reshape(x_shape)
    else:
        dx = col2im(dcol, x_shape, kh, kw, stride, pad)
    return dx, dw.reshape(w.shape), db


def _spatial_out(x_shape, kh, kw, stride, pad):
    return ((x_shape[2] + 2 * pad - kh) // stride + 1, (x_shape[3] + 2 * pad - kw) // stride + 1)
