"""Task families: a key becomes a `TaskSpec`, a spec becomes a `Task`.

Sampling happens on the host (specs fix shapes, so they are Python values). Within a spec,
`family.task_batch(key, n)` builds n same-shaped instances to vmap over.

Families are for meta-training only, so they refuse the held-out datasets (every dataset bundled
with scikit-learn, digits included: `datasets.HELDOUT_DATASETS`); specs may still use them.

>>> import jax
>>> fam = MLPFamily(widths=(16, 32), depths=(1, 2))
>>> spec = fam.sample(jax.random.key(0))
>>> spec.width in (16, 32) and spec.depth in (1, 2)
True
>>> fam.task_batch(jax.random.key(1), 4).spec.name
'mlp'
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import jax
import numpy as np

from inner_tasks import datasets, models
from inner_tasks.augment import ReparamSpec, check_range, maybe_reparam
from inner_tasks.base import Task, TaskSpec, check_choice
from inner_tasks.image import ConvSpec, MLPSpec
from inner_tasks.synthetic import LinRegSpec, QuadraticSpec
from inner_tasks.text import LMSpec


def host_rng(key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key (typed or raw), for host-side choices."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key).ravel().tolist())


def check_not_heldout(names: Sequence[str]) -> None:
    """Raises the one clear error for a held-out dataset in a meta-training family."""
    for n in names:
        if n in datasets.HELDOUT_DATASETS:
            raise ValueError(datasets.heldout_message(n))


def _check_axis(name: str, values: Sequence, valid=None) -> None:
    if len(values) == 0:
        raise ValueError(f"family axis {name!r} is empty")
    for v in values:
        if valid is not None:
            check_choice(name.rstrip("s"), v, valid)
        elif isinstance(v, (int, float)) and not v > 0:
            raise ValueError(f"family axis {name!r} has non-positive value {v!r}")


@dataclasses.dataclass(frozen=True)
class TaskFamily:
    """Base: each tuple-valued field is an axis sampled uniformly; subclasses build the spec."""

    name: ClassVar[str] = "family"
    not_axes: ClassVar[tuple[str, ...]] = ()  # tuple-valued settings that are not sampled axes

    def sample(self, key: jax.Array) -> TaskSpec:
        rng = host_rng(key)
        choice = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            axis = isinstance(value, tuple) and f.name not in self.not_axes
            choice[f.name] = value[rng.integers(len(value))] if axis else value
        return self._spec(rng, **choice)

    def _spec(self, rng: np.random.Generator, **choice) -> TaskSpec:
        raise NotImplementedError

    def task(self, spec: TaskSpec, key: jax.Array | None = None) -> Task:
        return spec.make(key)

    def task_batch(self, key: jax.Array, n: int) -> Task:
        """A freshly sampled spec with n instances; vmap with `in_axes=task.in_axes()`."""
        k_spec, k_inst = jax.random.split(key)
        return self.task(self.sample(k_spec)).instances(k_inst, n)

    def specs(self, key: jax.Array, n: int) -> list[TaskSpec]:
        return [self.sample(k) for k in jax.random.split(key, n)]

    def sample_like(self, key: jax.Array, shape: TaskSpec, max_tries: int = 1000) -> TaskSpec:
        """A draw of this family with `shape`'s programs (`shape == result`) and fresh data settings.

        Draws until one's free settings fit `shape` (`with_free_fields`); `shape` itself when its
        spec has no free settings, or when no draw of `max_tries` fits.
        """
        if not has_free_fields(shape):
            return shape
        for k in jax.random.split(key, max_tries):
            out = with_free_fields(shape, self.sample(k))
            if out is not None:
                return out
        return shape


def with_free_fields(shape: TaskSpec, fresh: TaskSpec) -> TaskSpec | None:
    """`shape` with the settings that do not enter its programs taken from `fresh`, or None.

    A spec's compared dataclass fields (its `==` and hash) fix every program built from it: array
    shapes and traced choices. Its `compare=False` fields (a tabular task's data seed, generator,
    noise, scaling) only change the data, which programs take as arguments. The result equals
    `shape`, so every compiled program is reused, with new data. None when `fresh` is another kind
    of spec or its settings do not fit `shape` (e.g. a two-class generator for a ten-class shape).

    >>> from inner_tasks.tabular import TabularSpec
    >>> a, b = TabularSpec(num_features=8, seed=1), TabularSpec(num_features=4, seed=2, noise=0.3)
    >>> c = with_free_fields(a, b)
    >>> c == a, c.seed, c.noise, c.num_features
    (True, 2, 0.3, 8)
    """
    if type(shape) is not type(fresh):
        return None
    changes = {}
    for f in dataclasses.fields(shape):
        if not f.init:
            continue
        mine, theirs = getattr(shape, f.name), getattr(fresh, f.name)
        if not f.compare:
            changes[f.name] = theirs
        elif isinstance(mine, TaskSpec):
            inner = with_free_fields(mine, theirs)
            if inner is None:
                return None
            changes[f.name] = inner
    try:
        out = dataclasses.replace(shape, **changes)
    except ValueError:
        return None
    return out if out == shape else None


def has_free_fields(spec: TaskSpec) -> bool:
    """Whether some setting of `spec` (nested specs included) is not compared (see `with_free_fields`)."""
    return any(not f.compare or (isinstance(getattr(spec, f.name), TaskSpec) and has_free_fields(getattr(spec, f.name)))
               for f in dataclasses.fields(spec) if f.init)


@dataclasses.dataclass(frozen=True)
class QuadraticFamily(TaskFamily):
    name: ClassVar[str] = "quadratic"
    dims: tuple[int, ...] = (16,)
    conds: tuple[float, ...] = (1.0, 10.0, 100.0)
    noises: tuple[float, ...] = (0.0, 0.1)

    def __post_init__(self):
        _check_axis("dims", self.dims)
        _check_axis("conds", self.conds)
        if min(self.noises, default=0.0) < 0:
            raise ValueError(f"noises must be >= 0, got {self.noises}")

    def _spec(self, rng, dims, conds, noises):
        return QuadraticSpec(dim=dims, cond=conds, noise=noises)


@dataclasses.dataclass(frozen=True)
class LinRegFamily(TaskFamily):
    name: ClassVar[str] = "linreg"
    dims: tuple[int, ...] = (8, 16, 32)
    noises: tuple[float, ...] = (0.1, 0.5)
    batch_sizes: tuple[int, ...] = (16, 32)

    def __post_init__(self):
        _check_axis("dims", self.dims)
        _check_axis("noises", self.noises)
        _check_axis("batch_sizes", self.batch_sizes)

    def _spec(self, rng, dims, noises, batch_sizes):
        return LinRegSpec(dim=dims, noise=noises, batch_size=batch_sizes, num_train=max(256, 4 * dims))


@dataclasses.dataclass(frozen=True)
class _Reparametrized(TaskFamily):
    """`param_scales` / `loss_scales` wrap every spec in `augment.ReparamSpec` (None: off)."""

    not_axes: ClassVar[tuple[str, ...]] = ("param_scales", "loss_scales")
    param_scales: tuple[float, float] | None = None
    loss_scales: tuple[float, float] | None = None

    def __post_init__(self):
        for name in ("param_scales", "loss_scales"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name))

    def sample(self, key: jax.Array) -> TaskSpec:
        return maybe_reparam(super().sample(key), self.param_scales, self.loss_scales)

    def _spec(self, rng, param_scales, loss_scales, **choice):
        del param_scales, loss_scales  # applied in `sample`
        return self._model_spec(rng, **choice)

    def _model_spec(self, rng: np.random.Generator, **choice) -> TaskSpec:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class _ImageFamily(_Reparametrized):
    datasets: tuple[str, ...] = ("fashion_mnist",)
    resolutions: tuple[int, ...] = (8,)
    activations: tuple[str, ...] = ("relu", "gelu", "tanh")
    batch_sizes: tuple[int, ...] = (64, 128)
    parametrization: str = "mup"
    data_dir: str | None = None

    def __post_init__(self):
        super().__post_init__()
        check_not_heldout(self.datasets)
        _check_axis("datasets", self.datasets, datasets.IMAGE_DATASETS)
        _check_axis("resolutions", self.resolutions)
        _check_axis("activations", self.activations, models.ACTIVATIONS)
        _check_axis("batch_sizes", self.batch_sizes)
        check_choice("parametrization", self.parametrization, models.PARAMETRIZATIONS)
        for ds in self.datasets:
            if not set(self.resolutions) & set(datasets.RESOLUTIONS[ds]):
                raise ValueError(
                    f"dataset {ds!r} has no resolution among {self.resolutions}; "
                    f"it comes at {datasets.RESOLUTIONS[ds]}"
                )

    def _common(self, rng, datasets, resolutions, activations, batch_sizes, parametrization, data_dir):
        del resolutions  # redrawn among those the drawn dataset offers
        allowed = [r for r in self.resolutions if r in _resolutions_of(datasets)]
        return dict(
            dataset=datasets, resolution=allowed[rng.integers(len(allowed))], activation=activations,
            batch_size=batch_sizes, parametrization=parametrization, data_dir=data_dir,
        )


def _resolutions_of(dataset: str) -> tuple[int, ...]:
    return datasets.RESOLUTIONS[dataset]


@dataclasses.dataclass(frozen=True)
class MLPFamily(_ImageFamily):
    name: ClassVar[str] = "mlp"
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (1, 2, 3)

    def __post_init__(self):
        super().__post_init__()
        _check_axis("widths", self.widths)
        _check_axis("depths", self.depths)

    def _model_spec(self, rng, widths, depths, **rest):
        return MLPSpec(width=widths, depth=depths, **self._common(rng, **rest))


@dataclasses.dataclass(frozen=True)
class ConvFamily(_ImageFamily):
    name: ClassVar[str] = "conv"
    channels: tuple[int, ...] = (8, 16, 32)
    depths: tuple[int, ...] = (2, 3)

    def __post_init__(self):
        super().__post_init__()
        _check_axis("channels", self.channels)
        _check_axis("depths", self.depths)
        if 2 ** max(self.depths) > min(self.resolutions):
            raise ValueError(f"depth {max(self.depths)} is too deep for {min(self.resolutions)}px images")

    def _model_spec(self, rng, channels, depths, **rest):
        return ConvSpec(channels=channels, depth=depths, **self._common(rng, **rest))


@dataclasses.dataclass(frozen=True)
class LMFamily(_Reparametrized):
    name: ClassVar[str] = "lm"
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (1, 2)
    contexts: tuple[int, ...] = (32, 64)
    batch_sizes: tuple[int, ...] = (8, 16)
    head_dim: int = 16
    parametrization: str = "mup"
    text_dir: str | None = None

    def __post_init__(self):
        super().__post_init__()
        for axis in ("widths", "depths", "contexts", "batch_sizes"):
            _check_axis(axis, getattr(self, axis))
        check_choice("parametrization", self.parametrization, models.PARAMETRIZATIONS)
        for w in self.widths:
            if w % self.head_dim:
                raise ValueError(f"width {w} is not a multiple of head_dim={self.head_dim}")

    def _model_spec(self, rng, widths, depths, contexts, batch_sizes, head_dim, parametrization, text_dir):
        return LMSpec(
            width=widths, depth=depths, num_heads=widths // head_dim, context=contexts,
            batch_size=batch_sizes, parametrization=parametrization, text_dir=text_dir,
        )


@dataclasses.dataclass(frozen=True)
class MixtureFamily(TaskFamily):
    """Draws a member family (by weight), then a spec from it; mixes tasks in one population."""

    name: ClassVar[str] = "mixture"
    families: tuple[TaskFamily, ...] = ()
    weights: tuple[float, ...] | None = None

    def __post_init__(self):
        if not self.families:
            raise ValueError("MixtureFamily needs at least one family")
        if self.weights is not None and (
            len(self.weights) != len(self.families) or min(self.weights) < 0 or sum(self.weights) <= 0
        ):
            raise ValueError(f"weights {self.weights} must be {len(self.families)} non-negative numbers, not all 0")

    def sample(self, key: jax.Array) -> TaskSpec:
        k_pick, k_spec = jax.random.split(key)
        p = None if self.weights is None else np.asarray(self.weights) / sum(self.weights)
        fam = self.families[host_rng(k_pick).choice(len(self.families), p=p)]
        return fam.sample(k_spec)


@dataclasses.dataclass(frozen=True)
class ReparamFamily(TaskFamily):
    """Any family's specs wrapped in `augment.ReparamSpec` (random parameter and loss scales).

    For code; configs use the `param_scales` / `loss_scales` options of the tabular and flax_mlp
    families.

    >>> import jax
    >>> fam = ReparamFamily(family=QuadraticFamily(), loss_scales=(0.5, 2.0))
    >>> spec = fam.sample(jax.random.key(0))
    >>> type(spec).__name__, spec.name, spec.param_scales
    ('ReparamSpec', 'quadratic', (0.001, 1000.0))
    """

    name: ClassVar[str] = "reparam"
    family: TaskFamily | None = None
    param_scales: tuple[float, float] = (1e-3, 1e3)
    loss_scales: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        if not isinstance(self.family, TaskFamily):
            raise ValueError(f"ReparamFamily needs family=<a TaskFamily>, got {self.family!r}")
        check_range("param_scales", self.param_scales)
        check_range("loss_scales", self.loss_scales)

    def sample(self, key: jax.Array) -> TaskSpec:
        return ReparamSpec(inner=self.family.sample(key), param_scales=self.param_scales,
                           loss_scales=self.loss_scales)

