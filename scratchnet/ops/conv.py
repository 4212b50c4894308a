"""2-D convolution as matrix multiplication (GEMM), two ways.

A convolution slides F filters of shape (C, kh, kw) over the input. Written out,

    out[f, n, y, x] = sum over c, i, j of  w[f, c, i, j] * x_padded[c, n, s*y + i, s*x + j]

Both methods below turn that sum into one big matrix product, and differ in
what they copy to get there:

- **im2col** copies every window the filters see into one column of a matrix
  (C*kh*kw rows), so that all filters on all windows are a single product
  ``w.reshape(F, C*kh*kw) @ col``. The input is inflated kh*kw times.
- **kn2row** multiplies first: every kernel offset (i, j) turns the whole input
  into a partial output ``w[:, :, i, j] @ x`` (one product for all offsets at
  once), and the kh*kw partial outputs are then added, each shifted by its
  offset (the zero padding just drops the parts shifted off the edge). The
  *output* is inflated kh*kw times instead, and no padded copy is made.

So im2col is cheaper when filters have more channels out than in (F > C), kn2row
when they have fewer, as the 3x3 convolutions of a dense layer do (4k in, k out).
``method="auto"`` picks the one that copies less.

Both loop over the kh*kw kernel offsets, never over pixels: for a fixed offset
the pixels involved form one strided slice, so each offset is one array copy
or one ``+=``, and inside one offset no pixel is touched twice (so ``+=`` is
correct without ``np.add.at``).

Layouts: PyTorch's (N, C, H, W), or channel-major (C, N, H, W), in which a 1x1
convolution is exactly one plain matrix product (C, N*H*W) -> (F, N*H*W) and
concatenating channels is concatenating rows. The computation below always runs
channel-major; NCHW inputs and outputs are transposed at the edges.
"""
from ..backend import parallel_slices
from ._checks import (array_module, check_channels, check_dout, check_float, check_int, check_layout, check_ndim,
                      output_size)

METHODS = ("auto", "im2col", "kn2row")


def _channel_major(a, layout):
    """(N, C, H, W) <-> (C, N, H, W): a view, for NCHW; the array itself for CNHW."""
    return a if layout == "CNHW" else a.transpose(1, 0, 2, 3)


def _pad(xp, x, pad):
    """Zero-pad the two spatial (last) axes."""
    return xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x


def _offset_slice(i, j, stride, out_h, out_w):
    # Where kernel offset (i, j) reads the padded input for each of the out_h x out_w outputs.
    return (slice(None), slice(None), slice(i, i + stride * out_h, stride), slice(j, j + stride * out_w, stride))


