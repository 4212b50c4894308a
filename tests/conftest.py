"""Shared fixtures: every op test runs on NumPy, and on CuPy where a GPU is usable."""
import numpy as np
import pytest

from scratchnet import backend

GPU = backend.gpu_available()
requires_gpu = pytest.mark.skipif(not GPU, reason="CuPy with a usable GPU is not available")

DEVICES = ["cpu", pytest.param("gpu", marks=requires_gpu)]


@pytest.fixture(params=DEVICES)
def device(request):
    """"cpu" (NumPy) or "gpu" (CuPy); the GPU case is skipped where there is none."""
    return request.param


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator per test, so each test is reproducible on its own."""
    return np.random.default_rng(1234)


@pytest.fixture
def torch():
    """PyTorch, the independent reference: a test that takes this fixture is skipped without it."""
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory):
    """A CIFAR-10 folder in the official layout, 100 training and 20 test images, made once per session."""
    from cifar_fixtures import make_cifar_folder

    folder = tmp_path_factory.mktemp("cifar")
    make_cifar_folder(folder, "cifar10", per_file=20)
    return folder
