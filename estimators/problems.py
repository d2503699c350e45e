"""The inner problem the estimators unroll: a learned optimizer training a task.

`LOProblem` is a `estimators.protocol.Problem` (init, step, final_loss) and also gives what BMG's target and
matching (`estimators.bmg`) need of a problem: `params`, `objective_grad` and `logits`.

>>> import jax, inner_tasks, lopt
>>> task = inner_tasks.get_task("quadratic", dim=4)
>>> problem = LOProblem(task=task, arch=lopt.LearnableAdam(learning_rate=1e-2))
>>> theta = problem.arch.init(jax.random.key(0))
>>> s = problem.init(theta, jax.random.key(1))
>>> s, loss = problem.step(theta, s, jax.random.key(2))
>>> float(loss)  # normalized by the task's first loss
1.0
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from inner_tasks import Task

PyTree = Any
SPLITS = ("train", "valid")


@struct.dataclass
class LOProblem:
    """Train `task` with the learned optimizer `arch` applied with meta-parameters θ.

    Each fresh problem samples a new instance of the task (same spec and data), new params and
    a new optimizer state. The per-step objective is the minibatch loss before the update on the
    `split` ("train", or a "valid" batch), divided by the problem's first loss if `normalize`,
    so that tasks of different scales mix. `mup` passes the task's μP roles to the optimizer:
    None (the default) when the task is μP-parametrized (`task.parametrization`), True or False
    to force it. `num_steps` is the horizon given to architectures that need one (VeLO).
    """

    task: Task
    arch: Any = struct.field(pytree_node=False)
    split: str = struct.field(pytree_node=False, default="train")
    normalize: bool = struct.field(pytree_node=False, default=True)
    mup: bool | None = struct.field(pytree_node=False, default=None)
    num_steps: int | None = struct.field(pytree_node=False, default=None)

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; valid: {list(SPLITS)}")

    def optimizer(self, theta: PyTree) -> optax.GradientTransformationExtraArgs:
        use_mup = self.task.parametrization == "mup" if self.mup is None else self.mup
        mup = dict(roles=self.task.roles, fan_in=self.task.fan_in) if use_mup else {}
        return self.arch.optimizer(theta, num_steps=self.num_steps, **mup)

    def init(self, theta: PyTree, key: jax.Array) -> dict:
        k_inst, k_params = jax.random.split(key)
        inst = self.task.spec.sample_inst(k_inst)
        params = self.task.spec.init(inst, k_params)
        opt_state = self.optimizer(theta).init(params)
        first = jnp.full((), jnp.nan, jnp.float32)  # not weak-typed, like what step returns (no recompiles)
        return {"inst": inst, "params": params, "opt_state": opt_state, "first_loss": first}

    def _objective(self, task: Task, params: PyTree, key: jax.Array, train_loss: jax.Array | None = None):
        if self.split == "train" and train_loss is not None:
            return train_loss
        return task.loss(params, task.sample_batch(key, self.split))

    def _normalized(self, s: dict, obj: jax.Array) -> tuple[jax.Array, jax.Array]:
        first = jnp.where(jnp.isnan(s["first_loss"]), jax.lax.stop_gradient(obj), s["first_loss"])
        if not self.normalize:
            return obj, first
        return obj / jnp.maximum(jnp.abs(first), 1e-8), first

    def step(self, theta: PyTree, s: dict, key: jax.Array) -> tuple[dict, jax.Array]:
        task = self.task.replace(inst=s["inst"])
        k_batch, k_obj = jax.random.split(key)
        loss, grads = jax.value_and_grad(task.loss)(s["params"], task.sample_batch(k_batch, "train"))
        obj, first = self._normalized(s, self._objective(task, s["params"], k_obj, loss))
        updates, opt_state = self.optimizer(theta).update(grads, s["opt_state"], s["params"], value=loss)
        params = optax.apply_updates(s["params"], updates)
        return {"inst": s["inst"], "params": params, "opt_state": opt_state, "first_loss": first}, obj

    def final_loss(self, theta: PyTree, s: dict, key: jax.Array) -> jax.Array:
        del theta
        task = self.task.replace(inst=s["inst"])
        return self._normalized(s, self._objective(task, s["params"], key))[0]

    # What BMG (estimators/bmg.py) needs besides a `estimators.protocol.Problem`.

    def params(self, s: dict) -> PyTree:
        """The inner params inside state `s`."""
        return s["params"]

    def objective_grad(self, s: dict, key: jax.Array) -> PyTree:
        """∇ w.r.t. the params of the training-batch loss (batch drawn with `key`), normalized as
        `step` normalizes its objective: divided by |first loss| if `normalize`, where the first
        loss is this loss itself (held constant) before the problem's first step."""
        task = self.task.replace(inst=s["inst"])
        batch = task.sample_batch(key, "train")
        return jax.grad(lambda p: self._normalized(s, task.loss(p, batch))[0])(s["params"])

    def logits(self, s: dict, params: PyTree, key: jax.Array) -> jax.Array:
        """The task's predictions at `params` on a training batch drawn with `key` (classifiers)."""
        task = self.task.replace(inst=s["inst"])
        return task.logits(params, task.sample_batch(key, "train"))
