"""Learnable Adam: Adam whose log learning rate, decays and epsilon are the meta-parameters.

A sanity baseline whose meta-gradient is easy to reason about: d(loss)/d(log_lr) is the
usual learning-rate sensitivity. Decays use b = 1 − exp(θ), so θ is unconstrained. Under μP,
`optimizer` chains `lopt.scale_by_mup` after the Adam step (1/fan_in on hidden weights), so the
optimizer's state is the pair (optax.ScaleByAdamState, optax.EmptyState()).

>>> import jax
>>> arch = LearnableAdam(learning_rate=1e-2)
>>> theta = arch.init(jax.random.key(0))
>>> float(jax.numpy.exp(theta["log_lr"]))  # doctest: +ELLIPSIS
0.0099999...
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from lopt import common, mup

PyTree = Any


@dataclasses.dataclass(frozen=True)
class LearnableAdam:
    """Initial values of the meta-parameters (static config)."""

    name: ClassVar[str] = "adam"
    version: ClassVar[int] = 1
    learning_rate: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        if not (self.learning_rate > 0 and self.eps > 0 and 0 <= self.b1 < 1 and 0 <= self.b2 < 1):
            raise ValueError(f"invalid Adam settings {self}")

    def init(self, key: jax.Array) -> dict:
        del key
        f = lambda x: jnp.asarray(x, jnp.float32)
        return {
            "log_lr": f(math.log(self.learning_rate)),
            "log_one_minus_b1": f(math.log(1 - self.b1)),
            "log_one_minus_b2": f(math.log(1 - self.b2)),
            "log_eps": f(math.log(self.eps)),
        }

    def optimizer(
        self, theta: dict, *, roles: PyTree | None = None, fan_in: PyTree | None = None, num_steps: int | None = None
    ) -> optax.GradientTransformationExtraArgs:
        """Adam with theta's hyperparameters, then `lopt.scale_by_mup(roles, fan_in)` (μP:
        hidden-weight updates × 1/fan_in)."""
        del num_steps
        b1 = jnp.clip(1 - jnp.exp(theta["log_one_minus_b1"]), 0.0, 1 - 1e-7)
        b2 = jnp.clip(1 - jnp.exp(theta["log_one_minus_b2"]), 0.0, 1 - 1e-7)
        # eps_root keeps d√v/dθ finite where a gradient is exactly zero (meta-gradients).
        adam = optax.scale_by_adam(b1=b1, b2=b2, eps=jnp.exp(theta["log_eps"]), eps_root=1e-20)
        lr = jnp.exp(theta["log_lr"])

        def update_fn(updates, state, params=None, **extra):
            del extra
            common.require_params(params, "LearnableAdam")
            directions, new_state = adam.update(updates, state, params)
            # theta's float32 decays would promote a bfloat16/float16 first moment: keep the state's dtypes.
            state = optax.tree.cast_like(new_state, state)
            step = lambda d, g: (-lr * d).astype(g.dtype)
            return jax.tree.map(step, directions, updates), state

        core = optax.GradientTransformationExtraArgs(adam.init, update_fn)
        return optax.chain(core, mup.scale_by_mup(roles, fan_in))
