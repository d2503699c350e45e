"""User-model tasks: `flax.linen` models with flax's default initialization on data prepared the way
a user prepares it, wrapped as inner_tasks-style `Task`s so that `evaluation.evaluate`'s machinery
trains them. Nothing here is shared with `inner_tasks.models` or seen in meta-training.

Data (all offline):
- sklearn's bundled sets (`load_iris`, `load_wine`, `load_breast_cancer`, `load_digits`,
  `load_diabetes`, `load_linnerud`): `train_test_split(test_size=0.2, random_state=0)` (stratified
  for classification), features through a `StandardScaler` fitted on the training split, and
  regression targets through another one;
- Fashion-MNIST at 28×28 (`inner_tasks.datasets`' IDX reader), pixels / 255 standardized by the
  training set's mean and std;
- a byte-level corpus of the licence texts every Debian ships in /usr/share/common-licenses
  (meta-training reads the Python standard library's sources): the first 90% of each file trains,
  the last 10% validates. $LOPT_USER_TEXT_DIR points at another directory of text files.

Models (`MODELS`): `mlp` (`nn.Dense` layers with ReLU), `conv` (two 3×3 `nn.Conv` layers, each
followed by 2×2 max-pooling, then a hidden `nn.Dense` layer and the readout) and `lm` (a pre-LayerNorm
causal transformer: `nn.Embed` for bytes and positions, `nn.MultiHeadDotProductAttention` with
`nn.make_causal_mask`, `nn.LayerNorm`, a GELU `nn.Dense` MLP). Parameters are
`module.init(key, example_input)`, the whole variables dict, as a user passes it to `opt.init`.

>>> import jax
>>> spec = UserTaskSpec(model="mlp", model_kwargs=(("widths", (8,)),), dataset="iris")
>>> task = spec.make()
>>> params = task.init(jax.random.key(0))
>>> jax.tree.map(jax.numpy.shape, params)["params"]["Dense_0"]
{'bias': (8,), 'kernel': (4, 8)}
>>> float(task.loss(params, task.sample_batch(jax.random.key(1), "valid"))) > 0
True
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from inner_tasks import datasets
from inner_tasks.base import TaskSpec

TEXT_DIR = "/usr/share/common-licenses"
TEXT_ENV = "LOPT_USER_TEXT_DIR"
SPLIT_SEED = 0
VALID_FRACTION = 0.2
TEXT_VALID_FRACTION = 0.1


# ------------------------------------------------------------------------------------- models
class MLP(nn.Module):
    """ReLU MLP: one `nn.Dense` per hidden width, then the readout."""

    widths: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, x):
        for w in self.widths:
            x = nn.relu(nn.Dense(w)(x))
        return nn.Dense(self.out)(x)


class ConvNet(nn.Module):
    """Two conv + ReLU + 2×2 max-pool stages, a hidden dense layer, the readout (NHWC input)."""

    channels: Sequence[int]
    hidden: int
    out: int

    @nn.compact
    def __call__(self, x):
        for c in self.channels:
            x = nn.relu(nn.Conv(c, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out)(x)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention, then a 4× GELU MLP."""

    width: int
    heads: int

    @nn.compact
    def __call__(self, x, mask):
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(nn.LayerNorm()(x), mask=mask)
        h = nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(x)))
        return x + nn.Dense(self.width)(h)


class TransformerLM(nn.Module):
    """Byte-level causal transformer LM: token + position embeddings, blocks, final LayerNorm, readout."""

    width: int
    depth: int
    heads: int
    context: int
    vocab: int = 256

    @nn.compact
    def __call__(self, tokens):
        positions = jnp.arange(tokens.shape[-1])
        x = nn.Embed(self.vocab, self.width)(tokens) + nn.Embed(self.context, self.width)(positions)[None]
        mask = nn.make_causal_mask(tokens)
        for _ in range(self.depth):
            x = Block(self.width, self.heads)(x, mask)
        return nn.Dense(self.vocab)(nn.LayerNorm()(x))


MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "conv": ConvNet, "lm": TransformerLM}


# ------------------------------------------------------------------------------------ datasets
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


def text_files(text_dir: str | None = None) -> list[pathlib.Path]:
    """The corpus files: regular files (symlinks skipped, so no text counts twice), sorted."""
    root = pathlib.Path(text_dir or os.environ.get(TEXT_ENV) or TEXT_DIR)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()) if root.is_dir() else []
    if not files:
        raise UserDataError(f"user-suite text corpus not found: {root} has no text files (Debian ships the "
                            f"licence texts there in the base-files package; set ${TEXT_ENV} to another "
                            "directory of text files)")
    return files


def _text() -> dict[str, np.ndarray]:
    train, valid = [], []
    for path in text_files():
        data = np.frombuffer(path.read_bytes(), np.uint8)
        cut = int(round(len(data) * (1 - TEXT_VALID_FRACTION)))
        train.append(data[:cut])
        valid.append(data[cut:])
    return {"train": np.concatenate(train), "valid": np.concatenate(valid)}


