"""Batch norm followed by ReLU, fused: ``ops.batchnorm_forward`` then ``ops.relu_forward`` (to rounding)
in a third of the passes over memory.

NumPy runs each ``a * b`` as one pass over memory that writes a new array, and allocating
that array costs about as much again; the textbook batch norm makes a dozen such passes.
Here the normalisation is folded into one per-channel ``y = relu(x * scale + shift)``
written into one output array (``out=``), and the variance comes from a row-wise dot
product (``_row_dots``) instead of a squared copy of x.

The cache keeps x and the per-channel statistics, not x_hat: backward recomputes what it
needs from x instead of holding another array of x's size. It also keeps y, the output; if y
lives in a buffer that is reused (the memory-efficient DenseNet does this),
``batchnorm_relu_recompute(cache)`` rewrites it bit for bit before backward needs it.

Arrays are channel-major: x is (C, ...), (C, N, H, W) in the fast tier. Batch norm never
mixes channels, so on the CPU each core takes its own channels (``parallel_slices``),
with the same result as one core.
"""
from typing import NamedTuple

from ..ops._checks import array_module, check_batchnorm_arguments, check_dout, check_out
from ..ops.norm import update_running_statistics
from .threads import parallel_slices


def _rows(a):
    # (C, N, H, W) -> (C, N*H*W): one row per channel (a view for contiguous arrays).
    return a.reshape(a.shape[0], -1)


def _row_dots_numpy(xp, a, b, out):
    # einsum multiplies and sums in one pass, without a temporary array.
    return xp.einsum("ij,ij->i", a, b, out=out)


def _row_dots_cupy(xp, a, b, out):
    # CuPy's einsum is Python code whose bookkeeping costs far more than the arithmetic
    # (docs/benchmarks.md): a product and a sum, two kernels, do it.
    return (a * b).sum(axis=1, out=out)


def _row_dots(xp, a, b, out):
    """(C, m), (C, m) -> out (C,): the dot product of each row of a with the same row of b."""
    body = _row_dots_numpy if xp.__name__ == "numpy" else _row_dots_cupy
    return body(xp, a, b, out)


def batch_statistics(x, out=(None, None)):
    """Per-channel mean and biased variance of channel-major x, as batch norm computes them in training.

    x: (C, N, H, W) (any (C, ...)) -> mean, var: (C,), written into out = (mean_out, var_out) where given
    (contiguous (C,) arrays). A dense block computes these once per feature map, into its own arrays,
    and hands them to every layer that normalises it (``stats=``).
    """
    xp = check_batchnorm_arguments("batch_statistics", x, x.shape[0], True, None, None, None, None)
    X = _rows(x)
    C, m = X.shape
    mean, var = (given if given is not None else xp.empty(C, dtype=x.dtype) for given in out)

    def statistics(c):                         # channels c only: batch norm never mixes channels
        X[c].mean(axis=1, out=mean[c])
        centred = X[c] - mean[c, None]
        _row_dots(xp, centred, centred, out=var[c])                # the sum of squares, per channel,
        var[c] /= m                                                # over m values

    parallel_slices(statistics, C, xp, x.size)
    return mean, var


class BatchNormReLUCache(NamedTuple):
    """What the backward (and ``batchnorm_relu_recompute``) needs from the forward pass.

    ``x`` is the input itself and ``y`` the output array itself (views, not copies): x must
    be unchanged when backward runs, and y too, or be rewritten by ``batchnorm_relu_recompute``.
    """
    x: object           # (C, ...)
    y: object           # like x: the output array (``out=`` where one was given)
    mean: object        # (C,): the batch's mean (train) or running_mean (eval)
    inv_std: object     # (C,): 1 / sqrt(var + eps)
    gamma: object       # (C,)
    scale: object       # (C,): gamma * inv_std, so that y = relu(x * scale + shift)
    shift: object       # (C,): beta - mean * scale
    train: bool


