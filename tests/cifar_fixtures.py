"""Small synthetic CIFAR archives in the official "python version" layout, built by the tests themselves.

Each file is a pickle of a dict with bytes keys (what the official Python-2 pickles
give under ``encoding="bytes"``; str keys on request): ``data`` a uint8 (n, 3072) array
whose rows are the R, G and B planes of a 32x32 image, and the labels as a list of ints.
Protocol 4 unless asked otherwise; every protocol spells arrays and bytes its own way.
"""
import dataclasses
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np

from scratchnet.data import cifar


def write_pickle(path, entries, protocol=4, str_keys=False):
    """Pickle the dict entries (str keys) to path, its keys as bytes unless str_keys."""
    with open(path, "wb") as f:
        pickle.dump({key if str_keys else key.encode(): value for key, value in entries.items()}, f, protocol=protocol)


def make_cifar_folder(root, name="cifar10", per_file=6, seed=0, protocol=4, str_keys=False):
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
            write_pickle(folder / file, {"data": data, spec.label_key: labels, "batch_label": split}, protocol, str_keys)
            written[split][0].append(data.reshape(-1, 3, 32, 32))
            written[split][1].extend(labels)
    write_pickle(folder / spec.meta_file, {spec.names_key: [c.encode() for c in classes]}, protocol, str_keys)
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
