"""Meta-gradient estimators behind one interface.

Every estimator is a `flax.struct` dataclass holding its problem, static settings and traced
hyperparameters, with

    est.init(theta, key) -> state
    est.estimate(theta, state, key) -> (meta_grad, state, metrics)

where state is a `flax.struct` dataclass (the particle population) and metrics a flat dict.
Pass the estimator itself through `jax.jit` (see `compile_estimate`) so that its task data are
arguments, not constants baked into the program.

>>> import jax, optax, inner_tasks, lopt
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = get_estimator("pes", problem=problem, trunc=Truncation(trunc_length=5, min_horizon=10, max_horizon=50), num_tasks=4)
>>> theta = problem.arch.init(jax.random.key(0))
>>> step = compile_estimate(est)
>>> grad, state, metrics = step(theta, est.init(theta, jax.random.key(1)), jax.random.key(2))
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from estimators import sharding
from estimators.base import OBJECTIVES, Problem, Slots, Truncation
from estimators.bmg import BMG
from estimators.es_single import ESSingle
from estimators.full_es import SHAPINGS, STRATEGIES, FullES
from estimators.pes import PES
from estimators.probe import variance_probe
from estimators.problems import LOProblem
from estimators.tbptt import TBPTT

ESTIMATORS = {"pes": PES, "es_single": ESSingle, "full_es": FullES, "tbptt": TBPTT, "bmg": BMG}


def get_estimator(name: str, **kwargs: Any):
    """An estimator by name (see ESTIMATORS), built with its settings as keyword arguments."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; valid: {sorted(ESTIMATORS)}")
    return ESTIMATORS[name](**kwargs)


def _estimate(est, theta, state, key):
    return est.estimate(theta, state, key)


_jitted = jax.jit(_estimate, donate_argnums=(2,))


def compile_estimate(est) -> Callable:
    """`estimate(theta, state, key)` jitted with the estimator as an argument and the state donated."""
    return lambda theta, state, key: _jitted(est, theta, state, key)


__all__ = [
    "BMG", "ESSingle", "ESTIMATORS", "FullES", "LOProblem", "OBJECTIVES", "PES", "Problem", "SHAPINGS",
    "STRATEGIES", "Slots", "TBPTT", "sharding", "Truncation", "compile_estimate", "get_estimator", "variance_probe",
]
