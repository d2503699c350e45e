"""Baseline trainer: a whole inner run as one jitted `lax.scan`.

>>> import jax, optax
>>> from inner_tasks import get_task
>>> task = get_task("quadratic", dim=8)
>>> curve = train(task, optax.adam(0.1), 100, jax.random.key(0), eval_every=50)
>>> curve.train_loss.shape, curve.valid_loss.shape, curve.valid_step.tolist()
((100,), (3,), [0, 50, 100])
>>> bool(curve.valid_loss[-1] < curve.valid_loss[0])
True
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import struct

from inner_tasks.base import PyTree, Task


@struct.dataclass
class Curve:
    """Losses of one inner run. `train_loss[t]` is the minibatch loss before update t;
    `valid_loss[i]` is the mean loss over `valid_batches` validation batches at `valid_step[i]`."""

    train_loss: jax.Array
    valid_loss: jax.Array
    valid_step: jax.Array
    params: PyTree


def valid_loss(task: Task, params: PyTree, key: jax.Array, num_batches: int = 4) -> jax.Array:
    """Mean validation loss over `num_batches` freshly sampled validation batches."""
    batches = jax.vmap(lambda k: task.sample_batch(k, "valid"))(jax.random.split(key, num_batches))
    return jax.vmap(task.loss, in_axes=(None, 0))(params, batches).mean()


def train_step(task: Task, opt: optax.GradientTransformationExtraArgs, carry, key):
    """One minibatch step; the loss goes to the optimizer as optax's `value` extra arg."""
    params, opt_state = carry
    batch = task.sample_batch(key, "train")
    loss, grads = jax.value_and_grad(task.loss)(params, batch)
    updates, opt_state = opt.update(grads, opt_state, params, value=loss)
    return (optax.apply_updates(params, updates), opt_state), loss


@functools.partial(jax.jit, static_argnames=("opt", "num_steps", "eval_every", "valid_batches"))
def _train(task, opt, key, num_steps, eval_every, valid_batches):
    opt = optax.with_extra_args_support(opt)
    k_init, k_valid0, k_run = jax.random.split(key, 3)
    params = task.init(k_init)
    carry = (params, opt.init(params))
    step = functools.partial(train_step, task, opt)

    def chunk(carry, key):
        k_steps, k_valid = jax.random.split(key)
        carry, losses = jax.lax.scan(step, carry, jax.random.split(k_steps, eval_every))
        return carry, (losses, valid_loss(task, carry[0], k_valid, valid_batches))

    v0 = valid_loss(task, params, k_valid0, valid_batches)
    (params, _), (losses_CxE, vlosses) = jax.lax.scan(chunk, carry, jax.random.split(k_run, num_steps // eval_every))
    return Curve(
        train_loss=losses_CxE.reshape(-1),
        valid_loss=jnp.concatenate([v0[None], vlosses]),
        valid_step=jnp.arange(0, num_steps + 1, eval_every),
        params=params,
    )


def train(
    task: Task,
    opt: optax.GradientTransformation,
    num_steps: int,
    key: jax.Array,
    *,
    eval_every: int | None = None,
    valid_batches: int = 4,
) -> Curve:
    """Trains `task` from `task.init` with `opt` for `num_steps` steps; returns its `Curve`.

    Jitted as a whole (recompiles per distinct `opt` object, so reuse one). It can be vmapped
    over keys, and over a batch of task instances with `in_axes=task.in_axes()`.
    """
    eval_every = num_steps if eval_every is None else eval_every
    if num_steps < 1 or eval_every < 1 or num_steps % eval_every:
        raise ValueError(f"num_steps={num_steps} must be a positive multiple of eval_every={eval_every}")
    return _train(task, opt, key, num_steps=num_steps, eval_every=eval_every, valid_batches=valid_batches)
