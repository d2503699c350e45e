"""`estimators.compile_estimate`: one program per estimator class.

jax 0.10.2 compares the treedefs of two registered dataclasses of the same layout as equal while
their hashes differ (estimators/NOTES.md), so one jitted function shared by every estimator could
run one class on the program traced for another: PES and ES-Single (and their states) have the
same layout, and a process that ran both once crashed with "'PESState' object has no attribute 'eps'".
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import estimators
import inner_tasks
import lopt
from estimators import ESSingle, LOProblem, PES, Truncation


def close(a, b):
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


# Four learned-optimizer programs take ~12 s to compile on two cores. The same-layout classes below
# are what catches a shared program in CI: these two collided in none of six processes.
@pytest.mark.slow
def test_pes_and_es_single_alternate_on_their_own_programs():
    problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
    theta = problem.arch.init(jax.random.key(0))
    trunc = Truncation(trunc_length=2, min_horizon=4, max_horizon=8)
    ests = [PES(problem=problem, trunc=trunc, num_tasks=2), ESSingle(problem=problem, trunc=trunc, num_tasks=2)]
    states = [jax.jit(type(est).init)(est, theta, jax.random.key(1)) for est in ests]
    steps = [estimators.compile_estimate(est) for est in ests]
    references = [jax.jit(type(est).estimate) for est in ests]  # one function per class, nothing shared
    for i in range(20):
        for j, est in enumerate(ests):
            key = jax.random.fold_in(jax.random.key(2), i)
            ref_grad, ref_state, _ = references[j](est, theta, states[j], key)
            donated = states[j]
            grad, states[j], _ = steps[j](theta, states[j], key)
            assert type(states[j]) is type(ref_state) is type(donated), (i, type(est).__name__)
            jax.tree.map(close, (grad, states[j]), (ref_grad, ref_state))
            assert jax.tree.leaves(donated)[0].is_deleted()  # the state is donated
    assert abs(float(grad["log_lr"])) > 0  # a real gradient, compared above


def _toy_class(i: int):
    """An estimator class whose estimate is θ·i: every one has the same layout, as its state has."""

    @struct.dataclass
    class State:
        count: jax.Array

    @struct.dataclass
    class Toy:
        sigma: float = 1.0

        def init(self, theta, key):
            return State(count=jnp.zeros((), jnp.int32))

        def estimate(self, theta, state, key):
            return jax.tree.map(lambda t: t * i, theta), State(count=state.count + 1), {}

    Toy.__name__, State.__name__ = f"Toy{i}", f"State{i}"
    return Toy


def test_estimator_classes_of_one_layout_never_share_a_program():
    """Under one shared jit cache, each of eleven processes ran some of these 40 classes on another
    one's program (the first one between class 5 and class 27)."""
    theta = {"w": jnp.ones(3)}
    ests = [_toy_class(i)() for i in range(40)]
    for _ in range(2):
        for i, est in enumerate(ests):
            grad, state, _ = estimators.compile_estimate(est)(theta, est.init(theta, None), None)
            assert type(state).__name__ == f"State{i}" and float(grad["w"][0]) == i, (i, type(state).__name__)


def test_per_class_jit_keeps_at_most_max_programs_and_stays_correct():
    """A long run draws new shapes: the cache is bounded, and a call after emptying it recompiles."""
    f = estimators.PerClassJit(lambda est, x: est["scale"] * x + 1.0, max_programs=2)
    est = {"scale": jnp.float32(2.0)}
    for n in range(1, 6):  # five shapes, five programs traced, never more than two kept
        x = jnp.arange(n, dtype=jnp.float32)
        np.testing.assert_array_equal(f(est, x), 2.0 * np.arange(n) + 1.0)
        assert f.program(est)._cache_size() <= 2
    with pytest.raises(ValueError, match="max_programs"):
        estimators.PerClassJit(lambda est: est, max_programs=0)
