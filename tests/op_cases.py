"""The table of op cases that both the finite-difference and the PyTorch tests run.

Every op of both tiers is here: the textbook ops of ``scratchnet.ops`` and their fast twins of
``scratchnet.fast`` (ids ``fast.<op>-...``), each against PyTorch and finite differences on its
own; tests/test_fast.py also holds each fast op against its textbook twin.

Each case fixes an op's non-differentiable arguments (stride, labels, ...) and
gives four things:

- ``inputs(rng)``: the differentiable inputs, as float64 NumPy arrays;
- ``forward(*inputs) -> (out, cache)`` and ``backward(dout, cache) -> grads``: scratchnet's op;
- ``reference(*tensors) -> tensor``: the same computation in PyTorch, our independent reference.

Inputs of ReLU and max pooling are kept away from their kinks (0 for ReLU,
ties for max pooling), where the derivative jumps and finite differences
cannot agree with any backward.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from scratchnet import fast, ops
from scratchnet.backend import get_array_module


@dataclass
class OpCase:
    id: str
    inputs: Callable
    forward: Callable
    backward: Callable
    reference: Callable


def normal(*shape):
    return lambda rng: [rng.standard_normal(shape)]


def away_from_zero(rng, shape):
    """Values with |v| >= 0.1, so a small step never crosses ReLU's kink."""
    return rng.choice([-1.0, 1.0], size=shape) * (0.1 + np.abs(rng.standard_normal(shape)))


def distinct(rng, shape):
    """A shuffle of values 0.05 apart: every pooling window has a clear maximum."""
    return (rng.permutation(int(np.prod(shape))) * 0.05 - 1.0).reshape(shape)


def _F():
    import torch.nn.functional as F
    return F


def swap_batch_and_channels(a):
    """(N, C, H, W) <-> (C, N, H, W), as a contiguous array."""
    return get_array_module(a).ascontiguousarray(a.transpose(1, 0, 2, 3))


def conv_case(x_shape, w_shape, stride, pad, bias=True):
    """The textbook convolution: NCHW, im2col."""
    def inputs(rng):
        arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
        return arrays + [rng.standard_normal(w_shape[0])] if bias else arrays

    def forward(x, w, b=None):
        return ops.conv2d_forward(x, w, b, stride=stride, pad=pad)

    def reference(x, w, b=None):
        return _F().conv2d(x, w, b, stride=stride, padding=pad)

    name = f"conv2d-x{x_shape}-w{w_shape}-s{stride}-p{pad}" + ("" if bias else "-nobias")
    return OpCase(name, inputs, forward, ops.conv2d_backward, reference)


def fast_conv_case(x_shape, w_shape, stride, pad, bias, method):
    """The fast convolution on channel-major arrays, checked in NCHW (x and the results transposed)."""
    textbook = conv_case(x_shape, w_shape, stride, pad, bias)

    def forward(x, w, b=None):
        out, cache = fast.conv2d_forward(swap_batch_and_channels(x), w, b, stride, pad, method=method)
        return swap_batch_and_channels(out), cache

    def backward(dout, cache):
        dx, dw, db = fast.conv2d_backward(swap_batch_and_channels(dout), cache)
        return swap_batch_and_channels(dx), dw, db

    return OpCase(f"fast.{textbook.id}-{method}", textbook.inputs, forward, backward, textbook.reference)


def conv_cases(x_shape, w_shape, stride, pad, bias=True):
    """The textbook convolution, and the fast one by im2col and (where it applies) by kn2row."""
    methods = ["im2col", "kn2row"] if stride == 1 and w_shape[2] * w_shape[3] > 1 else ["im2col"]
    return [conv_case(x_shape, w_shape, stride, pad, bias)] + [
        fast_conv_case(x_shape, w_shape, stride, pad, bias, method) for method in methods]


def batchnorm_case(x_shape, train):
    C = x_shape[1]
    # Eval mode uses fixed running statistics; train mode uses (and here does not record) batch ones.
    running_mean = np.linspace(-0.5, 0.5, C)
    running_var = np.linspace(0.5, 2.0, C)

    def inputs(rng):
        return [rng.standard_normal(x_shape) * 2 + 1, 1 + 0.5 * rng.standard_normal(C), rng.standard_normal(C)]

    def forward(x, gamma, beta):
        if train:
            return ops.batchnorm_forward(x, gamma, beta, None, None, train=True)
        rm, rv = (get_array_module(x).asarray(a, dtype=x.dtype) for a in (running_mean, running_var))
        return ops.batchnorm_forward(x, gamma, beta, rm, rv, train=False)

    def reference(x, gamma, beta):
        import torch
        rm = None if train else torch.tensor(running_mean, dtype=x.dtype)
        rv = None if train else torch.tensor(running_var, dtype=x.dtype)
        return _F().batch_norm(x, rm, rv, gamma, beta, training=train, momentum=0.1, eps=1e-5)

    name = f"batchnorm-x{x_shape}-" + ("train" if train else "eval")
    return OpCase(name, inputs, forward, ops.batchnorm_backward, reference)


