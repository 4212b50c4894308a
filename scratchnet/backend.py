"""The array-module switch: one place that decides between NumPy (CPU) and CuPy (GPU).

Every op asks its *inputs* which module to use (Chainer's ``get_array_module``
pattern), so the same line ``xp.maximum(x, 0)`` runs on the CPU for a NumPy
array and on the GPU for a CuPy array::

    xp = get_array_module(x)        # numpy or cupy, from where x lives
    out = xp.maximum(x, 0)

CuPy is imported lazily, only when a GPU is asked for or a CuPy array is seen,
so scratchnet imports quickly and works on machines without CUDA.
"""
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
            "CUDA 12), or use the CPU: device='cpu'."
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


THREADS_ENV_VAR = "SCRATCHNET_THREADS"
_thread_pool = None


def cpu_threads():
    """Threads for element-wise work on the CPU: ``$SCRATCHNET_THREADS``, else one per available core."""
    value = os.environ.get(THREADS_ENV_VAR, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{THREADS_ENV_VAR}={value!r} must be a positive integer")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Below this many array elements per thread, handing work to a thread costs more than it saves.
MIN_ELEMENTS_PER_THREAD = 1 << 18


def parallel_slices(fn, n, xp=numpy, size=None):
    """Call ``fn(s)`` for slices ``s`` that split range(n) into one part per CPU core, in threads.

    NumPy runs element-wise work on one core but releases the GIL while it runs,
    so giving each thread its own rows (say, its own channels) uses every core.
    fn must only touch its own rows; the result is then the same as one
    ``fn(slice(0, n))``, which is what CuPy (already parallel on the GPU), a single
    core and small work (``size``: elements involved) get.
    """
    parts = min(cpu_threads(), n) if xp is numpy else 1
    if size is not None:
        parts = min(parts, max(1, size // MIN_ELEMENTS_PER_THREAD))
    if parts <= 1:
        fn(slice(0, n))
        return
    global _thread_pool
    if _thread_pool is None or _thread_pool._max_workers < parts - 1:
        from concurrent.futures import ThreadPoolExecutor
        _thread_pool = ThreadPoolExecutor(max_workers=parts - 1, thread_name_prefix="scratchnet")
    bounds = [n * i // parts for i in range(parts + 1)]
    others = [_thread_pool.submit(fn, slice(a, b)) for a, b in zip(bounds[1:-1], bounds[2:])]
    fn(slice(bounds[0], bounds[1]))          # the calling thread takes the first part itself
    for future in others:
        future.result()


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
