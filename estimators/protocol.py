"""What an estimator is to its callers and what it unrolls: the `Estimator` and `Problem` protocols.

`Estimator` is what callers (the outer loop, `estimators.sharding`, config checks) rely on:
`init`, `estimate`, `resample` (fresh noise for the variance probe), the particle count and axis,
the setting that sets the count, and the inner steps behind one estimate. `Problem` is what an
estimator unrolls: any object with

    init(theta, key) -> S               a fresh inner problem (new task instance, params, optimizer state)
    step(theta, s, key) -> (S, loss)    one inner update and the meta-objective term of that step
    final_loss(theta, s, key) -> loss   the objective at state s (objective="truncation_end" takes it
                                        at the state each slot reaches at the end of the truncation)

where S is any pytree. `Truncation` holds the unroll settings the truncated estimators share, and
`Truncated` gives those estimators their `Estimator` attributes. This module imports nothing else
of the package, so every other module may depend on it.

>>> Truncation(trunc_length=10, min_horizon=50, max_horizon=50).sample_horizon(None, (2,)).tolist()
[50, 50]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

PyTree = Any
OBJECTIVES = ("mean", "truncation_end")
DEFAULT_MAX_LOSS = 100.0  # the shared default: 100× the problem's first loss when normalized
RENAMED_OBJECTIVES = {"final": "objective 'final' was renamed 'truncation_end': it is the loss at the end of each "
                               "truncation, not of the inner horizon"}


class Problem(Protocol):
    def init(self, theta: PyTree, key: jax.Array) -> PyTree: ...

    def step(self, theta: PyTree, s: PyTree, key: jax.Array) -> tuple[PyTree, jax.Array]: ...

    def final_loss(self, theta: PyTree, s: PyTree, key: jax.Array) -> jax.Array: ...


@runtime_checkable
class Estimator(Protocol):
    """A meta-gradient estimator, as its callers see it.

    state_particle_axis: the axis of every state leaf that runs over the particles (0 for the
        truncated estimators, whose state is all per slot), or None when the state is shared by
        all particles (full-horizon ES: its state is the search distribution, and its particles
        are the population members along axis 1 of the inner states it builds).
    particle_setting: the estimator setting that sets `num_particles` (for messages).
    """

    state_particle_axis: ClassVar[int | None]
    particle_setting: ClassVar[str]

    @property
    def num_particles(self) -> int:
        """The length of the particle axis (what a device mesh must divide)."""

    @property
    def inner_steps_per_estimate(self) -> int:
        """Inner steps (every member of every particle) behind one estimate."""

    def init(self, theta: PyTree, key: jax.Array) -> PyTree: ...

    def estimate(self, theta: PyTree, state: PyTree, key: jax.Array) -> tuple[PyTree, PyTree, dict[str, jax.Array]]:
        """(meta-gradient shaped like θ, the next state with `init`'s shapes and dtypes, flat metrics).

        The metrics hold at least `meta/loss`, `meta/grad_norm`, `meta/masked` (slots or members
        left out of the estimate because their contribution was not finite) and `meta/dropped`
        (1 when nothing was left: the gradient is zeros and callers must not step on it)."""

    def resample(self, theta: PyTree, state: PyTree, key: jax.Array) -> PyTree:
        """`state` with the noise that it carries into the next estimate drawn afresh from `key`
        (same shapes and dtypes), so that estimates from independently resampled copies of one
        state are independent draws of the estimator at that state. The variance probe calls it
        before every repeat. ES-Single redraws each slot's perturbation, which otherwise holds
        for the whole inner problem and makes every repeat identical; the default (`Truncated`,
        full ES) returns `state` as is: `estimate` already draws all its noise from its key (PES's
        accumulator is not such noise but the record of the noise its inner states were built with)."""


@dataclasses.dataclass(frozen=True)
class Truncation:
    """Static unroll settings shared by the truncated estimators.

    trunc_length: inner steps per estimate (K).
    min_horizon, max_horizon: inner-problem lengths are log-uniform over [min, max].
    lockstep: every slot starts together and runs exactly max_horizon steps (no staggering).
    objective: "mean" of the per-step losses over the truncation, or "truncation_end": the loss
        (`Problem.final_loss`) at the state each slot reaches at the end of the truncation, which
        is the end of the inner horizon only when the truncation covers it (full-horizon ES).
        ("final", its former name, is refused with that explanation.)
    max_loss: a per-step objective at or above this (or non-finite) marks the member dead: it
        contributes max_loss for the rest of its inner problem (the divergence rule of `estimators.unroll`).
    lazy_freeze: freeze the dead members' states only on steps where some member is dead (a
        population-level `lax.cond`) instead of by a select over every state on every step. The
        same values, and 1.14× faster on the throughput benchmark; off by default because XLA then
        compiles another program, whose meta-gradients can differ from the default's in the last
        bits (the shipped recipes keep their exact numbers).
    """

    trunc_length: int = 20
    min_horizon: int = 100
    max_horizon: int = 1000
    lockstep: bool = False
    objective: str = "mean"
    max_loss: float = DEFAULT_MAX_LOSS
    lazy_freeze: bool = False

    def __post_init__(self):
        if self.trunc_length < 1:
            raise ValueError(f"trunc_length must be >= 1, got {self.trunc_length}")
        if not 1 <= self.min_horizon <= self.max_horizon:
            raise ValueError(f"need 1 <= min_horizon <= max_horizon, got {self.min_horizon}, {self.max_horizon}")
        if self.objective in RENAMED_OBJECTIVES:
            raise ValueError(RENAMED_OBJECTIVES[self.objective])
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid: {list(OBJECTIVES)}")
        if not (self.max_loss > 0 and math.isfinite(self.max_loss)):
            raise ValueError(f"max_loss must be a positive finite number, got {self.max_loss}")

    def sample_horizon(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
        """Log-uniform integer horizons in [min_horizon, max_horizon] (max_horizon in lockstep)."""
        if self.lockstep or self.min_horizon == self.max_horizon:
            return jnp.full(shape, self.max_horizon, jnp.int32)
        lo, hi = math.log(self.min_horizon), math.log(self.max_horizon + 1)
        h = jnp.exp(jax.random.uniform(key, shape, minval=lo, maxval=hi))
        return jnp.clip(jnp.floor(h), self.min_horizon, self.max_horizon).astype(jnp.int32)


class Truncated:
    """The `Estimator` attributes of a truncated estimator (fields num_tasks and trunc): its
    particles are its `num_tasks` slots, axis 0 of every state leaf, each running `members`."""

    members: ClassVar[int] = 1
    state_particle_axis: ClassVar[int | None] = 0
    particle_setting: ClassVar[str] = "num_tasks"

    @property
    def num_particles(self) -> int:
        return self.num_tasks

    @property
    def inner_steps_per_estimate(self) -> int:
        return self.members * self.num_tasks * self.trunc.trunc_length

    def resample(self, theta: PyTree, state: PyTree, key: jax.Array) -> PyTree:
        """`Estimator.resample`'s default: `estimate` draws all its noise from its key."""
        del theta, key
        return state
