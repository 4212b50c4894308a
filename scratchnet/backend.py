"""The array-module switch: one place that decides between NumPy (CPU) and CuPy (GPU).

Every op asks its *inputs* which module to use (Chainer's ``get_array_module``
pattern), so the same line ``xp.maximum(x, 0)`` runs on the CPU for a NumPy
array and on the GPU for a CuPy array::

    xp = get_array_module(x)        # numpy or cupy, from where x lives
    out = xp.maximum(x, 0)

CuPy is imported lazily, only when a GPU is asked for or a CuPy array is seen,
so scratchnet imports quickly and works on machines without CUDA.

This module also holds scratchnet's only process-wide settings: the default device
(``set_device``, ``$SCRATCHNET_DEVICE``), the number of CPU threads for element-wise
work (``set_cpu_threads``, ``using_cpu_threads``, ``$SCRATCHNET_THREADS``, read once), and
``keep_freed_memory()``, which the training loop calls.
"""
import contextlib
import operator
import os
import sys

import numpy

DEVICES = ("cpu", "gpu")
DEVICE_ENV_VAR = "SCRATCHNET_DEVICE"
GPU_INSTALL_HINT = 'pip install "scratchnet[gpu]"'


_device = None  # chosen with set_device(); None means "read SCRATCHNET_DEVICE"


class GPUUnavailableError(RuntimeError):
    """Raised when the GPU is asked for but CuPy or a CUDA device is missing."""


def _is_cupy_array(a):
    # Looking at the type's module avoids importing CuPy just to answer "no".
    return type(a).__module__.split(".")[0] == "cupy"


