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
from ._checks import array_module, check_dout, check_float


def _channel_axes(x):
    # Every axis but the channel axis 1: (0, 2, 3) for (N, C, H, W), (0,) for (N, C).
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, ndim):
    # (C,) -> (1, C, 1, 1) so that it broadcasts against (N, C, H, W).
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum=0.1, eps=1e-5):
    """Batch norm over the channel axis 1.

    x: (N, C, H, W) or (N, C); gamma, beta, running_mean, running_var: (C,)
    train: use batch statistics and update running_mean/running_var in place
           (pass None for both to skip the update); otherwise use the running ones.
    -> out: same shape as x, cache for ``batchnorm_backward``.
    """
    op = "batchnorm"
    xp = array_module(op, x, gamma, beta, running_mean, running_var)
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be (N, C, H, W) or (N, C), got shape {tuple(x.shape)}")
    C = x.shape[1]
    check_float(op, x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    params = dict(gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    for name, v in params.items():
        if v is not None and v.shape != (C,):
            raise ValueError(f"{op}: {name} must have shape ({C},) for x of shape {tuple(x.shape)}, got {tuple(v.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    axes = _channel_axes(x)
    m = x.size // C

    if train:
        if m < 2:
            raise ValueError(f"{op}: training needs more than one value per channel, got x of shape {tuple(x.shape)}")
        mean = x.mean(axis=axes)
        centred = x - _per_channel(mean, x.ndim)
        var = (centred * centred).mean(axis=axes)
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * var * (m / (m - 1))
    else:
        if running_mean is None:
            raise ValueError(f"{op}: eval mode (train=False) needs running_mean and running_var")
        mean, var = running_mean, running_var
        centred = x - _per_channel(mean, x.ndim)

    inv_std = 1 / xp.sqrt(var + eps)
    x_hat = centred * _per_channel(inv_std, x.ndim)
    out = x_hat * _per_channel(gamma, x.ndim) + _per_channel(beta, x.ndim)
    cache = (x_hat, gamma, inv_std, train)
    return out, cache


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
    axes = _channel_axes(x_hat)
    m = x_hat.size // x_hat.shape[1]

    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    scale = _per_channel(gamma * inv_std, dout.ndim)
    if train:
        dx = scale * (dout - _per_channel(dbeta / m, dout.ndim) - x_hat * _per_channel(dgamma / m, dout.ndim))
    else:
        dx = scale * dout
    return dx, dgamma, dbeta