def symmetric_away_from_zero(rng, shape):
    """Per channel (axis 1), values ±v with |v| >= 0.3 in pairs: mean exactly 0, nothing near 0.

    Batch norm with beta = 0 keeps every output at least ~0.1 from ReLU's kink.
    """
    N, C = shape[:2]
    half = (N * int(np.prod(shape[2:]))) // 2
    columns = []
    for _ in range(C):
        v = rng.choice([-1.0, 1.0], size=half) * (0.3 + np.abs(rng.standard_normal(half)))
        columns.append(rng.permutation(np.concatenate([v, -v])))
    return np.stack(columns, axis=0).reshape((C, N) + tuple(shape[2:])).swapaxes(0, 1).copy()


def batchnorm_relu_case(x_shape, train):
    """The fused op on a channel-major x, checked as relu(batch_norm(x)) in NCHW."""
    C = x_shape[1]
    running_mean, running_var = np.zeros(C), np.linspace(0.5, 2.0, C)

    def inputs(rng):
        return [symmetric_away_from_zero(rng, x_shape), 1 + 0.3 * rng.standard_normal(C), np.zeros(C)]

    def forward(x, gamma, beta):
        xp = get_array_module(x)
        rm, rv = (None, None) if train else (xp.asarray(running_mean, x.dtype), xp.asarray(running_var, x.dtype))
        out, cache = fast.batchnorm_relu_forward(swap_batch_and_channels(x), gamma, beta, rm, rv, train=train)
        return swap_batch_and_channels(out), cache

    def backward(dout, cache):
        dx, dgamma, dbeta = fast.batchnorm_relu_backward(swap_batch_and_channels(dout), cache)
        return swap_batch_and_channels(dx), dgamma, dbeta

    def reference(x, gamma, beta):
        import torch
        rm = None if train else torch.tensor(running_mean, dtype=x.dtype)
        rv = None if train else torch.tensor(running_var, dtype=x.dtype)
        return _F().relu(_F().batch_norm(x, rm, rv, gamma, beta, training=train, momentum=0.1, eps=1e-5))

    name = f"fast.batchnorm_relu-x{x_shape}-" + ("train" if train else "eval")
    return OpCase(name, inputs, forward, backward, reference)


def relu_case(shape):
    return OpCase(f"relu-{shape}", lambda rng: [away_from_zero(rng, shape)],
                  ops.relu_forward, ops.relu_backward, lambda x: _F().relu(x))


def concat_case(shapes, axis):
    def reference(*xs):
        import torch
        return torch.cat(xs, dim=axis)

    return OpCase(f"concat-{shapes}-axis{axis}", lambda rng: [rng.standard_normal(s) for s in shapes],
                  lambda *xs: ops.concat_forward(list(xs), axis=axis), ops.concat_backward, reference)


def add_case(shape):
    return OpCase(f"add-{shape}", lambda rng: [rng.standard_normal(shape), rng.standard_normal(shape)],
                  ops.add_forward, ops.add_backward, lambda a, b: a + b)


def avgpool_case(shape, kernel, stride, tier=ops):
    prefix = "fast." if tier is fast else ""
    return OpCase(f"{prefix}avgpool-{shape}-k{kernel}-s{stride}", normal(*shape),
                  lambda x: tier.avgpool_forward(x, kernel, stride), tier.avgpool_backward,
                  lambda x: _F().avg_pool2d(x, kernel, stride))


def maxpool_case(shape, kernel, stride, pad):
    return OpCase(f"maxpool-{shape}-k{kernel}-s{stride}-p{pad}", lambda rng: [distinct(rng, shape)],
                  lambda x: ops.maxpool_forward(x, kernel, stride, pad), ops.maxpool_backward,
                  lambda x: _F().max_pool2d(x, kernel, stride, pad))