DATASETS: dict[str, DataInfo] = {
    **{n: DataInfo("classification", functools.partial(_sklearn, n, False))
       for n in ("iris", "wine", "breast_cancer", "digits")},
    **{n: DataInfo("regression", functools.partial(_sklearn, n, True)) for n in ("diabetes", "linnerud")},
    "fashion_mnist": DataInfo("classification", _fashion_mnist),
    "licenses": DataInfo("text", _text),
}


@functools.lru_cache(maxsize=None)
def load_arrays(dataset: str) -> dict[str, np.ndarray]:
    """NumPy arrays of a dataset (cached): {train_x, train_y, valid_x, valid_y} or {train, valid}."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {list(DATASETS)}")
    return DATASETS[dataset].loader()


def num_outputs(dataset: str) -> int:
    """Classes of a classification set, targets of a regression set, 256 bytes for text."""
    arrs = load_arrays(dataset)
    kind = DATASETS[dataset].kind
    if kind == "text":
        return 256
    return int(arrs["train_y"].max()) + 1 if kind == "classification" else int(arrs["train_y"].shape[1])


# --------------------------------------------------------------------------------------- task
@dataclasses.dataclass(frozen=True)
class UserTaskSpec(TaskSpec):
    """A flax model from `MODELS` on a dataset from `DATASETS`: cross-entropy for classification and
    text (next byte), mean squared error for regression. Training batches are drawn uniformly with
    replacement (`batch_size=None`: the whole training split, every step); validation batches are
    the whole validation split (`valid_batch=None`) or `valid_batch` uniform draws (sequences for
    text). The output size comes from the data; `context` is the LM's sequence length."""

    name: ClassVar[str] = "user"
    model: str = "mlp"
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    dataset: str = "iris"
    batch_size: int | None = 64
    valid_batch: int | None = None
    context: int = 64

    def __post_init__(self):
        if isinstance(self.model_kwargs, dict):
            object.__setattr__(self, "model_kwargs", tuple(sorted(self.model_kwargs.items())))
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid: {list(MODELS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; valid: {list(DATASETS)}")
        if (self.model == "lm") != (self.kind == "text"):
            raise ValueError(f"model {self.model!r} does not fit {self.kind} dataset {self.dataset!r}")
        for n in ("batch_size", "valid_batch"):
            if getattr(self, n) is not None and getattr(self, n) < 1:
                raise ValueError(f"{n} must be positive or None, got {getattr(self, n)}")
            if getattr(self, n) is None and self.kind == "text":
                raise ValueError(f"a text task samples sequences: give {n} a number")

    @property
    def kind(self) -> str:
        return DATASETS[self.dataset].kind

    def module(self) -> nn.Module:
        kwargs = dict(self.model_kwargs)
        if self.model == "lm":
            return TransformerLM(context=self.context, **kwargs)
        return MODELS[self.model](out=num_outputs(self.dataset), **kwargs)

    def load_data(self):
        return {k: jnp.asarray(v) for k, v in load_arrays(self.dataset).items()}

    def example_input(self) -> jax.Array:
        if self.kind == "text":
            return jnp.zeros((1, self.context), jnp.int32)
        shape = load_arrays(self.dataset)["train_x"].shape[1:]
        return jnp.zeros((1, *shape, 1) if self.model == "conv" else (1, int(np.prod(shape))), jnp.float32)

    def init(self, inst, key):
        del inst
        return self.module().init(key, self.example_input())

    def loss(self, inst, params, batch):
        del inst
        out = self.module().apply(params, batch["x"])
        if self.kind == "regression":
            return jnp.mean((out - batch["y"]) ** 2)
        return optax.softmax_cross_entropy_with_integer_labels(out, batch["y"]).mean()

    def sample_batch(self, data, inst, key, split):
        del inst
        if self.kind == "text":
            stream = data[split]
            n = self.batch_size if split == "train" else self.valid_batch
            starts = jax.random.randint(key, (n,), 0, stream.shape[0] - self.context - 1)
            seqs = jax.vmap(lambda s: jax.lax.dynamic_slice(stream, (s,), (self.context + 1,)))(starts)
            seqs = seqs.astype(jnp.int32)
            return {"x": seqs[:, :-1], "y": seqs[:, 1:]}
        x, y = data[f"{split}_x"], data[f"{split}_y"]
        n = self.batch_size if split == "train" else self.valid_batch
        if n is not None:
            idx = jax.random.randint(key, (n,), 0, x.shape[0])
            x, y = x[idx], y[idx]
        if x.dtype == jnp.uint8:  # Fashion-MNIST: standardized pixels
            x = (x.astype(jnp.float32) / 255.0 - data["mean"]) / data["std"]
        x = x[..., None] if self.model == "conv" else x.reshape(x.shape[0], -1)
        return {"x": x, "y": y}
