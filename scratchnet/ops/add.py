"""Element-wise addition of two arrays of one shape (a residual block's identity path) and its backward."""
from typing import NamedTuple

from ._checks import array_module, check_dout, check_float


class AddCache(NamedTuple):
    """What ``add_backward`` needs: only the output's shape, to check dout against."""
    out_shape: tuple


def add_forward(a, b):
    """out = a + b, for arrays of the same shape: a ResNet block adds its input x to its residual F(x).

    a, b: arrays of one shape, e.g. (N, C, H, W) -> out: the same shape, cache: an AddCache(out_shape).
    No broadcasting: in a residual block a shape mismatch is a missing projection, not something to stretch.
    """
    op = "add"
    xp = array_module(op, a, b)
    check_float(op, a=a, b=b)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{op}: a has shape {tuple(a.shape)} but b has {tuple(b.shape)}; they must be equal "
                         "(where a block changes channels or stride, its shortcut needs a projection)")
    out = xp.add(a, b)
    return out, AddCache(tuple(out.shape))


def add_backward(dout, cache):
    """d(a + b)/da = d(a + b)/db = 1, so each input gets dout unchanged: the counterpart of concat's split.

    dout: like out -> (da, db), both shaped like out. Both are dout itself (no copy): copy one before
    changing it in place.
    """
    array_module("add_backward", dout)
    check_dout("add_backward", dout, cache.out_shape)
    return dout, dout
