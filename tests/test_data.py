"""CIFAR loading, verification and download (on synthetic archives: no network), and the augmentation."""
import codecs
import os
import pickle
import pickletools
import re
import shlex
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from cifar_fixtures import make_cifar_archive, make_cifar_folder, publish, write_pickle
from scratchnet.data import SPECS, DataError, black_fill, cifar, load_cifar, normalize, pickles, random_crop_flip

REPO = Path(__file__).resolve().parents[1]
needs_permissions = pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")


def leftovers(folder):
    """Anything in folder besides a finished archive and a finished extracted dataset."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part"))


def snapshot(root):
    """Every file under root, by relative path, with its bytes: to show that a refusal changed nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def assert_destroys_nothing(message):
    assert "delete" not in message.lower() and not re.search(r"\brm\s", message)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_an_extracted_folder_loads_as_it_was_written(tmp_path, name):
    written = make_cifar_folder(tmp_path, name)
    data = load_cifar(name, tmp_path, download=False)
    train_images, train_labels = written["train"]
    assert data.train_images.shape == (len(train_labels), 3, 32, 32) and data.train_images.dtype == np.uint8
    assert np.array_equal(data.train_images, train_images) and np.array_equal(data.train_labels, train_labels)
    assert np.array_equal(data.test_images, written["test"][0])
    assert data.num_classes == (10 if name == "cifar10" else 100) and data.classes[3] == "class3"


