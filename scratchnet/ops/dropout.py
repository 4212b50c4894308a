"""Inverted dropout: zero each value with probability p and scale the survivors by 1 / (1 - p).

Scaling at training time keeps the expected output equal to x, so at test time
dropout is simply the identity.
"""
from typing import NamedTuple

from ..backend import get_array_module
from ._checks import array_module, check_dout, check_float


class DropoutCache(NamedTuple):
    """What ``dropout_backward`` needs: which values were kept, and their scale."""
    keep: object        # bool array shaped like x, or None where nothing was dropped (eval mode, p = 0)
    scale: float        # 1 / (1 - p) (0 for p = 1)
    x_shape: tuple


def dropout_forward(x, p, train, rng):
    """x: any shape -> out: same shape, cache: a DropoutCache(keep, scale, x_shape).

    p: probability of zeroing a value, 0 <= p <= 1. train=False (or p == 0) is the identity:
    out is x itself, not a copy, and dropout_backward then returns dout itself.
    rng: a NumPy or CuPy Generator (``backend.default_rng(seed)``). The same seed gives the
    same mask; a NumPy generator gives the same mask on the CPU and the GPU (drawn on the
    host and copied over), a CuPy one draws on the GPU (no copy, but other masks).
    """
    op = "dropout"
    xp = array_module(op, x)
    check_float(op, x=x)
    if not 0 <= p <= 1:
        raise ValueError(f"{op}: p must lie in [0, 1], got {p}")
    if not train or p == 0:
        return x, DropoutCache(None, 1.0, tuple(x.shape))
    draws = rng.random(x.shape, dtype=x.dtype)
    if get_array_module(draws) is not xp:           # a NumPy generator driving a GPU array
        draws = xp.asarray(draws)
    keep = draws >= p
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return x * keep * scale, DropoutCache(keep, scale, tuple(x.shape))


def dropout_backward(dout, cache):
    """dout: like x -> dx: dout where the value was kept, times the same scale; else 0."""
    keep, scale, x_shape = cache
    array_module("dropout_backward", dout, keep)
    check_dout("dropout_backward", dout, x_shape)
    if keep is None:
        return dout
    return dout * keep * scale
