"""Inner tasks for meta-training: the Task API, offline datasets, models and task families.

>>> import jax, optax
>>> import inner_tasks
>>> task = inner_tasks.get_task("mlp", dataset="digits", width=32)
>>> curve = inner_tasks.train(task, optax.adam(1e-2), 50, jax.random.key(0))
>>> bool(curve.valid_loss[-1] < curve.valid_loss[0])
True
"""

from __future__ import annotations

from inner_tasks.augment import ReparamSpec
from inner_tasks.base import ROLES, SPLITS, Meta, Task, TaskSpec
from inner_tasks.datasets import HELDOUT_DATASETS, DatasetFormatError, DatasetNotFoundError
from inner_tasks.families import (
    ConvFamily,
    LinRegFamily,
    LMFamily,
    MixtureFamily,
    MLPFamily,
    QuadraticFamily,
    ReparamFamily,
    TaskFamily,
)
from inner_tasks.flax_families import FlaxMLPFamily, TabularFamily
from inner_tasks.flax_models import FlaxMLPSpec
from inner_tasks.image import ConvSpec, MLPSpec
from inner_tasks.synthetic import LinRegSpec, QuadraticSpec
from inner_tasks.tabular import TabularSpec
from inner_tasks.text import LMSpec
from inner_tasks.train import Curve, train, valid_loss

TASKS: dict[str, type[TaskSpec]] = {
    "quadratic": QuadraticSpec,
    "linreg": LinRegSpec,
    "mlp": MLPSpec,
    "conv": ConvSpec,
    "lm": LMSpec,
    "tabular": TabularSpec,
    "flax_mlp": FlaxMLPSpec,
}

FAMILIES: dict[str, type[TaskFamily]] = {
    "quadratic": QuadraticFamily,
    "linreg": LinRegFamily,
    "mlp": MLPFamily,
    "conv": ConvFamily,
    "lm": LMFamily,
    "tabular": TabularFamily,
    "flax_mlp": FlaxMLPFamily,
}


def _lookup(kind: str, table: dict, name: str):
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid: {sorted(table)}")
    return table[name]


def get_spec(name: str, **kwargs) -> TaskSpec:
    """The validated spec of task `name` (see TASKS) with keyword settings."""
    return _lookup("task", TASKS, name)(**kwargs)


def get_task(name: str, key=None, **kwargs) -> Task:
    """A ready Task: `get_task("mlp", width=256, resolution=16)`."""
    return get_spec(name, **kwargs).make(key)


def get_family(name: str, **kwargs) -> TaskFamily:
    """A task family by name (see FAMILIES), with tuple-valued axes as keywords. Families are for
    meta-training, so they refuse the held-out datasets (HELDOUT_DATASETS: sklearn's bundled ones)."""
    return _lookup("family", FAMILIES, name)(**kwargs)


__all__ = [
    "ROLES", "SPLITS", "Meta", "Task", "TaskSpec", "TaskFamily", "Curve", "TASKS", "FAMILIES",
    "DatasetFormatError", "DatasetNotFoundError", "QuadraticSpec", "LinRegSpec", "MLPSpec", "ConvSpec",
    "LMSpec", "TabularSpec", "FlaxMLPSpec", "ReparamSpec", "QuadraticFamily", "LinRegFamily", "MLPFamily",
    "ConvFamily", "LMFamily", "TabularFamily", "FlaxMLPFamily", "ReparamFamily", "MixtureFamily",
    "HELDOUT_DATASETS", "get_spec", "get_task", "get_family", "train", "valid_loss",
]