def test_pixels_are_read_as_red_green_and_blue_planes(tmp_path):
    make_cifar_folder(tmp_path)
    data = load_cifar("cifar10", tmp_path, download=False)
    raw = pickle.load(open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb"), encoding="bytes")[b"data"]
    assert data.train_images[0, 0, 0, 5] == raw[0, 5]                    # red plane, row 0
    assert data.train_images[0, 1, 2, 3] == raw[0, 1024 + 2 * 32 + 3]    # green plane, row 2


def test_an_archive_in_the_data_dir_is_verified_and_extracted(tmp_path, monkeypatch):
    archive, md5, written = make_cifar_archive(tmp_path)
    publish(monkeypatch, "cifar10", tmp_path / "elsewhere.tar.gz", md5)
    data = load_cifar("cifar10", tmp_path, download=False)
    assert np.array_equal(data.train_labels, written["train"][1])
    assert (tmp_path / "cifar-10-batches-py" / "test_batch").is_file() and leftovers(tmp_path) == []


def test_download_verifies_then_extracts(tmp_path, monkeypatch):
    archive, md5, written = make_cifar_archive(tmp_path / "server")
    publish(monkeypatch, "cifar10", archive, md5)
    data_dir = tmp_path / "data"
    data = load_cifar("cifar10", data_dir, progress=False)
    assert np.array_equal(data.test_labels, written["test"][1])
    assert (data_dir / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    assert leftovers(data_dir) == []
    # A second load uses the extracted folder and needs no server.
    publish(monkeypatch, "cifar10", tmp_path / "gone.tar.gz", md5)
    assert np.array_equal(load_cifar("cifar10", data_dir).test_labels, written["test"][1])


def test_missing_dataset_offline_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as error:
        load_cifar("cifar10", tmp_path, download=False)
    message = str(error.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "c58f30108f718f92721af3b95e74349a" in message and "--data-dir" in message


def test_a_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    publish(monkeypatch, "cifar10", tmp_path / "no-such-server" / "cifar-10-python.tar.gz", "0" * 32)
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match="downloading it failed"):
        load_cifar("cifar10", data_dir, progress=False)
    assert list(data_dir.iterdir()) == []


def test_a_truncated_download_is_refused_and_removed(tmp_path, monkeypatch):
    archive, md5, _ = make_cifar_archive(tmp_path / "server")
    archive.write_bytes(archive.read_bytes()[:2000])       # the connection dropped half-way
    publish(monkeypatch, "cifar10", archive, md5)
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match="truncated, corrupted or not the official archive"):
        load_cifar("cifar10", data_dir, progress=False)
    assert list(data_dir.iterdir()) == []


def test_a_corrupted_archive_on_disk_is_refused_with_instructions(tmp_path, monkeypatch):
    archive, md5, _ = make_cifar_archive(tmp_path)
    publish(monkeypatch, "cifar10", tmp_path / "x.tar.gz", md5)
    blob = bytearray(archive.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    archive.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=f"has MD5 .* but the published MD5 of cifar-10-python.tar.gz is {md5}") as error:
        load_cifar("cifar10", tmp_path, download=False)
    assert "It was kept" in str(error.value) and f"mv {archive} {archive}.bad" in str(error.value)
    assert_destroys_nothing(str(error.value))
    assert archive.read_bytes() == bytes(blob)
    assert not (tmp_path / "cifar-10-batches-py").exists() and leftovers(tmp_path) == []


def test_a_repacked_archive_is_kept_and_the_advice_to_extract_it_works(tmp_path, monkeypatch):
    archive, _, written = make_cifar_archive(tmp_path)      # a valid archive, but not the official bytes
    publish(monkeypatch, "cifar10", tmp_path / "x.tar.gz", "0" * 32)
    before = archive.read_bytes()
    with pytest.raises(DataError) as error:
        load_cifar("cifar10", tmp_path, download=False)
    message = str(error.value)
    assert_destroys_nothing(message)
    assert "It was kept. If it is a copy you trust" in message and archive.read_bytes() == before
    command = re.search(r"\((tar -xf \S+ -C \S+)\)", message).group(1)
    assert command == f"tar -xf {archive} -C {tmp_path}"
    subprocess.run(shlex.split(command), check=True)         # what the message tells the user to do
    data = load_cifar("cifar10", tmp_path, download=False)
    assert np.array_equal(data.train_images, written["train"][0]) and np.array_equal(data.test_labels, written["test"][1])


def test_an_archive_with_the_right_md5_but_broken_contents_leaves_no_folder(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 100)   # gzip magic, then garbage
    import hashlib
    publish(monkeypatch, "cifar10", tmp_path / "x.tar.gz", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match="could not extract"):
        load_cifar("cifar10", tmp_path, download=False)
    assert not (tmp_path / "cifar-10-batches-py").exists() and leftovers(tmp_path) == []


def test_an_incomplete_folder_names_the_missing_files(tmp_path):
    make_cifar_folder(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match="lacks data_batch_3 of cifar-10-batches-py/: it is incomplete") as error:
        load_cifar("cifar10", tmp_path, download=False)
    folder = tmp_path / "cifar-10-batches-py"
    assert f"mv {folder} {folder}.bad" in str(error.value) and snapshot(tmp_path) == before
    assert_destroys_nothing(str(error.value))


class Crafted:
    """Pickles as ``function(*args)``, then ``__setstate__(state)``: how a crafted file spells an object."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)


NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]       # what NumPy's own pickles call
NUMPY_FROMBUFFER = np.zeros(0).__reduce_ex__(5)[0]


def write_batch(folder, entries, file="data_batch_1"):
    """Overwrite one batch file: entries (a dict, str keys) as the official files have it, bytes as they are,
    anything else pickled."""
    if isinstance(entries, dict):
        write_pickle(folder / file, entries)
    else:
        (folder / file).write_bytes(entries if isinstance(entries, bytes) else pickle.dumps(entries, protocol=4))
    return folder / file


def refusal(root, entries, file="data_batch_1"):
    """The DataError's message for a folder whose one file holds entries; the file and folder stay as they were."""
    path = write_batch(Path(root) / "cifar-10-batches-py", entries, file)
    before = snapshot(root)
    with pytest.raises(DataError) as error:
        load_cifar("cifar10", root, download=False)
    message = str(error.value)
    assert message.startswith(str(path))
    assert snapshot(root) == before
    assert_destroys_nothing(message)
    return message


@pytest.mark.parametrize("entries, expected", [
    ({"data": Crafted(print, ("this must never run",))}, "refusing to load builtins.print"),
    ({"data": Crafted(os.system, ("touch pwned",))}, f"refusing to load {os.system.__module__}.system"),
    ({"data": Crafted(codecs.encode, ("x", "rot13"))}, "refusing _codecs.encode(str, 'rot13')"),
], ids=["print", "os.system", "codecs other than latin1"])
def test_only_plain_data_is_unpickled(tmp_path, monkeypatch, entries, expected):
    make_cifar_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    message = refusal(tmp_path, entries)
    assert expected in message and "it is not a readable pickle of plain data" in message
    folder = tmp_path / "cifar-10-batches-py"
    assert f"mv {folder} {folder}.bad" in message and not (tmp_path / "pwned").exists()


def forged_object_dtype():
    """An object dtype whose flags say it holds no objects: NumPy would read an array's bytes as pointers."""
    forged = np.dtype("O", False, True)
    state = list(forged.__reduce__()[2])
    state[7] = 0                                        # the flags
    forged.__setstate__(tuple(state))
    return forged


POINTER = (0xDEADBEEF).to_bytes(8, "little")


NUMPY_CRASHES_ON = {      # each value of data in a batch file, and the message that refuses it
    "forged flags, setstate": (
        lambda: Crafted(NUMPY_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (1,), forged_object_dtype(), False, POINTER)),
        "refusing an array of dtype 'O8': a CIFAR file holds plain numbers"),
    "forged flags, frombuffer": (
        lambda: Crafted(NUMPY_FROMBUFFER, (POINTER, forged_object_dtype(), (1,), "C")),
        "refusing an array of dtype 'O8': a CIFAR file holds plain numbers"),
    "malformed dtype state": (
        lambda: Crafted(NUMPY_RECONSTRUCT, (np.ndarray, (0,), b"b"),
                        (1, (1,), Crafted(np.dtype, ("u1", False, True), (3, "|", None, -1, -1, 0)), False, b"\0")),
        "'data' is a uint8 array of shape (1,), not uint8 of shape (N, 3072)"),
}


