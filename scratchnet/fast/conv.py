"""The convolution of ``ops.conv2d_forward``, faster: channel-major arrays, and kn2row.

**Channel-major layout.** Arrays are (C, N, H, W) instead of PyTorch's (N, C, H, W). The
product (F, C*kh*kw) @ (C*kh*kw, N*out_h*out_w) of im2col is then already the output,
(F, N, out_h, out_w), with no transpose back (the column matrix itself is the textbook's,
built by ``ops.im2col`` from the (N, C, H, W) view of x). A 1x1 convolution with stride 1
needs no im2col at all: its column matrix is x itself, seen as (C, N*H*W).

**kn2row.** im2col copies the input kh*kw times and then multiplies. kn2row multiplies first:
every kernel offset (i, j) turns the whole input into a partial output ``w[:, :, i, j] @ x``
(one product for all offsets at once), and the kh*kw partial outputs are added, each shifted
by its offset; zero padding just drops what is shifted off the edge. The *output* is inflated
kh*kw times instead of the input, so kn2row copies less when there are fewer filters than input
channels (F < C), as in a dense layer's 3x3 convolution (4k channels in, k out), and it keeps
only x (not a column matrix kh*kw times larger) for the backward pass.

Both give ``ops.conv2d_forward``'s result (tests/test_fast.py compares them).
"""
from typing import NamedTuple

from ..ops import col2im, im2col
from ..ops._checks import array_module, check_conv_arguments, check_dout, check_ndim, check_out, output_size
from .layout import swap_batch_and_channels, swapped_view
from .threads import parallel_slices

METHODS = ("auto", "im2col", "kn2row")


def choose_method(w_shape, stride):
    """"kn2row" where it copies less (stride 1, a kernel larger than 1x1, fewer filters than channels), else "im2col"."""
    F, C, kh, kw = w_shape
    return "kn2row" if stride == 1 and kh * kw > 1 and F < C else "im2col"


def _is_pointwise(kh, kw, stride, pad):
    # A 1x1 convolution with stride 1 and no padding: its column matrix is x itself.
    return kh == kw == 1 and stride == 1 and pad == 0


class FastConvCache(NamedTuple):
    """What ``conv2d_backward`` needs from the forward pass.

    ``saved`` is the column matrix (C*kh*kw, N*out_h*out_w) for im2col, and for kn2row and
    for a 1x1 convolution x itself, seen as (C, N*H*W): a view, not a copy, wherever x is
    C-contiguous (as the fast tier's arrays are). Whoever calls ``conv2d_backward`` must then make
    sure x still holds the values it had in the forward pass (the memory-efficient dense block
    recomputes the scratch array it shares before that). ``w`` is the weight array itself, but kn2row's
    backward multiplies by ``w_rows``, the copy of the weights its forward pass made: both are the
    forward pass's weights as long as nothing changes w between forward and backward (an optimiser
    steps after backward).
    """
    method: str         # "im2col" or "kn2row"
    saved: object
    w: object           # (F, C, kh, kw)
    has_bias: bool
    stride: int
    pad: int
    x_shape: tuple      # (C, N, H, W)
    w_rows: object = None   # kn2row: the weights as the (kh*kw*F, C) matrix of its product (``_kn2row_weights``)


def conv2d_forward(x, w, b=None, stride=1, pad=0, method="auto"):
    """``ops.conv2d_forward`` on channel-major arrays, by im2col or kn2row.

    x: (C, N, H, W), w: (F, C, kh, kw), b: (F,) or None
    -> out: (F, N, out_h, out_w), cache: a FastConvCache.
    method: "im2col", "kn2row" (stride 1 only) or "auto" (``choose_method``: the one that copies less).
    """
    op = "conv2d"
    check_ndim(op, "x", x, 4, "(C, N, H, W)")
    xp, out_h, out_w = check_conv_arguments(op, swapped_view(x), w, b, stride, pad)
    C, N, H, W = x.shape
    F, _, kh, kw = w.shape
    if method == "auto":
        method = choose_method(w.shape, stride)
    if method not in METHODS or (method == "kn2row" and stride != 1):
        raise ValueError(f"{op}: method must be 'auto', 'im2col' or (for stride 1) 'kn2row', got {method!r}")
    if method == "kn2row":
        saved, w_rows = x.reshape(C, N * H * W), _kn2row_weights(w)
        out = _kn2row_forward(xp, saved, w_rows, w.shape, pad, (C, N, H, W), out_h, out_w)
    else:
        w_rows = None
        if _is_pointwise(kh, kw, stride, pad):
            saved = x.reshape(C, N * H * W)
        else:
            saved = im2col(swapped_view(x), kh, kw, stride, pad)
        out = (w.reshape(F, -1) @ saved).reshape(F, N, out_h, out_w)
    if b is not None:
        out += b[:, None, None, None]
    return out, FastConvCache(method, saved, w, b is not None, stride, pad, tuple(x.shape), w_rows)


def _kn2row_weights(w):
    """(F, C, kh, kw) -> (kh*kw*F, C): one row per kernel offset and filter."""
    F, C, kh, kw = w.shape
    return w.transpose(2, 3, 0, 1).reshape(kh * kw * F, C)


