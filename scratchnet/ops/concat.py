"""Concatenation along an axis (the channel axis, in a dense block) and its split-shaped backward."""
from typing import NamedTuple

from ._checks import array_module, check_dout, check_float


class ConcatCache(NamedTuple):
    """What ``concat_backward`` needs: where each input's slice of the output starts and ends."""
    sizes: list         # each input's length along the axis
    axis: int
    out_shape: tuple


def concat_forward(xs, axis=1):
    """Join arrays that agree in every dimension but ``axis``.

    xs: list of arrays, e.g. (N, C_i, H, W) -> out: (N, sum of C_i, H, W),
    cache: a ConcatCache(sizes, axis, out_shape) for ``concat_backward``.
    """
    op = "concat"
    if isinstance(xs, (str, bytes)) or not hasattr(xs, "__len__") or len(xs) == 0:
        raise ValueError(f"{op}: xs must be a non-empty list of arrays")
    xp = array_module(op, *xs)
    check_float(op, **{f"xs[{i}]": x for i, x in enumerate(xs)})
    ndim = xs[0].ndim
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for {ndim}-D inputs")
    axis %= ndim
    first = xs[0].shape
    for i, x in enumerate(xs):
        others_match = x.ndim == ndim and all(x.shape[d] == first[d] for d in range(ndim) if d != axis)
        if not others_match:
            raise ValueError(
                f"{op}: xs[{i}] has shape {tuple(x.shape)} but xs[0] has {tuple(first)}; "
                f"they may differ only along axis {axis}"
            )
    out = xp.concatenate(xs, axis=axis)
    sizes = [x.shape[axis] for x in xs]
    return out, ConcatCache(sizes, axis, tuple(out.shape))


def concat_backward(dout, cache):
    """Concatenation only copies, so its backward hands each input its own slice of dout.

    dout: like out -> list of grads, one per input, each shaped like that input.
    The grads are views into dout (no copy): copy one before changing it in place.
    """
    sizes, axis, out_shape = cache
    array_module("concat_backward", dout)
    check_dout("concat_backward", dout, out_shape)
    grads, start = [], 0
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        grads.append(dout[index])
        start += size
    return grads
