"""Dropout on channel-major arrays, with the textbook's masks.

``ops.dropout_forward`` draws its mask in the order of the array it is given. Given a
channel-major (C, N, H, W) array, it would draw other masks than the textbook network, which
holds the same values as (N, C, H, W). So the textbook op runs on the (N, C, H, W) view of
the array: the same seed then drops the same values in both tiers.
"""
from .. import ops
from .layout import swap_batch_and_channels, swapped_view


def dropout_forward(x, p, train, rng):
    """``ops.dropout_forward`` for channel-major x: (C, N, H, W) -> out: (C, N, H, W), cache: an ``ops.DropoutCache``."""
    out, cache = ops.dropout_forward(swapped_view(x), p, train, rng)
    return swap_batch_and_channels(out), cache


def dropout_backward(dout, cache):
    """dout: (C, N, H, W) -> dx: (C, N, H, W)."""
    return swap_batch_and_channels(ops.dropout_backward(swapped_view(dout), cache))