def batchnorm_relu_forward(x, gamma, beta, running_mean, running_var, train, momentum=0.1, eps=1e-5, out=None,
                           stats=None):
    """y = relu(gamma * (x - mean) / sqrt(var + eps) + beta), batch norm with PyTorch's semantics.

    x: (C, N, H, W) (any (C, ...)); gamma, beta, running_mean, running_var: (C,)
    (running buffers updated in place in train mode; pass None for both to skip that).
    out: a contiguous array shaped like x to write y into (e.g. a shared scratch buffer).
    stats: in train mode, x's (mean, var) from ``batch_statistics`` if already known.
    -> y, cache: a BatchNormReLUCache for ``batchnorm_relu_backward``.
    """
    op = "batchnorm_relu"
    xp = check_batchnorm_arguments(op, x, x.shape[0], train, gamma, beta, running_mean, running_var)
    array_module(op, x, out)                            # out on x's device too
    check_out(op, "out", out, x.shape)
    if out is None:
        out = xp.empty(x.shape, dtype=x.dtype)          # C order, so that rows of out are views
    if train:
        mean, var = stats if stats is not None else batch_statistics(x)
        if running_mean is not None:
            update_running_statistics(running_mean, running_var, mean, var, x.size // x.shape[0], momentum)
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / xp.sqrt(var + eps)
    scale = gamma * inv_std                    # y = relu(x * scale + shift): one multiply, one add
    shift = beta - mean * scale
    cache = BatchNormReLUCache(x, out, mean, inv_std, gamma, scale, shift, train)
    return batchnorm_relu_recompute(cache), cache


def batchnorm_relu_recompute(cache):
    """Write y = relu(x * scale + shift) into the cached output array; return it.

    The forward pass uses this too, so calling it again later (when y's memory was
    reused in the meantime) rewrites y bit for bit; running statistics are not touched.
    """
    X, Y = _rows(cache.x), _rows(cache.y)
    scale, shift = cache.scale, cache.shift
    xp = array_module("batchnorm_relu_recompute", cache.x, cache.y)

    def normalise(c):                          # channels c only
        xp.multiply(X[c], scale[c, None], out=Y[c])
        Y[c] += shift[c, None]
        xp.maximum(Y[c], 0, out=Y[c])

    parallel_slices(normalise, X.shape[0], xp, X.size)
    return cache.y


class BatchNormReLUGradParts(NamedTuple):
    """The gradient of the fused op, with dx in parts: ``dx = partial_dx + x_coef * x + offset`` per channel.

    A dense block whose layers all normalise the same feature maps adds the sum of their
    x_coef * x + offset once per map, instead of once per layer.
    """
    partial_dx: object  # like x
    x_coef: object      # (C,)
    offset: object      # (C,)
    dgamma: object      # (C,)
    dbeta: object       # (C,)


def batchnorm_relu_backward_parts(dout, cache, grad_out=(None, None)):
    """dout: like x -> BatchNormReLUGradParts(partial_dx, x_coef, offset, dgamma, dbeta); dout is not changed.

    grad_out: as for ``batchnorm_relu_backward``."""
    return _backward(dout, cache, grad_out, add_x_terms=False)


def batchnorm_relu_backward(dout, cache, grad_out=(None, None)):
    """dout: like x -> dx: like x, dgamma: (C,), dbeta: (C,).

    grad_out: (dgamma_out, dbeta_out), contiguous (C,) arrays to write dgamma and dbeta into (each may be
    None: a new array), e.g. the optimiser's gradient buffers (``Parameter.grad_destination``).

    The ReLU passes dout where y > 0 (dz below); batch norm's closed form then gives
        dx = gamma * inv_std * (dz - mean(dz) - x_hat * mean(dz * x_hat))    (train)
        dx = gamma * inv_std * dz                                            (eval)
    With x_hat = (x - mean) * inv_std this is, per channel, a * dz + b * x + c for three
    numbers a = gamma * inv_std, b and c, which is how it is computed: x_hat is never formed,
    and sum(dz * x_hat) = inv_std * (sum(dz * x) - mean * sum(dz)). (``batchnorm_relu_backward_parts``
    returns a * dz as partial_dx, b as x_coef and c as offset.) dout is not changed.
    """
    dx, _, _, dgamma, dbeta = _backward(dout, cache, grad_out, add_x_terms=True)
    return dx, dgamma, dbeta


def _backward(dout, cache, grad_out, add_x_terms):
    """Both backward functions: with add_x_terms, partial_dx is dx itself (x_coef * x + offset added)."""
    x, mean, inv_std, scale = cache.x, cache.mean, cache.inv_std, cache.scale
    xp = array_module("batchnorm_relu_backward", dout, x)
    check_dout("batchnorm_relu_backward", dout, x.shape)
    X, Y, D = _rows(x), _rows(cache.y), _rows(dout)
    C, m = X.shape
    dx = xp.empty_like(X)
    dgamma, dbeta = (given if given is not None else xp.empty(C, dtype=x.dtype) for given in grad_out)
    dot = xp.empty(C, dtype=x.dtype)

    def reductions(rows):                      # these channels only
        dz = dx[rows]
        xp.multiply(D[rows], Y[rows] > 0, out=dz)                    # the gradient at the batch-norm output
        dz.sum(axis=1, out=dbeta[rows])
        _row_dots(xp, dz, X[rows], out=dot[rows])                    # sum(dz * x), per channel

    parallel_slices(reductions, C, xp, x.size)
    # Per channel (C numbers each), all channels at once: sum(dz * x_hat), and the coefficients of x and 1.
    xp.multiply(inv_std, dot - mean * dbeta, out=dgamma)
    if cache.train:
        minus_scale_over_m = scale * (-1 / m)
        x_coef = minus_scale_over_m * inv_std * dgamma              # the x_hat term, per unit of x
        offset = minus_scale_over_m * dbeta                         # the mean(dz) term ...
        offset -= x_coef * mean                                     # ... and x_coef's offset
    else:
        x_coef = offset = xp.zeros(C, dtype=x.dtype)

    def gradient(rows):                        # these channels only
        dz = dx[rows]
        dz *= scale[rows, None]                                      # a = gamma * inv_std
        if cache.train and add_x_terms:
            dz += X[rows] * x_coef[rows, None]
            dz += offset[rows, None]

    parallel_slices(gradient, C, xp, x.size)
    return BatchNormReLUGradParts(dx.reshape(x.shape), x_coef, offset, dgamma, dbeta)
