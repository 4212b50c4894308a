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
from .add import AddCache, add_backward, add_forward
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
    "add_forward", "add_backward",
    "avgpool_forward", "avgpool_backward",
    "maxpool_forward", "maxpool_backward",
    "global_avgpool_forward", "global_avgpool_backward",
    "linear_forward", "linear_backward",
    "softmax_cross_entropy",
    "dropout_forward", "dropout_backward",
]

# Names that moved to the fast tier when the ops were split into two tiers: still found here, with a warning.
_MOVED_TO_FAST = ("batchnorm_relu_forward", "batchnorm_relu_backward", "batchnorm_relu_recompute", "batch_statistics")


def __getattr__(name):
    if name in _MOVED_TO_FAST:
        import warnings

        from .. import fast
        warnings.warn(f"scratchnet.ops.{name} is scratchnet.fast.{name} now (the fused op is the fast tier's)",
                      DeprecationWarning, stacklevel=2)
        return getattr(fast, name)
    raise AttributeError(f"module 'scratchnet.ops' has no attribute {name!r}")
