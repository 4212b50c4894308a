"""Layers of the fast tier: the textbook layers' parameters, buffers and state-dict names, with the
ops of ``scratchnet.fast`` inside. They take and return channel-major (C, N, H, W) arrays.

Each subclasses its textbook layer, so initialisation, ``state_dict`` and ``repr`` are the
textbook's; only ``forward`` and ``backward`` differ.
"""
from .. import fast
from .layers import AvgPool2d, BatchNorm2d, Conv2d, Dropout


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
        dx, dw, db = fast.conv2d_backward(dout, self._take_cache())
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
        """stats: x's batch (mean, var), if already known (``fast.batch_statistics``)."""
        if self.training:
            self.num_batches_tracked += 1
        y, self._cache = fast.batchnorm_relu_forward(x, self.weight.data, self.bias.data, self.running_mean,
                                                     self.running_var, self.training, self.momentum, self.eps, out,
                                                     stats)
        return y

    def recompute(self):
        if self._cache is None:
            raise RuntimeError("BatchNormReLU2d.recompute called without a forward pass before it")
        return fast.batchnorm_relu_recompute(self._cache)

    def backward(self, dout):
        dx, dgamma, dbeta = fast.batchnorm_relu_backward(dout, self._take_cache())
        self._accumulate_grads(dgamma, dbeta)
        return dx

    def backward_parts(self, dout):
        """-> ``fast.BatchNormReLUGradParts``: dx = partial_dx + x_coef * x + offset per channel, for callers
        that add many layers' x_coef * x + offset at once. The parameter gradients are accumulated."""
        parts = fast.batchnorm_relu_backward_parts(dout, self._take_cache())
        self._accumulate_grads(parts.dgamma, parts.dbeta)
        return parts


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
