"""Batch normalisation with PyTorch's semantics, and its closed-form backward.

Per channel c, over the m = N*H*W values of a batch:

    train:  x_hat = (x - mean) / sqrt(var + eps)     mean, var: this batch's (var biased, / m)
    eval:   x_hat = (x - running_mean) / sqrt(running_var + eps)
    out   = gamma * x_hat + beta

In training the running estimates move towards the batch statistics, in place:

    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)   (unbiased)

exactly as ``torch.nn.BatchNorm2d`` does (normalise with the biased variance,
remember the unbiased one).
"""
from typing import NamedTuple

from ._checks import array_module, check_batchnorm_arguments, check_dout


def _reduced_axes(x):
    # Every axis but the channel axis 1: (0, 2, 3) for (N, C, H, W), (0,) for (N, C).
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    # (C,) -> (1, C, 1, 1) for (N, C, H, W), (1, C) for (N, C): broadcasts against x.
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def update_running_statistics(running_mean, running_var, mean, var, m, momentum):
    """In place, as PyTorch: move towards the batch mean and the unbiased batch variance (m values)."""
    running_mean *= 1 - momentum                # (1 - momentum) * running + momentum * batch, in place
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * var * (m / (m - 1))


class BatchNormCache(NamedTuple):
    """What ``batchnorm_backward`` needs from the forward pass."""
    x_hat: object       # the normalised input, shaped like x
    gamma: object       # (C,)
    inv_std: object     # (C,): 1 / sqrt(var + eps), batch or running var
    train: bool         # whether mean and var were the batch's (and so depend on x)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum=0.1, eps=1e-5):
    """Batch norm over the channel axis 1.

    x: (N, C, H, W) or (N, C) (any (N, C, ...)); gamma, beta, running_mean, running_var: (C,)
    train: use batch statistics and update running_mean/running_var in place
           (pass None for both to skip the update); otherwise use the running ones.
    -> out: same shape as x, cache: a BatchNormCache(x_hat, gamma, inv_std, train).
    """
    op = "batchnorm"
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be (N, C, H, W) or (N, C) (any (N, C, ...)), got shape {tuple(x.shape)}")
    xp = check_batchnorm_arguments(op, x, x.shape[1], train, gamma, beta, running_mean, running_var)
    axes = _reduced_axes(x)
    if train:
        mean = x.mean(axis=axes)
        centred = x - _per_channel(mean, x)
        var = (centred * centred).mean(axis=axes)
        if running_mean is not None:
            update_running_statistics(running_mean, running_var, mean, var, x.size // x.shape[1], momentum)
    else:
        mean, var = running_mean, running_var
        centred = x - _per_channel(mean, x)
    inv_std = 1 / xp.sqrt(var + eps)
    x_hat = centred * _per_channel(inv_std, x)
    out = x_hat * _per_channel(gamma, x) + _per_channel(beta, x)
    return out, BatchNormCache(x_hat, gamma, inv_std, train)


def batchnorm_backward(dout, cache):
    """Closed-form gradients of batch norm.

    dout: same shape as x -> dx: like x, dgamma: (C,), dbeta: (C,).

    In training, mean and var depend on every x in the channel, which gives
        dx = gamma * inv_std * (dout - mean(dout) - x_hat * mean(dout * x_hat))
    (means over the m values of the channel); in eval mode they are constants
    and dx = gamma * inv_std * dout.
    """
    x_hat, gamma, inv_std, train = cache
    array_module("batchnorm_backward", dout, x_hat)
    check_dout("batchnorm_backward", dout, x_hat.shape)
    axes = _reduced_axes(x_hat)
    m = x_hat.size // len(gamma)

    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    scale = _per_channel(gamma * inv_std, x_hat)
    if train:
        dx = scale * (dout - _per_channel(dbeta / m, x_hat) - x_hat * _per_channel(dgamma / m, x_hat))
    else:
        dx = scale * dout
    return dx, dgamma, dbeta
