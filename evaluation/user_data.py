"""Offline data of the user-model tasks (`evaluation.user_tasks`), prepared the way a user prepares it.
Nothing here is shared with `inner_tasks`' meta-training data.

- sklearn's bundled sets (`load_iris`, `load_wine`, `load_breast_cancer`, `load_digits`,
  `load_diabetes`, `load_linnerud`): `train_test_split(test_size=0.2, random_state=0)` (stratified
  for classification), features through a `StandardScaler` fitted on the training split, and
  regression targets through another one. Digits keeps its 64 features flat; models that read
  images see them as 8×8 (`IMAGE_SHAPES`);
- Fashion-MNIST at 28×28 (`inner_tasks.datasets`' IDX reader), uint8 pixels; the tasks standardize
  pixels / 255 by the training set's `mean` and `std`, stored beside them;
- two byte-level text corpora, split per file (the first 90% trains, the last 10% validates):
  `licenses`, the licence texts every Debian ships in /usr/share/common-licenses (base-files;
  $LOPT_USER_TEXT_DIR points at another directory of text files), and `perl`, the Perl modules
  (`*.pm`) of Debian's essential package perl-base under /usr/lib/<triplet>/perl-base
  ($LOPT_PERL_DIR points at another directory of them). Meta-training never reads either: its text
  is the Python standard library's .py files.

>>> sorted(load_arrays("iris"))
['train_x', 'train_y', 'valid_x', 'valid_y']
>>> load_arrays("iris")["train_x"].shape, num_outputs("iris"), DATASETS["perl"].kind
((120, 4), 3, 'text')
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import pathlib
from typing import Callable

import numpy as np

from inner_tasks import datasets

TEXT_DIR = "/usr/share/common-licenses"
TEXT_ENV = "LOPT_USER_TEXT_DIR"
PERL_GLOB = "/usr/lib/*/perl-base/**/*.pm"
PERL_ENV = "LOPT_PERL_DIR"
SPLIT_SEED = 0
VALID_FRACTION = 0.2
TEXT_VALID_FRACTION = 0.1
# Datasets whose rows are images (height, width), for the models that read images: conv, convnorm, gru.
IMAGE_SHAPES = {"fashion_mnist": (28, 28), "digits": (8, 8)}


@dataclasses.dataclass(frozen=True)
class DataInfo:
    kind: str  # "classification", "regression" or "text"
    loader: Callable[[], dict[str, np.ndarray]]


class UserDataError(datasets.DatasetNotFoundError):
    """A user-suite dataset is missing or unusable; the message says what to do."""


def _sklearn(name: str, regression: bool) -> dict[str, np.ndarray]:
    import sklearn.datasets  # pylint: disable=import-outside-toplevel
    from sklearn.model_selection import train_test_split  # pylint: disable=import-outside-toplevel
    from sklearn.preprocessing import StandardScaler  # pylint: disable=import-outside-toplevel

    bunch = getattr(sklearn.datasets, f"load_{name}")()
    x, y = np.asarray(bunch.data, np.float64), np.asarray(bunch.target)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=VALID_FRACTION, random_state=SPLIT_SEED,
                                              stratify=None if regression else y)
    scale_x = StandardScaler().fit(x_tr)
    out = {"train_x": scale_x.transform(x_tr), "valid_x": scale_x.transform(x_va)}
    if regression:
        y_tr, y_va = (y_tr.reshape(len(y_tr), -1), y_va.reshape(len(y_va), -1))
        scale_y = StandardScaler().fit(y_tr)
        out.update(train_y=scale_y.transform(y_tr).astype(np.float32), valid_y=scale_y.transform(y_va).astype(np.float32))
    else:
        out.update(train_y=y_tr.astype(np.int32), valid_y=y_va.astype(np.int32))
    out["train_x"], out["valid_x"] = out["train_x"].astype(np.float32), out["valid_x"].astype(np.float32)
    return out


def _fashion_mnist() -> dict[str, np.ndarray]:
    arrs = datasets.image_arrays("fashion_mnist", 28)  # raises DatasetNotFoundError with install advice
    pixels = arrs["train_x"].astype(np.float64) / 255.0
    return {"train_x": arrs["train_x"], "train_y": arrs["train_y"].astype(np.int32),
            "valid_x": arrs["valid_x"], "valid_y": arrs["valid_y"].astype(np.int32),
            "mean": np.float32(pixels.mean()), "std": np.float32(pixels.std())}


def _regular(paths) -> list[pathlib.Path]:
    """Regular files only (symlinks skipped, so no text counts twice), sorted."""
    return sorted(p for p in map(pathlib.Path, paths) if p.is_file() and not p.is_symlink())


def text_files(text_dir: str | None = None) -> list[pathlib.Path]:
    """The licence corpus' files: regular files (symlinks skipped, so no text counts twice), sorted."""
    root = pathlib.Path(text_dir or os.environ.get(TEXT_ENV) or TEXT_DIR)
    files = _regular(root.rglob("*")) if root.is_dir() else []
    if not files:
        raise UserDataError(f"user-suite text corpus not found: {root} has no text files (Debian ships the "
                            f"licence texts there in the base-files package; set ${TEXT_ENV} to another "
                            "directory of text files)")
    return files


