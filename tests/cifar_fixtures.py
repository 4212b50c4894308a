"""Small synthetic CIFAR archives in the official "python version" layout, built by the tests themselves.

Each file is a pickle of a dict with bytes keys (what the official Python-2 pickles
give under ``encoding="bytes"``; protocol 4, since Python 3's protocol 2 spells bytes
with a codec call that the loader rightly refuses): ``data`` a uint8 (n, 3072) array whose rows are
the R, G and B planes of a 32x32 image, and the labels as a list of ints.
"""
import dataclasses
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np

from scratchnet.data import cifar


def _write_pickle(path, entries):
    with open(path, "wb") as f:
        pickle.dump({key.encode(): value for key, value in entries.items()}, f, protocol=4)


def make_cifar_folder(root, name="cifar10", per_file=6, seed=0):
    """Write spec.folder under root; return (images, labels) of the training and test splits."""
    spec = cifar.SPECS[name]
    rng = np.random.default_rng(seed)
    classes = [f"class{i}" for i in range(10 if name == "cifar10" else 100)]
    folder = Path(root) / spec.folder
    folder.mkdir(parents=True)
    written = {"train": ([], []), "test": ([], [])}
    for split, files in (("train", spec.train_files), ("test", spec.test_files)):
        for file in files:
            data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, len(classes), size=per_file)]
            _write_pickle(folder / file, {"data": data, spec.label_key: labels, "batch_label": split})
            written[split][0].append(data.reshape(-1, 3, 32, 32))
            written[split][1].extend(labels)
    _write_pickle(folder / spec.meta_file, {spec.names_key: [c.encode() for c in classes]})
    return {split: (np.concatenate(images), np.array(labels)) for split, (images, labels) in written.items()}


def make_cifar_archive(root, name="cifar10", per_file=6, seed=0):
    """Write spec.archive under root (the folder inside, as in the official archive); return (path, md5, data)."""
    spec = cifar.SPECS[name]
    build = Path(root) / "build"
    data = make_cifar_folder(build, name, per_file, seed)
    archive = Path(root) / spec.archive
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(build / spec.folder, arcname=spec.folder)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    return archive, md5, data


def publish(monkeypatch, name, archive, md5):
    """Point the dataset's URL at a local file:// copy and make its MD5 the published one."""
    spec = dataclasses.replace(cifar.SPECS[name], url=Path(archive).resolve().as_uri(), md5=md5)
    monkeypatch.setitem(cifar.SPECS, name, spec)
    return spec
