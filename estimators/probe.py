"""Variance probe: repeated estimates at a fixed θ from one population state.

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

import functools
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


@functools.partial(jax.jit, static_argnames=("repeats",))
def variance_probe(est, theta: PyTree, state: Any, key: jax.Array, repeats: int = 32) -> dict[str, jax.Array]:
    """Statistics of `repeats` independent estimates at (θ, state): the total variance
    tr Cov(ĝ), the squared mean norm, their ratio and the signal-to-noise ratio ‖ḡ‖/√tr Cov."""
    grads = jax.vmap(lambda k: est.estimate(theta, state, k)[0])(jax.random.split(key, repeats))
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