def perl_files(perl_dir: str | None = None) -> list[pathlib.Path]:
    """The Perl corpus' files: perl-base's modules, `/usr/lib/*/perl-base/**/*.pm` (or `**/*.pm` under
    perl_dir / $LOPT_PERL_DIR), regular files, sorted."""
    root = perl_dir or os.environ.get(PERL_ENV)
    pattern = os.path.join(root, "**", "*.pm") if root else PERL_GLOB
    files = _regular(glob.glob(pattern, recursive=True))
    if not files:
        raise UserDataError(f"user-suite Perl corpus not found: no files match {pattern} (Debian's essential "
                            "package perl-base installs its modules under /usr/lib/<triplet>/perl-base: "
                            f"`apt-get install perl-base`; or set ${PERL_ENV} to a directory of .pm files)")
    return files


def _split_text(files: list[pathlib.Path]) -> dict[str, np.ndarray]:
    train, valid = [], []
    for path in files:
        data = np.frombuffer(path.read_bytes(), np.uint8)
        cut = int(round(len(data) * (1 - TEXT_VALID_FRACTION)))
        train.append(data[:cut])
        valid.append(data[cut:])
    return {"train": np.concatenate(train), "valid": np.concatenate(valid)}


def _text() -> dict[str, np.ndarray]:
    return _split_text(text_files())


def _perl() -> dict[str, np.ndarray]:
    return _split_text(perl_files())


DATASETS: dict[str, DataInfo] = {
    **{n: DataInfo("classification", functools.partial(_sklearn, n, False))
       for n in ("iris", "wine", "breast_cancer", "digits")},
    **{n: DataInfo("regression", functools.partial(_sklearn, n, True)) for n in ("diabetes", "linnerud")},
    "fashion_mnist": DataInfo("classification", _fashion_mnist),
    "licenses": DataInfo("text", _text),
    "perl": DataInfo("text", _perl),
}


def load_arrays(dataset: str) -> dict[str, np.ndarray]:
    """NumPy arrays of a dataset: {train_x, train_y, valid_x, valid_y} or {train, valid}. Cached per
    source, so that a changed $LOPT_USER_TEXT_DIR, $LOPT_PERL_DIR or $LOPT_FASHION_MNIST_DIR is read."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {list(DATASETS)}")
    env = {"licenses": TEXT_ENV, "perl": PERL_ENV, "fashion_mnist": datasets.FASHION_MNIST_ENV}.get(dataset)
    return _load(dataset, os.environ.get(env) if env else None)


@functools.lru_cache(maxsize=None)
def _load(dataset: str, source: str | None) -> dict[str, np.ndarray]:
    del source  # the cache key: the loader reads the environment itself
    return DATASETS[dataset].loader()


def num_outputs(dataset: str) -> int:
    """Classes of a classification set, targets of a regression set, 256 bytes for text."""
    arrs = load_arrays(dataset)
    kind = DATASETS[dataset].kind
    if kind == "text":
        return 256
    return int(arrs["train_y"].max()) + 1 if kind == "classification" else int(arrs["train_y"].shape[1])
