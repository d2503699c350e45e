"""Offline datasets: IDX parsing, Fashion-MNIST, digits, resizing, text corpus, and clear errors."""

import gzip
import struct

import numpy as np
import pytest

from inner_tasks import datasets


def _write_idx(path, array, gz=False):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(
        struct.pack(">I", n) for n in array.shape
    )
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if gz else open)(path, "wb").write(header + body)


def _fake_fmnist(directory, n_train=20, n_valid=10, gz=True):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, (n_train,), dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_valid, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, (n_valid,), dtype=np.uint8),
    }
    for name, arr in arrays.items():
        _write_idx(directory / (name + (".gz" if gz else "")), arr, gz=gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    arr = np.arange(2 * 3 * 5, dtype=np.int32).reshape(2, 3, 5) - 7
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    _write_idx(path, arr, gz=gz)
    np.testing.assert_array_equal(datasets.read_idx(path), arr)


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    arr = np.zeros((4, 28, 28), np.uint8)
    good = tmp_path / "good"
    _write_idx(good, arr)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(datasets.DatasetFormatError, match="promises"):
        datasets.read_idx(truncated)
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(datasets.DatasetFormatError, match="magic"):
        datasets.read_idx(foreign)
    bad_gz = tmp_path / "bad.gz"
    bad_gz.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(datasets.DatasetFormatError):
        datasets.read_idx(bad_gz)


def test_user_directory_of_idx_files(tmp_path):
    arrays = _fake_fmnist(tmp_path, gz=False)
    data = datasets.image_arrays("fashion_mnist", 28, str(tmp_path))
    np.testing.assert_array_equal(data["train_x"], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(data["valid_y"], arrays["t10k-labels-idx1-ubyte"])
    assert datasets.image_arrays("fashion_mnist", 8, str(tmp_path))["train_x"].shape == (20, 8, 8)


def test_missing_dataset_names_package_and_flag(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DEBIAN_DIR", str(tmp_path / "nowhere"))
    monkeypatch.delenv(datasets.FASHION_MNIST_ENV, raising=False)
    with pytest.raises(datasets.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as e:
        datasets.fashion_mnist_dir()
    assert "data_dir" in str(e.value) and datasets.FASHION_MNIST_ENV in str(e.value)
    with pytest.raises(datasets.DatasetNotFoundError, match="lacks the IDX files"):
        datasets.fashion_mnist_dir(str(tmp_path))


def test_fashion_mnist_is_the_full_set(fashion_mnist_dir):
    data = datasets.image_arrays("fashion_mnist", 28)
    assert data["train_x"].shape == (60000, 28, 28) and data["valid_x"].shape == (10000, 28, 28)
    assert np.bincount(data["train_y"]).tolist() == [6000] * 10
    assert np.bincount(data["valid_y"]).tolist() == [1000] * 10
    for res in (8, 16):
        small = datasets.image_arrays("fashion_mnist", res)["train_x"]
        assert small.shape == (60000, res, res) and small.dtype == np.uint8
        # Area resampling preserves each image's mean brightness (up to rounding).
        np.testing.assert_allclose(small[:100].mean((1, 2)), data["train_x"][:100].mean((1, 2)), atol=1.0)


def test_digits_fallback_needs_no_system_package():
    data = datasets.image_arrays("digits", 8)
    assert data["train_x"].shape == (1437, 8, 8) and data["valid_x"].shape == (360, 8, 8)
    assert set(np.unique(data["train_y"])) == set(range(10))
    with pytest.raises(ValueError, match="resolutions"):
        datasets.image_arrays("digits", 16)
    with pytest.raises(ValueError, match="valid: .*fashion_mnist"):
        datasets.image_arrays("cifar10", 8)


def test_area_resize_matches_block_means():
    x = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    expected = x.reshape(3, 8, 2, 8, 2).astype(np.float64).mean((2, 4))
    np.testing.assert_array_equal(datasets.area_resize(x, 8), np.round(expected).astype(np.uint8))
    # A non-integer ratio (28 -> 8) keeps a constant image constant.
    const = np.full((1, 28, 28), 77, np.uint8)
    np.testing.assert_array_equal(datasets.area_resize(const, 8), np.full((1, 8, 8), 77, np.uint8))


def test_text_corpus_from_stdlib_and_from_a_directory(tmp_path):
    data = datasets.text_arrays(max_bytes=1 << 20)
    assert data["train"].dtype == np.uint8 and len(data["train"]) == 1 << 20
    assert b"def " in data["train"].tobytes() and len(data["valid"]) > 100_000
    (tmp_path / "a.txt").write_bytes(b"hello world " * 2000)
    for i in range(9):
        (tmp_path / f"b{i}.txt").write_bytes(b"lorem ipsum " * 500)
    own = datasets.text_arrays(str(tmp_path))
    assert own["valid"].tobytes().startswith(b"lorem ipsum")
    with pytest.raises(datasets.DatasetNotFoundError, match="does not exist"):
        datasets.text_files(str(tmp_path / "missing"))
