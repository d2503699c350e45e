"""Bootstrapped meta-gradients (Flennerhag et al., 2022) for a learned optimizer.

Unroll K differentiable inner steps x_K(θ); build a target x̃ from x_K by L−1 further
learned-optimizer steps and one plain SGD step (size `target_lr`) on the task loss, all under
stop-gradient; descend the matching loss μ(x̃, x_K(θ)). The effective horizon is K + L while
backpropagation covers K steps. The inner problem continues from x_K. With L = 1 and the raw
squared distance, the estimate is `target_lr` times the gradient of the loss at x_K.

The target (`target`) and the matching losses (`match`, one of `MATCHINGS`) live here, as
functions of the problem: they need an `LOProblem` (its task's loss, batches and logits), where
the other estimators take any `Problem`. The state is the slots alone (`base.SlotState`).

>>> import jax, inner_tasks, lopt
>>> from estimators import LOProblem, Truncation
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = BMG(problem=problem, trunc=Truncation(trunc_length=5, min_horizon=10, max_horizon=50), target_steps=3)
>>> theta = problem.arch.init(jax.random.key(0))
>>> grad, state, metrics = est.estimate(theta, est.init(theta, jax.random.key(1)), jax.random.key(2))
>>> float(metrics["bmg/matching"]) > 0
True
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from estimators import base
from estimators.problems import LOProblem

PyTree = Any
MATCHINGS = ("sqdist", "sqdist_raw", "kl")


def target(problem: LOProblem, theta: PyTree, s: dict, key: jax.Array, lo_steps: int, lr: jax.Array) -> PyTree:
    """Params after `lo_steps` more learned-optimizer steps of `problem` from its state `s`, then
    one SGD step of size `lr` on a training batch drawn with `key` itself; no gradient flows
    into the result."""
    theta, s = jax.lax.stop_gradient((theta, s))
    if lo_steps:
        s, _ = jax.lax.scan(lambda c, k: (problem.step(theta, c, k)[0], None), s,
                            jax.random.split(jax.random.fold_in(key, 1), lo_steps))
    task = problem.task.replace(inst=s["inst"])
    grads = jax.grad(task.loss)(s["params"], task.sample_batch(key, "train"))
    return jax.lax.stop_gradient(jax.tree.map(lambda p, g: p - lr * g, s["params"], grads))


def match(problem: LOProblem, target: PyTree, s: dict, key: jax.Array, kind: str) -> jax.Array:
    """BMG's matching loss μ(target, params of s), differentiable in s only.

    sqdist_raw: ½‖x̃ − x‖²; sqdist: the same per tensor divided by its (constant) value, so
    every tensor counts equally; kl: KL(p_target ‖ p_x) of the predictions on a batch."""
    params = s["params"]
    if kind == "kl":
        task = problem.task.replace(inst=s["inst"])
        batch = task.sample_batch(key, "train")
        logp_t = jax.nn.log_softmax(jax.lax.stop_gradient(task.logits(target, batch)), axis=-1)
        logp = jax.nn.log_softmax(task.logits(params, batch), axis=-1)
        return jnp.mean(jnp.sum(jnp.exp(logp_t) * (logp_t - logp), axis=-1))
    sq = [0.5 * jnp.sum(jnp.square(t - p)) for t, p in zip(jax.tree.leaves(target), jax.tree.leaves(params))]
    if kind == "sqdist":
        sq = [d / (jax.lax.stop_gradient(d) + 1e-12) for d in sq]
    return sum(sq)


@struct.dataclass
class BMG(base.Truncated):
    """Static: problem (an `LOProblem`), truncation (K = trunc_length), num_tasks, target_steps (L),
    matching ('sqdist' per-tensor scaled, 'sqdist_raw', or 'kl'). Traced: target_lr."""

    problem: Any
    trunc: base.Truncation = struct.field(pytree_node=False, default=base.Truncation())
    num_tasks: int = struct.field(pytree_node=False, default=8)
    target_steps: int = struct.field(pytree_node=False, default=5)
    matching: str = struct.field(pytree_node=False, default="sqdist")
    target_lr: float = 0.1

    def __post_init__(self):
        if self.target_steps < 1:
            raise ValueError(f"target_steps (L) must be >= 1, got {self.target_steps}")
        if self.matching not in MATCHINGS:
            raise ValueError(f"unknown matching {self.matching!r}; valid: {list(MATCHINGS)}")

    def init(self, theta: PyTree, key: jax.Array) -> base.SlotState:
        return base.SlotState(base.init_slots(self.problem, self.trunc, theta, key, self.num_tasks, self.members))

    def estimate(self, theta: PyTree, state: base.SlotState, key: jax.Array):
        keys = base.final_keys(key, self.num_tasks)

        def objective(theta):
            slots, out = base.unroll(self.problem, self.trunc, base.broadcast_theta(theta, self.num_tasks), None,
                                     state.slots, key)
            inner = jax.tree.map(lambda x: x[:, 0], slots.inner)
            tgt = jax.vmap(functools.partial(target, self.problem), in_axes=(None, 0, 0, None, None))(
                theta, inner, keys, self.target_steps - 1, self.target_lr)
            mu = jax.vmap(functools.partial(match, self.problem), in_axes=(0, 0, 0, None))(
                tgt, inner, keys, self.matching)
            ok = jnp.isfinite(mu)
            return jnp.sum(jnp.where(ok, mu, 0.0)) / self.num_tasks, (slots, out, ~ok)

        (mu, (slots, out, bad)), grad = jax.value_and_grad(objective, has_aux=True)(theta)
        grad, dropped = base.finite_or_zero(grad)
        # A slot whose target diverged is restarted at the next estimate.
        slots = slots.replace(horizon=jnp.where(bad, slots.step, slots.horizon))
        metrics = base.slot_metrics(slots, out, grad) | {
            "bmg/matching": mu, "bmg/bad_targets": jnp.sum(bad), "meta/dropped": dropped}
        return grad, base.SlotState(slots), metrics
