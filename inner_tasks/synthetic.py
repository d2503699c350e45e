"""Synthetic problems with known optima, for tests of optimizers and estimators.

>>> import jax
>>> task = QuadraticSpec(dim=8, cond=100.0).make(jax.random.key(0))
>>> x_star = task.spec.optimum(task.inst)
>>> float(task.loss(x_star, task.sample_batch(jax.random.key(1), "valid")))
0.0
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from inner_tasks.base import Meta, TaskSpec, check_positive


@dataclasses.dataclass(frozen=True)
class QuadraticSpec(TaskSpec):
    """loss(x) = ½·mean_i h_i (x_i − x*_i − ε_i)², h log-uniform in [1/cond, 1], ε ~ N(0, noise²) on train.

    Each instance draws its own curvatures h and optimum x* ~ N(0, 1); params start at N(0, 1).
    """

    name: ClassVar[str] = "quadratic"
    dim: int = 16
    cond: float = 10.0
    noise: float = 0.0

    def __post_init__(self):
        check_positive(dim=self.dim)
        if not self.cond >= 1.0:
            raise ValueError(f"cond must be >= 1, got {self.cond}")
        if not self.noise >= 0.0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")

    def sample_inst(self, key):
        k_h, k_x = jax.random.split(key)
        log_h = jax.random.uniform(k_h, (self.dim,), minval=-jnp.log(self.cond), maxval=0.0)
        return {"h": jnp.exp(log_h), "x_star": jax.random.normal(k_x, (self.dim,))}

    def init(self, inst, key):
        del inst
        return {"x": jax.random.normal(key, (self.dim,))}

    def loss(self, inst, params, batch):
        r = params["x"] - inst["x_star"] - batch["eps"]
        return 0.5 * jnp.mean(inst["h"] * r**2)

    def sample_batch(self, data, inst, key, split):
        del data, inst
        scale = self.noise if split == "train" else 0.0
        return {"eps": scale * jax.random.normal(key, (self.dim,))}

    def meta(self):
        return {"x": Meta("vector", 1)}

    def optimum(self, inst):
        """The minimizer of the noise-free (validation) loss."""
        return {"x": inst["x_star"]}


@dataclasses.dataclass(frozen=True)
class LinRegSpec(TaskSpec):
    """Least squares on a fixed design: y = X·w_true + noise, with separate train and valid rows.

    The optimum of the full training loss is the least-squares solution (`optimum`).
    """

    name: ClassVar[str] = "linreg"
    dim: int = 16
    num_train: int = 256
    num_valid: int = 256
    batch_size: int = 32
    noise: float = 0.1

    def __post_init__(self):
        check_positive(dim=self.dim, num_train=self.num_train, num_valid=self.num_valid, batch_size=self.batch_size)
        if self.num_train < self.dim + 1:
            raise ValueError(f"num_train={self.num_train} must exceed dim={self.dim} for a unique optimum")
        if not self.noise >= 0.0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")

    def sample_inst(self, key):
        k_w, k_b, k_x, k_n = jax.random.split(key, 4)
        w = jax.random.normal(k_w, (self.dim,))
        b = jax.random.normal(k_b, ())
        n = self.num_train + self.num_valid
        x_NxD = jax.random.normal(k_x, (n, self.dim))
        y_N = x_NxD @ w + b + self.noise * jax.random.normal(k_n, (n,))
        return {
            "train_x": x_NxD[: self.num_train], "train_y": y_N[: self.num_train],
            "valid_x": x_NxD[self.num_train :], "valid_y": y_N[self.num_train :],
        }

    def init(self, inst, key):
        del inst
        return {"w": 0.1 * jax.random.normal(key, (self.dim, 1)), "b": jnp.zeros((1,))}

    def loss(self, inst, params, batch):
        del inst
        pred = (batch["x"] @ params["w"])[:, 0] + params["b"][0]
        return 0.5 * jnp.mean((pred - batch["y"]) ** 2)

    def sample_batch(self, data, inst, key, split):
        del data
        x, y = inst[f"{split}_x"], inst[f"{split}_y"]
        idx = jax.random.randint(key, (self.batch_size,), 0, x.shape[0])
        return {"x": x[idx], "y": y[idx]}

    def meta(self):
        return {"w": Meta("output", self.dim), "b": Meta("vector", 1)}

    def optimum(self, inst):
        """Least-squares minimizer of the full training loss."""
        x1 = jnp.concatenate([inst["train_x"], jnp.ones((self.num_train, 1))], axis=1)
        sol = jnp.linalg.lstsq(x1, inst["train_y"])[0]
        return {"w": sol[:-1, None], "b": sol[-1:]}