def test_dtypes_numpy_would_crash_on_are_harmless(tmp_path):
    """Loaded in a child process: NumPy itself would crash on each (a fake pointer; a segfault in dtype.__setstate__)."""
    for i, (crafted, _) in enumerate(NUMPY_CRASHES_ON.values()):
        make_cifar_folder(tmp_path / str(i))
        write_batch(tmp_path / str(i) / "cifar-10-batches-py", {"data": crafted(), "labels": [0]})
    load = ("import sys; from scratchnet.data import DataError, load_cifar\n"
            "for root in sys.argv[1:]:\n"
            "    try: load_cifar('cifar10', root, download=False)\n"
            "    except DataError as e: print(e)")
    roots = [str(tmp_path / str(i)) for i in range(len(NUMPY_CRASHES_ON))]
    child = subprocess.run([sys.executable, "-c", load, *roots], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert child.returncode == 0, child.stderr
    for line, (case, (_, expected)) in zip(child.stdout.splitlines(), NUMPY_CRASHES_ON.items(), strict=True):
        assert expected in line, case


HUGE = (10**9, 3072)                 # 3 TB: the allocation fails
LARGE = (60_000, 3072)               # 184 MB: the allocation succeeds, but no CIFAR file is that large
UINT8 = np.dtype(np.uint8)


@pytest.mark.parametrize("crafted, expected", [
    (Crafted(NUMPY_RECONSTRUCT, (np.ndarray, HUGE, b"b")), "claims shape (1000000000, 3072) of int8, 3,072,000,000,000 bytes"),
    (Crafted(NUMPY_RECONSTRUCT, (np.ndarray, LARGE, b"b")), "claims shape (60000, 3072) of int8, 184,320,000 bytes"),
    (Crafted(NUMPY_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, HUGE, UINT8, False, b"")), "claims shape (1000000000, 3072) of uint8"),
    (Crafted(NUMPY_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, LARGE, UINT8, False, b"")), "claims shape (60000, 3072) of uint8"),
    (Crafted(NUMPY_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, HUGE, np.dtype(object), False, [])), "refusing an array of dtype 'O8'"),
    (Crafted(NUMPY_FROMBUFFER, (bytes(3072), UINT8, HUGE, "C")), "cannot reshape array of size 3072"),
], ids=["reconstruct 3 TB", "reconstruct 184 MB", "setstate 3 TB", "setstate 184 MB", "setstate objects", "frombuffer"])
def test_a_crafted_array_shape_is_refused_before_allocating(tmp_path, crafted, expected):
    make_cifar_folder(tmp_path)
    tracemalloc.start()
    try:
        message = refusal(tmp_path, {"data": crafted, "labels": [0]})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert expected in message and "it is not a readable pickle of plain data" in message
    if "claims" in expected:
        assert "more than a CIFAR file holds (at most 50,000 images of 3x32x32 bytes, 153,600,000 bytes)" in message
    assert peak < 20e6                                       # nothing near the claimed size was allocated


