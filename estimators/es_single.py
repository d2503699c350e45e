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

from estimators import base

PyTree = Any


@struct.dataclass
class ESSingleState:
    slots: base.Slots
    eps: PyTree  # the perturbation each slot applies to its current problem: leaves (N, ...)


@struct.dataclass
class ESSingle(base.Truncated):
    """Static: problem settings, truncation, num_tasks (antithetic pairs). Traced: sigma."""

    members: ClassVar[int] = 2  # θ+ε and θ−ε

    problem: Any
    trunc: base.Truncation = struct.field(pytree_node=False, default=base.Truncation())
    num_tasks: int = struct.field(pytree_node=False, default=8)
    sigma: float = 0.01

    def init(self, theta: PyTree, key: jax.Array) -> ESSingleState:
        k_slots, k_eps = jax.random.split(key)
        slots = base.init_slots(self.problem, self.trunc, theta, k_slots, self.num_tasks, self.members)
        return ESSingleState(slots=slots, eps=base.perturbations(k_eps, theta, self.num_tasks, self.sigma))

    def resample(self, theta: PyTree, state: ESSingleState, key: jax.Array) -> ESSingleState:
        """The state with every slot's perturbation redrawn as `init` draws it (`Estimator.resample`)."""
        return state.replace(eps=base.perturbations(key, theta, self.num_tasks, self.sigma))

    def estimate(self, theta: PyTree, state: ESSingleState, key: jax.Array):
        k_eps, k_run = jax.random.split(key)
        eps_next = base.perturbations(k_eps, theta, self.num_tasks, self.sigma)
        slots, out = base.unroll(
            self.problem, self.trunc, base.antithetic(theta, state.eps), base.antithetic(theta, eps_next),
            state.slots, k_run,
        )
        grad, masked, dropped = base.antithetic_grad(out, state.eps, eps_next, self.sigma)
        eps = jax.vmap(base.tree_select)(base.after_reset(out), eps_next, state.eps)
        return grad, ESSingleState(slots=slots, eps=eps), base.slot_metrics(slots, out, grad, masked, dropped)
