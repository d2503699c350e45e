"""MLPs as users write them: `flax.linen.Dense` layers with flax's default initializers.

Every kernel comes from `nn.Dense`'s default `lecun_normal()` (a truncated normal of variance
1/fan_in) and every bias starts at zero; the logits have no output multiplier. The task's
parametrization is therefore standard ('sp'), but `dense_meta` still gives each tensor a μP role
and fan-in read off its shape, so μP-style optimizers can be used on these tasks.

Params are the *unwrapped* collection, `module.init(key, x)["params"]`:
{'Dense_0': {'kernel': (in, width), 'bias': (width,)}, ..., 'Dense_<depth>': {...}}; apply them
with `module.apply({"params": params}, x)`. Depth 0 is a linear model (one `Dense_0`).

>>> import jax
>>> task = FlaxMLPSpec(dataset="digits", width=16, depth=2).make()
>>> params = task.init(jax.random.key(0))
>>> sorted(params), params["Dense_0"]["kernel"].shape, task.parametrization
(['Dense_0', 'Dense_1', 'Dense_2'], (64, 16), 'sp')
>>> [task.roles[k]["kernel"] for k in sorted(params)]
['input', 'hidden', 'output']
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from inner_tasks import models
from inner_tasks.base import Meta, PyTree, check_positive
from inner_tasks.image import _ImageSpec

MAX_DEPTH = 8


class DenseMLP(nn.Module):
    """`depth` hidden `nn.Dense(width)` layers with an activation, then `nn.Dense(out_dim)`."""

    width: int
    depth: int
    out_dim: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = getattr(nn, self.activation)  # nn.relu, nn.gelu, nn.tanh, nn.silu: as users write them
        for _ in range(self.depth):
            x = act(nn.Dense(self.width)(x))
        return nn.Dense(self.out_dim)(x)


def check_mlp(width: int, depth: int, activation: str) -> None:
    """Validates the settings of a `DenseMLP` (depth 0 is a linear model)."""
    check_positive(width=width)
    if not 0 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must lie in [0, {MAX_DEPTH}], got {depth}")
    if activation not in models.ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {list(models.ACTIVATIONS)}")


def dense_meta(params: PyTree) -> dict:
    """The Meta tree of a `Dense_i` stack, from its params or their shapes (`jax.eval_shape`).

    Kernels: the first is 'input', the last 'output' (a lone kernel, depth 0, is 'output' as in
    `LinRegSpec`), the rest 'hidden'; fan-in is the kernel's first dimension. Biases are 'vector'.
    """
    names = sorted(params, key=lambda n: int(n.rsplit("_", 1)[1]))
    meta = {}
    for i, n in enumerate(names):
        role = "output" if i == len(names) - 1 else ("input" if i == 0 else "hidden")
        meta[n] = {"kernel": Meta(role, int(params[n]["kernel"].shape[0])), "bias": Meta("vector", 1)}
    return meta


@functools.lru_cache(maxsize=256)
def _meta(width: int, depth: int, out_dim: int, activation: str, in_dim: int) -> dict:
    module = DenseMLP(width=width, depth=depth, out_dim=out_dim, activation=activation)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, in_dim), jnp.float32))
    return dense_meta(shapes["params"])


class FlaxMLPMixin:
    """init / forward / meta of a spec with `width`, `depth`, `activation`, `in_dim` and `out_dim`."""

    width: int
    depth: int
    activation: str
    in_dim: int
    out_dim: int

    @property
    def module(self) -> DenseMLP:
        return DenseMLP(width=self.width, depth=self.depth, out_dim=self.out_dim, activation=self.activation)

    def init(self, inst: PyTree, key: jax.Array) -> dict:
        del inst
        return self.module.init(key, jnp.zeros((1, self.in_dim), jnp.float32))["params"]

    def forward(self, params: dict, x_BxD: jax.Array) -> jax.Array:
        return self.module.apply({"params": params}, x_BxD)

    def meta(self) -> dict:
        cached = _meta(self.width, self.depth, self.out_dim, self.activation, self.in_dim)
        return {name: dict(layer) for name, layer in cached.items()}  # a copy: callers may edit it


@dataclasses.dataclass(frozen=True)
class FlaxMLPSpec(FlaxMLPMixin, _ImageSpec):
    """A flax default-init MLP classifier on flattened images (`depth` 0 to 8 hidden layers)."""

    name: ClassVar[str] = "flax_mlp"
    width: int = 128
    depth: int = 2
    parametrization: str = "sp"

    def __post_init__(self):
        super().__post_init__()
        check_mlp(self.width, self.depth, self.activation)
        if self.parametrization != "sp":
            raise ValueError("a flax default-init MLP is standard-parametrized: parametrization must be 'sp'")

    @property
    def in_dim(self) -> int:
        return self.resolution * self.resolution

    def logits(self, inst, params, batch):
        del inst
        return self.forward(params, batch["x"])

    def loss(self, inst, params, batch):
        return models.cross_entropy(self.logits(inst, params, batch), batch["y"])

    def sample_batch(self, data, inst, key, split):
        del inst
        x, y = self._images(data, key, split)
        return {"x": x.reshape(x.shape[0], -1), "y": y}
