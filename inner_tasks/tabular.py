"""Synthetic tabular classification and regression from scikit-learn's generators, fit by a flax MLP.

Data come only from sklearn's *generators* (`make_classification`, `make_regression`,
`make_friedman1/2/3`, ...: pure functions of a seed, nothing downloaded). The datasets bundled
with sklearn (iris, wine, breast_cancer, digits, diabetes, linnerud, ...) are held-out evaluation
data and are never generated here (`datasets.HELDOUT_DATASETS`).

`load_data` generates `num_train + num_valid` rows on the host from the spec's `seed`, splits them
(the first `num_train` rows train), then transforms the features as users' data look:

    x ← standardize(x) if standardize_x   (z-scored with the training rows' statistics)
    x_j ← (x_j + x_shift·g_j) · x_scale · 10^u_j,   g_j ~ N(0, 1), u_j ~ U(−x_spread, x_spread)

and, for regression, y ← standardize(y) if standardize_y, then y ← y_scale · y. `noise` is label
noise for classifiers (that fraction of labels replaced by uniformly random classes) and additive
Gaussian noise for regression (std `noise` × the noiseless target's std). Classifiers are trained
with softmax cross-entropy on `logits`; regressors with the mean squared error of one output.
The model is `flax_models.DenseMLP` with flax's default initializers (parametrization 'sp').

>>> import jax
>>> task = TabularSpec(generator="friedman1", num_features=8, depth=0).make()
>>> batch = task.sample_batch(jax.random.key(0), "train")
>>> batch["x"].shape, batch["y"].dtype, task.spec.kind
((64, 8), dtype('float32'), 'regression')
>>> bool(task.loss(task.init(jax.random.key(1)), batch) > 0)
True
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import datasets as skd

from inner_tasks import models
from inner_tasks.base import TaskSpec, check_choice, check_positive
from inner_tasks.datasets import HELDOUT_DATASETS
from inner_tasks.flax_models import FlaxMLPMixin, check_mlp

KINDS = ("classification", "regression")
# Generator name -> kind. Each is an sklearn.datasets.make_* function (see `_raw`).
GENERATORS = {
    "classification": "classification", "blobs": "classification", "moons": "classification",
    "circles": "classification", "gaussian_quantiles": "classification",
    "regression": "regression", "friedman1": "regression", "friedman2": "regression",
    "friedman3": "regression", "sparse_uncorrelated": "regression",
}
BINARY_ONLY = ("moons", "circles")
# The fewest features each generator makes (1 where not listed).
_MIN_FEATURES = {"moons": 2, "circles": 2, "friedman1": 5, "friedman2": 4, "friedman3": 4, "sparse_uncorrelated": 4}


def generators_of(kind: str) -> tuple[str, ...]:
    """The generator names of one kind ('classification' or 'regression')."""
    return tuple(g for g, k in GENERATORS.items() if k == kind)


def min_features(generator: str, num_classes: int = 2) -> int:
    """The fewest features `generator` can make (make_classification needs 2^informative ≥ classes)."""
    m = _MIN_FEATURES.get(generator, 1)
    if generator == "classification":
        m = max(m, math.ceil(math.log2(num_classes)))
    return m


def check_generator(generator: str) -> None:
    if generator in HELDOUT_DATASETS:
        raise ValueError(f"{generator!r} is a dataset bundled with scikit-learn, not a generator: those are held-out "
                         f"evaluation data that tabular tasks never load; valid generators: {list(GENERATORS)}")
    check_choice("generator", generator, GENERATORS)


@dataclasses.dataclass(frozen=True)
class TabularSpec(FlaxMLPMixin, TaskSpec):
    """One generated tabular dataset (module docstring) and a flax MLP of `depth` hidden layers.

    `num_classes` is ignored by regression generators; `informative` (a fraction of the features)
    is used by the 'classification' and 'regression' generators only.
    """

    name: ClassVar[str] = "tabular"
    parametrization: ClassVar[str] = "sp"
    # Fields marked DATA_ONLY shape the generated numbers, never the traced program (which sees
    # the data as arrays): they are left out of equality and hash, so specs that differ only in
    # them share one compiled program (a new draw of the family costs no recompilation).
    generator: str = dataclasses.field(default="classification", compare=False)
    num_features: int = 16
    num_classes: int = 2
    informative: float = dataclasses.field(default=0.5, compare=False)
    noise: float = dataclasses.field(default=0.1, compare=False)
    num_train: int = 1024
    num_valid: int = 512
    batch_size: int = 64
    seed: int = dataclasses.field(default=0, compare=False)
    standardize_x: bool = dataclasses.field(default=True, compare=False)
    x_scale: float = dataclasses.field(default=1.0, compare=False)
    x_shift: float = dataclasses.field(default=0.0, compare=False)
    x_spread: float = dataclasses.field(default=0.0, compare=False)
    standardize_y: bool = dataclasses.field(default=True, compare=False)
    y_scale: float = dataclasses.field(default=1.0, compare=False)
    kind_: str = dataclasses.field(default="", init=False, repr=False)  # compared: the kind is traced
    width: int = 32
    depth: int = 1
    activation: str = "relu"

    def __post_init__(self):
        check_generator(self.generator)
        object.__setattr__(self, "kind_", GENERATORS[self.generator])
        check_mlp(self.width, self.depth, self.activation)
        check_positive(num_train=self.num_train, num_valid=self.num_valid, batch_size=self.batch_size,
                       x_scale=self.x_scale, y_scale=self.y_scale)
        if self.num_train < 2:
            raise ValueError(f"num_train must be at least 2 (standardization), got {self.num_train}")
        if self.kind == "classification":
            if self.num_classes < 2:
                raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
            if self.generator in BINARY_ONLY and self.num_classes != 2:
                raise ValueError(f"generator {self.generator!r} makes 2 classes, not {self.num_classes}")
        if self.num_features < min_features(self.generator, self.num_classes):
            raise ValueError(f"generator {self.generator!r} needs at least "
                             f"{min_features(self.generator, self.num_classes)} features, got {self.num_features}")
        if not 0.0 < self.informative <= 1.0:
            raise ValueError(f"informative is a fraction of the features in (0, 1], got {self.informative}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise must lie in [0, 1], got {self.noise}")
        if self.x_shift < 0 or self.x_spread < 0 or self.seed < 0:
            raise ValueError("x_shift, x_spread and seed must be >= 0")

    @property
    def kind(self) -> str:
        return GENERATORS[self.generator]

    @property
    def in_dim(self) -> int:
        return self.num_features

    @property
    def out_dim(self) -> int:
        return self.num_classes if self.kind == "classification" else 1

    def load_data(self):
        return tabular_data(self)

    def sample_batch(self, data, inst, key, split):
        del inst
        x, y = data[f"{split}_x"], data[f"{split}_y"]
        idx = jax.random.randint(key, (self.batch_size,), 0, x.shape[0])
        return {"x": x[idx], "y": y[idx]}

    def logits(self, inst, params, batch):
        if self.kind != "classification":
            return super().logits(inst, params, batch)
        return self.forward(params, batch["x"])

    def loss(self, inst, params, batch):
        del inst
        out_BxO = self.forward(params, batch["x"])
        if self.kind == "classification":
            return models.cross_entropy(out_BxO, batch["y"])
        return jnp.mean((out_BxO[:, 0] - batch["y"]) ** 2)


def _raw(spec: TabularSpec, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n rows from the sklearn generator, noiseless for regression, unshuffled between splits."""
    g, f, c, seed = spec.generator, spec.num_features, spec.num_classes, spec.seed
    n_inf = int(np.clip(round(spec.informative * f), min_features(g, c) if g == "classification" else 1, f))
    if g == "classification":
        clusters = 2 if 2 * c <= 2**n_inf else 1
        return skd.make_classification(n, f, n_informative=n_inf, n_redundant=(f - n_inf) // 2, n_classes=c,
                                       n_clusters_per_class=clusters, flip_y=0.0, random_state=seed)
    if g == "blobs":
        return skd.make_blobs(n, n_features=f, centers=c, cluster_std=2.0, random_state=seed)
    if g == "moons":
        return skd.make_moons(n, noise=0.2, random_state=seed)
    if g == "circles":
        return skd.make_circles(n, noise=0.1, factor=0.5, random_state=seed)
    if g == "gaussian_quantiles":
        return skd.make_gaussian_quantiles(n_samples=n, n_features=f, n_classes=c, random_state=seed)
    if g == "regression":
        return skd.make_regression(n, f, n_informative=n_inf, noise=0.0, random_state=seed)
    if g == "friedman1":
        return skd.make_friedman1(n, n_features=f, noise=0.0, random_state=seed)  # 5 informative
    if g == "friedman2":
        return skd.make_friedman2(n, noise=0.0, random_state=seed)
    if g == "friedman3":
        return skd.make_friedman3(n, noise=0.0, random_state=seed)
    return skd.make_sparse_uncorrelated(n, n_features=f, random_state=seed)


