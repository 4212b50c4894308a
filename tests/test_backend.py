"""The array-module switch: choosing NumPy or CuPy, moving arrays, and the missing-GPU error."""
import sys
import types

import numpy as np
import pytest

from conftest import requires_gpu
from scratchnet import backend


@pytest.fixture(autouse=True)
def fresh_device_choice(monkeypatch):
    monkeypatch.setattr(backend, "_device", None)
    monkeypatch.delenv(backend.DEVICE_ENV_VAR, raising=False)


@pytest.fixture
def no_cupy(monkeypatch):
    """Pretend CuPy is not installed: ``import cupy`` raises ImportError."""
    monkeypatch.setitem(sys.modules, "cupy", None)


def test_numpy_arrays_select_numpy():
    assert backend.get_array_module(np.zeros(3), None, 1.5) is np
    assert backend.get_array_module() is np


def test_numpy_arrays_stay_where_they_are():
    a = np.arange(4.0)
    assert backend.to_numpy(a) is a
    assert backend.to_device(a, "cpu") is a
    assert backend.to_device(None, "cpu") is None
    assert backend.device_of(a) == "cpu"


def test_default_device_is_the_cpu_and_follows_the_environment(monkeypatch):
    assert backend.get_device() == "cpu"
    monkeypatch.setenv(backend.DEVICE_ENV_VAR, " GPU ")
    assert backend.get_device() == "gpu"
    backend.set_device("cpu")   # an explicit choice wins over the environment
    assert backend.get_device() == "cpu"
    backend.set_device(None)    # and None hands the choice back to it
    assert backend.get_device() == "gpu"


def test_unknown_devices_are_refused(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown device 'tpu'; choose one of \('cpu', 'gpu'\)"):
        backend.set_device("tpu")
    with pytest.raises(ValueError, match="unknown device 'cuda'"):
        backend.to_device(np.zeros(2), "cuda")
    monkeypatch.setenv(backend.DEVICE_ENV_VAR, "tpu")
    with pytest.raises(ValueError, match="SCRATCHNET_DEVICE='tpu' is not a device"):
        backend.get_device()


def test_asking_for_the_gpu_without_cupy_says_what_to_install(no_cupy):
    for ask in (lambda: backend.set_device("gpu"),
                lambda: backend.to_device(np.zeros(2), "gpu"),
                lambda: backend.array_module_for("gpu")):
        with pytest.raises(backend.GPUUnavailableError, match=r'pip install "scratchnet\[gpu\]"'):
            ask()
    assert not backend.gpu_available()
    assert backend.get_device() == "cpu"   # the failed set_device changed nothing


def test_the_environment_variable_asking_for_a_missing_gpu_fails_clearly(no_cupy, monkeypatch):
    monkeypatch.setenv(backend.DEVICE_ENV_VAR, "gpu")
    with pytest.raises(backend.GPUUnavailableError, match="CuPy is not installed"):
        backend.array_module_for()


def test_cupy_without_a_usable_gpu_is_reported(monkeypatch):
    def no_driver():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver)))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    with pytest.raises(backend.GPUUnavailableError, match="CuPy is installed, but CUDA reports no usable GPU"):
        backend.set_device("gpu")


def test_default_rng_is_seeded_and_on_the_cpu():
    a = backend.default_rng(5, "cpu").standard_normal(4)
    b = backend.default_rng(5, "cpu").standard_normal(4)
    assert isinstance(a, np.ndarray) and np.array_equal(a, b)


def test_seed_seeds_numpy_global_generator():
    backend.seed(11)
    first = np.random.rand(3)
    backend.seed(11)
    assert np.array_equal(first, np.random.rand(3))


@requires_gpu
def test_round_trip_through_the_gpu():
    import cupy
    a = np.arange(6.0).reshape(2, 3)
    g = backend.to_device(a, "gpu")
    assert isinstance(g, cupy.ndarray) and backend.device_of(g) == "gpu"
    assert backend.get_array_module(g) is cupy
    assert backend.to_device(g, "gpu") is g
    assert np.array_equal(backend.to_numpy(g), a)
    with pytest.raises(ValueError, match="mix of NumPy"):
        backend.get_array_module(a, g)


@pytest.fixture
def fresh_thread_setting(monkeypatch):
    """Forget the thread setting before the test (it is read from the environment again) and after it."""
    monkeypatch.delenv(backend.THREADS_ENV_VAR, raising=False)
    backend.set_cpu_threads(None)
    yield
    monkeypatch.delenv(backend.THREADS_ENV_VAR, raising=False)
    backend.set_cpu_threads(None)


def test_cpu_threads_default_to_the_available_cores(fresh_thread_setting):
    assert backend.cpu_threads() == backend.available_cores() >= 1


def test_the_threads_variable_is_read_once(fresh_thread_setting, monkeypatch):
    monkeypatch.setenv(backend.THREADS_ENV_VAR, "3")
    assert backend.cpu_threads() == 3
    monkeypatch.setenv(backend.THREADS_ENV_VAR, "5")            # too late: the setting was made
    assert backend.cpu_threads() == 3
    backend.set_cpu_threads(None)                                # forget it: the variable is read again
    assert backend.cpu_threads() == 5


def test_set_cpu_threads_and_using_cpu_threads(fresh_thread_setting):
    previous = backend.set_cpu_threads(2)
    assert previous == backend.available_cores() and backend.cpu_threads() == 2
    with backend.using_cpu_threads(np.int64(1)):                 # any integer, NumPy's too
        assert backend.cpu_threads() == 1 and type(backend.cpu_threads()) is int
    assert backend.cpu_threads() == 2
    with pytest.raises(RuntimeError), backend.using_cpu_threads(4):
        raise RuntimeError("a failing block still restores the setting")
    assert backend.cpu_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(bad, fresh_thread_setting):
    with pytest.raises(ValueError, match="must be a positive integer"):
        backend.set_cpu_threads(bad)


def test_a_bad_threads_variable_is_reported(fresh_thread_setting, monkeypatch):
    monkeypatch.setenv(backend.THREADS_ENV_VAR, "zero")
    with pytest.raises(ValueError, match="SCRATCHNET_THREADS='zero' must be a positive integer"):
        backend.cpu_threads()
    monkeypatch.setenv(backend.THREADS_ENV_VAR, "0")
    with pytest.raises(ValueError, match="SCRATCHNET_THREADS='0' must be a positive integer"):
        backend.cpu_threads()
