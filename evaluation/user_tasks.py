"""User-model tasks: `flax.linen` models with flax's default initialization on data prepared the way
a user prepares it (`evaluation.user_data`), wrapped as inner_tasks-style `Task`s so that
`evaluation.evaluate`'s machinery trains them. Nothing here is shared with `inner_tasks.models` or
seen in meta-training.

Models (`MODELS`; `model_kwargs` in brackets), plain flax layers with their default initializers:
- `mlp` (widths): `nn.Dense` layers with ReLU, then the readout;
- `resmlp` (width, depth): a pre-LayerNorm residual MLP: a `nn.Dense(width)` stem, `depth` blocks
  x + Dense(width)(gelu(Dense(4 width)(LayerNorm(x)))), a final `nn.LayerNorm`, the readout;
- `conv` (channels, hidden): 3×3 `nn.Conv` + ReLU + 2×2 max-pooling stages, a hidden `nn.Dense`
  layer and the readout;
- `convnorm` (channels): 3×3 `nn.Conv` + `nn.GroupNorm(min(4, c) groups)` + ReLU + 2×2 average
  pooling stages, global average pooling, the readout;
- `gru` (hidden): `nn.RNN(nn.GRUCell(hidden))`; on an image set a classifier reading the image row
  by row (the final carry to the readout), on a text set a byte-level LM (`nn.Embed(256, hidden)`,
  the GRU, a per-position `nn.Dense(256)`);
- `ae` (widths): an MLP autoencoder: ReLU `nn.Dense` encoder layers of `widths`, the mirrored
  decoder (widths reversed, bottleneck excluded), a linear output of the input's size; the loss is
  the mean squared reconstruction error of the standardized input, labels unused;
- `lm` (width, depth, heads): a pre-LayerNorm causal transformer: `nn.Embed` for bytes and
  positions, `nn.MultiHeadDotProductAttention` with `nn.make_causal_mask`, `nn.LayerNorm`, a GELU
  `nn.Dense` MLP.
`fits(model, dataset)` says which pairs work: text sets take `lm` and `gru`; `conv`, `convnorm`
need an image set (`IMAGE_SHAPES`: fashion_mnist 28×28, digits' 64 features as 8×8), as does `gru`
unless on text; `mlp`, `resmlp`, `ae` take any non-text set. Parameters are
`module.init(key, example_input)`, the whole variables dict, as a user passes it to `opt.init`.

>>> import jax
>>> spec = UserTaskSpec(model="mlp", model_kwargs=(("widths", (8,)),), dataset="iris")
>>> task = spec.make()
>>> params = task.init(jax.random.key(0))
>>> jax.tree.map(jax.numpy.shape, params)["params"]["Dense_0"]
{'bias': (8,), 'kernel': (4, 8)}
>>> float(task.loss(params, task.sample_batch(jax.random.key(1), "valid"))) > 0
True
>>> jax.tree.map(jax.numpy.shape, spec.fixed_sample(task.data, "valid"))  # iris' 30 rows: one chunk
{'x': (1, 30, 4), 'y': (1, 30)}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from evaluation.user_data import (DATASETS, IMAGE_SHAPES, PERL_ENV, SPLIT_SEED, TEXT_DIR, TEXT_ENV,  # noqa: F401
                                  TEXT_VALID_FRACTION, VALID_FRACTION, DataInfo, UserDataError, load_arrays,
                                  num_outputs, perl_files, text_files)
from inner_tasks.base import TaskSpec, check_split

FIXED_CHUNK = 256  # rows per chunk of an array dataset's fixed sample (at most)
TEXT_FIXED = (4, 16)  # chunks × sequences of a text dataset's fixed sample


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


class ResBlock(nn.Module):
    """Pre-LayerNorm residual MLP block: x + Dense(width)(gelu(Dense(4 width)(LayerNorm(x))))."""

    width: int

    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(x)))
        return x + nn.Dense(self.width)(h)


class ResMLP(nn.Module):
    """Dense(width) stem, `depth` `ResBlock`s, final LayerNorm, the readout."""

    width: int
    depth: int
    out: int

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.width)(x)
        for _ in range(self.depth):
            x = ResBlock(self.width)(x)
        return nn.Dense(self.out)(nn.LayerNorm()(x))


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


class ConvNormNet(nn.Module):
    """Conv + GroupNorm + ReLU + 2×2 average-pool stages, global average pooling, the readout (NHWC)."""

    channels: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, x):
        for c in self.channels:
            x = nn.relu(nn.GroupNorm(num_groups=min(4, c))(nn.Conv(c, (3, 3))(x)))
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        return nn.Dense(self.out)(x.mean(axis=(1, 2)))


class GRU(nn.Module):
    """`nn.RNN(nn.GRUCell(hidden))`. A sequence classifier on (batch, time, features) input (the final
    carry to the readout), or with `lm` a byte-level LM on (batch, time) tokens (embedding, GRU,
    per-position readout over `out` tokens)."""

    hidden: int
    out: int
    lm: bool = False

    @nn.compact
    def __call__(self, x):
        if self.lm:
            return nn.Dense(self.out)(nn.RNN(nn.GRUCell(self.hidden))(nn.Embed(self.out, self.hidden)(x)))
        carry, _ = nn.RNN(nn.GRUCell(self.hidden), return_carry=True)(x)
        return nn.Dense(self.out)(carry)


class AutoEncoder(nn.Module):
    """ReLU encoder of `widths`, the mirrored ReLU decoder (bottleneck not repeated), a linear output of size `out`."""

    widths: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, x):
        for w in (*self.widths, *reversed(self.widths[:-1])):
            x = nn.relu(nn.Dense(w)(x))
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


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP, "resmlp": ResMLP, "conv": ConvNet, "convnorm": ConvNormNet, "gru": GRU, "ae": AutoEncoder,
    "lm": TransformerLM}
_NEEDS = {"lm": "a text dataset", "conv": "an image dataset", "convnorm": "an image dataset",
          "gru": "an image dataset (read row by row) or a text dataset (a byte LM)"}


def fits(model: str, dataset: str) -> bool:
    """Whether `MODELS[model]` runs on `DATASETS[dataset]` (both names must be known)."""
    text = DATASETS[dataset].kind == "text"
    if model == "lm":
        return text
    if model in ("conv", "convnorm"):
        return dataset in IMAGE_SHAPES
    if model == "gru":
        return text or dataset in IMAGE_SHAPES
    return not text


# --------------------------------------------------------------------------------------- task
@dataclasses.dataclass(frozen=True)
class UserTaskSpec(TaskSpec):
    """A flax model from `MODELS` on a dataset from `DATASETS`: cross-entropy for classification and
    text (next byte), mean squared error for regression and for the autoencoder's reconstruction.
    Training batches are drawn uniformly with replacement (`batch_size=None`: the whole training
    split, every step); validation batches are the whole validation split (`valid_batch=None`) or
    `valid_batch` uniform draws (sequences for text). `fixed_sample` is a deterministic sample for
    evaluating losses. The output size comes from the data; `context` is the LMs' sequence length."""

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
        if not fits(self.model, self.dataset):
            raise ValueError(f"model {self.model!r} does not fit {self.kind} dataset {self.dataset!r}: it needs "
                             f"{_NEEDS.get(self.model, 'a non-text dataset')}; datasets it fits: "
                             f"{[d for d in DATASETS if fits(self.model, d)]}")
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
        if self.model == "gru" and self.kind == "text":
            return GRU(out=256, lm=True, **kwargs)
        if self.model == "ae":
            return AutoEncoder(out=int(np.prod(load_arrays(self.dataset)["train_x"].shape[1:])), **kwargs)
        return MODELS[self.model](out=num_outputs(self.dataset), **kwargs)

    def load_data(self):
        return {k: jnp.asarray(v) for k, v in load_arrays(self.dataset).items()}

    def _layout(self, x: jax.Array) -> jax.Array:
        """Rows (n, ...) as the model reads them: NHWC images for convnets, (n, rows, columns) for a
        GRU, flat vectors otherwise."""
        if self.model in ("conv", "convnorm"):
            return x.reshape(x.shape[0], *IMAGE_SHAPES[self.dataset], 1)
        if self.model == "gru":
            return x.reshape(x.shape[0], *IMAGE_SHAPES[self.dataset])
        return x.reshape(x.shape[0], -1)

    def _inputs(self, data, x: jax.Array) -> jax.Array:
        if x.dtype == jnp.uint8:  # Fashion-MNIST: standardized pixels
            x = (x.astype(jnp.float32) / 255.0 - data["mean"]) / data["std"]
        return self._layout(x)

    def example_input(self) -> jax.Array:
        if self.kind == "text":
            return jnp.zeros((1, self.context), jnp.int32)
        return self._layout(jnp.zeros((1, *load_arrays(self.dataset)["train_x"].shape[1:]), jnp.float32))

    def init(self, inst, key):
        del inst
        return self.module().init(key, self.example_input())

    def loss(self, inst, params, batch):
        del inst
        out = self.module().apply(params, batch["x"])
        if self.model == "ae":
            return jnp.mean((out - batch["x"]) ** 2)
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
        return {"x": self._inputs(data, x), "y": y}

    def fixed_sample(self, data, split: str, size: int = 2048) -> dict[str, jax.Array]:
        """A deterministic sample of `split`: `sample_batch`'s dict with a leading chunk axis, [K, b, ...],
        for evaluating a loss as the mean over k of loss(params, chunk k). Its indices are fixed NumPy
        arrays built from `data`'s static shapes, so it works inside `jax.jit`.

        An array split of at most `size` rows is taken whole (K = 1, b = rows, in order); a larger one
        gives the first K·b rows of the fixed permutation `np.random.default_rng(0).permutation(rows)`,
        K = ceil(size / 256) equal chunks of b = size // K rows (exactly `size` rows when K divides it,
        as for 2048: 8 × 256). A text split gives 4 chunks of 16 sequences (`size` unused) starting
        at 64 evenly spaced offsets from the split's start to its last full sequence."""
        check_split(split)
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        if self.kind == "text":
            stream = data[split]
            k, b = TEXT_FIXED
            last = stream.shape[0] - self.context - 1
            if last < 0:
                raise ValueError(f"context={self.context} does not fit the {split} split of {stream.shape[0]} bytes")
            starts = np.linspace(0, last, k * b).round().astype(np.int64)
            seqs = stream[starts[:, None] + np.arange(self.context + 1)[None]].astype(jnp.int32)
            seqs = seqs.reshape(k, b, self.context + 1)
            return {"x": seqs[..., :-1], "y": seqs[..., 1:]}
        x, y = data[f"{split}_x"], data[f"{split}_y"]
        rows = x.shape[0]
        if rows <= size:
            k, b = 1, rows
        else:
            k = -(-size // FIXED_CHUNK)
            b = size // k
            idx = np.random.default_rng(0).permutation(rows)[: k * b]
            x, y = x[idx], y[idx]
        x = self._inputs(data, x)
        return {"x": x.reshape(k, b, *x.shape[1:]), "y": y.reshape(k, b, *y.shape[1:])}