def _import_cupy():
    """Return the cupy module, or raise one clear error saying what to install."""
    try:
        import cupy
    except ImportError as e:
        raise GPUUnavailableError(
            f"the GPU was requested but CuPy is not installed ({e}). "
            f"Install it with `{GPU_INSTALL_HINT}` (from a checkout: `pip install -e \".[gpu]\"`; CuPy for "
            "CUDA 13, or `[gpu-cuda12]` for a CUDA 12 driver), or use the CPU: device='cpu'."
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing, no device, broken install, ...
        raise GPUUnavailableError(
            f"the GPU was requested and CuPy is installed, but CUDA reports no usable GPU ({e}). "
            "Check the NVIDIA driver with `nvidia-smi`, or use the CPU: device='cpu'."
        ) from None
    if count == 0:
        raise GPUUnavailableError(
            "the GPU was requested and CuPy is installed, but no CUDA device was found. "
            "Use the CPU instead: device='cpu'."
        )
    return cupy


def gpu_available():
    """True when CuPy imports and at least one CUDA device is usable."""
    try:
        _import_cupy()
    except GPUUnavailableError:
        return False
    return True


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Non-array arguments (None, Python numbers) are ignored. Mixing NumPy and
    CuPy arrays in one call is an error: move them first with ``to_device``.
    """
    kinds = {"gpu" if _is_cupy_array(a) else "cpu"
             for a in arrays if isinstance(a, numpy.ndarray) or _is_cupy_array(a)}
    if kinds == {"cpu", "gpu"}:
        raise ValueError(
            "got a mix of NumPy (CPU) and CuPy (GPU) arrays; put them on one device first, "
            "e.g. to_device(a, 'gpu') or to_numpy(a)"
        )
    if kinds == {"gpu"}:
        import cupy
        return cupy
    return numpy


def _check_device(device):
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {DEVICES}")
    return device


def set_device(device):
    """Choose the default device, "cpu" or "gpu", for code that creates new arrays.

    None hands the choice back to ``$SCRATCHNET_DEVICE``.
    """
    if device is not None:
        _check_device(device)
    if device == "gpu":
        _import_cupy()  # fail now, with the install hint, not deep inside a later op
    global _device
    _device = device


def get_device():
    """The default device: set by ``set_device``, else ``$SCRATCHNET_DEVICE``, else "cpu"."""
    if _device is not None:
        return _device
    device = os.environ.get(DEVICE_ENV_VAR, "cpu").strip().lower() or "cpu"
    if device not in DEVICES:
        raise ValueError(f"{DEVICE_ENV_VAR}={device!r} is not a device; set it to one of {DEVICES}")
    return device


def array_module_for(device=None):
    """The array module (numpy or cupy) for ``device`` (default: ``get_device()``)."""
    device = _check_device(device or get_device())
    return _import_cupy() if device == "gpu" else numpy


def device_of(a):
    """"gpu" for a CuPy array, "cpu" for anything else."""
    return "gpu" if _is_cupy_array(a) else "cpu"


def to_numpy(a):
    """Copy a CuPy array to the host; NumPy arrays (and None) pass through unchanged."""
    if _is_cupy_array(a):
        return a.get()
    return a


def to_device(a, device=None):
    """Return ``a`` on ``device`` ("cpu" or "gpu"; default ``get_device()``).

    No copy is made when ``a`` already lives there. None passes through.
    """
    device = _check_device(device or get_device())
    if a is None:
        return None
    if device == "cpu":
        return numpy.asarray(to_numpy(a))
    cupy = _import_cupy()
    return cupy.asarray(a)


# -- CPU threads ------------------------------------------------------------------------------------
# The one setting scratchnet keeps about threads: how many the fast tier's element-wise work
# (scratchnet.fast.parallel_slices) may use on the CPU. NumPy's matrix products use OpenBLAS's own
# threads, which scratchnet leaves alone: OPENBLAS_NUM_THREADS and OPENBLAS_THREAD_TIMEOUT, read by
# OpenBLAS when NumPy loads, are yours to set before starting Python (docs/benchmarks.md measures both).

THREADS_ENV_VAR = "SCRATCHNET_THREADS"
_cpu_threads = None  # set by set_cpu_threads(); None: read $SCRATCHNET_THREADS at the next use


def available_cores():
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _check_thread_count(n, source):
    if isinstance(n, bool) or not hasattr(n, "__index__") or operator.index(n) < 1:
        raise ValueError(f"{source} must be a positive integer, got {n!r}")
    return operator.index(n)


def _threads_from_environment():
    value = os.environ.get(THREADS_ENV_VAR, "").strip()
    if not value:
        return available_cores()
    if not value.isdigit():
        raise ValueError(f"{THREADS_ENV_VAR}={value!r} must be a positive integer")
    return _check_thread_count(int(value), f"{THREADS_ENV_VAR}={value!r}")


def cpu_threads():
    """Threads for element-wise work on the CPU.

    ``set_cpu_threads(n)`` chooses; until then, ``$SCRATCHNET_THREADS`` as it is at the first
    call (read once), else one thread per available core.
    """
    global _cpu_threads
    if _cpu_threads is None:
        _cpu_threads = _threads_from_environment()
    return _cpu_threads


def set_cpu_threads(n):
    """Use ``n`` threads for element-wise CPU work from now on; None: ``$SCRATCHNET_THREADS``/the cores again.

    Returns the previous setting, so that it can be restored.
    """
    global _cpu_threads
    previous = cpu_threads()
    _cpu_threads = None if n is None else _check_thread_count(n, "the number of CPU threads")
    return previous


@contextlib.contextmanager
def using_cpu_threads(n):
    """``with using_cpu_threads(1): ...`` runs a block with ``n`` element-wise threads, then restores the setting."""
    previous = set_cpu_threads(n)
    try:
        yield
    finally:
        set_cpu_threads(previous)


def keep_freed_memory():
    """Ask the C library (glibc, on Linux) to keep memory that NumPy frees, for the next training step.

    A training step allocates and frees the same few hundred MB of arrays every time. glibc hands
    freed memory back to the system once enough of it lies free at the top of its heap, and then
    every page of the next step's arrays is faulted in again (measured: twice the page faults, and
    a step 10-15 % slower, depending on what happened to be freed last). This raises glibc's trim
    and mmap thresholds (``mallopt``), so that arrays up to 32 MB come from the heap and freed memory
    stays there. Returns True where it took effect; elsewhere (no glibc) it does nothing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        trim, mmap = libc.mallopt(-1, 1 << 30), libc.mallopt(-3, 32 << 20)   # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False
    return bool(trim and mmap)


def seed(value):
    """Seed NumPy's global generator, and CuPy's too where CuPy is already in use.

    Library code draws from explicit generators (see ``default_rng``); this
    is for scripts and notebooks that use ``np.random`` directly.
    """
    numpy.random.seed(value)
    if "cupy" in sys.modules and gpu_available():
        sys.modules["cupy"].random.seed(value)


def default_rng(seed=None, device=None):
    """A random generator on ``device``: ``numpy.random.default_rng`` or CuPy's."""
    return array_module_for(device).random.default_rng(seed)
