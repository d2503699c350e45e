"""Full-horizon evolution strategies driven by any evosax strategy.

Each estimate evaluates the strategy's population on `num_tasks` fresh inner problems run for
the whole horizon (all members share tasks, data and keys), shapes the fitness with evosax's
shaping function and lets the strategy update its search distribution. The returned gradient
is θ − m', the strategy's proposed step (strategies that take an optax optimizer get plain
SGD(1)); the outer optimizer sets the step size. The strategy's other state (adapted std,
covariance) persists across estimates. The step's scale at std σ, for ĝ = ∇L/‖∇L‖ in the linear
limit with P = 64 members (measured on the linear-quadratic toy: tests/test_full_es_strategies.py):

    open_es      identity: ∇L (unbiased); default (= centered_rank): ĝ/(2√π σ) ≈ 0.28 ĝ/σ;
                 standardize: ĝ/σ; normalize: ≈ 0.43 ĝ/σ (÷ the largest |ĝ·ε|/σ: falls slowly with P)
    pgpe         σ² × open_es's with the same shaping (evosax's convention): identity gives σ²∇L
    snes         c·σ·ĝ, c ≈ 1.30 default, 1.55 centered_rank, 1.59 standardize, 1.53 normalize
    (sep_)cma_es ≈ 1.31·σ·ĝ (default, its only shaping)

Only identity shaping follows ∇L's magnitude; the other steps are fixed by σ and P, and SNES's
and CMA-ES's by their own learning rates and adapted σ (and covariance). `STRATEGIES` says which
shapings each strategy accepts and why; the others are refused when the estimator is built.

>>> import jax, inner_tasks, lopt
>>> from estimators import LOProblem
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = FullES(problem=problem, strategy="open_es", population_size=8, horizon=20, num_tasks=2)
>>> theta = problem.arch.init(jax.random.key(0))
>>> grad, state, metrics = est.estimate(theta, est.init(theta, jax.random.key(1)), jax.random.key(2))
>>> int(metrics["es/population"])
8
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax
from evosax.core import fitness_shaping
from jax.flatten_util import ravel_pytree
from flax import struct

from estimators.protocol import DEFAULT_MAX_LOSS, Truncation
from estimators.reduce import finite_or_zero, unroll_metrics
from estimators.unroll import Unrolled, init_slots, tree_select, unroll

PyTree = Any

SHAPINGS = {
    "default": None,
    "identity": fitness_shaping.identity_fitness_shaping_fn,
    "centered_rank": fitness_shaping.centered_rank_fitness_shaping_fn,
    "standardize": fitness_shaping.standardize_fitness_shaping_fn,
    "normalize": fitness_shaping.normalize_fitness_shaping_fn,
}


class Strategy(NamedTuple):
    """An evosax strategy as FullES drives it. Its class is looked up when used: importing
    evosax.algorithms runs JAX computations, which would start the backend before a multi-host
    run can call jax.distributed.initialize."""

    cls_name: str  # the class in evosax.algorithms
    takes_optimizer: bool  # takes an optax optimizer (FullES gives it SGD(1))
    std_init: bool  # sets its initial std through params.std_init
    shapings: tuple[str, ...]  # the fitness shapings its update can use
    utilities: bool  # its update climbs the shaped values (see `_utilities`)
    why_not: str = ""  # why it refuses the other shapings


# OpenES and PGPE step against Σ f̃ᵢεᵢ (antithetic): lower shaped fitness is better, as for the
# loss, so every shaping applies to the loss. SNES, CMA-ES and Sep-CMA-ES step along Σ uᵢεᵢ with
# utilities u, higher is better (their default: evosax's rank weights); SNES takes a shaping as
# `_utilities` of it, CMA-ES only its own weights.
STRATEGIES = {
    "open_es": Strategy("Open_ES", True, False, tuple(SHAPINGS), False),
    "pgpe": Strategy("PGPE", True, True, tuple(SHAPINGS), False),
    "snes": Strategy("SNES", True, True, ("default", "centered_rank", "standardize", "normalize"), True,
                     "raw losses are not utilities: SNES samples without antithetic pairs, so its step and std "
                     "would follow the loss's offset and units"),
    **{name: Strategy(cls_name, False, True, ("default",), True,
                      "it recombines with its own rank weights, from which its learning rates, μ_eff and evolution "
                      "paths are derived; other values move the mean too far and blow up σ and the covariance")
       for name, cls_name in (("cma_es", "CMA_ES"), ("sep_cma_es", "Sep_CMA_ES"))},
}


def _utilities(shape_fn, population, fitness, state, params):
    """A shaping as utilities for a strategy that climbs them (SNES): −shape(loss), so that a
    lower loss ranks higher, scaled to the norm of the strategy's default rank weights, the scale
    its std learning rate is set for (unscaled, centered ranks have 12× that norm at P = 64 and
    standardized losses 40×: σ random-walks, to 1e-6 of its start within ten estimates on a toy)."""
    u = -shape_fn(population, fitness, state, params)
    return u * jnp.linalg.norm(params.weights) / jnp.maximum(jnp.linalg.norm(u), jnp.finfo(u.dtype).tiny)


@struct.dataclass
class FullESState:
    es: Any  # the evosax strategy state


@struct.dataclass
class FullES:
    """Static: problem, strategy and shaping names, population_size, horizon, num_tasks,
    objective, max_loss. Traced: sigma (the initial std of the search distribution).
    objective: as `Truncation`'s; its one truncation is the whole horizon, so here
    "truncation_end" is the loss at the end of the inner horizon.

    Its particles are the population members: the state (the search distribution) is shared by
    all of them, and the inner states it builds run over them along axis 1."""

    state_particle_axis: ClassVar[int | None] = None
    particle_setting: ClassVar[str] = "population_size"

    problem: Any
    strategy: str = struct.field(pytree_node=False, default="open_es")
    fitness_shaping: str = struct.field(pytree_node=False, default="default")
    population_size: int = struct.field(pytree_node=False, default=16)
    horizon: int = struct.field(pytree_node=False, default=100)
    num_tasks: int = struct.field(pytree_node=False, default=1)
    objective: str = struct.field(pytree_node=False, default="mean")
    max_loss: float = struct.field(pytree_node=False, default=DEFAULT_MAX_LOSS)
    sigma: float = 0.01

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown evosax strategy {self.strategy!r}; valid: {sorted(STRATEGIES)}")
        if self.fitness_shaping not in SHAPINGS:
            raise ValueError(f"unknown fitness shaping {self.fitness_shaping!r}; valid: {sorted(SHAPINGS)}")
        spec = STRATEGIES[self.strategy]
        if self.fitness_shaping not in spec.shapings:
            raise ValueError(f"fitness_shaping={self.fitness_shaping!r} does not work with strategy={self.strategy!r}: "
                             f"{spec.why_not}. Valid shapings for {self.strategy!r}: {list(spec.shapings)}")
        if self.population_size < 2 or self.population_size % 2:
            raise ValueError(f"population_size must be even and >= 2, got {self.population_size}")
        Truncation(trunc_length=self.horizon, objective=self.objective, max_loss=self.max_loss,
                        min_horizon=self.horizon, max_horizon=self.horizon)

    @property
    def num_particles(self) -> int:
        return self.population_size

    @property
    def inner_steps_per_estimate(self) -> int:
        return self.population_size * self.num_tasks * self.horizon

    @property
    def trunc(self) -> Truncation:
        return Truncation(trunc_length=self.horizon, min_horizon=self.horizon, max_horizon=self.horizon,
                               lockstep=True, objective=self.objective, max_loss=self.max_loss)

    def _strategy(self, theta: PyTree):
        from evosax import algorithms  # pylint: disable=import-outside-toplevel  (see STRATEGIES)

        spec = STRATEGIES[self.strategy]
        cls = getattr(algorithms, spec.cls_name)
        kwargs = {}
        if spec.takes_optimizer:
            kwargs["optimizer"] = optax.sgd(1.0)
        if self.strategy == "open_es":
            kwargs["std_schedule"] = optax.constant_schedule(self.sigma)
        shape_fn = SHAPINGS[self.fitness_shaping]
        if shape_fn is not None:
            kwargs["fitness_shaping_fn"] = functools.partial(_utilities, shape_fn) if spec.utilities else shape_fn
        es = cls(population_size=self.population_size, solution=theta, **kwargs)
        params = es.default_params
        if spec.std_init:
            params = params.replace(std_init=self.sigma)
        return es, params

    def init(self, theta: PyTree, key: jax.Array) -> FullESState:
        es, params = self._strategy(theta)
        with jax.numpy_rank_promotion("allow"):  # evosax relies on implicit rank promotion
            return FullESState(es.init(key, theta, params))

    def resample(self, theta: PyTree, state: FullESState, key: jax.Array) -> FullESState:
        """The state as is (`Estimator.resample`): every estimate draws a fresh population."""
        del theta, key
        return state

    def fitness(self, population: PyTree, key: jax.Array) -> tuple[jax.Array, Unrolled]:
        """Mean objective of each member (leading axis P) over num_tasks full-horizon runs."""
        k_init, k_run = jax.random.split(key)
        one = jax.tree.map(lambda x: x[0], population)
        slots = init_slots(self.problem, self.trunc, one, k_init, self.num_tasks, self.population_size,
                                particle_axis=1)
        thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.num_tasks,) + x.shape), population)
        _, out = unroll(self.problem, self.trunc, thetas, None, slots, k_run, particle_axis=1)
        return jnp.mean(out.before_NxM + out.after_NxM, axis=0), out

    def estimate(self, theta: PyTree, state: FullESState, key: jax.Array):
        es, params = self._strategy(theta)
        k_ask, k_eval, k_tell = jax.random.split(key, 3)
        mean, unravel = ravel_pytree(theta)
        es_state = state.es.replace(mean=mean)
        with jax.numpy_rank_promotion("allow"):  # evosax relies on implicit rank promotion
            population, es_state = es.ask(k_ask, es_state, params)
        fit_P, out = self.fitness(population, k_eval)
        with jax.numpy_rank_promotion("allow"):
            es_state, _ = es.tell(k_tell, population, fit_P, es_state, params)
        grad = unravel(mean - es_state.mean)
        grad, dropped = finite_or_zero(grad)
        es_state = tree_select(dropped, state.es, es_state)  # a dropped step leaves the search as it was
        # Every inner problem ran the whole horizon: that is where each one stopped. A diverged
        # member is not masked but scored max_loss (capped), so only a non-finite step drops.
        metrics = unroll_metrics(out, grad, jnp.asarray(self.horizon, jnp.float32), dropped, dropped) | {
            "es/population": jnp.asarray(self.population_size), "es/best_fitness": jnp.min(fit_P),
            "es/mean_fitness": jnp.mean(fit_P),
        }
        return grad, FullESState(es_state), metrics