def _kn2row_shift(dy, dx, H, W, out_h, out_w):
    """For kernel offset (dy, dx) relative to the padding: which outputs read which input pixels.

    Output (y, x) reads input (y + dy, x + dx); pixels outside the input are the zero
    padding and contribute nothing, so only the overlapping rectangle is kept.
    -> (target, source): index tuples over the last two axes of the output and of the input.
    """
    y0, x0 = max(0, -dy), max(0, -dx)
    y1, x1 = max(y0, min(out_h, H - dy)), max(x0, min(out_w, W - dx))    # empty where nothing overlaps
    return ((Ellipsis, slice(y0, y1), slice(x0, x1)),
            (Ellipsis, slice(y0 + dy, y1 + dy), slice(x0 + dx, x1 + dx)))


def _kn2row_forward(xp, x_rows, w_rows, w_shape, pad, x_shape, out_h, out_w):
    """x_rows: (C, N*H*W), w_rows: (kh*kw*F, C) (``_kn2row_weights``) -> out: (F, N, out_h, out_w)."""
    C, N, H, W = x_shape
    F, _, kh, kw = w_shape
    # One product for all kernel offsets: rows (i, j, f) of the weights times every input pixel.
    partial = (w_rows @ x_rows).reshape(kh, kw, F, N, H, W)
    out = xp.zeros((F, N, out_h, out_w), dtype=x_rows.dtype)

    def shift_and_add(f):                       # output channels f only, so the cores can share the work
        for i in range(kh):
            for j in range(kw):
                target, source = _kn2row_shift(i - pad, j - pad, H, W, out_h, out_w)
                out[f][target] += partial[i, j, f][source]

    parallel_slices(shift_and_add, F, xp, partial.size)
    return out


def _kn2row_backward(xp, dout, x_rows, w_rows, w_shape, pad, x_shape, dw_out=None):
    """dout: (F, N, out_h, out_w), x_rows: (C, N*H*W), w_rows: (kh*kw*F, C) -> dx: (C, N, H, W),
    dw: (F, C, kh, kw) (in dw_out if given)."""
    C, N, H, W = x_shape
    F, _, kh, kw = w_shape
    out_h, out_w = dout.shape[2:]
    # Each partial output (i, j) was read shifted by (i - pad, j - pad): its gradient is dout shifted
    # back, and 0 where the shift reached into the padding. Framed by zeros, dout holds every one of
    # these shifted copies as an (H, W) window, so one view shows them all and one copy lays them out
    # as the (kh*kw*F, N*H*W) matrix of the two products below.
    top, left = kh - 1 - pad, kw - 1 - pad          # where dout sits in the frame
    framed = xp.zeros((F, N, H + kh - 1, W + kw - 1), dtype=dout.dtype)
    rows = slice(max(top, 0), min(top + out_h, H + kh - 1))
    cols = slice(max(left, 0), min(left + out_w, W + kw - 1))
    framed[:, :, rows, cols] = dout[:, :, rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
    windows = xp.lib.stride_tricks.sliding_window_view(framed, (H, W), axis=(2, 3))  # (F, N, kh, kw, H, W)
    # Window (a, b) starts at frame pixel (a, b) = (kh - 1 - i, kw - 1 - j) for partial output (i, j).
    dpartial = xp.ascontiguousarray(windows[:, :, ::-1, ::-1].transpose(2, 3, 0, 1, 4, 5))
    dpartial = dpartial.reshape(kh * kw * F, N * H * W)
    dw = (dpartial @ x_rows.T).reshape(kh, kw, F, C).transpose(2, 3, 0, 1)
    dx = (w_rows.T @ dpartial).reshape(C, N, H, W)
    if dw_out is None:
        return dx, xp.ascontiguousarray(dw)
    dw_out[...] = dw                                # the same one copy, into the caller's array
    return dx, dw_out


def conv2d_backward(dout, cache, grad_out=(None, None)):
    """Gradients of ``conv2d_forward``.

    dout: (F, N, out_h, out_w) -> dx: (C, N, H, W), dw: (F, C, kh, kw), db: (F,) or None.
    grad_out: (dw_out, db_out), contiguous arrays to write dw and db into (each may be None: a new array),
    e.g. the optimiser's gradient buffers (``Parameter.grad_destination``).
    """
    w, stride, pad, saved = cache.w, cache.stride, cache.pad, cache.saved
    xp = array_module("conv2d_backward", dout, w)
    C, N, H, W = cache.x_shape
    F, _, kh, kw = w.shape
    out_h = output_size("conv2d_backward", H, kh, stride, pad, "height")
    out_w = output_size("conv2d_backward", W, kw, stride, pad, "width")
    check_dout("conv2d_backward", dout, (F, N, out_h, out_w))
    dw_out, db_out = grad_out
    check_out("conv2d_backward", "dw_out", dw_out, w.shape)
    check_out("conv2d_backward", "db_out", db_out, (F,))
    db = dout.sum(axis=(1, 2, 3), out=db_out) if cache.has_bias else None
    if cache.method == "kn2row":
        dx, dw = _kn2row_backward(xp, dout, saved, cache.w_rows, w.shape, pad, cache.x_shape, dw_out)
        return dx, dw, db
    dout_rows = dout.reshape(F, N * out_h * out_w)
    if dw_out is None:
        dw = (dout_rows @ saved.T).reshape(w.shape)
    else:                                                       # the product straight into the caller's array
        xp.matmul(dout_rows, saved.T, out=dw_out.reshape(F, -1))
        dw = dw_out
    dcol = w.reshape(F, -1).T @ dout_rows                       # (C*kh*kw, N*out_h*out_w)
    if _is_pointwise(kh, kw, stride, pad):
        dx = dcol.reshape(C, N, H, W)
    else:
        dx = swap_batch_and_channels(col2im(dcol, (N, C, H, W), kh, kw, stride, pad))
    return dx, dw, db
