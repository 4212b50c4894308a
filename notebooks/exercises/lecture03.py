"""Checks for lecture 03 (ReLU, concatenation, pooling)."""
import numpy as np

from scratchnet import ops
from scratchnet.gradcheck import check_gradients

from . import exercise, require

# (x shape, kernel, stride, pad): side by side windows, then overlapping ones (a pixel can win several)
MAXPOOL_CASES = [((2, 2, 6, 6), 2, 2, 0), ((1, 2, 7, 7), 3, 2, 1), ((2, 1, 5, 6), 3, 1, 1)]


def _well_separated(rng, shape, gap=0.05):
    # Distinct values at least `gap` apart, shuffled: no finite-difference step changes a window's winner.
    return rng.permutation(np.arange(np.prod(shape)) * gap).reshape(shape)


@exercise("Exercise 1, the max-pool backward pass")
def check_maxpool_backward(maxpool_backward):
    """maxpool_backward(dout, x, kernel, stride, pad) -> dx must match finite differences (check_gradients,
    a random dout, on well-separated inputs) and ops.maxpool_backward, overlapping windows included."""
    rng = np.random.default_rng(6)
    worst = 0.0
    for shape, kernel, stride, pad in MAXPOOL_CASES:
        case = f"x {shape}, kernel {kernel}, stride {stride}, pad {pad}"
        x = _well_separated(rng, shape)
        out, cache = ops.maxpool_forward(x, kernel, stride, pad)
        dout = rng.standard_normal(out.shape)
        dx = maxpool_backward(dout, x.copy(), kernel, stride, pad)
        require(np.shape(dx) == shape, f"{case}: dx has shape {np.shape(dx)}, not x's {shape}")
        error = check_gradients(lambda a: (ops.maxpool_forward(a, kernel, stride, pad)[0], a),
                                lambda d, a: maxpool_backward(d, a, kernel, stride, pad), [x], seed=7)[0]
        overlap = " The windows overlap here: a pixel that wins several windows must receive the sum of their " \
                  "dout, not the last one written (fancy-index += keeps only one)." if kernel > stride else ""
        require(error < 1e-8, f"{case}: against finite differences (random dout) the relative error of dx is "
                f"{error:.1e}. Each window's dout goes to its largest pixel, and only to it.{overlap}")
        require(np.allclose(dx, ops.maxpool_backward(dout, cache), rtol=1e-12, atol=1e-12),
                f"{case}: dx passes the gradient check but differs from ops.maxpool_backward's")
        worst = max(worst, error)
    return (f"dx matches finite differences (largest relative error {worst:.1e}) and ops.maxpool_backward "
            f"in {len(MAXPOOL_CASES)} cases, overlapping windows included")


# (x shape, kernel, stride): DenseNet's 2x2/2, then overlapping windows
AVGPOOL_CASES = [((2, 2, 4, 4), 2, 2), ((1, 2, 5, 5), 3, 1), ((2, 1, 7, 6), 3, 2)]


@exercise("Exercise 2, the average-pool backward pass")
def check_avgpool_backward(avgpool_backward):
    """avgpool_backward(dout, x_shape, kernel, stride) -> dx must be average pooling's adjoint,
    <avgpool(x), d> = <x, avgpool_backward(d)>, match finite differences and equal ops.avgpool_backward."""
    rng = np.random.default_rng(8)
    for shape, kernel, stride in AVGPOOL_CASES:
        case = f"x {shape}, kernel {kernel}, stride {stride}"
        x = rng.standard_normal(shape)
        out, cache = ops.avgpool_forward(x, kernel, stride)
        dout = rng.standard_normal(out.shape)
        dx = avgpool_backward(dout, shape, kernel, stride)
        require(np.shape(dx) == shape, f"{case}: dx has shape {np.shape(dx)}, not x's {shape}")
        lhs, rhs = np.vdot(out, dout), np.vdot(x, dx)
        count = " (kernel larger than the stride: most pixels lie in several windows)" if kernel > stride else ""
        require(np.isclose(lhs, rhs, rtol=1e-10),
                f"{case}: not the adjoint of average pooling: <avgpool(x), dout> = {lhs:.6g} but <x, dx> = "
                f"{rhs:.6g}. Each pixel receives dout / kernel**2 from every window it lies in{count}: add the "
                "shares up, do not overwrite them.")
        error = check_gradients(lambda a: (ops.avgpool_forward(a, kernel, stride)[0], None),
                                lambda d, _: avgpool_backward(d, shape, kernel, stride), [x], seed=9)[0]
        require(error < 1e-8, f"{case}: the relative error of dx against finite differences is {error:.1e}")
        require(np.allclose(dx, ops.avgpool_backward(dout, cache), rtol=1e-12, atol=1e-12),
                f"{case}: dx passes the checks but differs from ops.avgpool_backward's")
    return (f"the adjoint test and the gradient check hold, and dx equals ops.avgpool_backward, "
            f"in {len(AVGPOOL_CASES)} cases")
