"""ReLU: out = max(x, 0)."""
from typing import NamedTuple

from ._checks import array_module, check_dout


class ReLUCache(NamedTuple):
    """What ``relu_backward`` needs: where the input was positive."""
    positive: object    # bool array shaped like x: x > 0


def relu_forward(x):
    """x: any shape -> out: same shape, cache: a ReLUCache(positive) for ``relu_backward``."""
    xp = array_module("relu", x)
    # maximum (not where) lets a NaN through, as torch.relu does, so a diverging run is noticed.
    return xp.maximum(x, 0), ReLUCache(x > 0)


def relu_backward(dout, cache):
    """dout: like x -> dx = dout where x > 0, else 0 (a new array; dout is not changed).

    At x == 0 the gradient is taken as 0, as PyTorch does.
    """
    (positive,) = cache
    array_module("relu_backward", dout, positive)
    check_dout("relu_backward", dout, positive.shape)
    return dout * positive      # multiplying by the mask: one pass, where np.where(mask, dout, 0) takes several