def _standardize(a: np.ndarray, n_train: int) -> np.ndarray:
    mu, sd = a[:n_train].mean(0), a[:n_train].std(0)
    return (a - mu) / np.where(sd > 0, sd, 1.0)


def tabular_arrays(spec: TabularSpec) -> dict[str, np.ndarray]:
    """NumPy arrays {train_x, train_y, valid_x, valid_y} of a spec: float32 features, int32 labels
    or float32 targets. A pure function of the spec (its seed included)."""
    n, n_train = spec.num_train + spec.num_valid, spec.num_train
    rng = np.random.default_rng([spec.seed, 1])
    x, y = _raw(spec, n)
    x = np.asarray(x, np.float64)
    if x.shape[1] < spec.num_features:  # noise columns (generators with fixed or fewer features)
        x = np.concatenate([x, rng.standard_normal((n, spec.num_features - x.shape[1]))], axis=1)
    if spec.standardize_x:
        x = _standardize(x, n_train)
    scale = spec.x_scale * 10.0 ** rng.uniform(-spec.x_spread, spec.x_spread, spec.num_features)
    x = (x + spec.x_shift * rng.standard_normal(spec.num_features)) * scale
    if spec.kind == "classification":
        y = np.asarray(y, np.int64)
        flip = rng.random(n) < spec.noise
        y = np.where(flip, rng.integers(0, spec.num_classes, n), y).astype(np.int32)
    else:
        y = np.asarray(y, np.float64)
        y = y + spec.noise * y[:n_train].std() * rng.standard_normal(n)
        if spec.standardize_y:
            y = _standardize(y, n_train)
        y = (spec.y_scale * y).astype(np.float32)
    x = x.astype(np.float32)
    return {"train_x": x[:n_train], "train_y": y[:n_train], "valid_x": x[n_train:], "valid_y": y[n_train:]}


def tabular_data(spec: TabularSpec) -> dict[str, jax.Array]:
    """Device arrays of `tabular_arrays(spec)`, cached on every field (specs that compare equal
    may still hold different data: see TabularSpec)."""
    return _cached_data(tuple((f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec) if f.init))


@functools.lru_cache(maxsize=16)
def _cached_data(fields: tuple) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in tabular_arrays(TabularSpec(**dict(fields))).items()}
