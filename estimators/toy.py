"""Synthetic unrolled problems whose exact meta-gradient is known, for checking estimators.

`LinearQuadratic`: s_{t+1} = A s_t + B θ, loss ½‖s − y‖²; the objective is quadratic in θ, so
antithetic ES estimators are exactly unbiased for any σ. `InfluenceBalancing` is the task of
Vicol et al. (2021) on which truncation bias pushes θ the wrong way; its optimum is θ* = −1/6.

>>> import jax
>>> problem = InfluenceBalancing.create()
>>> s = problem.init({"theta": jax.numpy.array(0.5)}, jax.random.key(0))
>>> s.shape
(23,)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class LinearQuadratic:
    """Linear dynamics with a quadratic per-step loss of the state after each update."""

    a: jax.Array  # (n, n)
    b: jax.Array  # (n, p)
    y: jax.Array  # (n,)
    s0: jax.Array  # (n,)

    @classmethod
    def create(cls, key: jax.Array, n: int = 8, p: int = 4, decay: float = 0.95, dtype=jnp.float32):
        k_a, k_b, k_y, k_s = jax.random.split(key, 4)
        q, _ = jnp.linalg.qr(jax.random.normal(k_a, (n, n), dtype))
        return cls(a=decay * q, b=jax.random.normal(k_b, (n, p), dtype) / np.sqrt(p),
                   y=jax.random.normal(k_y, (n,), dtype), s0=jax.random.normal(k_s, (n,), dtype))

    def init(self, theta, key):
        del theta, key
        return self.s0

    def step(self, theta, s, key):
        del key
        s = self.a @ s + self.b @ theta["theta"]
        return s, 0.5 * jnp.sum(jnp.square(s - self.y))

    def final_loss(self, theta, s, key):
        del theta, key
        return 0.5 * jnp.sum(jnp.square(s - self.y))

    def params(self, s):
        """The state is the params (what BMG matches)."""
        return s

    def objective_grad(self, s, key):
        """∇ of the per-step loss ½‖s − y‖² w.r.t. s (BMG's target step)."""
        del key
        return s - self.y


@struct.dataclass
class InfluenceBalancing:
    """n = 23 states, A_ii = A_i,i+1 = ½, s ← A s + θ·(+1 ×10, −1 ×13), loss ½(s₀ − 1)²."""

    a: jax.Array
    b: jax.Array

    @classmethod
    def create(cls, n: int = 23, positive: int = 10, dtype=jnp.float32):
        a = 0.5 * (np.eye(n) + np.eye(n, k=1))
        b = np.concatenate([np.ones(positive), -np.ones(n - positive)])
        return cls(a=jnp.asarray(a, dtype), b=jnp.asarray(b, dtype))

    def init(self, theta, key):
        del theta, key
        return jnp.ones_like(self.b)

    def step(self, theta, s, key):
        del key
        s = self.a @ s + theta["theta"] * self.b
        return s, 0.5 * jnp.square(s[0] - 1.0)

    def final_loss(self, theta, s, key):
        del theta, key
        return 0.5 * jnp.square(s[0] - 1.0)

    def long_unroll_loss(self, theta, steps: int = 500) -> jax.Array:
        """Loss after `steps` updates from s = 1: how good θ is on the infinite problem."""
        s, _ = jax.lax.scan(lambda s, _: (self.step(theta, s, None)[0], None), self.init(theta, None), None, steps)
        return self.final_loss(theta, s, None)