def test_running_out_of_memory_names_the_file(tmp_path, monkeypatch):
    make_cifar_folder(tmp_path)

    def out_of_memory(self):
        raise MemoryError

    monkeypatch.setattr(pickles._ArraysOnlyUnpickler, "load", out_of_memory)
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as error:
        load_cifar("cifar10", tmp_path, download=False)
    assert str(error.value).startswith(f"reading {tmp_path / 'cifar-10-batches-py' / 'batches.meta'} ran out of memory: "
                                       f"a CIFAR file needs at most 153,600,000 bytes")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("blob, expected", [
    (b"\x80\x04N" + b"r" + struct.pack("<I", 10**8) + b".", "its LONG_BINPUT at byte 3 claims 100,000,000, beyond the file"),
    (b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b"N.", "its FRAME at byte 2 claims 4,611,686,018,427,387,904"),
    (b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"abc", "expected 4611686018427387904 bytes in a bytes8, but only 3 remain"),
], ids=["memo index", "frame length", "bytes length"])
def test_a_crafted_length_or_index_is_refused_before_allocating(tmp_path, blob, expected):
    """CPython's unpickler would size its memo by the index (1.6 GB here) or allocate the claimed length."""
    make_cifar_folder(tmp_path)
    tracemalloc.start()
    try:
        message = refusal(tmp_path, blob)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert expected in message and "it is not a readable pickle of plain data" in message
    assert peak < 20e6


def test_a_file_larger_than_any_cifar_file_is_not_read(tmp_path):
    make_cifar_folder(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with open(path, "r+b") as f:
        f.truncate(pickles.MAX_FILE_BYTES + 1)            # sparse: no disk used
    with pytest.raises(DataError) as error:
        load_cifar("cifar10", tmp_path, download=False)
    assert str(error.value).startswith(f"{path} is not a usable CIFAR file: it is 323,977,217 bytes, more than any "
                                       f"CIFAR file (323,977,216 at most)")
    assert path.stat().st_size == pickles.MAX_FILE_BYTES + 1


@pytest.mark.parametrize("file, entries, expected", [
    ("data_batch_1", {"labels": [0] * 6, "batch_label": "x"}, "it has no 'data' entry (its entries: 'labels', 'batch_label')"),
    ("data_batch_1", [1, 2, 3], "it holds a list of int, not a dict"),
    ("data_batch_1", {"data": np.zeros((6, 3072), np.float32), "labels": [0] * 6},
     "'data' is a float32 array of shape (6, 3072), not uint8 of shape (N, 3072)"),
    ("data_batch_1", {"data": np.zeros((6, 3, 32, 32), np.uint8), "labels": [0] * 6},
     "'data' is a uint8 array of shape (6, 3, 32, 32), not uint8 of shape (N, 3072)"),
    ("data_batch_1", {"data": [[0] * 3072] * 6, "labels": [0] * 6}, "'data' is a list of list, not uint8"),
    ("data_batch_1", {"data": np.zeros((6, 3072), np.uint8)}, "it has no 'labels' entry (its entries: 'data')"),
    ("data_batch_1", {"data": np.zeros((6, 3072), np.uint8), "labels": ["cat"] * 6},
     "'labels' is a list of str, not a list of class indices (ints)"),
    ("data_batch_1", {"data": np.zeros((6, 3072), np.uint8), "labels": [True] * 6}, "'labels' is a list of bool, not"),
    ("data_batch_1", {"data": np.zeros((6, 3072), np.uint8), "labels": np.zeros(6)},
     "'labels' is a float64 array of shape (6,), not a list of class indices"),
    ("data_batch_1", {"data": np.zeros((6, 3072), np.uint8), "labels": [0] * 5}, "it holds 6 images but 5 labels in 'labels'"),
    ("data_batch_1", {"data": np.zeros((6, 3072), np.uint8), "labels": [0] * 5 + [10]}, "its labels lie outside 0..9"),
    ("data_batch_1", {"data": np.zeros((6, 3072), np.uint8), "labels": [0] * 5 + [10**20]}, "its labels lie outside 0..9"),
    ("test_batch", {"data": np.zeros((6, 3072), np.uint8), "labels": [-1] * 6}, "its labels lie outside 0..9"),
    ("batches.meta", {"num_cases_per_batch": 10000}, "it has no 'label_names' entry (its entries: 'num_cases_per_batch')"),
    ("batches.meta", {"label_names": [1, 2, 3]}, "'label_names' is a list of int, not a list of class names"),
    ("batches.meta", {"label_names": []}, "'label_names' is an empty list, not a list of class names"),
], ids=["no data", "a list", "float pixels", "4-d pixels", "pixels as lists", "no labels", "str labels", "bool labels",
        "float label array", "too few labels", "label too large", "label beyond int64", "negative label",
        "meta without names", "names not strings", "no names"])
def test_a_batch_of_the_wrong_structure_names_the_file_and_the_fault(tmp_path, file, entries, expected):
    make_cifar_folder(tmp_path)
    message = refusal(tmp_path, entries, file)
    folder = tmp_path / "cifar-10-batches-py"
    assert message.startswith(f"{folder / file} is not a usable CIFAR file: {expected}")
    assert f"Nothing was changed; to replace {folder}/, move it aside (mv {folder} {folder}.bad)" in message


def test_a_truncated_batch_names_the_file(tmp_path):
    make_cifar_folder(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:5000])
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as error:
        load_cifar("cifar10", tmp_path, download=False)
    assert str(error.value).startswith(f"{path} is not a usable CIFAR file: it is not a readable pickle of plain data")
    assert snapshot(tmp_path) == before


