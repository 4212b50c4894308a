"""Checks for lecture 01 (convolution as im2col + GEMM)."""
import numpy as np

from scratchnet import ops
from scratchnet.gradcheck import check_gradients
from scratchnet.ops import col2im, im2col

from . import ExerciseFailed, exercise, require

# (x_shape, kh, kw, stride, pad): overlapping windows (stride < kernel), strides, padding, non-square
COL2IM_CASES = [((2, 3, 5, 5), 3, 3, 1, 1), ((1, 2, 7, 6), 3, 2, 2, 0), ((2, 1, 6, 6), 4, 4, 2, 1)]


@exercise("Exercise 1, col2im with np.add.at")
def check_col2im_add_at(col2im_add_at):
    """col2im_add_at(col, x_shape, kh, kw, stride, pad) -> dx must be im2col's adjoint:
    <im2col(x), c> = <x, col2im(c)> for every x and c, and equal the library's col2im."""
    rng = np.random.default_rng(0)
    for x_shape, kh, kw, stride, pad in COL2IM_CASES:
        x = rng.standard_normal(x_shape)
        col = rng.standard_normal(im2col(x, kh, kw, stride, pad).shape)
        dx = col2im_add_at(col, x_shape, kh, kw, stride, pad)
        case = f"x {x_shape}, kernel {kh}x{kw}, stride {stride}, pad {pad}"
        require(np.shape(dx) == x_shape, f"{case}: the result has shape {np.shape(dx)}, not x's {x_shape}")
        lhs, rhs = np.vdot(im2col(x, kh, kw, stride, pad), col), np.vdot(x, dx)
        if not np.isclose(lhs, rhs, rtol=1e-10):
            raise ExerciseFailed(f"{case}: not im2col's adjoint: <im2col(x), col> = {lhs:.6g} but <x, col2im(col)> "
                                 f"= {rhs:.6g}. Does every column entry go back to the pixel it came from, and "
                                 "do overlapping windows add up (np.add.at), not overwrite (fancy-index +=)?")
        require(np.allclose(dx, col2im(col, x_shape, kh, kw, stride, pad), rtol=1e-12, atol=1e-12),
                f"{case}: the adjoint test passes but the result differs from scratchnet.ops.col2im")
    return f"the adjoint test holds and the result equals ops.col2im for {len(COL2IM_CASES)} shapes"


# (size, kernel, stride, pad) on top of a grid: DenseNet-121's 7x7/2 stem, a stride that does not divide evenly
OUTPUT_SIZE_CASES = [(224, 7, 2, 3), (32, 3, 2, 1), (7, 3, 3, 0), (8, 4, 3, 2)] + [
    (size, kernel, stride, pad) for size in (5, 6, 7) for kernel in (1, 2, 3, 4) for stride in (1, 2, 3)
    for pad in (0, 1, 2) if kernel <= size + 2 * pad]


@exercise("Exercise 2, the output size of a convolution")
def check_conv_output_size(conv_output_size):
    """conv_output_size(size, kernel, stride, pad) -> the output length along one axis, as an integer,
    equal to the size of what ops.conv2d_forward returns."""
    for size, kernel, stride, pad in OUTPUT_SIZE_CASES:
        answer = conv_output_size(size, kernel, stride, pad)
        x, w = np.zeros((1, 1, size, size)), np.zeros((1, 1, kernel, kernel))
        expected = ops.conv2d_forward(x, w, None, stride, pad)[0].shape[2]
        require(answer == expected and float(answer).is_integer(),
                f"size {size}, kernel {kernel}, stride {stride}, pad {pad}: you give {answer}, but "
                f"ops.conv2d_forward returns {expected} positions. Count where the window's first pixel can "
                f"start in the padded input (size + 2*pad pixels), every stride pixels, with the window inside.")
    return (f"equal to ops.conv2d_forward's output size in {len(OUTPUT_SIZE_CASES)} cases "
            f"(DenseNet-121's 7x7/2 stem, pad 3: 224 -> {conv_output_size(224, 7, 2, 3)})")


# (x shape, w shape, stride, pad): batches of more than one image (N > 1), strides, padding, a 1x1 kernel
CONV_BACKWARD_CASES = [((2, 3, 5, 5), (4, 3, 3, 3), 1, 1), ((2, 2, 6, 5), (3, 2, 3, 2), 2, 0),
                       ((3, 2, 4, 4), (2, 2, 1, 1), 1, 0)]


CONV_BACKWARD_HINTS = {
    "all": "Are dout_mat's columns in col's order (n, y, x)? dout is (N, F, out_h, out_w): move F to the front "
           "before reshaping it to (F, N*out_h*out_w).",
    "dx": "dx: dcol = w_row.T @ dout_mat, then col2im adds every column back onto its pixels.",
    "dw": "dw: dout_mat @ col.T is (F, C*kh*kw), reshaped to w's shape (a transposed product has the same "
          "size, so the reshape does not complain).",
    "db": "db: the sum of dout over every axis but F.",
}


@exercise("Exercise 3, the convolution's backward pass via im2col")
def check_conv2d_backward_im2col(conv2d_backward_im2col):
    """conv2d_backward_im2col(dout, x, w, stride, pad) -> (dx, dw, db) must match finite differences
    (check_gradients, a random dout) and ops.conv2d_backward."""
    rng = np.random.default_rng(1)
    worst = 0.0
    for x_shape, w_shape, stride, pad in CONV_BACKWARD_CASES:
        x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
        case = f"x {x_shape}, w {w_shape}, stride {stride}, pad {pad}"
        out, library_cache = ops.conv2d_forward(x, w, b, stride, pad)
        dout = rng.standard_normal(out.shape)
        grads = conv2d_backward_im2col(dout, x, w, stride, pad)
        require(isinstance(grads, (tuple, list)) and len(grads) == 3, f"{case}: return the tuple (dx, dw, db)")
        for name, grad, like in zip(("dx", "dw", "db"), grads, (x, w, b)):
            require(np.shape(grad) == like.shape, f"{case}: {name} has shape {np.shape(grad)}, not {like.shape}")

        def forward(x, w, b):
            return ops.conv2d_forward(x, w, b, stride, pad)[0], (x, w)

        def backward(dout, inputs):
            return conv2d_backward_im2col(dout, *inputs, stride, pad)

        errors = dict(zip(("dx", "dw", "db"), check_gradients(forward, backward, [x, w, b], seed=2)))
        wrong = [name for name, error in errors.items() if not error < 1e-7]
        hints = [CONV_BACKWARD_HINTS["all"]] if len(wrong) == 3 else [CONV_BACKWARD_HINTS[name] for name in wrong]
        require(not wrong, f"{case}: against finite differences (random dout) the relative errors are "
                + ", ".join(f"{name} {error:.1e}" for name, error in errors.items()) + ". " + " ".join(hints))
        for name, grad, reference in zip(("dx", "dw", "db"), grads, ops.conv2d_backward(dout, library_cache)):
            require(np.allclose(grad, reference, rtol=1e-10, atol=1e-12),
                    f"{case}: {name} passes the gradient check but differs from ops.conv2d_backward's")
        worst = max(worst, *errors.values())
    return (f"dx, dw and db match finite differences (largest relative error {worst:.1e}) and "
            f"ops.conv2d_backward in {len(CONV_BACKWARD_CASES)} cases")
