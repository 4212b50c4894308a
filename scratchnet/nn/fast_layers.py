"""Layers of the fast tier: the textbook layers' parameters, buffers and state-dict names, with the
ops of ``scratchnet.fast`` inside. They take and return channel-major (C, N, H, W) arrays.

Each subclasses its textbook layer, so initialisation, ``state_dict`` and ``repr`` are the
textbook's; only ``forward`` and ``backward`` differ.
"""
import contextlib
from contextvars import ContextVar

import numpy as np

from .. import fast
from ..backend import device_of, get_array_module, to_device
from ..ops.norm import update_running_statistics
from .layers import AvgPool2d, BatchNorm2d, Conv2d, Dropout

# Inside RunningStatistics.deferred(): {layer: (batch mean, batch var, values per channel)} of the layers run.
_PENDING = ContextVar("pending_running_statistics", default=None)


def _grad_destinations(*params):
    """For each parameter, its ``grad_destination()`` (None: the op makes a new array), or None where the
    parameter is None (a convolution without bias)."""
    return tuple(param.grad_destination() if param is not None else None for param in params)


class ChannelMajorConv2d(Conv2d):
    """Conv2d on channel-major arrays: x (in_channels, N, H, W) -> (out_channels, N, H_out, W_out).

    method: how ``fast.conv2d_forward`` turns the convolution into GEMM ("auto", "im2col", "kn2row").
    """

    def __init__(self, *args, method="auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method

    def forward(self, x):
        out, self._cache = fast.conv2d_forward(x, self.weight.data, self._bias_data(), self.stride, self.padding,
                                               self.method)
        return out

    def backward(self, dout):
        dx, dw, db = fast.conv2d_backward(dout, self._take_cache(), _grad_destinations(self.weight, self.bias))
        self._accumulate_grads(dw, db)
        return dx


class BatchNormReLU2d(BatchNorm2d):
    """BatchNorm2d followed by ReLU, as one fused op, on channel-major arrays: (C, N, H, W) -> same.

    Same parameters, buffers and state-dict names as BatchNorm2d, so it stands in for a
    torchvision ``normX`` + ``reluX`` pair. ``forward(x, out)`` can write into a shared buffer;
    ``recompute()`` rewrites that output bit for bit if the buffer was reused in the meantime,
    without touching the running statistics.
    """

    def forward(self, x, out=None, stats=None):
        """stats: x's batch (mean, var), if already known (``fast.batch_statistics``).

        In training the running statistics move towards the batch's, here or, inside a
        ``RunningStatistics.deferred()``, together with the other layers' when it ends.
        """
        pending = _PENDING.get() if self.training else None
        running = (self.running_mean, self.running_var)
        if pending is not None:
            stats = stats if stats is not None else fast.batch_statistics(x)
            pending[self] = (*stats, x.size // x.shape[0])
            running = (None, None)
        elif self.training:
            self.num_batches_tracked += 1
        y, self._cache = fast.batchnorm_relu_forward(x, self.weight.data, self.bias.data, *running, self.training,
                                                     self.momentum, self.eps, out, stats)
        return y

    def recompute(self):
        if self._cache is None:
            raise RuntimeError("BatchNormReLU2d.recompute called without a forward pass before it")
        return fast.batchnorm_relu_recompute(self._cache)

    def backward(self, dout):
        dx, dgamma, dbeta = fast.batchnorm_relu_backward(dout, self._take_cache(),
                                                         _grad_destinations(self.weight, self.bias))
        self._accumulate_grads(dgamma, dbeta)
        return dx

    def backward_parts(self, dout):
        """-> ``fast.BatchNormReLUGradParts``: dx = partial_dx + x_coef * x + offset per channel, for callers
        that add many layers' x_coef * x + offset at once. The parameter gradients are accumulated."""
        parts = fast.batchnorm_relu_backward_parts(dout, self._take_cache(), _grad_destinations(self.weight, self.bias))
        self._accumulate_grads(parts.dgamma, parts.dbeta)
        return parts


class RunningStatistics:
    """The running statistics of many BatchNormReLU2d layers, updated by all of them at once.

    Each layer in training moves its running_mean and running_var towards its batch's statistics and
    counts the batch: 8 array operations, so some 300 for a DenseNet-BC (L=40), each a kernel launch on
    a GPU. Here the layers' buffers are views of three flat arrays; inside ``deferred()`` each layer
    hands over its batch statistics instead, and on leaving, two concatenations and eight operations
    update every layer, number by number with the arithmetic of ``ops.norm.update_running_statistics``
    (so with the same results). The buffers stay the layers' own: state dicts, loading and
    ``Module.to`` see nothing different (after ``to``, the flat arrays are made again).
    """

    def __init__(self, layers):
        self.layers = list(layers)
        self._flatten()

    def _flatten(self):
        layers = self.layers
        xp = get_array_module(layers[0].running_mean)
        self.mean = xp.concatenate([layer.running_mean for layer in layers])
        self.var = xp.concatenate([layer.running_var for layer in layers])
        self.count = xp.stack([layer.num_batches_tracked for layer in layers])
        self._ratios = {}                       # per shape of the batch: m / (m - 1) for every channel
        start = 0
        for i, layer in enumerate(layers):
            channels = slice(start, start + layer.num_features)
            layer.running_mean, layer.running_var = self.mean[channels], self.var[channels]
            layer.num_batches_tracked = self.count[i:i + 1].reshape(())
            start = channels.stop
        self._bound = [(layer.running_mean, layer.running_var, layer.num_batches_tracked) for layer in layers]

    def _is_flat(self):
        return all(layer.running_mean is mean and layer.running_var is var and layer.num_batches_tracked is count
                   for layer, (mean, var, count) in zip(self.layers, self._bound))

    @contextlib.contextmanager
    def deferred(self):
        """Inside, the layers hand over their batch statistics; leaving, they are all applied."""
        if not self._is_flat():                 # after Module.to, say, which replaces the buffers: again
            self._flatten()
        pending = {}
        token = _PENDING.set(pending)
        try:
            yield
        finally:
            _PENDING.reset(token)
            self._update(pending)

    def _update(self, pending):
        if not pending:
            return
        momentum = {layer.momentum for layer in pending}
        if len(pending) < len(self.layers) or len(momentum) > 1:
            for layer, (mean, var, m) in pending.items():   # some layers did not run: each on its own
                update_running_statistics(layer.running_mean, layer.running_var, mean, var, m, layer.momentum)
                layer.num_batches_tracked += 1
            return
        xp = get_array_module(self.mean)
        batch_means = xp.concatenate([pending[layer][0] for layer in self.layers])
        batch_vars = xp.concatenate([pending[layer][1] for layer in self.layers])
        shape = tuple(pending[layer][2] for layer in self.layers)
        if shape not in self._ratios:               # made once per batch shape, on the host
            ratios = np.concatenate([np.full(layer.num_features, m / (m - 1)) for layer, m in
                                     zip(self.layers, shape)]).astype(self.var.dtype)
            self._ratios[shape] = to_device(ratios, device_of(self.mean))
        momentum = momentum.pop()
        self.mean *= 1 - momentum
        self.mean += momentum * batch_means
        self.var *= 1 - momentum
        self.var += momentum * batch_vars * self._ratios[shape]
        self.count += 1


class ParallelAvgPool2d(AvgPool2d):
    """AvgPool2d with the rows of the first axis shared out among the CPU cores (any layout)."""

    def forward(self, x):
        out, self._cache = fast.avgpool_forward(x, self.kernel_size, self.stride)
        return out

    def backward(self, dout):
        return fast.avgpool_backward(dout, self._take_cache())


class ChannelMajorDropout(Dropout):
    """Dropout on channel-major arrays that drops what the textbook Dropout drops for the same generator."""

    def forward(self, x):
        out, self._cache = fast.dropout_forward(x, self.p, self.training, self.rng)
        return out

    def backward(self, dout):
        return fast.dropout_backward(dout, self._take_cache())
