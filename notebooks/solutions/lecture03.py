"""Reference solutions of lecture 03's exercises (checked by tests/test_exercises.py)."""
import numpy as np

from scratchnet.ops.conv import offset_slice


def maxpool_backward(dout, x, kernel, stride, pad):
    """dout: (N, C, out_h, out_w), x: (N, C, H, W) -> dx: (N, C, H, W).

    Find each window's maximum again, then loop over the kernel offsets: the offset whose pixel equals its
    window's maximum (the first such, as the library and PyTorch take) receives that window's dout."""
    N, C, H, W = x.shape
    out_h, out_w = dout.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    windows = [(i, j) for i in range(kernel) for j in range(kernel)]
    out = np.max([x_pad[offset_slice(i, j, stride, out_h, out_w)] for i, j in windows], axis=0)
    dx_pad = np.zeros(x_pad.shape)
    taken = np.zeros(out.shape, dtype=bool)                           # a window's dout goes to one pixel only
    for i, j in windows:
        wins = (x_pad[offset_slice(i, j, stride, out_h, out_w)] == out) & ~taken
        dx_pad[offset_slice(i, j, stride, out_h, out_w)] += dout * wins   # +=: a pixel may win several windows
        taken |= wins
    return dx_pad[:, :, pad:pad + H, pad:pad + W]


def _maxpool_backward_fancy_index(dout, x, kernel, stride, pad):
    """The winners by argmax, then fancy-index +=: a pixel that wins two windows keeps only one dout."""
    N, C, H, W = x.shape
    out_h, out_w = dout.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    stacked = np.stack([x_pad[offset_slice(i, j, stride, out_h, out_w)]
                        for i in range(kernel) for j in range(kernel)])          # (kernel**2, N, C, out_h, out_w)
    winner = stacked.argmax(axis=0)
    n, c, p, q = np.indices(winner.shape)
    dx_pad = np.zeros(x_pad.shape)
    dx_pad[n, c, stride * p + winner // kernel, stride * q + winner % kernel] += dout
    return dx_pad[:, :, pad:pad + H, pad:pad + W]


def _maxpool_backward_spread(dout, x, kernel, stride, pad):
    """Spreads dout over the window as average pooling would: the maximum is not the mean."""
    dx_pad = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad))
    for i in range(kernel):
        for j in range(kernel):
            dx_pad[offset_slice(i, j, stride, *dout.shape[2:])] += dout / kernel**2
    return dx_pad[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]


def avgpool_backward(dout, x_shape, kernel, stride):
    """dout: (N, C, out_h, out_w) -> dx: x_shape. Every window hands dout / kernel**2 to each of its pixels."""
    out_h, out_w = dout.shape[2:]
    dx = np.zeros(x_shape)
    for i in range(kernel):
        for j in range(kernel):
            dx[offset_slice(i, j, stride, out_h, out_w)] += dout / kernel**2
    return dx


def _avgpool_backward_overwrite(dout, x_shape, kernel, stride):
    """= instead of +=: right for DenseNet's 2x2/2 windows, which do not overlap, wrong where they do."""
    out_h, out_w = dout.shape[2:]
    dx = np.zeros(x_shape)
    for i in range(kernel):
        for j in range(kernel):
            dx[offset_slice(i, j, stride, out_h, out_w)] = dout / kernel**2
    return dx


def _avgpool_backward_unscaled(dout, x_shape, kernel, stride):
    """Forgets that the mean divides by kernel**2."""
    return avgpool_backward(dout, x_shape, kernel, stride) * kernel**2


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {"maxpool_backward": [_maxpool_backward_fancy_index, _maxpool_backward_spread],
         "avgpool_backward": [_avgpool_backward_overwrite, _avgpool_backward_unscaled]}
