"""Element-wise work on every CPU core: NumPy computes ``a * b`` on one core, but lets go of
Python's lock while it does, so threads that each take their own rows (say, their own channels)
keep every core busy.

The number of threads is ``backend.cpu_threads()`` (set with ``backend.set_cpu_threads`` or
``backend.using_cpu_threads``). On CuPy everything runs as one call: the GPU is parallel already.
"""
import atexit
from concurrent.futures import ThreadPoolExecutor, wait

import numpy

from ..backend import cpu_threads, get_array_module

# Below this many array elements per thread, handing work to a thread costs more than it saves.
MIN_ELEMENTS_PER_THREAD = 1 << 18

_pool = None          # the worker threads, made on first use; the calling thread is the extra one
_pool_workers = 0


def _workers(count):
    """A pool of at least ``count`` worker threads, shut down when Python exits."""
    global _pool, _pool_workers
    if _pool_workers < count:
        if _pool is None:
            atexit.register(shutdown_pool)
        else:
            _pool.shutdown(wait=False)       # its threads end once idle; a caller never waits on them here
        _pool, _pool_workers = ThreadPoolExecutor(count, thread_name_prefix="scratchnet"), count
    return _pool


def shutdown_pool():
    """Stop the worker threads (they are made again if needed)."""
    global _pool, _pool_workers
    if _pool is not None:
        _pool.shutdown()
    _pool, _pool_workers = None, 0


def parallel_slices(fn, n, xp=numpy, size=None):
    """Call ``fn(s)`` for slices ``s`` that split range(n) into one part per thread.

    fn must touch only its own rows; the result is then the same as one ``fn(slice(0, n))``,
    which is what CuPy, a single thread and small work (``size``: the elements involved) get.
    """
    parts = min(cpu_threads(), n) if xp is numpy else 1
    if size is not None:
        parts = min(parts, max(1, size // MIN_ELEMENTS_PER_THREAD))
    if parts <= 1:
        fn(slice(0, n))
        return
    bounds = [n * i // parts for i in range(parts + 1)]
    others = [_workers(parts - 1).submit(fn, slice(a, b)) for a, b in zip(bounds[1:-1], bounds[2:])]
    try:
        fn(slice(bounds[0], bounds[1]))      # the calling thread takes the first part itself
    finally:                                 # even if it failed: no worker may still be writing when we return
        wait(others)
    for future in others:
        future.result()                      # a worker's exception, raised here


def add_rows(target, source):
    """``target += source``, the rows (first axis) shared out among the threads. Both: (R, ...)."""
    def add(rows):
        target[rows] += source[rows]

    parallel_slices(add, target.shape[0], get_array_module(target), target.size)


def add_per_row_affine(target, x, scale, shift):
    """``target += x * scale + shift`` per row: target, x: (R, ...); scale, shift: (R,)."""
    broadcast = (slice(None),) + (None,) * (x.ndim - 1)

    def add(rows):
        target[rows] += x[rows] * scale[rows][broadcast]
        target[rows] += shift[rows][broadcast]

    parallel_slices(add, target.shape[0], get_array_module(target), target.size)

