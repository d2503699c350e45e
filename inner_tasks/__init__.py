"""Inner tasks for meta-training: the Task API, offline datasets, models and task families.

>>> import jax, optax
>>> import inner_tasks
>>> task = inner_tasks.get_task("mlp", dataset="digits", width=32)
>>> curve = inner_tasks.train(task, optax.adam(1e-2), 50, jax.random.key(0))
>>> bool(curve.valid_loss[-1] < curve.valid_loss[0])
True
"""

from __future__ import annotations

from typing import Any, Mapping

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


def family_from_settings(settings: Mapping[str, Any], where: str = "family") -> TaskFamily:
    """A task family from plain settings (a recipe's `family` section as a dict): `{"name": NAME,
    **axes}` (see FAMILIES; lists become tuples) or `{"name": "mixture", "members": {NAME: {**axes,
    "weight": w}}}` (weight 1 by default). A bad setting raises one ValueError naming it from `where`.

    >>> fam = family_from_settings({"name": "mixture", "members": {"quadratic": {"dims": [4], "weight": 2.0}}})
    >>> [f.name for f in fam.families], fam.weights
    (['quadratic'], (2.0,))
    """
    if "name" not in settings:
        raise ValueError(f"{where} needs a name (one of {sorted(FAMILIES)} or 'mixture')")
    name = settings["name"]
    if name == "mixture":
        return _mixture_from_settings(settings, where)
    kwargs = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in settings.items() if k != "name"}
    try:
        return get_family(name, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad settings for {where} ({name!r}): {e}") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _mixture_from_settings(settings: Mapping[str, Any], where: str) -> MixtureFamily:
    """`name="mixture"` and `members`: family name -> its axes plus an optional `weight` (default 1)."""
    extra = sorted(set(settings) - {"name", "members"})
    if extra:
        raise ValueError(f"{where} (mixture) takes only members, not {extra}; weights go in each member")
    members = settings.get("members")
    if not members:
        raise ValueError(f"{where}.members must name at least one family of {sorted(FAMILIES)}")
    fams, weights = [], []
    for name, sub in members.items():
        if not isinstance(sub, Mapping):
            raise ValueError(f"{where}.members.{name} must be a dict of family axes, got {sub!r}")
        member = dict(sub)
        weights.append(member.pop("weight", 1.0))
        member.setdefault("name", name)
        fams.append(family_from_settings(member, f"{where}.members.{name}"))
    try:
        return MixtureFamily(families=tuple(fams), weights=tuple(weights))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None


__all__ = [
    "ROLES", "SPLITS", "Meta", "Task", "TaskSpec", "TaskFamily", "Curve", "TASKS", "FAMILIES",
    "DatasetFormatError", "DatasetNotFoundError", "QuadraticSpec", "LinRegSpec", "MLPSpec", "ConvSpec",
    "LMSpec", "TabularSpec", "FlaxMLPSpec", "ReparamSpec", "QuadraticFamily", "LinRegFamily", "MLPFamily",
    "ConvFamily", "LMFamily", "TabularFamily", "FlaxMLPFamily", "ReparamFamily", "MixtureFamily",
    "HELDOUT_DATASETS", "get_spec", "get_task", "get_family", "family_from_settings", "train", "valid_loss",
]