def test_moving_a_bad_folder_aside_as_advised_gets_a_fresh_copy(tmp_path, monkeypatch):
    archive, md5, written = make_cifar_archive(tmp_path)
    publish(monkeypatch, "cifar10", tmp_path / "x.tar.gz", md5)
    load_cifar("cifar10", tmp_path, download=False)
    damaged = tmp_path / "cifar-10-batches-py" / "test_batch"
    damaged.write_bytes(b"not a pickle")
    with pytest.raises(DataError) as error:
        load_cifar("cifar10", tmp_path, download=False)
    command = re.search(r"\((mv \S+ \S+)\)", str(error.value)).group(1)
    subprocess.run(shlex.split(command), check=True)
    data = load_cifar("cifar10", tmp_path, download=False)            # extracted again from the archive
    assert np.array_equal(data.test_images, written["test"][0])
    assert (tmp_path / "cifar-10-batches-py.bad" / "test_batch").read_bytes() == b"not a pickle"   # kept


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("str_keys", [False, True], ids=["bytes keys", "str keys"])
def test_batches_saved_at_other_pickle_protocols_load(tmp_path, protocol, str_keys):
    written = make_cifar_folder(tmp_path, protocol=protocol, str_keys=str_keys)
    blob = (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    # each protocol's own spelling of an array: its bytes through a codec call, _reconstruct, or _frombuffer
    assert {2: b"_codecs\nencode", 4: b"_reconstruct", 5: b"_frombuffer"}[protocol] in blob
    data = load_cifar("cifar10", tmp_path, download=False)
    for split, images, labels in (("train", data.train_images, data.train_labels),
                                  ("test", data.test_images, data.test_labels)):
        assert np.array_equal(images, written[split][0]) and np.array_equal(labels, written[split][1])
    assert data.classes == [f"class{i}" for i in range(10)]


def respell(blob, old, new):
    """The pickle blob with module ``old`` spelled ``new``. Frames go (they are optional): one changes length."""
    frames = [position for op, _, position in pickletools.genops(blob) if op.name == "FRAME"]
    for position in reversed(frames):
        blob = blob[:position] + blob[position + 9:]
    return (blob.replace(f"{old}\n".encode(), f"{new}\n".encode())                          # GLOBAL, protocols 0-2
            .replace(bytes([0x8C, len(old)]) + old.encode(), bytes([0x8C, len(new)]) + new.encode()))  # 4-5


@pytest.mark.parametrize("protocol", [2, 5])
def test_numpy_1_pickles_with_label_arrays_and_fortran_order_load(tmp_path, protocol):
    """Re-saved as a user's script might: labels as an int64 array, pixels Fortran-ordered, NumPy 1.x names."""
    written = make_cifar_folder(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for file in SPECS["cifar10"].train_files + SPECS["cifar10"].test_files:
        entries = pickle.loads((folder / file).read_bytes(), encoding="bytes")
        entries[b"labels"] = np.array(entries[b"labels"], dtype=np.int64)
        entries[b"data"] = np.asfortranarray(entries[b"data"])
        blob = pickle.dumps(entries, protocol=protocol)
        for module in ("numpy._core.multiarray", "numpy._core.numeric"):
            blob = respell(blob, module, module.replace("._core", ".core"))
        assert b"numpy.core." in blob and b"numpy._core" not in blob
        (folder / file).write_bytes(blob)
    data = load_cifar("cifar10", tmp_path, download=False)
    assert np.array_equal(data.train_images, written["train"][0]) and np.array_equal(data.test_labels, written["test"][1])


@needs_permissions
def test_a_read_only_data_folder_says_how_to_extract_elsewhere(tmp_path, monkeypatch):
    archive, md5, written = make_cifar_archive(tmp_path / "data")
    publish(monkeypatch, "cifar10", tmp_path / "x.tar.gz", md5)
    data_dir = archive.parent
    before = snapshot(data_dir)
    data_dir.chmod(0o555)
    try:
        with pytest.raises(DataError) as error:
            load_cifar("cifar10", data_dir, download=False)
        assert snapshot(data_dir) == before and leftovers(data_dir) == []
    finally:
        data_dir.chmod(0o755)
    message = str(error.value)
    assert message.startswith(f"cannot extract {archive}: {data_dir}/ is not writable ([Errno 13] Permission denied")
    assert f"Make it writable (chmod u+w {data_dir})" in message and "point --data-dir there" in message
    assert_destroys_nothing(message)
    command = re.search(r"\(mkdir -p DIR && (tar -xf \S+ -C) DIR\)", message).group(1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(shlex.split(command) + [str(elsewhere)], check=True)
    assert np.array_equal(load_cifar("cifar10", elsewhere, download=False).test_labels, written["test"][1])


def test_a_data_folder_that_refuses_writes_is_a_message_even_as_root(tmp_path, monkeypatch):
    """What the test above checks with chmod, for machines (CI) whose tests run as root: the write refused."""
    archive, md5, _ = make_cifar_archive(tmp_path / "data")
    publish(monkeypatch, "cifar10", tmp_path / "x.tar.gz", md5)

    def refuse(prefix="", dir=None):
        raise PermissionError(13, "Permission denied", str(Path(dir) / f"{prefix}xyz"))

    monkeypatch.setattr(cifar.tempfile, "mkdtemp", refuse)
    before = snapshot(archive.parent)
    with pytest.raises(DataError) as error:
        load_cifar("cifar10", archive.parent, download=False)
    assert str(error.value).startswith(f"cannot extract {archive}: {archive.parent}/ is not writable")
    assert snapshot(archive.parent) == before and leftovers(archive.parent) == []
    assert_destroys_nothing(str(error.value))


@needs_permissions
def test_a_read_only_data_folder_refuses_a_download_before_fetching(tmp_path, monkeypatch):
    archive, md5, _ = make_cifar_archive(tmp_path / "server")
    publish(monkeypatch, "cifar10", archive, md5)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o555)
    try:
        with pytest.raises(DataError) as error:
            load_cifar("cifar10", data_dir, progress=False)
        assert list(data_dir.iterdir()) == []
    finally:
        data_dir.chmod(0o755)
    assert str(error.value).startswith(f"cannot download cifar-10-python.tar.gz: {data_dir}/ is not writable")
    assert "choose a folder you can write and point --data-dir there" in str(error.value)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_cifar("mnist")


def test_normalize_uses_the_channel_statistics():
    images = np.array([[[[0]], [[255]], [[100]]]], dtype=np.uint8)        # one 1x1 pixel, (1, 3, 1, 1)
    out = normalize(images, mean=(10.0, 20.0, 30.0), std=(2.0, 5.0, 7.0))
    assert out.dtype == np.float32
    assert np.allclose(out.ravel(), [(0 - 10) / 2, (255 - 20) / 5, (100 - 30) / 7])


def crops_of(padded, H, W):
    """Every H x W window of padded (C, H', W'), as it is and mirrored, with its (top, left, flipped)."""
    for top in range(padded.shape[1] - H + 1):
        for left in range(padded.shape[2] - W + 1):
            window = padded[:, top:top + H, left:left + W]
            yield from ((window, (top, left, False)), (window[:, :, ::-1], (top, left, True)))


def find_crop(image, result, padding, fill=0.0):
    """The (top, left, flipped) under which ``result`` is a crop of the image padded with fill, or None."""
    C, H, W = image.shape
    padded = np.empty((C, H + 2 * padding, W + 2 * padding))
    padded[:] = np.reshape(fill, (-1, 1, 1))              # a scalar, or one value per channel
    padded[:, padding:padding + H, padding:padding + W] = image
    return next((where for candidate, where in crops_of(padded, H, W) if np.array_equal(candidate, result)), None)


def test_random_crop_flip_gives_padded_crops_and_flips(rng):
    images = rng.standard_normal((64, 3, 8, 8))
    out = random_crop_flip(images, np.random.default_rng(0), padding=2)
    assert out.shape == images.shape
    found = [find_crop(image, result, 2) for image, result in zip(images, out)]
    assert all(f is not None for f in found)
    tops, lefts, flips = zip(*found)
    assert set(tops) == set(range(5)) and set(lefts) == set(range(5))   # every offset happens
    assert 16 < sum(flips) < 48                                         # about half are flipped


def test_random_crop_flip_is_reproducible_from_the_seed(rng):
    images = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    first = random_crop_flip(images, np.random.default_rng(5))
    assert np.array_equal(first, random_crop_flip(images, np.random.default_rng(5)))
    assert not np.array_equal(first, random_crop_flip(images, np.random.default_rng(6)))
    assert first.dtype == np.float32


def test_black_fill_is_what_normalize_makes_of_a_black_pixel():
    spec = SPECS["cifar10"]
    fill = black_fill(spec.mean, spec.std)
    assert np.allclose(fill, [-m / s for m, s in zip(spec.mean, spec.std)], rtol=1e-6)     # (0 - mean) / std
    black = normalize(np.zeros((1, 3, 2, 2), np.uint8), spec.mean, spec.std)
    assert np.array_equal(black, np.broadcast_to(np.float32(fill).reshape(1, 3, 1, 1), black.shape))   # bit for bit


@pytest.mark.parametrize("fill", [0.0, -1.5, (-1.9, -2.0, -1.7)], ids=["mean colour", "scalar", "per channel"])
def test_random_crop_flip_pads_with_the_fill(rng, fill):
    images = rng.standard_normal((64, 3, 8, 8))
    out = random_crop_flip(images, np.random.default_rng(0), padding=2, fill=fill)
    found = [find_crop(image, result, 2, fill) for image, result in zip(images, out)]
    assert all(f is not None for f in found)
    assert {(top, left) for top, left, _ in found} >= {(0, 0), (4, 4)}     # crops that show the padding happen


def test_black_padding_of_normalised_images_is_torchvisions_black(rng):
    """Padding the uint8 image with black, then normalising (torchvision's order), equals padding with black_fill."""
    spec = SPECS["cifar10"]
    images = rng.integers(0, 256, size=(16, 3, 32, 32), dtype=np.uint8)
    padded_first = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    ours = random_crop_flip(normalize(images, spec.mean, spec.std), np.random.default_rng(3),
                            fill=black_fill(spec.mean, spec.std))
    for image, result in zip(normalize(padded_first, spec.mean, spec.std), ours):
        assert any(np.array_equal(result, candidate) for candidate, _ in crops_of(image, 32, 32))


def test_random_crop_flip_refuses_a_fill_of_the_wrong_length(rng):
    with pytest.raises(ValueError, match=r"fill must be a scalar or one value per channel \(3\), got 2 values"):
        random_crop_flip(rng.standard_normal((2, 3, 8, 8)), np.random.default_rng(0), fill=(0.0, 1.0))
