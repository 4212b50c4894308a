"""CIFAR loading, verification and download (on synthetic archives: no network), and the augmentation."""
import pickle

import numpy as np
import pytest

from cifar_fixtures import make_cifar_archive, make_cifar_folder, publish
from scratchnet.data import DataError, load_cifar, normalize, random_crop_flip


def leftovers(folder):
    """Anything in folder besides a finished archive and a finished extracted dataset."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part"))


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
    with pytest.raises(DataError, match=f"has MD5 .* but the published MD5 of cifar-10-python.tar.gz is {md5}"):
        load_cifar("cifar10", tmp_path, download=False)
    assert not (tmp_path / "cifar-10-batches-py").exists() and leftovers(tmp_path) == []


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
    with pytest.raises(DataError, match="lacks data_batch_3 of cifar-10-batches-py/: it is incomplete"):
        load_cifar("cifar10", tmp_path, download=False)


def test_only_arrays_are_unpickled(tmp_path):
    make_cifar_folder(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil()}, f, protocol=4)
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_cifar("cifar10", tmp_path, download=False)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_cifar("mnist")


def test_normalize_uses_the_channel_statistics():
    images = np.array([[[[0]], [[255]], [[100]]]], dtype=np.uint8)        # one 1x1 pixel, (1, 3, 1, 1)
    out = normalize(images, mean=(10.0, 20.0, 30.0), std=(2.0, 5.0, 7.0))
    assert out.dtype == np.float32
    assert np.allclose(out.ravel(), [(0 - 10) / 2, (255 - 20) / 5, (100 - 30) / 7])


def find_crop(image, result, padding):
    """The (top, left, flipped) under which ``result`` is a crop of the zero-padded image, or None."""
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    H, W = image.shape[1:]
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            window = padded[:, top:top + H, left:left + W]
            for flipped, candidate in ((False, window), (True, window[:, :, ::-1])):
                if np.array_equal(candidate, result):
                    return top, left, flipped
    return None


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
