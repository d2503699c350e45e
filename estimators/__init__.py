"""Meta-gradient estimators behind one interface.

Every estimator is a `flax.struct` dataclass holding its problem, static settings and traced
hyperparameters, and follows the `Estimator` protocol (estimators/protocol.py):

    est.init(theta, key) -> state
    est.estimate(theta, state, key) -> (meta_grad, state, metrics)
    est.resample(theta, state, key) -> state    (the state's noise redrawn, for the variance probe)
    est.num_particles, est.state_particle_axis, est.particle_setting, est.inner_steps_per_estimate

where state is a `flax.struct` dataclass (the particle population, with `init`'s shapes and
dtypes after every estimate) and metrics a flat dict. Pass the estimator itself through
`jax.jit` (see `compile_estimate`) so that its task data are arguments, not constants baked
into the program. An estimator's settings are its dataclass fields (`settings(name)`), besides
`problem` and, for the truncated ones (`takes_truncation(name)`), `trunc`.

Layout, each module importing only those listed before it: `protocol` (the `Estimator` and
`Problem` protocols, `Truncation`), `sharding` (the particle axis over devices), `unroll` (slots,
one truncation of them, the divergence rule), `reduce` (gradients and metrics from an unroll),
`problems` (`LOProblem`, the learned-optimizer `Problem`), one module per estimator (`pes`,
`es_single`, `tbptt`, `bmg` with its target and matching, `full_es`), `compiled` (one jitted
program per estimator class), `probe` (the variance probe) and `toy` (problems with known
meta-gradients, for tests).

>>> import jax, optax, inner_tasks, lopt
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = get_estimator("pes", problem=problem, trunc=Truncation(trunc_length=5, min_horizon=10, max_horizon=50), num_tasks=4)
>>> theta = problem.arch.init(jax.random.key(0))
>>> step = compile_estimate(est)
>>> grad, state, metrics = step(theta, est.init(theta, jax.random.key(1)), jax.random.key(2))
>>> est.num_particles, est.inner_steps_per_estimate, settings("pes"), takes_truncation("pes")
(4, 40, ('num_tasks', 'sigma'), True)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from estimators import sharding
from estimators.protocol import OBJECTIVES, Estimator, Problem, Truncation
from estimators.bmg import BMG, MATCHINGS
from estimators.compiled import MAX_PROGRAMS, PerClassJit, node_classes
from estimators.es_single import ESSingle
from estimators.full_es import SHAPINGS, STRATEGIES, FullES
from estimators.pes import PES
from estimators.probe import variance_probe
from estimators.problems import LOProblem
from estimators.tbptt import TBPTT
from estimators.unroll import SlotState, Slots

ESTIMATORS = {"pes": PES, "es_single": ESSingle, "full_es": FullES, "tbptt": TBPTT, "bmg": BMG}
NOT_SETTINGS = ("problem", "trunc")  # fields that are not settings: built by the caller


def _class(name: str) -> type:
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; valid: {sorted(ESTIMATORS)}")
    return ESTIMATORS[name]


def settings(name: str) -> tuple[str, ...]:
    """The settings estimator `name` takes by keyword (its dataclass fields in order), besides
    its problem and truncation."""
    return tuple(f.name for f in dataclasses.fields(_class(name)) if f.name not in NOT_SETTINGS)


def takes_truncation(name: str) -> bool:
    """Whether estimator `name` is a truncated one, built with `trunc=Truncation(...)`."""
    return any(f.name == "trunc" for f in dataclasses.fields(_class(name)))


def get_estimator(name: str, **kwargs: Any) -> Estimator:
    """An estimator by name (see ESTIMATORS), built with its settings as keyword arguments."""
    return _class(name)(**kwargs)


def _estimate(est, theta, state, key):
    return est.estimate(theta, state, key)


_estimate_programs = PerClassJit(_estimate, donate_argnums=(2,))


def estimate_program(est: Estimator) -> Callable:
    """The jitted `(est, theta, state, key) -> estimate` that `compile_estimate` calls, with its own
    `lower(...).compile()` (benchmarks time compilation with it)."""
    return _estimate_programs.program(est)


def compile_estimate(est: Estimator) -> Callable:
    """`estimate(theta, state, key)` jitted with the estimator as an argument and the state
    donated; estimators of different classes never share a program (`PerClassJit`)."""
    program = estimate_program(est)
    return lambda theta, state, key: program(est, theta, state, key)


__all__ = [
    "BMG", "ESSingle", "ESTIMATORS", "Estimator", "FullES", "LOProblem", "MATCHINGS", "MAX_PROGRAMS", "OBJECTIVES", "PES",
    "PerClassJit", "Problem", "SHAPINGS", "STRATEGIES", "SlotState", "Slots", "TBPTT", "sharding", "Truncation",
    "compile_estimate", "estimate_program", "get_estimator", "node_classes", "settings", "takes_truncation", "variance_probe",
]
