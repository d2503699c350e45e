"""Full-horizon evolution strategies driven by any evosax strategy.

Each estimate evaluates the strategy's population on `num_tasks` fresh inner problems run for
the whole horizon (all members share tasks, data and keys), shapes the fitness with evosax's
shaping function and lets the strategy update its search distribution. The returned gradient
is θ − m', the strategy's proposed step: strategies that take an optax optimizer get plain
SGD(1), so for OpenES it is the (shaped) ES gradient and for PGPE that gradient times σ²
(evosax's convention); the outer optimizer sets the step size. The strategy's other state (adapted std, covariance) persists across estimates.

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

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from evosax.core import fitness_shaping
from jax.flatten_util import ravel_pytree
from flax import struct

from estimators import base

PyTree = Any

# name -> (class in evosax.algorithms, takes an optax optimizer, sets std through params.std_init).
# Classes are looked up when used: importing evosax.algorithms runs JAX computations, which
# would start the backend before a multi-host run can call jax.distributed.initialize.
STRATEGIES = {
    "open_es": ("Open_ES", True, False),
    "pgpe": ("PGPE", True, True),
    "snes": ("SNES", True, True),
    "cma_es": ("CMA_ES", False, True),
    "sep_cma_es": ("Sep_CMA_ES", False, True),
}
SHAPINGS = {
    "default": None,
    "identity": fitness_shaping.identity_fitness_shaping_fn,
    "centered_rank": fitness_shaping.centered_rank_fitness_shaping_fn,
    "standardize": fitness_shaping.standardize_fitness_shaping_fn,
    "normalize": fitness_shaping.normalize_fitness_shaping_fn,
}


@struct.dataclass
class FullESState:
    es: Any  # the evosax strategy state


@struct.dataclass
class FullES:
    """Static: problem, strategy and shaping names, population_size, horizon, num_tasks,
    objective, max_loss. Traced: sigma (the initial std of the search distribution).

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
    max_loss: float = struct.field(pytree_node=False, default=math.inf)
    sigma: float = 0.01

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown evosax strategy {self.strategy!r}; valid: {sorted(STRATEGIES)}")
        if self.fitness_shaping not in SHAPINGS:
            raise ValueError(f"unknown fitness shaping {self.fitness_shaping!r}; valid: {sorted(SHAPINGS)}")
        if self.population_size < 2 or self.population_size % 2:
            raise ValueError(f"population_size must be even and >= 2, got {self.population_size}")
        base.Truncation(trunc_length=self.horizon, objective=self.objective, max_loss=self.max_loss,
                        min_horizon=self.horizon, max_horizon=self.horizon)

    @property
    def num_particles(self) -> int:
        return self.population_size

    @property
    def inner_steps_per_estimate(self) -> int:
        return self.population_size * self.num_tasks * self.horizon

    @property
    def trunc(self) -> base.Truncation:
        return base.Truncation(trunc_length=self.horizon, min_horizon=self.horizon, max_horizon=self.horizon,
                               lockstep=True, objective=self.objective, max_loss=self.max_loss)

    def _strategy(self, theta: PyTree):
        from evosax import algorithms  # pylint: disable=import-outside-toplevel  (see STRATEGIES)

        cls_name, takes_opt, std_param = STRATEGIES[self.strategy]
        cls = getattr(algorithms, cls_name)
        kwargs = {}
        if takes_opt:
            kwargs["optimizer"] = optax.sgd(1.0)
        if self.strategy == "open_es":
            kwargs["std_schedule"] = optax.constant_schedule(self.sigma)
        if SHAPINGS[self.fitness_shaping] is not None:
            kwargs["fitness_shaping_fn"] = SHAPINGS[self.fitness_shaping]
        es = cls(population_size=self.population_size, solution=theta, **kwargs)
        params = es.default_params
        if std_param:
            params = params.replace(std_init=self.sigma)
        return es, params

    def init(self, theta: PyTree, key: jax.Array) -> FullESState:
        es, params = self._strategy(theta)
        with jax.numpy_rank_promotion("allow"):  # evosax relies on implicit rank promotion
            return FullESState(es.init(key, theta, params))

    def fitness(self, population: PyTree, key: jax.Array) -> tuple[jax.Array, base.Unrolled]:
        """Mean objective of each member (leading axis P) over num_tasks full-horizon runs."""
        k_init, k_run = jax.random.split(key)
        one = jax.tree.map(lambda x: x[0], population)
        slots = base.init_slots(self.problem, self.trunc, one, k_init, self.num_tasks, self.population_size,
                                particle_axis=1)
        thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.num_tasks,) + x.shape), population)
        _, out = base.unroll(self.problem, self.trunc, thetas, None, slots, k_run, particle_axis=1)
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
        grad, dropped = base.finite_or_zero(grad)
        # Every inner problem ran the whole horizon: that is where each one stopped.
        metrics = base.unroll_metrics(out, grad, mean_step=jnp.asarray(self.horizon, jnp.float32)) | {
            "es/population": jnp.asarray(self.population_size), "es/best_fitness": jnp.min(fit_P),
            "es/mean_fitness": jnp.mean(fit_P), "meta/dropped": dropped,
        }
        return grad, FullESState(es_state), metrics
