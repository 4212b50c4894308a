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
from ._checks import array_module, check_dout, check_float, check_layout


def _channel_axis(layout):
    return 0 if layout == "CNHW" else 1


def _reduced_axes(x, layout):
    # Every axis but the channel axis: (0, 2, 3) for (N, C, H, W), (0,) for (N, C), (1, 2, 3) for (C, N, H, W).
    return tuple(a for a in range(x.ndim) if a != _channel_axis(layout))


def _per_channel(v, x, layout):
    # (C,) -> (1, C, 1, 1) for (N, C, H, W), (C, 1, 1, 1) for (C, N, H, W): broadcasts against x.
    shape = [1] * x.ndim
    shape[_channel_axis(layout)] = -1
    return v.reshape(shape)


def update_running_statistics(running_mean, running_var, mean, var, m, momentum):
    """In place, as PyTorch: move towards the batch mean and the unbiased batch variance (m values)."""
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean
    running_var[...] = (1 - momentum) * running_var + momentum * var * (m / (m - 1))


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum=0.1, eps=1e-5, layout="NCHW"):
    """Batch norm over the channel axis.

    x: (N, C, H, W) or (N, C); with layout="CNHW", (C, N, H, W).
    gamma, beta, running_mean, running_var: (C,)
    train: use batch statistics and update running_mean/running_var in place
           (pass None for both to skip the update); otherwise use the running ones.
    -> out: same shape as x, cache for ``batchnorm_backward``.
    """
    op = "batchnorm"
    xp = array_module(op, x, gamma, beta, running_mean, running_var)
    check_layout(op, layout)
    if x.ndim < 2 or (layout == "CNHW" and x.ndim != 4):
        expected = "(C, N, H, W)" if layout == "CNHW" else "(N, C, H, W) or (N, C)"
        raise ValueError(f"{op}: x must be {expected}, got shape {tuple(x.shape)}")
    C = x.shape[_channel_axis(layout)]
    check_float(op, x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    params = dict(gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    for name, v in params.items():
        if v is not None and v.shape != (C,):
            raise ValueError(f"{op}: {name} must have shape ({C},) for x of shape {tuple(x.shape)}, got {tuple(v.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both running_mean and running_var, or neither")
    axes = _reduced_axes(x, layout)
    m = x.size // C

    if train:
        if m < 2:
            raise ValueError(f"{op}: training needs more than one value per channel, got x of shape {tuple(x.shape)}")
        mean = x.mean(axis=axes)
        centred = x - _per_channel(mean, x, layout)
        var = (centred * centred).mean(axis=axes)
        if running_mean is not None:
            update_running_statistics(running_mean, running_var, mean, var, m, momentum)
    else:
        if running_mean is None:
            raise ValueError(f"{op}: eval mode (train=False) needs running_mean and running_var")
        mean, var = running_mean, running_var
        centred = x - _per_channel(mean, x, layout)

    inv_std = 1 / xp.sqrt(var + eps)
    x_hat = centred * _per_channel(inv_std, x, layout)
    out = x_hat * _per_channel(gamma, x, layout) + _per_channel(beta, x, layout)
    cache = (x_hat, gamma, inv_std, train, layout)
    return out, cache


def batchnorm_backward(dout, cache):
    """Closed-form gradients of batch norm.

    dout: same shape as x -> dx: like x, dgamma: (C,), dbeta: (C,).

    In training, mean and var depend on every x in the channel, which gives
        dx = gamma * inv_std * (dout - mean(dout) - x_hat * mean(dout * x_hat))
    (means over the m values of the channel); in eval mode they are constants
    and dx = gamma * inv_std * dout.
    """
    x_hat, gamma, inv_std, train, layout = cache
    array_module("batchnorm_backward", dout, x_hat)
    check_dout("batchnorm_backward", dout, x_hat.shape)
    axes = _reduced_axes(x_hat, layout)
    m = x_hat.size // len(gamma)

    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    scale = _per_channel(gamma * inv_std, x_hat, layout)
    if train:
        dx = scale * (dout - _per_channel(dbeta / m, x_hat, layout) - x_hat * _per_channel(dgamma / m, x_hat, layout))
    else:
        dx = scale * dout
    return dx, dgamma, dbeta
