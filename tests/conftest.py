"""Shared fixtures: every op test runs on NumPy, and on CuPy where a GPU is usable."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

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


SHARED_CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "cifar10"


@pytest.fixture(scope="session")
def real_cifar10_dir(tmp_path_factory):
    """A folder holding the real CIFAR-10 test and training files (cifar-10-batches-py/), or a skip.

    Found, in this order: SCRATCHNET_DATA_DIR, if it holds the extracted copy; else the JPEG copy in
    ../shared/cifar10 decoded once per session by its own make_cifar10.py (about 20 s; it needs Pillow,
    which .ci/run installs). Neither: the test is skipped, saying so.
    """
    given = os.environ.get("SCRATCHNET_DATA_DIR")
    if given and (Path(given) / "cifar-10-batches-py" / "test_batch").is_file():
        return Path(given)
    script = SHARED_CIFAR10 / "make_cifar10.py"
    if not script.is_file():
        pytest.skip(f"no real CIFAR-10: SCRATCHNET_DATA_DIR is not set to one and {SHARED_CIFAR10} does not exist")
    if importlib.util.find_spec("PIL") is None:          # make_cifar10.py decodes the JPEGs with Pillow
        pytest.skip(f"the real CIFAR-10 copy in {SHARED_CIFAR10} needs Pillow to decode (pip install pillow)")
    folder = tmp_path_factory.mktemp("real-cifar10")
    subprocess.run([sys.executable, str(script), str(folder)], check=True, capture_output=True)
    return folder
