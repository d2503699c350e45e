"""Offline datasets: Fashion-MNIST (IDX files), sklearn digits and a byte-level text corpus.

Nothing here downloads anything. Loaders return NumPy arrays and are cached per process;
`image_data` and `text_data` return the device-array dicts that tasks hold.

>>> d = image_data("digits", 8)
>>> d["train_x"].shape, d["train_x"].dtype
((1437, 8, 8), dtype('uint8'))
"""

from __future__ import annotations

import functools
import gzip
import os
import pathlib
import sysconfig

import jax.numpy as jnp
import numpy as np

FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "LOPT_FASHION_MNIST_DIR"
TEXT_ENV = "LOPT_TEXT_DIR"

IMAGE_DATASETS = ("fashion_mnist", "digits")
# Every dataset bundled with scikit-learn is held-out evaluation data: specs may use them (to
# evaluate), meta-training families refuse them (`heldout_message` says why).
HELDOUT_DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes", "linnerud")
RESOLUTIONS = {"fashion_mnist": (8, 16, 28), "digits": (8,)}
NUM_CLASSES = 10

_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "valid_x": "t10k-images-idx3-ubyte",
    "valid_y": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def heldout_message(name: str) -> str:
    """Why a held-out dataset may not appear in a meta-training family."""
    return (f"dataset {name!r} is held-out evaluation data (every dataset bundled with scikit-learn is) and is "
            "never used in meta-training, which is all task families are for; evaluate on it through a spec "
            "instead, e.g. inner_tasks.get_task('mlp', dataset='digits')")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on this machine; the message says how to get it."""


class DatasetFormatError(ValueError):
    """A dataset file exists but is not what it claims to be."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into a NumPy array, checking its header."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetFormatError(f"{path}: cannot be read as an IDX file ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetFormatError(f"{path}: bad IDX magic number {raw[:4]!r}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetFormatError(f"{path}: IDX header promises {expected} bytes, file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_idx(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def fashion_mnist_dir(data_dir: str | None = None) -> pathlib.Path:
    """Where Fashion-MNIST is read from: `data_dir`, then $LOPT_FASHION_MNIST_DIR, then Debian's path."""
    candidates = [data_dir, os.environ.get(FASHION_MNIST_ENV), FASHION_MNIST_DEBIAN_DIR]
    for c in candidates:
        if c:
            d = pathlib.Path(c)
            if all(_find_idx(d, s) for s in _IDX_FILES.values()):
                return d
            if c == data_dir or c == os.environ.get(FASHION_MNIST_ENV):
                missing = [s for s in _IDX_FILES.values() if not _find_idx(d, s)]
                raise DatasetNotFoundError(
                    f"Fashion-MNIST directory {d} lacks the IDX files {missing} (plain or .gz)."
                )
    raise DatasetNotFoundError(
        "Fashion-MNIST not found. Install it with `apt-get install dataset-fashion-mnist` "
        f"(files land in {FASHION_MNIST_DEBIAN_DIR}), or pass data_dir= / set ${FASHION_MNIST_ENV} "
        "to a directory of the standard IDX files, or use dataset 'digits', which needs no install."
    )


@functools.lru_cache(maxsize=4)
def _fashion_mnist_28(data_dir: str | None) -> dict[str, np.ndarray]:
    d = fashion_mnist_dir(data_dir)
    out = {k: read_idx(_find_idx(d, stem)) for k, stem in _IDX_FILES.items()}
    for split in ("train", "valid"):
        x, y = out[f"{split}_x"], out[f"{split}_y"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != x.shape[:1] or y.max() >= NUM_CLASSES:
            raise DatasetFormatError(f"{d}: {split} files are not Fashion-MNIST (images {x.shape}, labels {y.shape})")
    return out


@functools.lru_cache(maxsize=1)
def _digits_8() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    digits = load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    y = digits.target.astype(np.uint8)
    perm = np.random.default_rng(0).permutation(len(x))  # fixed 80/20 split
    n_train = int(0.8 * len(x))
    tr, va = perm[:n_train], perm[n_train:]
    return {"train_x": x[tr], "train_y": y[tr], "valid_x": x[va], "valid_y": y[va]}


def area_resize(images_NxHxW: np.ndarray, size: int) -> np.ndarray:
    """Box-filter (area) resampling of uint8 images to size×size, exact for any ratio."""
    n, h, w = images_NxHxW.shape
    if (h, w) == (size, size):
        return images_NxHxW
    # Overlap of source pixel i with target pixel j along one axis, as a (size, h) weight matrix.
    def weights(src: int) -> np.ndarray:
        edges_t = np.arange(size + 1) * (src / size)
        lo = np.maximum(edges_t[:-1, None], np.arange(src)[None, :])
        hi = np.minimum(edges_t[1:, None], np.arange(src)[None, :] + 1)
        wgt = np.clip(hi - lo, 0.0, None)
        return wgt / wgt.sum(axis=1, keepdims=True)

    wh, ww = weights(h), weights(w)
    out = np.einsum("ih,nhw,jw->nij", wh, images_NxHxW.astype(np.float32), ww, optimize=True)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def image_arrays(dataset: str, resolution: int, data_dir: str | None = None) -> dict[str, np.ndarray]:
    """NumPy arrays {train_x, train_y, valid_x, valid_y} for an image dataset at a resolution."""
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {dataset!r}; valid: {list(IMAGE_DATASETS)}")
    if resolution not in RESOLUTIONS[dataset]:
        raise ValueError(f"dataset {dataset!r} comes at resolutions {RESOLUTIONS[dataset]}, not {resolution}")
    raw = _fashion_mnist_28(data_dir) if dataset == "fashion_mnist" else _digits_8()
    return {k: (area_resize(v, resolution) if k.endswith("_x") else v) for k, v in raw.items()}


@functools.lru_cache(maxsize=8)
def image_data(dataset: str, resolution: int, data_dir: str | None = None) -> dict[str, jnp.ndarray]:
    """Device arrays for an image dataset, plus the train-set pixel mean and std for normalization."""
    arrs = image_arrays(dataset, resolution, data_dir)
    x = arrs["train_x"].astype(np.float64) / 255.0
    out = {k: jnp.asarray(v) for k, v in arrs.items()}
    out["mean"] = jnp.asarray(x.mean(), jnp.float32)
    out["std"] = jnp.asarray(x.std(), jnp.float32)
    return out


def text_files(text_dir: str | None = None) -> list[pathlib.Path]:
    """Source files of the byte-level corpus: `text_dir` (or $LOPT_TEXT_DIR), else the stdlib's *.py."""
    text_dir = text_dir or os.environ.get(TEXT_ENV)
    if text_dir:
        root = pathlib.Path(text_dir)
        if not root.is_dir():
            raise DatasetNotFoundError(f"text directory {root} does not exist")
        files = sorted(p for p in root.rglob("*") if p.is_file())
    else:
        root = pathlib.Path(sysconfig.get_paths()["stdlib"])
        files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    if not files:
        raise DatasetNotFoundError(f"no text files under {root}")
    return files


@functools.lru_cache(maxsize=4)
def text_arrays(text_dir: str | None = None, max_bytes: int = 16 << 20) -> dict[str, np.ndarray]:
    """Byte streams {train, valid}: every 10th file goes to valid; each split capped at max_bytes."""
    splits: dict[str, list[bytes]] = {"train": [], "valid": []}
    sizes = {"train": 0, "valid": 0}
    for i, path in enumerate(text_files(text_dir)):
        split = "valid" if i % 10 == 9 else "train"
        if sizes[split] >= max_bytes:
            continue
        data = path.read_bytes() + b"\n\n"
        splits[split].append(data)
        sizes[split] += len(data)
    out = {k: np.frombuffer(b"".join(v), np.uint8)[:max_bytes] for k, v in splits.items()}
    for k, v in out.items():
        if len(v) < 4096:
            raise DatasetNotFoundError(f"text corpus split {k!r} has only {len(v)} bytes; need at least 4096")
    return out


@functools.lru_cache(maxsize=4)
def text_data(text_dir: str | None = None, max_bytes: int = 16 << 20) -> dict[str, jnp.ndarray]:
    """Device arrays {train, valid} of uint8 bytes for the byte-level LM."""
    return {k: jnp.asarray(v) for k, v in text_arrays(text_dir, max_bytes).items()}
