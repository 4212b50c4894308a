"""Average pooling on every CPU core: ``ops.avgpool_forward`` and ``_backward`` on row blocks, in threads.

Pooling mixes neither images nor channels, so each thread can pool its own rows of the
first axis with the textbook op, and the result is the textbook's. The windowed pools act
on the last two axes only, so channel-major (C, N, H, W) arrays pool correctly as they are
(with ``ops.maxpool_forward`` too).
"""
from .. import ops
from ..ops._checks import array_module, check_dout
from .threads import parallel_slices


def avgpool_forward(x, kernel=2, stride=2):
    """``ops.avgpool_forward``, the rows of x shared out among the threads.

    x: (A, B, H, W), e.g. (C, N, H, W) -> out: (A, B, out_h, out_w), cache: an ``ops.AvgPoolCache``.
    """
    xp = array_module("avgpool", x)
    empty, cache = ops.avgpool_forward(x[:0], kernel, stride)      # checks the arguments, gives the shape
    out = xp.empty((x.shape[0],) + empty.shape[1:], dtype=x.dtype)

    def pool(rows):
        out[rows] = ops.avgpool_forward(x[rows], kernel, stride)[0]

    parallel_slices(pool, x.shape[0], xp, x.size)
    return out, cache._replace(x_shape=tuple(x.shape))


def avgpool_backward(dout, cache):
    """``ops.avgpool_backward``, the rows shared out among the threads. dout: (A, B, out_h, out_w) -> dx: (A, B, H, W)."""
    xp = array_module("avgpool_backward", dout)
    check_dout("avgpool_backward", dout, (cache.x_shape[0],) + tuple(dout.shape[1:]))
    dx = xp.empty(cache.x_shape, dtype=dout.dtype)

    def spread(rows):
        part = cache._replace(x_shape=(rows.stop - rows.start,) + cache.x_shape[1:])
        dx[rows] = ops.avgpool_backward(dout[rows], part)

    parallel_slices(spread, dx.shape[0], xp, dx.size)
    return dx
