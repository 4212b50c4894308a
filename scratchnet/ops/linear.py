"""Fully connected layer: out = x @ w.T + b, with PyTorch's (out_features, in_features) weight."""
from typing import NamedTuple

from ._checks import array_module, check_channels, check_dout, check_float, check_ndim


class LinearCache(NamedTuple):
    """What ``linear_backward`` needs from the forward pass: x itself, not a copy (change it, and dw changes)."""
    x: object           # (N, D)
    w: object           # (M, D)
    has_bias: bool


def linear_forward(x, w, b=None):
    """x: (N, D), w: (M, D), b: (M,) or None -> out: (N, M), cache: a LinearCache(x, w, has_bias)."""
    op = "linear"
    array_module(op, x, w, b)
    check_ndim(op, "x", x, 2, "(N, D)")
    check_ndim(op, "w", w, 2, "(M, D)")
    check_float(op, x=x, w=w, b=b)
    check_channels(op, "x", x.shape[1], "w", w.shape, w.shape[1])
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{op}: b must have shape ({w.shape[0]},) to match w of shape {tuple(w.shape)}, got {tuple(b.shape)}")
    out = x @ w.T
    if b is not None:
        out += b
    return out, LinearCache(x, w, b is not None)


def linear_backward(dout, cache):
    """dout: (N, M) -> dx: (N, D), dw: (M, D), db: (M,) or None."""
    x, w, has_bias = cache
    array_module("linear_backward", dout, x)
    check_dout("linear_backward", dout, (x.shape[0], w.shape[0]))
    dx = dout @ w
    dw = dout.T @ x
    db = dout.sum(axis=0) if has_bias else None
    return dx, dw, db
