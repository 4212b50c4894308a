"""Layers: each wraps one op, keeps its parameters, and remembers the op's cache for backward.

``layer(x)`` runs the op's forward and keeps its cache; ``layer.backward(dout)``
runs the op's backward with that cache (then drops it, freeing its memory),
adds the parameter gradients to ``.grad`` and returns the gradient of x.
Initialisation follows PyTorch's defaults, so an untouched layer starts like
the same ``torch.nn`` layer would (in distribution; the random streams differ).
"""
import math

import numpy as np

from .. import ops
from .module import Module, Parameter


def _uniform(rng, shape, bound, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_normal(rng, shape, dtype):
    """He initialisation, ``torch.nn.init.kaiming_normal_``'s default: N(0, 2 / fan_in).

    fan_in = shape[1] * kh * kw, the number of inputs each output sums over.
    """
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


class _CachingLayer(Module):
    """A layer whose backward needs what its forward computed."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def _take_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called without a forward pass before it")
        cache, self._cache = self._cache, None
        return cache


class Conv2d(_CachingLayer):
    """2-D convolution. weight: (out_channels, in_channels, k, k), bias: (out_channels,) or none.

    x: (N, in_channels, H, W) -> (N, out_channels, H_out, W_out).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        # PyTorch's default: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.weight = Parameter(_uniform(rng, (out_channels, in_channels, kernel_size, kernel_size), bound, dtype))
        self.bias = Parameter(_uniform(rng, (out_channels,), bound, dtype)) if bias else None

    def forward(self, x):
        out, self._cache = ops.conv2d_forward(x, self.weight.data, self._bias_data(), self.stride, self.padding)
        return out

    def backward(self, dout):
        dx, dw, db = ops.conv2d_backward(dout, self._take_cache())
        self._accumulate_grads(dw, db)
        return dx

    def _bias_data(self):
        return self.bias.data if self.bias is not None else None

    def _accumulate_grads(self, dw, db):
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


class BatchNorm2d(_CachingLayer):
    """Batch norm over channels with learned scale (weight) and shift (bias), PyTorch's names.

    Buffers: running_mean, running_var (C,) and num_batches_tracked (a 0-d int64 count).
    x: (N, C, H, W) or (N, C) -> same shape.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype=dtype))
        self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def forward(self, x):
        if self.training:
            self.num_batches_tracked += 1
        out, self._cache = ops.batchnorm_forward(x, self.weight.data, self.bias.data, self.running_mean,
                                                 self.running_var, self.training, self.momentum, self.eps)
        return out

    def backward(self, dout):
        dx, dgamma, dbeta = ops.batchnorm_backward(dout, self._take_cache())
        self._accumulate_grads(dgamma, dbeta)
        return dx

    def _accumulate_grads(self, dgamma, dbeta):
        self.weight.accumulate_grad(dgamma)
        self.bias.accumulate_grad(dbeta)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class ReLU(_CachingLayer):
    def forward(self, x):
        out, self._cache = ops.relu_forward(x)
        return out

    def backward(self, dout):
        return ops.relu_backward(dout, self._take_cache())


class Dropout(_CachingLayer):
    """Inverted dropout with probability p, drawing its masks from ``rng`` (a NumPy Generator)."""

    def __init__(self, p, rng=None):
        super().__init__()
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x):
        out, self._cache = ops.dropout_forward(x, self.p, self.training, self.rng)
        return out

    def backward(self, dout):
        return ops.dropout_backward(dout, self._take_cache())

    def extra_repr(self):
        return f"p={self.p}"


class AvgPool2d(_CachingLayer):
    def __init__(self, kernel_size=2, stride=2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        out, self._cache = ops.avgpool_forward(x, self.kernel_size, self.stride)
        return out

    def backward(self, dout):
        return ops.avgpool_backward(dout, self._take_cache())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_CachingLayer):
    def __init__(self, kernel_size=3, stride=2, padding=1):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        out, self._cache = ops.maxpool_forward(x, self.kernel_size, self.stride, self.padding)
        return out

    def backward(self, dout):
        return ops.maxpool_backward(dout, self._take_cache())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class GlobalAvgPool2d(_CachingLayer):
    """(N, C, H, W) -> (N, C): each channel's mean, for the classifier."""

    def forward(self, x):
        out, self._cache = ops.global_avgpool_forward(x)
        return out

    def backward(self, dout):
        return ops.global_avgpool_backward(dout, self._take_cache())


class Linear(_CachingLayer):
    """Fully connected layer. weight: (out_features, in_features), bias: (out_features,) or none."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)    # PyTorch's default initialisation
        self.weight = Parameter(_uniform(rng, (out_features, in_features), bound, dtype))
        self.bias = Parameter(_uniform(rng, (out_features,), bound, dtype)) if bias else None

    def forward(self, x):
        bias = self.bias.data if self.bias is not None else None
        out, self._cache = ops.linear_forward(x, self.weight.data, bias)
        return out

    def backward(self, dout):
        dx, dw, db = ops.linear_backward(dout, self._take_cache())
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
