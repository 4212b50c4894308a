"""Reference solutions of lecture 06's exercises (checked by tests/test_exercises.py)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from scratchnet.backend import get_array_module


def softmax(x):
    xp = get_array_module(x)
    shifted = x - x.max(axis=-1, keepdims=True)          # the largest logit becomes 0: exp cannot overflow
    e = xp.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def run_in_parts(fn, n, threads):
    parts = min(threads, n)
    bounds = [n * i // parts for i in range(parts + 1)]
    with ThreadPoolExecutor(max(parts - 1, 1)) as pool:
        others = [pool.submit(fn, slice(a, b)) for a, b in zip(bounds[1:-1], bounds[2:])]
        fn(slice(bounds[0], bounds[1]))                  # the calling thread takes the first part
        for future in others:
            future.result()                              # waits, and raises a worker's exception here


def _softmax_numpy_only(x):
    """Stable and right on NumPy, but wired to NumPy: a CuPy array would not stay on the GPU."""
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _softmax_unstable(x):
    """Without subtracting the maximum: exp(1000) is infinite in float32, and inf / inf is NaN."""
    e = get_array_module(x).exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_columns(x):
    """Normalises each column (over the batch) instead of each row."""
    e = get_array_module(x).exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _run_in_parts_one_thread(fn, n, threads):
    """Splits the rows right but runs the parts one after another on the calling thread."""
    parts = min(threads, n)
    for i in range(parts):
        fn(slice(n * i // parts, n * (i + 1) // parts))


def _run_in_parts_remainder_lost(fn, n, threads):
    """Parts of n // threads rows each: the n % threads rows at the end are never processed."""
    parts = min(threads, n)
    size = n // parts
    with ThreadPoolExecutor(parts) as pool:
        for future in [pool.submit(fn, slice(i * size, (i + 1) * size)) for i in range(parts)]:
            future.result()


# Answers each check must refuse: {answer name: [wrong answers]}.
WRONG = {"softmax": [_softmax_numpy_only, _softmax_unstable, _softmax_columns],
         "run_in_parts": [_run_in_parts_one_thread, _run_in_parts_remainder_lost]}
