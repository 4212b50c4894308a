"""Checks for lecture 06 (one code path for NumPy and CuPy; threads for the CPU's element-wise work)."""
import threading
import types

import numpy as np

from scratchnet import backend, fast, ops

from . import ExerciseFailed, exercise, require


def _names_used(code):
    """Every global name a function's code (and the code of functions defined inside it) refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def _reference_softmax(x):
    """Softmax over the last axis, from the library's loss: dlogits = (softmax - one_hot) / N."""
    x64 = backend.to_numpy(x).astype(np.float64)
    labels = np.zeros(len(x64), dtype=np.int64)
    _, dlogits = ops.softmax_cross_entropy(x64, labels)
    one_hot = np.zeros_like(x64)
    one_hot[:, 0] = 1
    return dlogits * len(x64) + one_hot


def _softmax_inputs():
    rng = np.random.default_rng(0)
    yield "random logits (8, 10)", rng.standard_normal((8, 10)).astype(np.float32)
    yield "large logits (4, 10), up to 1000", (1000 * rng.random((4, 10))).astype(np.float32)
    yield "one row (1, 3)", np.array([[0.0, 1.0, 2.0]], dtype=np.float32)


@exercise("Exercise 1, a softmax for NumPy and CuPy")
def check_softmax(softmax):
    """softmax(x) -> the softmax of each row of x (N, C), computed with x's own array module (NumPy or CuPy),
    in x's dtype, finite for large logits."""
    hard_wired = sorted(name for name in _names_used(softmax.__code__)
                        if softmax.__globals__.get(name) is np)
    devices = ["cpu"] + (["gpu"] if backend.gpu_available() else [])
    for device in devices:
        for case, x in _softmax_inputs():
            x_here = backend.to_device(x, device)
            try:
                p = softmax(x_here)
            except NotImplementedError:
                raise
            except Exception as error:
                raise ExerciseFailed(f"{case} on the {device}: {type(error).__name__}: {error}") from error
            xp = backend.get_array_module(x_here)
            require(isinstance(p, xp.ndarray), f"{case} on the {device}: returned a {type(p).__name__}, not an "
                                               f"array of {xp.__name__}, the input's module")
            require(p.shape == x.shape and p.dtype == x.dtype,
                    f"{case}: returned shape {p.shape} and dtype {p.dtype}; expected {x.shape} and {x.dtype}")
            p = backend.to_numpy(p)
            require(np.isfinite(p).all(), f"{case}: the result has NaN or infinity: exp(1000) overflows float32 "
                                          "(about 3.4e38). Subtract each row's maximum first: the softmax is unchanged")
            expected = _reference_softmax(x)
            if not np.allclose(p, expected, rtol=1e-5, atol=1e-7):
                sums = p.sum(axis=-1)
                raise ExerciseFailed(f"{case}: differs from the softmax by up to {np.abs(p - expected).max():.2g}; "
                                     f"the first rows sum to {', '.join(f'{v:.3f}' for v in sums[:4])}. Each row "
                                     "of x is one example: normalise along the last axis, with keepdims=True")
    require(not hard_wired, f"right on NumPy, but the function calls NumPy itself (as {', '.join(hard_wired)}): "
                            "given a CuPy array it would copy it to the CPU or fail. Ask the input for its module: "
                            "xp = get_array_module(x), then xp.exp, xp.max, ...")
    return ("equals the library's softmax (from softmax_cross_entropy) on NumPy"
            + (" and on CuPy" if "gpu" in devices else "; no GPU here, so CuPy was not tried, and the function "
               "uses no NumPy of its own"))


PART_CASES = [(128, 2), (10, 4), (7, 3), (3, 4)]      # (rows n, threads): even, uneven, fewer rows than threads


def _library_parts(n, threads):
    """The sizes of the parts fast.parallel_slices hands out for n rows with `threads` threads."""
    sizes = []
    with backend.using_cpu_threads(threads):
        fast.parallel_slices(lambda rows: sizes.append(rows.stop - rows.start), n, np)
    return sorted(sizes)


@exercise("Exercise 2, rows shared among threads")
def check_run_in_parts(run_in_parts):
    """run_in_parts(fn, n, threads) calls fn(rows) for min(threads, n) contiguous slices that split range(n) in
    parts of nearly equal size, all at the same time, each on its own thread; it returns when all are done."""
    for n, threads in PART_CASES:
        parts = min(threads, n)
        started = threading.Barrier(parts, timeout=2)    # every part waits here until all parts have started
        seen, lock = [], threading.Lock()

        def fn(rows):
            started.wait()
            with lock:
                seen.append((rows, threading.current_thread().name))

        case = f"n = {n} rows, {threads} threads"
        try:
            run_in_parts(fn, n, threads)
        except NotImplementedError:
            raise
        except threading.BrokenBarrierError:
            raise ExerciseFailed(f"{case}: the parts did not all run at the same time (each waited 2 s for the "
                                 "others): one thread ran them one after another?") from None
        except Exception as error:
            raise ExerciseFailed(f"{case}: {type(error).__name__}: {error}") from error
        rows = sorted((s.start, s.stop) for s, _ in seen)
        covered = [i for start, stop in rows for i in range(start, stop)]
        require(covered == list(range(n)), f"{case}: the parts cover rows {rows}, not each of 0..{n - 1} once "
                                           "(the last part must take the rows left over)")
        sizes = sorted(stop - start for start, stop in rows)
        require(sizes == _library_parts(n, threads), f"{case}: parts of sizes {sizes}; fast.parallel_slices makes "
                f"{_library_parts(n, threads)} (min(threads, n) parts, sizes differing by at most one)")
        require(len({name for _, name in seen}) == parts, f"{case}: {parts} parts ran on "
                f"{len({name for _, name in seen})} threads")
    return f"parts as fast.parallel_slices makes them, all running at once, for {len(PART_CASES)} cases"
