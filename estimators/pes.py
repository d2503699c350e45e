"""Truncated Persistent Evolution Strategies (Vicol et al., 2021).

Every truncation draws fresh antithetic noise ε per slot and accumulates ξ += ε; the unbiased
estimate weights the losses by ξ, which carries the noise of all earlier truncations of the
same inner problem. When a slot restarts inside the truncation, the losses before the reset are
weighted by ξ + ε and those after it by ε alone, and ξ restarts from ε.

>>> import jax, inner_tasks, lopt
>>> from estimators import LOProblem, Truncation
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = PES(problem=problem, trunc=Truncation(trunc_length=5, min_horizon=10, max_horizon=50), num_tasks=4)
>>> theta = problem.arch.init(jax.random.key(0))
>>> state = est.init(theta, jax.random.key(1))
>>> grad, state, metrics = est.estimate(theta, state, jax.random.key(2))
>>> sorted(grad) == sorted(theta)
True
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from estimators.protocol import Truncated, Truncation
from estimators.reduce import after_reset, antithetic_grad, slot_metrics
from estimators.unroll import Slots, antithetic, init_slots, perturbations, tree_select, unroll

PyTree = Any


@struct.dataclass
class PESState:
    slots: Slots
    accum: PyTree  # ξ per slot: leaves (N, ...)


@struct.dataclass
class PES(Truncated):
    """Static: problem settings, truncation, num_tasks (antithetic pairs). Traced: sigma."""

    members: ClassVar[int] = 2  # θ+ε and θ−ε

    problem: Any
    trunc: Truncation = struct.field(pytree_node=False, default=Truncation())
    num_tasks: int = struct.field(pytree_node=False, default=8)
    sigma: float = 0.01

    def init(self, theta: PyTree, key: jax.Array) -> PESState:
        slots = init_slots(self.problem, self.trunc, theta, key, self.num_tasks, self.members)
        accum = jax.tree.map(lambda t: jnp.zeros((self.num_tasks,) + jnp.shape(t), jnp.result_type(t)), theta)
        return PESState(slots=slots, accum=accum)

    def estimate(self, theta: PyTree, state: PESState, key: jax.Array):
        k_eps, k_run = jax.random.split(key)
        eps = perturbations(k_eps, theta, self.num_tasks, self.sigma)
        slots, out = unroll(self.problem, self.trunc, antithetic(theta, eps), None, state.slots, k_run)
        w_before = jax.tree.map(jnp.add, state.accum, eps)
        grad, masked, dropped = antithetic_grad(out, w_before, eps, self.sigma)
        restarted = after_reset(out)
        accum = jax.vmap(tree_select)(restarted, eps, w_before)
        return grad, PESState(slots=slots, accum=accum), slot_metrics(slots, out, grad, masked, dropped)
