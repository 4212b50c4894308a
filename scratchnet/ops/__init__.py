"""The textbook tier: hand-written forward and backward passes, CS231n style.

Every op is a pair of free functions::

    out, cache = op_forward(x, ...)
    grads = op_backward(dout, cache)

Tensors are NCHW; weights use PyTorch's layouts (conv (F, C, kh, kw), linear (M, D)). Each
cache is a small named tuple whose fields the op's docstring lists. Each op takes its array
module (NumPy or CuPy) from its inputs. The same computations, made fast, are in
``scratchnet.fast``.
"""
from .activation import ReLUCache, relu_backward, relu_forward
from .concat import ConcatCache, concat_backward, concat_forward
from .conv import ConvCache, col2im, conv2d_backward, conv2d_forward, im2col
from .dropout import DropoutCache, dropout_backward, dropout_forward
from .linear import LinearCache, linear_backward, linear_forward
from .loss import softmax_cross_entropy
from .norm import BatchNormCache, batchnorm_backward, batchnorm_forward
from .pool import (AvgPoolCache, GlobalAvgPoolCache, MaxPoolCache, avgpool_backward, avgpool_forward,
                   global_avgpool_backward, global_avgpool_forward, maxpool_backward, maxpool_forward)

__all__ = [
    "conv2d_forward", "conv2d_backward", "im2col", "col2im",
    "batchnorm_forward", "batchnorm_backward",
    "relu_forward", "relu_backward",
    "concat_forward", "concat_backward",
    "avgpool_forward", "avgpool_backward",
    "maxpool_forward", "maxpool_backward",
    "global_avgpool_forward", "global_avgpool_backward",
    "linear_forward", "linear_backward",
    "softmax_cross_entropy",
    "dropout_forward", "dropout_backward",
]
