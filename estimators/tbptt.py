"""Truncated backpropagation: the exact gradient of the truncation's objective through K steps.

Biased toward short horizons (it ignores how θ's effect on the state reaches later
truncations) but low-variance; the slots carry their state on to the next truncation. Under the
divergence rule (`estimators.unroll`) it is the exact gradient of the capped objective; each
slot's gradient is computed apart, and a slot whose gradient is not finite (a step that
overflowed to inf before its loss could reach max_loss) is left out of the mean (`meta/masked`).

>>> import jax, inner_tasks, lopt
>>> from estimators import LOProblem, Truncation
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = TBPTT(problem=problem, trunc=Truncation(trunc_length=5, min_horizon=10, max_horizon=50))
>>> theta = problem.arch.init(jax.random.key(0))
>>> grad, state, metrics = est.estimate(theta, est.init(theta, jax.random.key(1)), jax.random.key(2))
>>> bool(grad["log_lr"] < 0)  # a larger learning rate lowers the loss
True
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from estimators.protocol import Truncated, Truncation
from estimators.reduce import slot_mean, slot_metrics
from estimators.unroll import SlotState, broadcast_theta, init_slots, unroll

PyTree = Any


@struct.dataclass
class TBPTT(Truncated):
    """Static: problem settings, truncation, num_tasks (slots)."""

    problem: Any
    trunc: Truncation = struct.field(pytree_node=False, default=Truncation())
    num_tasks: int = struct.field(pytree_node=False, default=8)

    def init(self, theta: PyTree, key: jax.Array) -> SlotState:
        return SlotState(init_slots(self.problem, self.trunc, theta, key, self.num_tasks, self.members))

    def estimate(self, theta: PyTree, state: SlotState, key: jax.Array):
        def objective(thetas_N):  # one copy of θ per slot, so that each slot's gradient is its own
            thetas = jax.tree.map(lambda t: t[:, None], thetas_N)
            slots, out = unroll(self.problem, self.trunc, thetas, None, state.slots, key)
            return jnp.sum(out.before_NxM + out.after_NxM), (slots, out)

        thetas_N = jax.tree.map(lambda t: t[:, 0], broadcast_theta(theta, self.num_tasks))
        grads_N, (slots, out) = jax.grad(objective, has_aux=True)(thetas_N)
        grad, masked, dropped = slot_mean(grads_N)
        return grad, SlotState(slots), slot_metrics(slots, out, grad, masked, dropped)