def global_avgpool_case(shape):
    return OpCase(f"global_avgpool-{shape}", normal(*shape), ops.global_avgpool_forward,
                  ops.global_avgpool_backward, lambda x: x.mean(dim=(2, 3)))


def linear_case(n, d, m, bias=True):
    def inputs(rng):
        arrays = [rng.standard_normal((n, d)), rng.standard_normal((m, d))]
        return arrays + [rng.standard_normal(m)] if bias else arrays

    return OpCase(f"linear-{n}x{d}->{m}" + ("" if bias else "-nobias"), inputs,
                  ops.linear_forward, ops.linear_backward, lambda x, w, b=None: _F().linear(x, w, b))


def cross_entropy_case(n, k, scale):
    labels = np.random.default_rng(n * 100 + k).integers(0, k, size=n)

    def forward(logits):
        xp = get_array_module(logits)
        return ops.softmax_cross_entropy(logits, xp.asarray(labels))

    def reference(logits):
        import torch
        return _F().cross_entropy(logits, torch.from_numpy(labels))

    # The loss is a scalar, so its backward just scales the cached dlogits.
    return OpCase(f"softmax_cross_entropy-{n}x{k}-scale{scale}", lambda rng: [rng.standard_normal((n, k)) * scale],
                  forward, lambda dout, dlogits: dout * dlogits, reference)


CASES = [
    *conv_cases((2, 3, 7, 9), (4, 3, 3, 3), stride=1, pad=1),
    *conv_cases((2, 3, 7, 9), (4, 3, 3, 3), stride=2, pad=1),
    *conv_cases((1, 4, 8, 8), (5, 4, 3, 3), stride=1, pad=0),
    *conv_cases((2, 6, 5, 7), (2, 6, 3, 3), stride=1, pad=1, bias=False),     # few filters, many channels
    *conv_cases((2, 3, 9, 7), (2, 3, 5, 5), stride=2, pad=2, bias=False),
    *conv_cases((1, 3, 15, 17), (4, 3, 7, 7), stride=2, pad=3, bias=False),
    *conv_cases((3, 8, 5, 6), (6, 8, 1, 1), stride=1, pad=0),
    *conv_cases((2, 8, 5, 7), (6, 8, 1, 1), stride=2, pad=0, bias=False),
    *conv_cases((2, 5, 4, 4), (3, 5, 2, 2), stride=2, pad=0),
    *conv_cases((2, 5, 4, 4), (3, 5, 2, 2), stride=1, pad=0),
    batchnorm_case((4, 5, 7, 9), train=True),
    batchnorm_case((1, 3, 4, 5), train=True),
    batchnorm_case((6, 5), train=True),
    batchnorm_case((4, 5, 7, 9), train=False),
    batchnorm_case((1, 3, 4, 5), train=False),
    batchnorm_relu_case((4, 5, 7, 9), train=True),
    batchnorm_relu_case((2, 3, 4, 5), train=True),
    batchnorm_relu_case((4, 5, 7, 9), train=False),
    relu_case((2, 3, 7, 9)),
    relu_case((5, 4)),
    concat_case([(2, 3, 7, 9), (2, 1, 7, 9), (2, 4, 7, 9)], axis=1),
    concat_case([(1, 5, 2, 3), (2, 5, 2, 3)], axis=0),
    concat_case([(3, 2), (3, 4)], axis=-1),
    add_case((2, 3, 7, 9)),
    add_case((4, 5)),
    avgpool_case((2, 3, 8, 8), 2, 2),
    avgpool_case((2, 3, 7, 9), 2, 2),
    avgpool_case((1, 2, 7, 9), 3, 2),
    avgpool_case((1, 2, 5, 6), 3, 1),
    avgpool_case((3, 2, 8, 8), 2, 2, tier=fast),
    avgpool_case((2, 3, 7, 9), 3, 2, tier=fast),
    maxpool_case((2, 3, 8, 8), 3, 2, 1),
    maxpool_case((1, 2, 7, 9), 3, 2, 1),
    maxpool_case((1, 2, 7, 9), 2, 2, 0),
    maxpool_case((2, 2, 9, 7), 3, 1, 1),
    global_avgpool_case((2, 3, 7, 9)),
    global_avgpool_case((1, 4, 1, 1)),
    linear_case(5, 7, 3),
    linear_case(1, 6, 4),
    linear_case(4, 3, 5, bias=False),
    cross_entropy_case(8, 10, scale=1.0),
    cross_entropy_case(1, 3, scale=1.0),
    cross_entropy_case(6, 5, scale=2.0),
]
