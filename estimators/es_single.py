"""ES-Single / Noise-Reuse ES (Vicol, Kolter & Swersky 2023; Li et al. 2023).

Each slot draws one antithetic perturbation ε when its inner problem starts and keeps it until
the problem ends; every truncation's estimate is ε(L⁺ − L⁻)/(2σ²). Summed over the truncations
of one problem this is exactly full-horizon antithetic ES, yet θ moves after every truncation.
A slot that restarts inside a truncation applies its next perturbation from the reset on.
Given its state, an estimate is therefore nearly deterministic (only the data vary): `resample`
redraws the perturbations, so that the variance probe sees the noise of the estimator.

>>> import jax, inner_tasks, lopt
>>> from estimators import LOProblem, Truncation
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = ESSingle(problem=problem, trunc=Truncation(trunc_length=5, min_horizon=10, max_horizon=50))
>>> theta = problem.arch.init(jax.random.key(0))
>>> grad, state, metrics = est.estimate(theta, est.init(theta, jax.random.key(1)), jax.random.key(2))
>>> bool(metrics["meta/grad_norm"] > 0)
True
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
from flax import struct

from estimators.protocol import Truncated, Truncation
from estimators.reduce import after_reset, antithetic_grad, slot_metrics
from estimators.unroll import Slots, antithetic, init_slots, perturbations, tree_select, unroll

PyTree = Any


@struct.dataclass
class ESSingleState:
    slots: Slots
    eps: PyTree  # the perturbation each slot applies to its current problem: leaves (N, ...)


@struct.dataclass
class ESSingle(Truncated):
    """Static: problem settings, truncation, num_tasks (antithetic pairs). Traced: sigma."""

    members: ClassVar[int] = 2  # θ+ε and θ−ε

    problem: Any
    trunc: Truncation = struct.field(pytree_node=False, default=Truncation())
    num_tasks: int = struct.field(pytree_node=False, default=8)
    sigma: float = 0.01

    def init(self, theta: PyTree, key: jax.Array) -> ESSingleState:
        k_slots, k_eps = jax.random.split(key)
        slots = init_slots(self.problem, self.trunc, theta, k_slots, self.num_tasks, self.members)
        return ESSingleState(slots=slots, eps=perturbations(k_eps, theta, self.num_tasks, self.sigma))

    def resample(self, theta: PyTree, state: ESSingleState, key: jax.Array) -> ESSingleState:
        """The state with every slot's perturbation redrawn as `init` draws it (`Estimator.resample`)."""
        return state.replace(eps=perturbations(key, theta, self.num_tasks, self.sigma))

    def estimate(self, theta: PyTree, state: ESSingleState, key: jax.Array):
        k_eps, k_run = jax.random.split(key)
        eps_next = perturbations(k_eps, theta, self.num_tasks, self.sigma)
        slots, out = unroll(
            self.problem, self.trunc, antithetic(theta, state.eps), antithetic(theta, eps_next),
            state.slots, k_run,
        )
        grad, masked, dropped = antithetic_grad(out, state.eps, eps_next, self.sigma)
        eps = jax.vmap(tree_select)(after_reset(out), eps_next, state.eps)
        return grad, ESSingleState(slots=slots, eps=eps), slot_metrics(slots, out, grad, masked, dropped)
