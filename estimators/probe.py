"""Variance probe: repeated estimates at a fixed θ from one population state.

Each repeat resamples the noise the state carries (`Estimator.resample`: ES-Single's per-slot
perturbations; nothing for the estimators whose `estimate` draws all its noise from its key)
and estimates from that copy with its own key, so the repeats are independent draws of the
estimator at that state. The state passed in is only read (not donated): training continues
from it unchanged. Under a mesh (`jax.set_mesh`) the repeats run on the sharded population.

>>> import jax, inner_tasks, lopt
>>> from estimators import LOProblem, PES, Truncation
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = PES(problem=problem, trunc=Truncation(trunc_length=5, min_horizon=10, max_horizon=50), num_tasks=2)
>>> theta = problem.arch.init(jax.random.key(0))
>>> stats = variance_probe(est, theta, est.init(theta, jax.random.key(1)), jax.random.key(2), 16)
>>> sorted(stats)
['probe/mean_norm', 'probe/relative_variance', 'probe/snr', 'probe/total_variance']
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from estimators.compiled import PerClassJit

PyTree = Any


def _variance_probe(est, theta: PyTree, state: Any, key: jax.Array, repeats: int = 32) -> dict[str, jax.Array]:
    """Statistics of `repeats` independent estimates at (θ, state): the total variance
    tr Cov(ĝ), the squared mean norm, their ratio and the signal-to-noise ratio ‖ḡ‖/√tr Cov."""

    def one(k):
        k_noise, k_estimate = jax.random.split(k)
        return est.estimate(theta, est.resample(theta, state, k_noise), k_estimate)[0]

    grads = jax.vmap(one)(jax.random.split(key, repeats))
    flat = jnp.concatenate([g.reshape(repeats, -1) for g in jax.tree.leaves(grads)], axis=1)
    mean = jnp.mean(flat, axis=0)
    total_var = jnp.sum(jnp.var(flat, axis=0, ddof=1))
    mean_sq = jnp.sum(jnp.square(mean))
    return {
        "probe/total_variance": total_var,
        "probe/mean_norm": jnp.sqrt(mean_sq),
        "probe/relative_variance": total_var / jnp.maximum(mean_sq, 1e-30),
        "probe/snr": jnp.sqrt(mean_sq / jnp.maximum(total_var, 1e-30)),
    }


# Jitted per estimator class (see estimators/compiled.py); the state is read, not donated.
variance_probe = PerClassJit(_variance_probe, static_argnames=("repeats",))
