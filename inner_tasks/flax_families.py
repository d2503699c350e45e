"""Task families of models as users write them: flax default-init MLPs on generated tabular data
(`TabularFamily`, "tabular") and on images (`FlaxMLPFamily`, "flax_mlp"), with weighted axes.

Both are meta-training families, so they refuse the held-out datasets (`families.check_not_heldout`).
Sampling is on the host and cheap; each axis is drawn with its documented weights.

>>> import jax
>>> fam = TabularFamily(widths=(16, 32), width_weights=None, depths=(0, 1), depth_weights=(1, 3))
>>> spec = fam.sample(jax.random.key(0))
>>> spec.name, spec.width in (16, 32), spec.kind in ("classification", "regression")
('tabular', True, True)
>>> fam.task_batch(jax.random.key(1), 4).inst
{}
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import numpy as np

from inner_tasks import datasets, flax_models, models, tabular
from inner_tasks.augment import check_range, maybe_reparam
from inner_tasks.base import TaskSpec
from inner_tasks.families import TaskFamily, _check_axis, check_not_heldout, host_rng


def _pick(rng: np.random.Generator, values: tuple, weights: tuple[float, ...] | None):
    """One of `values`, drawn with probability ∝ `weights` (uniformly if None)."""
    p = None if weights is None else np.asarray(weights, np.float64) / float(sum(weights))
    return values[rng.choice(len(values), p=p)]


def _check_weights(name: str, values: tuple, weights: tuple[float, ...] | None) -> None:
    if weights is not None and (len(weights) != len(values) or min(weights) < 0 or sum(weights) <= 0):
        raise ValueError(f"{name} {weights} must be {len(values)} non-negative numbers, one per value of {values}, "
                         f"not all 0 (None: uniform); set it whenever you change that axis")


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    """Log-uniform in [lo, hi], rounded to 3 significant digits (readable specs)."""
    return float(f"{math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1]))):.3g}")


def mlp_step_macs(batch_size: int, in_dim: int, width: int, depth: int, out_dim: int) -> int:
    """Multiply-accumulates of one forward pass of a `DenseMLP` over a batch (a step costs ~3×)."""
    sizes = [in_dim] + [width] * depth + [out_dim]
    return batch_size * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


@dataclasses.dataclass(frozen=True)
class _DenseMLPFamily(TaskFamily):
    """Axes of a flax default-init MLP, each drawn with its `*_weights` (None: uniform).

    Default weights (mostly small, a few wide or deep): width 8…1024 ∝ 2,3,4,4,3,2,1,1 (10% ≥ 512);
    depth 0…8 ∝ 2,6,5,3,2,1,1,1,1 (9% linear, 18% ≥ 5); batch 16…512 ∝ 2,3,3,2,1,1; activation
    relu, gelu, tanh, silu ∝ 3,1,1,1. (width, depth, batch) is redrawn jointly while one forward
    pass exceeds `max_step_macs` (`mlp_step_macs`; None: no cap), which cuts wide-and-deep draws
    and so skews the marginals a little towards small models.
    `param_scales` / `loss_scales` wrap every spec in `augment.ReparamSpec` (None: off).
    """

    widths: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024)
    width_weights: tuple[float, ...] | None = (2, 3, 4, 4, 3, 2, 1, 1)
    depths: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8)
    depth_weights: tuple[float, ...] | None = (2, 6, 5, 3, 2, 1, 1, 1, 1)
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    batch_size_weights: tuple[float, ...] | None = (2, 3, 3, 2, 1, 1)
    activations: tuple[str, ...] = ("relu", "gelu", "tanh", "silu")
    activation_weights: tuple[float, ...] | None = (3, 1, 1, 1)
    max_step_macs: int | None = 2**25
    param_scales: tuple[float, float] | None = None
    loss_scales: tuple[float, float] | None = None

    def __post_init__(self):
        for axis in ("widths", "batch_sizes"):
            _check_axis(axis, getattr(self, axis))
        _check_axis("activations", self.activations, models.ACTIVATIONS)
        if not self.depths or not all(0 <= d <= flax_models.MAX_DEPTH for d in self.depths):
            raise ValueError(f"depths {self.depths} must be non-empty and lie in [0, {flax_models.MAX_DEPTH}]")
        for axis in ("widths", "depths", "batch_sizes", "activations"):
            _check_weights(f"{axis[:-1]}_weights", getattr(self, axis), getattr(self, f"{axis[:-1]}_weights"))
        if self.max_step_macs is not None and not self.max_step_macs > 0:
            raise ValueError(f"max_step_macs must be positive or None, got {self.max_step_macs}")
        for name in ("param_scales", "loss_scales"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name))

    def _model(self, rng: np.random.Generator, in_dim: int, out_dim: int) -> dict:
        activation = _pick(rng, self.activations, self.activation_weights)
        for _ in range(1000):
            width = int(_pick(rng, self.widths, self.width_weights))
            depth = int(_pick(rng, self.depths, self.depth_weights))
            batch = int(_pick(rng, self.batch_sizes, self.batch_size_weights))
            if self.max_step_macs is None or mlp_step_macs(batch, in_dim, width, depth, out_dim) <= self.max_step_macs:
                return dict(width=width, depth=depth, batch_size=batch, activation=activation)
        raise ValueError(f"no (width, depth, batch size) draw for {in_dim} inputs fits max_step_macs="
                         f"{self.max_step_macs}; raise it or allow smaller models")

    def sample(self, key: jax.Array) -> TaskSpec:
        return maybe_reparam(self._draw(host_rng(key)), self.param_scales, self.loss_scales)

    def _draw(self, rng: np.random.Generator) -> TaskSpec:
        raise NotImplementedError


_USES_INFORMATIVE = ("classification", "regression")


@dataclasses.dataclass(frozen=True)
class TabularFamily(_DenseMLPFamily):
    """Generated tabular tasks (`tabular.TabularSpec`) fit by flax default-init MLPs.

    Draws, in order: kind (uniform over `kinds`), a generator of that kind (uniform over those in
    `generators`), classes (2 for moons/circles), features (raised to the generator's minimum),
    informative fraction, noise, train rows (valid rows: a quarter, at least 128), the feature
    transform (standardized with probability `standardize_x_prob`, else scale log-uniform in
    `x_scale_range`, shift and spread from their axes), for regression the target transform
    (standardized with probability `standardize_y_prob`, else scaled log-uniformly in
    `y_scale_range`), the model axes (`_DenseMLPFamily`), and a data seed.
    """

    name: ClassVar[str] = "tabular"
    kinds: tuple[str, ...] = tabular.KINDS
    generators: tuple[str, ...] = tuple(tabular.GENERATORS)
    num_features: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128)
    num_classes: tuple[int, ...] = (2, 3, 5, 10)
    informative_fractions: tuple[float, ...] = (0.2, 0.5, 1.0)
    noises: tuple[float, ...] = (0.0, 0.05, 0.2)
    train_sizes: tuple[int, ...] = (256, 1024, 4096)
    standardize_x_prob: float = 0.5
    x_scale_range: tuple[float, float] = (1e-2, 1e2)
    x_shifts: tuple[float, ...] = (0.0, 1.0, 10.0)
    x_spreads: tuple[float, ...] = (0.0, 0.5, 1.0)
    standardize_y_prob: float = 0.5
    y_scale_range: tuple[float, float] = (1e-1, 1e1)

    def __post_init__(self):
        super().__post_init__()
        check_not_heldout(self.generators)
        _check_axis("kinds", self.kinds, tabular.KINDS)
        _check_axis("generators", self.generators, tabular.GENERATORS)
        for kind in self.kinds:
            if not set(tabular.generators_of(kind)) & set(self.generators):
                raise ValueError(f"kind {kind!r} has no generator among {self.generators}")
        for axis in ("num_features", "num_classes", "train_sizes"):
            _check_axis(axis, getattr(self, axis))
        if min(self.num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        for axis, lo, hi in (("informative_fractions", 1e-9, 1), ("noises", 0, 1), ("x_shifts", 0, math.inf),
                             ("x_spreads", 0, math.inf), ("standardize_x_prob", 0, 1), ("standardize_y_prob", 0, 1)):
            values = getattr(self, axis)
            if not all(lo <= v <= hi for v in (values if isinstance(values, tuple) else (values,))) or values == ():
                raise ValueError(f"{axis} {values} must lie in [{lo}, {hi}]")
        check_range("x_scale_range", self.x_scale_range)
        check_range("y_scale_range", self.y_scale_range)

    def _draw(self, rng):
        kind = _pick(rng, self.kinds, None)
        generator = _pick(rng, tuple(g for g in self.generators if tabular.GENERATORS[g] == kind), None)
        binary = generator in tabular.BINARY_ONLY or kind == "regression"  # regression ignores classes
        classes = 2 if binary else int(_pick(rng, self.num_classes, None))
        features = max(int(_pick(rng, self.num_features, None)), tabular.min_features(generator, classes))
        informative = float(_pick(rng, self.informative_fractions, None))
        num_train = int(_pick(rng, self.train_sizes, None))
        data = dict(generator=generator, num_features=features, num_classes=classes,
                    informative=informative if generator in _USES_INFORMATIVE else 0.5,  # else unused: the default
                    noise=float(_pick(rng, self.noises, None)), num_train=num_train,
                    num_valid=max(128, num_train // 4))
        if rng.random() >= self.standardize_x_prob:
            data.update(standardize_x=False, x_scale=_log_uniform(rng, self.x_scale_range),
                        x_shift=float(_pick(rng, self.x_shifts, None)),
                        x_spread=float(_pick(rng, self.x_spreads, None)))
        if kind == "regression" and rng.random() >= self.standardize_y_prob:
            data.update(standardize_y=False, y_scale=_log_uniform(rng, self.y_scale_range))
        model = self._model(rng, features, classes if kind == "classification" else 1)
        return tabular.TabularSpec(**data, **model, seed=int(rng.integers(2**31 - 1)))


@dataclasses.dataclass(frozen=True)
class FlaxMLPFamily(_DenseMLPFamily):
    """Flax default-init MLPs on flattened images (`flax_models.FlaxMLPSpec`), as users write them.

    Resolution 8, 16, 28 px ∝ `resolution_weights` (3, 2, 1) among those the dataset offers; the
    model axes are `_DenseMLPFamily`'s.

    >>> import jax
    >>> spec = FlaxMLPFamily(resolutions=(8,), resolution_weights=None).sample(jax.random.key(0))
    >>> spec.name, spec.dataset, spec.resolution, spec.parametrization
    ('flax_mlp', 'fashion_mnist', 8, 'sp')
    """

    name: ClassVar[str] = "flax_mlp"
    datasets: tuple[str, ...] = ("fashion_mnist",)
    resolutions: tuple[int, ...] = (8, 16, 28)
    resolution_weights: tuple[float, ...] | None = (3, 2, 1)
    data_dir: str | None = None

    def __post_init__(self):
        super().__post_init__()
        check_not_heldout(self.datasets)
        _check_axis("datasets", self.datasets, datasets.IMAGE_DATASETS)
        _check_axis("resolutions", self.resolutions)
        _check_weights("resolution_weights", self.resolutions, self.resolution_weights)
        for ds in self.datasets:
            if not set(self.resolutions) & set(datasets.RESOLUTIONS[ds]):
                raise ValueError(f"dataset {ds!r} has no resolution among {self.resolutions}; "
                                 f"it comes at {datasets.RESOLUTIONS[ds]}")

    def _draw(self, rng):
        dataset = _pick(rng, self.datasets, None)
        ok = [i for i, r in enumerate(self.resolutions) if r in datasets.RESOLUTIONS[dataset]]
        weights = None if self.resolution_weights is None else tuple(self.resolution_weights[i] for i in ok)
        resolution = int(_pick(rng, tuple(self.resolutions[i] for i in ok), weights))
        model = self._model(rng, resolution * resolution, datasets.NUM_CLASSES)
        return flax_models.FlaxMLPSpec(dataset=dataset, resolution=resolution, data_dir=self.data_dir, **model)
