"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

``load_cifar("cifar10", data_dir)`` finds, in this order, the extracted folder
(``cifar-10-batches-py/``), the archive (``cifar-10-python.tar.gz``, checked
against its published MD5 and extracted), or downloads the archive from the
Toronto site. Every file is written under a temporary name and renamed only
once it is complete and verified, so an interrupted download or extraction
never leaves something that later looks valid. Nothing is ever deleted on the
user's behalf, nor advised to be: offline, a file that fails a check may be the
only copy, so the advice is to move it aside.

The batch files are pickles, and loading a pickle can run code; ``pickles.load_plain``
builds plain data only (dicts, lists, numbers, bytes, arrays of numbers no larger than a
CIFAR file holds), from any pickle protocol, and every file's contents are checked here.
"""
import gzip
import hashlib
import os
import shlex
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import numpy as np

from .pickles import MAX_ARRAY_BYTES, MAX_FILE_BYTES, load_plain, text


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
            download_archive(spec, archive, progress)
        verify_md5(archive, spec)
        extract_archive(archive, data_dir, spec)
    return read_folder(folder, spec)


def _missing_message(spec, data_dir, reason):
    return (f"{spec.name} is not in {data_dir}/ and {reason}. Download {spec.url} by hand "
            f"(MD5 {spec.md5}) and put it in {data_dir}/, or point --data-dir at a folder that holds "
            f"{spec.archive} or the extracted {spec.folder}/.")


# No advice deletes anything: offline, the file that failed a check may be the only copy.
def _shell(path):
    return shlex.quote(str(path))


def _move_aside(path):
    return f"move it aside (mv {_shell(path)} {_shell(path)}.bad) and run again for a fresh copy"


def _not_writable(folder, error, instead):
    return (f"{folder}/ is not writable ({error}). Make it writable (chmod u+w {_shell(folder)}), "
            f"or {instead} and point --data-dir there.")


def file_md5(path, chunk_size=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(archive, spec, advice=None):
    """Refuse ``archive`` unless its MD5 is the published one; ``advice`` ends the message (default: a kept file's)."""
    actual = file_md5(archive)
    if actual != spec.md5:
        archive = Path(archive)
        advice = advice or (
            f"It was kept. If it is a copy you trust (re-packed, say), extract it yourself (tar -xf "
            f"{_shell(archive)} -C {_shell(archive.parent)}): scratchnet then reads {spec.folder}/ and checks "
            f"every file in it. Otherwise {_move_aside(archive)}, or fetch {spec.url} by hand.")
        raise DataError(f"{archive} has MD5 {actual}, but the published MD5 of {spec.archive} is {spec.md5}: "
                        f"it is truncated, corrupted or not the official archive. {advice}")


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
        destination.parent.mkdir(parents=True, exist_ok=True)
        out = open(partial, "wb")
    except OSError as e:
        raise DataError(f"cannot download {spec.archive}: " + _not_writable(
            destination.parent, e, "choose a folder you can write")) from None
    try:
        with out, urlopen(spec.url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            bar = _progress_bar(total, f"downloading {spec.archive}") if progress else None
            while chunk := response.read(1 << 20):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
        verify_md5(partial, spec, f"The download was discarded; run again to retry, or fetch {spec.url} by hand.")
        os.replace(partial, destination)
    except (URLError, OSError) as e:
        raise DataError(_missing_message(spec, destination.parent, f"downloading it failed ({e})")) from None
    finally:
        partial.unlink(missing_ok=True)


def extract_archive(archive, data_dir, spec):
    """Extract spec.folder from the archive into a temporary folder, then rename it into place; the archive is kept."""
    data_dir = Path(data_dir)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}-", dir=data_dir))
    except OSError as e:         # a read-only data folder: nothing was written, nothing to clean up
        raise DataError(f"cannot extract {archive}: " + _not_writable(
            data_dir, e, f"extract it in a folder you can write (mkdir -p DIR && tar -xf {_shell(archive)} -C DIR)"
        )) from None
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
        os.replace(staging / spec.folder, data_dir / spec.folder)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"could not extract {archive} ({e}). It was kept: {_move_aside(archive)}, "
                        f"or fetch {spec.url} by hand.") from None
    except OSError as e:         # writing failed: a full disk, say
        raise DataError(f"could not extract {archive} into {data_dir}/ ({e}); nothing was left there and the "
                        f"archive was kept. Make room (or fix the folder) and run again.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _require_files(folder, spec, source):
    missing = [f for f in spec.train_files + spec.test_files + (spec.meta_file,) if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{source} lacks {', '.join(missing)} of {spec.folder}/: it is incomplete. Nothing was "
                        f"changed: {_move_aside(source)}, or fetch {spec.url} by hand.")


def _describe(value):
    """What a value is, for a message: "a uint8 array of shape (6, 3072)", "a list of float, int", "an int"."""
    if isinstance(value, np.ndarray):
        what = f"{value.dtype} array of shape {value.shape}"
    elif isinstance(value, (list, tuple)) and value:
        what = f"{type(value).__name__} of {', '.join(sorted({type(v).__name__ for v in value}))}"
    else:
        what = ("empty " if isinstance(value, (list, tuple)) else "") + type(value).__name__
    return ("an " if what[0] in "aeio" else "a ") + what     # a uint8, an int8


def _bad_file(path, what):
    return DataError(f"{path} is not a usable CIFAR file: {what}. Nothing was changed; to replace "
                     f"{path.parent}/, {_move_aside(path.parent)}.")


def _read_pickle(path):
    """The dict a CIFAR file holds, with str keys (read by ``pickles.load_plain``: plain data only)."""
    try:
        size = path.stat().st_size
        blob = path.read_bytes() if size <= MAX_FILE_BYTES else None
    except OSError as e:
        raise DataError(f"cannot read {path} ({e})") from None
    if blob is None:
        raise _bad_file(path, f"it is {size:,} bytes, more than any CIFAR file ({MAX_FILE_BYTES:,} at most)")
    try:
        entries = load_plain(blob)
    except MemoryError:
        raise DataError(f"reading {path} ran out of memory: a CIFAR file needs at most {MAX_ARRAY_BYTES:,} bytes, "
                        f"so either it claims far more than that or this machine is short of memory") from None
    except Exception as e:       # a damaged or crafted pickle fails in many ways; each means the same here
        raise _bad_file(path, f"it is not a readable pickle of plain data ({type(e).__name__}: {e})") from None
    if not isinstance(entries, dict):
        raise _bad_file(path, f"it holds {_describe(entries)}, not a dict")
    return {text(key): value for key, value in entries.items()}


def _entry(entries, key, path):
    if key not in entries:
        present = ", ".join(repr(k) for k in list(entries)[:8]) or "none"
        raise _bad_file(path, f"it has no {key!r} entry (its entries: {present})")
    return entries[key]


def _read_labels(entries, key, count, num_classes, path):
    """The labels as int64 (count,): a list of ints (the official form) or a 1-D integer array."""
    labels = _entry(entries, key, path)
    is_array = isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu"
    is_list = isinstance(labels, (list, tuple)) and all(type(v) is int for v in labels)   # True is not a class
    if not (is_array or is_list):
        raise _bad_file(path, f"{key!r} is {_describe(labels)}, not a list of class indices (ints)")
    if len(labels) != count:
        raise _bad_file(path, f"it holds {count} images but {len(labels)} labels in {key!r}")
    if count and not 0 <= min(labels) <= max(labels) < num_classes:
        raise _bad_file(path, f"its labels lie outside 0..{num_classes - 1} (the classes its meta file names)")
    return np.asarray(labels, dtype=np.int64)


def _read_split(folder, files, spec, num_classes):
    images, labels = [], []
    for file in files:
        path = folder / file
        entries = _read_pickle(path)
        data = _entry(entries, "data", path)
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == 3 * 32 * 32):
            raise _bad_file(path, f"'data' is {_describe(data)}, not uint8 of shape (N, 3072): one 32x32 colour "
                                  f"image a row")
        images.append(data.reshape(-1, 3, 32, 32))       # each row is the R plane, then G, then B
        labels.append(_read_labels(entries, spec.label_key, len(data), num_classes, path))
    return np.concatenate(images), np.concatenate(labels)


def _read_classes(path, spec):
    names = _entry(_read_pickle(path), spec.names_key, path)
    if not (isinstance(names, (list, tuple)) and names and all(isinstance(n, (str, bytes)) for n in names)):
        raise _bad_file(path, f"{spec.names_key!r} is {_describe(names)}, not a list of class names")
    return [text(n) for n in names]


def read_folder(folder, spec):
    """Read an extracted ``cifar-10-batches-py/`` or ``cifar-100-python/`` folder into a Cifar."""
    folder = Path(folder)
    _require_files(folder, spec, folder)
    classes = _read_classes(folder / spec.meta_file, spec)
    train_images, train_labels = _read_split(folder, spec.train_files, spec, len(classes))
    test_images, test_labels = _read_split(folder, spec.test_files, spec, len(classes))
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
