"""The Task API: a hashable `TaskSpec` (shapes, fixed settings) plus device arrays, as one pytree.

A `Task` is a `flax.struct` pytree. Its static part is the spec; its leaves are `data` (dataset
arrays, shared by all instances of a spec) and `inst` (small per-instance arrays such as a
quadratic's curvature and optimum). Passing a Task into `jit` therefore passes the data as
arguments, never as baked-in constants, and a batch of same-shaped tasks is one Task whose
`inst` leaves carry a leading axis (see `Task.instances` and `Task.in_axes`).

>>> import jax
>>> from inner_tasks import get_task
>>> task = get_task("quadratic", dim=4)
>>> params = task.init(jax.random.key(0))
>>> batch = task.sample_batch(jax.random.key(1), "train")
>>> task.loss(params, batch).shape
()
>>> task.roles, task.fan_in
({'x': 'vector'}, {'x': 1})
>>> task.parametrization, get_task("mlp", dataset="digits").parametrization
('sp', 'mup')
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
from flax import struct

PyTree = Any
SPLITS = ("train", "valid")
ROLES = ("input", "hidden", "output", "vector")


@dataclasses.dataclass(frozen=True)
class Meta:
    """μP metadata of one parameter tensor: its role and fan-in. A pytree leaf."""

    role: str
    fan_in: int

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; valid: {ROLES}")
        if self.fan_in < 1:
            raise ValueError(f"fan_in must be >= 1, got {self.fan_in}")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def check_choice(name: str, value: Any, valid: tuple | dict) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {list(valid)}")


def check_positive(**values: int | float) -> None:
    for name, v in values.items():
        if not v > 0:
            raise ValueError(f"{name} must be positive, got {v!r}")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A task configuration: frozen, hashable and validated when built.

    Subclasses define `name`, `load_data`, `init`, `loss`, `sample_batch` and `meta`;
    `sample_inst` defaults to no per-instance arrays.
    """

    name: ClassVar[str] = "task"

    def load_data(self) -> PyTree:
        return {}

    def sample_inst(self, key: jax.Array) -> PyTree:
        del key
        return {}

    def init(self, inst: PyTree, key: jax.Array) -> PyTree:
        raise NotImplementedError

    def loss(self, inst: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        raise NotImplementedError

    def sample_batch(self, data: PyTree, inst: PyTree, key: jax.Array, split: str) -> PyTree:
        raise NotImplementedError

    def logits(self, inst: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        """Class logits (..., classes) of a classifier task; regression tasks have none."""
        raise NotImplementedError(f"task {self.name!r} is not a classifier and has no logits")

    def meta(self) -> PyTree:
        """A pytree shaped like the params, with one `Meta` leaf per tensor."""
        raise NotImplementedError

    def make(self, key: jax.Array | None = None) -> Task:
        """Loads the data and samples one instance (from key, default key 0)."""
        key = jax.random.key(0) if key is None else key
        return Task(spec=self, data=self.load_data(), inst=self.sample_inst(key))


@struct.dataclass
class Task:
    """One inner problem: pure `init`, `loss`, `sample_batch`, plus μP metadata."""

    spec: TaskSpec = struct.field(pytree_node=False)
    data: PyTree
    inst: PyTree

    @property
    def name(self) -> str:
        return self.spec.name

    def init(self, key: jax.Array) -> PyTree:
        return self.spec.init(self.inst, key)

    def loss(self, params: PyTree, batch: PyTree) -> jax.Array:
        return self.spec.loss(self.inst, params, batch)

    def logits(self, params: PyTree, batch: PyTree) -> jax.Array:
        return self.spec.logits(self.inst, params, batch)

    def sample_batch(self, key: jax.Array, split: str = "train") -> PyTree:
        check_split(split)
        return self.spec.sample_batch(self.data, self.inst, key, split)

    @property
    def meta(self) -> PyTree:
        return self.spec.meta()

    @property
    def parametrization(self) -> str:
        """'mup' or 'sp': how the model is parametrized, the one place a task states it (specs
        without a `parametrization` setting, such as quadratics, are standard)."""
        return getattr(self.spec, "parametrization", "sp")

    def mup_options(self) -> dict[str, PyTree]:
        """`roles=` and `fan_in=` for a learned optimizer on a μP task, {} on a standard one."""
        return {"roles": self.roles, "fan_in": self.fan_in} if self.parametrization == "mup" else {}

    @property
    def roles(self) -> PyTree:
        """Plain pytree of role strings ('input', 'hidden', 'output', 'vector'), shaped like params."""
        return jax.tree.map(lambda m: m.role, self.spec.meta())

    @property
    def fan_in(self) -> PyTree:
        """Plain pytree of int fan-ins, shaped like params."""
        return jax.tree.map(lambda m: m.fan_in, self.spec.meta())

    def instances(self, key: jax.Array, n: int) -> Task:
        """n same-shaped instances of this spec, sharing data; vmap them with `in_axes()`."""
        inst = jax.vmap(self.spec.sample_inst)(jax.random.split(key, n))
        return self.replace(inst=inst)

    def in_axes(self) -> Task:
        """The vmap `in_axes` prefix for a batch from `instances`: data shared, inst mapped."""
        return self.replace(data=None, inst=0)
