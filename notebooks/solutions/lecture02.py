"""Reference solutions of lecture 02's exercises (checked by tests/test_exercises.py)."""
import numpy as np

AXES = (0, 2, 3)


def batchnorm_backward(dout, x, gamma, eps=1e-5):
    """Train mode. dout, x: (N, C, H, W), gamma: (C,) -> dx: (N, C, H, W), dgamma, dbeta: (C,).

    The closed form of section 4; the staged version of section 3 passes the check just as well."""
    mean = x.mean(axis=AXES, keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=AXES, keepdims=True) + eps)       # the biased variance, as in forward
    x_hat = (x - mean) * inv_std
    dbeta = dout.sum(axis=AXES)
    dgamma = (dout * x_hat).sum(axis=AXES)
    dx = gamma[None, :, None, None] * inv_std * (dout - dout.mean(axis=AXES, keepdims=True)
                                                  - x_hat * (dout * x_hat).mean(axis=AXES, keepdims=True))
    return dx, dgamma, dbeta


def _batchnorm_backward_variance_constant(dout, x, gamma, eps=1e-5):
    """Treats the variance as a constant: right for dout = 1 (both give zero), wrong for any other dout."""
    mean = x.mean(axis=AXES, keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=AXES, keepdims=True) + eps)
    x_hat = (x - mean) * inv_std
    dx = gamma[None, :, None, None] * inv_std * (dout - dout.mean(axis=AXES, keepdims=True))
    return dx, (dout * x_hat).sum(axis=AXES), dout.sum(axis=AXES)


def _batchnorm_backward_mean_constant(dout, x, gamma, eps=1e-5):
    """Treats the mean as a constant: drops "- mean(dout)"; wrong even for dout = 1."""
    dx, dgamma, dbeta = batchnorm_backward(dout, x, gamma, eps)
    inv_std = 1 / np.sqrt(x.var(axis=AXES, keepdims=True) + eps)
    return dx + gamma[None, :, None, None] * inv_std * dout.mean(axis=AXES, keepdims=True), dgamma, dbeta


def fold_batchnorm(w, b, gamma, beta, running_mean, running_var, eps=1e-5):
    """w: (F, C, kh, kw), b and the rest: (F,) -> w_folded, b_folded for conv(x, w, b) followed by eval-mode BN."""
    scale = gamma / np.sqrt(running_var + eps)                          # (F,): BN multiplies channel f by this
    return w * scale[:, None, None, None], (b - running_mean) * scale + beta


def _fold_batchnorm_without_eps(w, b, gamma, beta, running_mean, running_var, eps=1e-5):
    """Forgets eps: off by about eps / running_var, which matters where a channel's variance is small."""
    scale = gamma / np.sqrt(running_var)
    return w * scale[:, None, None, None], (b - running_mean) * scale + beta


def _fold_batchnorm_bias_unscaled(w, b, gamma, beta, running_mean, running_var, eps=1e-5):
    """Scales the weights but adds the old bias unscaled."""
    scale = gamma / np.sqrt(running_var + eps)
    return w * scale[:, None, None, None], b - running_mean * scale + beta


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {"batchnorm_backward": [_batchnorm_backward_variance_constant, _batchnorm_backward_mean_constant],
         "fold_batchnorm": [_fold_batchnorm_without_eps, _fold_batchnorm_bias_unscaled]}
