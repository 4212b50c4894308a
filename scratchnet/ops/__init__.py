"""Hand-written forward and backward passes, CS231n style.

Every op is a pair of free functions::

    out, cache = op_forward(x, ...)
    grads = op_backward(dout, cache)

Tensors are NCHW; weights use PyTorch's layouts (conv (F, C, kh, kw), linear (M, D)).
Each op takes its array module (NumPy or CuPy) from its inputs.
"""
from .activation import relu_backward, relu_forward
from .concat import concat_backward, concat_forward
from .conv import col2im, conv2d_backward, conv2d_forward, im2col
from .dropout import dropout_backward, dropout_forward
from .fused import batch_statistics, batchnorm_relu_backward, batchnorm_relu_forward, batchnorm_relu_recompute
from .linear import linear_backward, linear_forward
from .loss import softmax_cross_entropy
from .norm import batchnorm_backward, batchnorm_forward
from .pool import (avgpool_backward, avgpool_forward, global_avgpool_backward, global_avgpool_forward,
                   maxpool_backward, maxpool_forward)

__all__ = [
    "conv2d_forward", "conv2d_backward", "im2col", "col2im",
    "batchnorm_forward", "batchnorm_backward",
    "batchnorm_relu_forward", "batchnorm_relu_backward", "batchnorm_relu_recompute", "batch_statistics",
    "relu_forward", "relu_backward",
    "concat_forward", "concat_backward",
    "avgpool_forward", "avgpool_backward",
    "maxpool_forward", "maxpool_backward",
    "global_avgpool_forward", "global_avgpool_backward",
    "linear_forward", "linear_backward",
    "softmax_cross_entropy",
    "dropout_forward", "dropout_backward",
]