def im2col(x, kh, kw, stride=1, pad=0, layout="NCHW"):
    """Unfold every kh x kw window of ``x`` into a column.

    x: (N, C, H, W) (or (C, N, H, W) with layout="CNHW") -> col: (C*kh*kw, N*out_h*out_w), where
    ``col[(c, i, j), (n, y, x)] = x_padded[n, c, stride*y + i, stride*x + j]``.
    """
    xp = array_module("im2col", x)
    check_layout("im2col", layout)
    x = _channel_major(x, layout)
    C, N, H, W = x.shape
    out_h = output_size("im2col", H, kh, stride, pad, "height")
    out_w = output_size("im2col", W, kw, stride, pad, "width")
    x_pad = _pad(xp, x, pad)
    col = xp.empty((C, kh, kw, N, out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = x_pad[_offset_slice(i, j, stride, out_h, out_w)]
    return col.reshape(C * kh * kw, N * out_h * out_w)


def col2im(col, x_shape, kh, kw, stride=1, pad=0, layout="NCHW"):
    """The adjoint of im2col: add every column back onto the pixels it was copied from.

    col: (C*kh*kw, N*out_h*out_w) -> dx shaped ``x_shape`` (in ``layout``). A pixel seen
    by several windows receives the sum of their gradients.
    """
    xp = array_module("col2im", col)
    check_layout("col2im", layout)
    C, N, H, W = _shape_channel_major(x_shape, layout)
    out_h = output_size("col2im", H, kh, stride, pad, "height")
    out_w = output_size("col2im", W, kw, stride, pad, "width")
    col = col.reshape(C, kh, kw, N, out_h, out_w)
    dx_pad = xp.zeros((C, N, H + 2 * pad, W + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_pad[_offset_slice(i, j, stride, out_h, out_w)] += col[:, i, j]
    return _to_layout(xp, dx_pad[:, :, pad:pad + H, pad:pad + W], layout)


def _shape_channel_major(shape, layout):
    return tuple(shape) if layout == "CNHW" else (shape[1], shape[0], shape[2], shape[3])


def _to_layout(xp, a, layout):
    """A contiguous array in ``layout`` from a channel-major one."""
    return xp.ascontiguousarray(_channel_major(a, layout))


def choose_method(w_shape, stride):
    """im2col unless kn2row copies less: a stride-1 kernel larger than 1x1 with fewer filters than channels.

    kn2row also keeps less for the backward pass (x itself, where im2col keeps its kh*kw times larger
    column matrix), so it stays the choice on a GPU too, although im2col made a plain DenseNet-BC step
    faster there (79.5 against 94.9 ms on an H100): at L=40, batch 64 the column matrices of the 3x3
    convolutions would hold about 0.9 GB until backward, where kn2row keeps 0.1 GB.
    """
    F, C, kh, kw = w_shape
    return "kn2row" if stride == 1 and kh * kw > 1 and F < C else "im2col"


def conv2d_forward(x, w, b=None, stride=1, pad=0, layout="NCHW", method="auto"):
    """Convolution (cross-correlation, as in PyTorch) of x with F filters.

    x: (N, C, H, W), or (C, N, H, W) with layout="CNHW"; w: (F, C, kh, kw); b: (F,) or None
    -> out: (N, F, out_h, out_w) (or (F, N, out_h, out_w)) with out_h = (H + 2*pad - kh) // stride + 1,
       cache for ``conv2d_backward``.
    method: "im2col", "kn2row" (stride 1 only) or "auto" (the one that copies less).
    """
    op = "conv2d"
    xp = array_module(op, x, w, b)
    check_layout(op, layout)
    check_ndim(op, "x", x, 4, "(N, C, H, W)" if layout == "NCHW" else "(C, N, H, W)")
    check_ndim(op, "w", w, 4, "(F, C, kh, kw)")
    check_float(op, x=x, w=w, b=b)
    check_int(op, "stride", stride, 1)
    check_int(op, "pad", pad, 0)
    x_c = _channel_major(x, layout)
    C, N, H, W = x_c.shape
    F, _, kh, kw = w.shape
    check_channels(op, "x", C, "w", w.shape, w.shape[1])
    if b is not None and b.shape != (F,):
        raise ValueError(f"{op}: b must have shape ({F},) to match w of shape {tuple(w.shape)}, got {tuple(b.shape)}")
    out_h = output_size(op, H, kh, stride, pad, "height")
    out_w = output_size(op, W, kw, stride, pad, "width")
    if method == "auto":
        method = choose_method(w.shape, stride)
    if method not in METHODS or (method == "kn2row" and stride != 1):
        raise ValueError(f"{op}: method must be 'auto', 'im2col' or (for stride 1) 'kn2row', got {method!r}")

    if method == "kn2row":
        # One product for all kernel offsets: rows (i, j, f) of the weights times every input pixel.
        partial = (_kn2row_weights(w) @ x_c.reshape(C, -1)).reshape(kh, kw, F, N, H, W)
        out = xp.zeros((F, N, out_h, out_w), dtype=x.dtype)

        def shift_and_add(f):                       # output channels f only, so cores can share the work
            for i in range(kh):
                for j in range(kw):
                    target, source = _kn2row_shift(i - pad, j - pad, H, W, out_h, out_w)
                    out[f][target] += partial[i, j, f][source]

        parallel_slices(shift_and_add, F, xp, partial.size)
        saved = x_c.reshape(C, N * H * W)
    elif kh == kw == 1 and stride == 1 and pad == 0:
        saved = x_c.reshape(C, N * H * W)             # a 1x1 convolution needs no im2col: x is the column matrix
        out = (w.reshape(F, C) @ saved).reshape(F, N, out_h, out_w)
    else:
        saved = im2col(x_c, kh, kw, stride, pad, layout="CNHW")
        out = (w.reshape(F, -1) @ saved).reshape(F, N, out_h, out_w)
    if b is not None:
        out += b[:, None, None, None]
    cache = (method, saved, w, b is not None, stride, pad, (C, N, H, W), layout)
    return _to_layout(xp, out, layout), cache


def _kn2row_shift(dy, dx, H, W, out_h, out_w):
    """For kernel offset (dy, dx) relative to the padding: which outputs read which input pixels.

    Output (y, x) reads input (y + dy, x + dx); pixels outside the input are the zero
    padding and contribute nothing, so only the overlapping rectangle is kept.
    -> (target, source): index tuples over the last two axes of the output and of the input.
    """
    y0, y1 = max(0, -dy), min(out_h, H - dy)
    x0, x1 = max(0, -dx), min(out_w, W - dx)
    everything = (slice(None), slice(None))
    return (everything + (slice(y0, y1), slice(x0, x1)),
            everything + (slice(y0 + dy, y1 + dy), slice(x0 + dx, x1 + dx)))


def _zero_outside(block, rows, cols):
    """Zero the last two axes of ``block`` outside the rectangle rows x cols."""
    block[..., :rows.start, :] = 0
    block[..., rows.stop:, :] = 0
    block[..., :, :cols.start] = 0
    block[..., :, cols.stop:] = 0


def _kn2row_weights(w):
    """(F, C, kh, kw) -> (kh*kw*F, C): one row per kernel offset and filter."""
    F, C, kh, kw = w.shape
    return w.transpose(2, 3, 0, 1).reshape(kh * kw * F, C)


def conv2d_backward(dout, cache):
    """Gradients of the convolution.

    dout: shaped like the output -> dx: shaped like x, dw: (F, C, kh, kw), db: (F,) or None.
    """
    method, saved, w, has_bias, stride, pad, (C, N, H, W), layout = cache
    xp = array_module("conv2d_backward", dout, w)
    F, _, kh, kw = w.shape
    out_h, out_w = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    expected = (F, N, out_h, out_w) if layout == "CNHW" else (N, F, out_h, out_w)
    check_dout("conv2d_backward", dout, expected)
    dout_c = _channel_major(dout, layout)                          # (F, N, out_h, out_w)
    db = dout_c.sum(axis=(1, 2, 3)) if has_bias else None

    if method == "kn2row":
        # Each partial output (i, j) was read shifted by (i, j): its gradient is dout shifted back,
        # and 0 where the shift reached into the padding.
        dpartial = xp.empty((kh, kw, F, N, H, W), dtype=dout.dtype)

        def shift_back(f):                          # output channels f only, so cores can share the work
            for i in range(kh):
                for j in range(kw):
                    target, source = _kn2row_shift(i - pad, j - pad, H, W, out_h, out_w)
                    block = dpartial[i, j, f]
                    block[source] = dout_c[f][target]
                    _zero_outside(block, source[2], source[3])

        parallel_slices(shift_back, F, xp, dpartial.size)
        dpartial = dpartial.reshape(kh * kw * F, N * H * W)
        dw = (dpartial @ saved.T).reshape(kh, kw, F, C).transpose(2, 3, 0, 1)
        dx = _to_layout(xp, (_kn2row_weights(w).T @ dpartial).reshape(C, N, H, W), layout)
    else:
        dout_mat = dout_c.reshape(F, -1)                           # (F, N*out_h*out_w)
        dw = (dout_mat @ saved.T).reshape(w.shape)
        dcol = w.reshape(F, -1).T @ dout_mat                       # (C*kh*kw, N*out_h*out_w)
        if kh == kw == 1 and stride == 1 and pad == 0:
            dx = _to_layout(xp, dcol.reshape(C, N, H, W), layout)
        else:
            dx = col2im(dcol, (C, N, H, W), kh, kw, stride, pad, layout="CNHW")
            dx = _to_layout(xp, dx, layout)
    return dx, xp.ascontiguousarray(dw), db
