"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

``load_cifar("cifar10", data_dir)`` finds, in this order, the extracted folder
(``cifar-10-batches-py/``), the archive (``cifar-10-python.tar.gz``, checked
against its published MD5 and extracted), or downloads the archive from the
Toronto site. Every file is written under a temporary name and renamed only
once it is complete and verified, so an interrupted download or extraction
never leaves something that later looks valid.
"""
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import numpy as np


class DataError(RuntimeError):
    """A dataset is missing, incomplete or corrupted; the message says what to do."""


@dataclass(frozen=True)
class CifarSpec:
    name: str
    url: str
    archive: str          # the archive's file name
    md5: str              # of the archive, as published on https://www.cs.toronto.edu/~kriz/cifar.html
    folder: str           # what the archive extracts to
    train_files: tuple
    test_files: tuple
    label_key: str
    meta_file: str
    names_key: str
    mean: tuple           # per-channel pixel statistics of the training set, on the 0..255 scale,
    std: tuple            # as in the DenseNet paper's code (fb.resnet.torch)


SPECS = {
    "cifar10": CifarSpec(
        "cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels",
        "batches.meta", "label_names", (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    "cifar100": CifarSpec(
        "cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python", ("train",), ("test",), "fine_labels", "meta", "fine_label_names",
        (129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
}


@dataclass
class Cifar:
    """A loaded dataset. Images are uint8 (N, 3, 32, 32); labels int64 (N,)."""
    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list
    mean: tuple           # per channel, 0..255 scale
    std: tuple

    @property
    def num_classes(self):
        return len(self.classes)


def load_cifar(name="cifar10", data_dir="data", download=True, progress=True):
    """Load CIFAR-10 or CIFAR-100 from ``data_dir``, downloading it there if needed (and allowed)."""
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(SPECS)}")
    spec = SPECS[name]
    data_dir = Path(data_dir)
    folder = data_dir / spec.folder
    if not folder.is_dir():
        archive = data_dir / spec.archive
        if not archive.is_file():
            if not download:
                raise DataError(_missing_message(spec, data_dir, "downloading is switched off"))
            data_dir.mkdir(parents=True, exist_ok=True)
            download_archive(spec, archive, progress)
        verify_md5(archive, spec)
        extract_archive(archive, data_dir, spec)
    return read_folder(folder, spec)


def _missing_message(spec, data_dir, reason):
    return (f"{spec.name} is not in {data_dir}/ and {reason}. Download {spec.url} by hand "
            f"(MD5 {spec.md5}) and put it in {data_dir}/, or point --data-dir at a folder that holds "
            f"{spec.archive} or the extracted {spec.folder}/.")


def file_md5(path, chunk_size=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(archive, spec):
    actual = file_md5(archive)
    if actual != spec.md5:
        raise DataError(f"{archive} has MD5 {actual}, but the published MD5 of {spec.archive} is {spec.md5}: "
                        f"the file is truncated, corrupted or not the official archive. Delete it and run again to "
                        f"download it afresh, or fetch {spec.url} by hand.")


def _progress_bar(total, description):
    try:
        from tqdm import tqdm
    except ImportError:          # tqdm is optional (pip install scratchnet[train])
        return None
    return tqdm(total=total or None, desc=description, unit="B", unit_scale=True, unit_divisor=1024)


def download_archive(spec, destination, progress=True):
    """Download spec.url to ``destination`` through a temporary ``.part`` file, verified before the rename."""
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    try:
        with urlopen(spec.url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            bar = _progress_bar(total, f"downloading {spec.archive}") if progress else None
            while chunk := response.read(1 << 20):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
        verify_md5(partial, spec)
        os.replace(partial, destination)
    except (URLError, OSError) as e:
        raise DataError(_missing_message(spec, destination.parent, f"downloading it failed ({e})")) from None
    finally:
        partial.unlink(missing_ok=True)


def extract_archive(archive, data_dir, spec):
    """Extract spec.folder from the archive into a temporary folder, then rename it into place."""
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}-", dir=data_dir))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[0] == spec.folder]
            if any(not (m.isfile() or m.isdir()) or ".." in m.name.split("/") for m in members):
                raise DataError(f"{archive} holds unexpected entries; it is not the official {spec.archive}")
            # The "data" filter (Python >= 3.10.12) refuses links and absolute paths; older
            # Pythons rely on the checks above.
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=members, **safe)
        _require_files(staging / spec.folder, spec, archive)
        os.replace(staging / spec.folder, Path(data_dir) / spec.folder)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"could not extract {archive} ({e}); delete it and run again, or fetch {spec.url} by hand")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _require_files(folder, spec, source):
    missing = [f for f in spec.train_files + spec.test_files + (spec.meta_file,) if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{source} lacks {', '.join(missing)} of {spec.folder}/: it is incomplete. Delete it "
                        f"and run again, or fetch {spec.url} by hand.")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """The CIFAR files are pickles; this unpickler builds NumPy arrays and nothing else."""

    def find_class(self, module, name):
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return np.ndarray.__reduce__(np.zeros(0))[0]     # numpy's own _reconstruct, wherever it lives
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR file")


def _read_pickle(path):
    try:
        with open(path, "rb") as f:
            entries = _ArraysOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"{path} is not a readable CIFAR file ({e}); delete its folder and run again") from None
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in entries.items()}


def _read_split(folder, files, spec):
    images, labels = [], []
    for file in files:
        entries = _read_pickle(folder / file)
        data = np.asarray(entries["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(entries[spec.label_key]) != len(data):
            raise DataError(f"{folder / file} does not hold 32x32 colour images with one label each")
        images.append(data.reshape(-1, 3, 32, 32))       # each row is the R plane, then G, then B
        labels.append(np.asarray(entries[spec.label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def read_folder(folder, spec):
    """Read an extracted ``cifar-10-batches-py/`` or ``cifar-100-python/`` folder into a Cifar."""
    folder = Path(folder)
    _require_files(folder, spec, folder)
    train_images, train_labels = _read_split(folder, spec.train_files, spec)
    test_images, test_labels = _read_split(folder, spec.test_files, spec)
    classes = [c.decode() if isinstance(c, bytes) else c for c in _read_pickle(folder / spec.meta_file)[spec.names_key]]
    for split, labels in (("training", train_labels), ("test", test_labels)):
        if labels.min() < 0 or labels.max() >= len(classes):
            raise DataError(f"{folder}: {split} labels lie outside 0..{len(classes) - 1}")
    return Cifar(spec.name, train_images, train_labels, test_images, test_labels, classes, spec.mean, spec.std)


def synthetic_cifar(num_train=2000, num_test=500, seed=0):
    """A made-up stand-in for CIFAR-10, for lectures and demos where the real data is absent.

    Ten classes of 32x32 colour images, each a noisy background with a bright square
    whose colour and position depend on the class: learnable in a few epochs, and
    nothing like real photographs. Normalised with CIFAR-10's statistics.
    """
    rng = np.random.default_rng(seed)
    colours = rng.integers(60, 256, size=(10, 3))
    corners = rng.integers(2, 20, size=(10, 2))

    def make(n):
        labels = rng.integers(0, 10, size=n)
        images = rng.normal(110, 40, size=(n, 3, 32, 32))
        for i, label in enumerate(labels):
            top, left = corners[label] + rng.integers(-2, 3, size=2)
            images[i, :, top:top + 10, left:left + 10] = colours[label][:, None, None] + rng.normal(0, 20, (3, 10, 10))
        return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)

    spec = SPECS["cifar10"]
    train_images, train_labels = make(num_train)
    test_images, test_labels = make(num_test)
    return Cifar("synthetic", train_images, train_labels, test_images, test_labels,
                 [f"pattern {i}" for i in range(10)], spec.mean, spec.std)
