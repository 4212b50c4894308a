"""Checks for lecture 02 (batch normalisation)."""
import numpy as np

from scratchnet import ops
from scratchnet.gradcheck import check_gradients, numerical_gradient, rel_error

from . import exercise, require

AXES = (0, 2, 3)
BACKWARD_SHAPES = [(4, 3, 3, 3), (2, 2, 4, 5)]   # (N, C, H, W), small: every element is checked


@exercise("Exercise 1, the batch-norm backward pass")
def check_batchnorm_backward(batchnorm_backward):
    """batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta), train mode, must match finite differences
    for a random dout (check_gradients); a backward that is right only for dout = 1 is refused."""
    rng = np.random.default_rng(3)
    worst = 0.0
    for shape in BACKWARD_SHAPES:
        C = shape[1]
        x = rng.standard_normal(shape) * 2 + 1
        gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
        out = ops.batchnorm_forward(x, gamma, beta, None, None, train=True)[0]
        grads = batchnorm_backward(rng.standard_normal(shape), x.copy(), gamma.copy(), 1e-5)
        require(isinstance(grads, (tuple, list)) and len(grads) == 3, "return the tuple (dx, dgamma, dbeta)")
        for name, grad, like in zip(("dx", "dgamma", "dbeta"), grads, (x, gamma, beta)):
            require(np.shape(grad) == like.shape, f"x {shape}: {name} has shape {np.shape(grad)}, not {like.shape}")

        def forward(x, gamma, beta):
            return ops.batchnorm_forward(x, gamma, beta, None, None, train=True)[0], (x, gamma)

        def backward(dout, inputs):
            return batchnorm_backward(dout, *inputs, 1e-5)

        errors = dict(zip(("dx", "dgamma", "dbeta"), check_gradients(forward, backward, [x, gamma, beta], seed=4)))
        if all(error < 1e-7 for error in errors.values()):
            worst = max(worst, *errors.values())
            continue
        listing = ", ".join(f"{name} {error:.1e}" for name, error in errors.items())
        # What the dout = 1 check would have said: the true gradients of sum(out).
        ones = np.ones(shape)
        dx_ones, dgamma_ones, _ = batchnorm_backward(ones, x.copy(), gamma.copy(), 1e-5)
        true_dx = numerical_gradient(lambda v: ops.batchnorm_forward(v, gamma, beta, None, None, True)[0], x, ones)
        hidden = rel_error(dx_ones, true_dx) < 1e-7 or np.abs(dx_ones).max() < 1e-8 * np.abs(out).max()
        if hidden and np.abs(dgamma_ones).max() < 1e-8 * x.size:
            require(False, f"x {shape}: with dout = 1 your dx and dgamma are zero, as the true gradients of "
                    f"sum(out) are (finite differences: max |dx| = {np.abs(true_dx).max():.0e}), so a dout = 1 "
                    f"check would have passed this backward. With a random dout the relative errors are {listing}. "
                    "Something vanishes only for dout = 1: is the term that comes from the variance "
                    "(- x_hat * mean(dout * x_hat)) there?")
        require(False, f"x {shape}: against finite differences (random dout) the relative errors are {listing}. "
                "Walk the staged steps of section 3, or compare with the closed form of section 4.")
    dx_ones, dgamma_ones, dbeta_ones = batchnorm_backward(np.ones(shape), x.copy(), gamma.copy(), 1e-5)
    return (f"dx, dgamma and dbeta match finite differences for a random dout (largest relative error "
            f"{worst:.1e}) on {len(BACKWARD_SHAPES)} shapes; with dout = 1 your max |dx| is "
            f"{np.abs(dx_ones).max():.0e}, max |dgamma| {np.abs(dgamma_ones).max():.0e} and dbeta = m = "
            f"{dbeta_ones[0]:g}: was that your prediction?")


@exercise("Exercise 2, batch norm folded into the convolution before it")
def check_fold_batchnorm(fold_batchnorm):
    """fold_batchnorm(w, b, gamma, beta, running_mean, running_var, eps) -> (w_folded, b_folded) must give
    conv(x, w_folded, b_folded) = eval-mode batchnorm(conv(x, w, b)), with the library's two ops as reference."""
    rng = np.random.default_rng(5)
    for F, C, kernel, pad in [(4, 3, 3, 1), (6, 2, 1, 0)]:
        w, b = rng.standard_normal((F, C, kernel, kernel)), rng.standard_normal(F)
        gamma, beta = rng.standard_normal(F), rng.standard_normal(F)
        running_mean, running_var = rng.standard_normal(F), rng.random(F) * 0.01 + 1e-3   # small variances
        x = rng.standard_normal((2, C, 5, 5))
        arrays = [a.copy() for a in (w, b, gamma, beta, running_mean, running_var)]
        folded = fold_batchnorm(*arrays, 1e-5)
        require(isinstance(folded, (tuple, list)) and len(folded) == 2, "return the tuple (w_folded, b_folded)")
        w_folded, b_folded = folded
        require(np.shape(w_folded) == w.shape and np.shape(b_folded) == b.shape,
                f"w_folded has shape {np.shape(w_folded)} and b_folded {np.shape(b_folded)}; "
                f"they must be w's {w.shape} and b's {b.shape}")
        require(all(np.array_equal(a, a0) for a, a0 in zip(arrays, (w, b, gamma, beta, running_mean, running_var))),
                "fold_batchnorm changed one of its inputs in place; compute new arrays instead")
        conv_then_bn = ops.batchnorm_forward(ops.conv2d_forward(x, w, b, 1, pad)[0], gamma, beta,
                                             running_mean, running_var, train=False)[0]
        folded_conv = ops.conv2d_forward(x, w_folded, b_folded, 1, pad)[0]
        error = np.abs(folded_conv - conv_then_bn).max() / np.abs(conv_then_bn).max()
        require(error < 1e-10, f"{F} filters {kernel}x{kernel}: conv with the folded weights differs from conv then "
                f"eval-mode batch norm by {error:.1e} (relative to the largest output). In eval mode batch norm is "
                "out = gamma * (z - running_mean) / sqrt(running_var + eps) + beta, per channel: which of these "
                "terms multiply the weights, and which the bias?")
    return "conv(x, w_folded, b_folded) equals eval-mode batchnorm(conv(x, w, b)) to rounding, for 2 layers"
