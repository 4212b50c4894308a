"""Reference solutions of lecture 01's exercises (checked by tests/test_exercises.py)."""
import numpy as np

from scratchnet.ops import col2im, im2col
from scratchnet.ops.conv import output_size


def col2im_add_at(col, x_shape, kh, kw, stride=1, pad=0):
    """col: (C*kh*kw, N*out_h*out_w) -> dx: (N, C, H, W), scattering with np.add.at (CS231n's way)."""
    N, C, H, W = x_shape
    out_h = output_size("col2im_add_at", H, kh, stride, pad, "height")
    out_w = output_size("col2im_add_at", W, kw, stride, pad, "width")
    # the row and column of the padded input that entry (c, i, j), (n, p, q) of col was copied from
    c, i, j, n, p, q = np.indices((C, kh, kw, N, out_h, out_w), sparse=True)
    rows, cols = stride * p + i, stride * q + j
    dx_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=col.dtype)
    np.add.at(dx_pad, (n, c, rows, cols), col.reshape(C, kh, kw, N, out_h, out_w))
    return dx_pad[:, :, pad:pad + H, pad:pad + W]


def _col2im_fancy_index(col, x_shape, kh, kw, stride=1, pad=0):
    """The classic mistake: fancy-index += keeps one of the values written to a pixel, so overlaps are lost."""
    N, C, H, W = x_shape
    out_h, out_w = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    c, i, j, n, p, q = np.indices((C, kh, kw, N, out_h, out_w), sparse=True)
    dx_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=col.dtype)
    dx_pad[n, c, stride * p + i, stride * q + j] += col.reshape(C, kh, kw, N, out_h, out_w)
    return dx_pad[:, :, pad:pad + H, pad:pad + W]


def conv_output_size(size, kernel, stride=1, pad=0):
    """The window starts at 0, stride, 2*stride, ... and must end inside the padded input (size + 2*pad)."""
    return (size + 2 * pad - kernel) // stride + 1


def _conv_output_size_true_division(size, kernel, stride=1, pad=0):
    """A fraction of a window is not a window: right only when the stride divides evenly."""
    return (size + 2 * pad - kernel) / stride + 1


def _conv_output_size_one_side_padded(size, kernel, stride=1, pad=0):
    """pad counted once, as if only one border were padded."""
    return (size + pad - kernel) // stride + 1


def conv2d_backward_im2col(dout, x, w, stride=1, pad=0):
    """dout: (N, F, out_h, out_w), x: (N, C, H, W), w: (F, C, kh, kw) -> dx, dw, db (the GEMM, differentiated)."""
    F, _, kh, kw = w.shape
    col = im2col(x, kh, kw, stride, pad)                     # (C*kh*kw, N*out_h*out_w), columns ordered (n, y, x)
    dout_mat = dout.transpose(1, 0, 2, 3).reshape(F, -1)     # (F, N*out_h*out_w), columns ordered (n, y, x) too
    dw = (dout_mat @ col.T).reshape(w.shape)
    db = dout_mat.sum(axis=1)
    dx = col2im(w.reshape(F, -1).T @ dout_mat, x.shape, kh, kw, stride, pad)
    return dx, dw, db


def _conv2d_backward_reshape_without_transpose(dout, x, w, stride=1, pad=0):
    """The classic mistake: (N, F, ...) reshaped straight to (F, -1) mixes images and filters (right only for N = 1)."""
    F, _, kh, kw = w.shape
    col = im2col(x, kh, kw, stride, pad)
    dout_mat = dout.reshape(F, -1)
    dx = col2im(w.reshape(F, -1).T @ dout_mat, x.shape, kh, kw, stride, pad)
    return dx, (dout_mat @ col.T).reshape(w.shape), dout_mat.sum(axis=1)


def _conv2d_backward_dw_transposed(dout, x, w, stride=1, pad=0):
    """col @ dout_mat.T has the right number of elements, so the reshape to w's shape hides the transpose."""
    dx, _, db = conv2d_backward_im2col(dout, x, w, stride, pad)
    F, _, kh, kw = w.shape
    dout_mat = dout.transpose(1, 0, 2, 3).reshape(F, -1)
    return dx, (im2col(x, kh, kw, stride, pad) @ dout_mat.T).reshape(w.shape), db


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {"col2im_add_at": [_col2im_fancy_index],
         "conv_output_size": [_conv_output_size_true_division, _conv_output_size_one_side_padded],
         "conv2d_backward_im2col": [_conv2d_backward_reshape_without_transpose, _conv2d_backward_dw_transposed]}
