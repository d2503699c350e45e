"""Estimators against exact meta-gradients on linear-quadratic unrolls (float64).

The LQ objective is quadratic in θ, so antithetic ES estimates are exactly unbiased for any σ:
each coordinate's mean over R repeats must sit within 5 standard errors of `jax.grad` of the
full unroll (a z-score bound; an unbiased estimator fails it with probability ~1e-6).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from estimators import ESSingle, FullES, PES, PerClassJit, TBPTT, Truncation, variance_probe
from estimators.protocol import DEFAULT_MAX_LOSS
from estimators.toy import LinearQuadratic

T, SIGMA = 20, 0.1


pytestmark = pytest.mark.usefixtures("x64")  # float64 throughout (tests/conftest.py)


def lq():
    return LinearQuadratic.create(jax.random.key(0), n=8, p=4, dtype=jnp.float64)


def theta0():
    return {"theta": jnp.asarray([0.3, -0.2, 0.5, 0.1], jnp.float64)}


def exact_grad(problem, theta, scale):
    """∇ of scale·Σ_{t<T} l_t by backprop through the whole unroll."""

    def objective(th):
        s = problem.init(th, None)
        _, losses = jax.lax.scan(lambda s, _: problem.step(th, s, None), s, None, T)
        return scale * jnp.sum(losses)

    return jax.grad(objective)(theta)["theta"]


def lockstep(k, max_loss=DEFAULT_MAX_LOSS):
    return Truncation(trunc_length=k, min_horizon=T, max_horizon=T, lockstep=True, max_loss=max_loss)


def _episode(est, theta, key, n_trunc):
    """Sum of the estimates over one inner problem's truncations, at fixed θ."""
    k_init, k_run = jax.random.split(key)
    state = est.init(theta, k_init)

    def body(state, k):
        g, state, _ = est.estimate(theta, state, k)
        return state, g["theta"]

    _, gs = jax.lax.scan(body, state, jax.random.split(k_run, n_trunc))
    return jnp.sum(gs, axis=0)


episode = PerClassJit(_episode, static_argnames=("n_trunc",))  # one program per class


def repeats(est, theta, n_trunc, r, seed=1):
    return jax.vmap(lambda k: episode(est, theta, k, n_trunc))(jax.random.split(jax.random.key(seed), r))


def assert_unbiased(samples_RxP, exact_P):
    mean, se = samples_RxP.mean(0), samples_RxP.std(0, ddof=1) / np.sqrt(samples_RxP.shape[0])
    z = np.abs(np.asarray(mean - exact_P)) / np.asarray(se)
    assert np.all(z < 5), (z, mean, exact_P)
    # The bound has power: the exact gradient is well resolved at this R.
    assert np.all(np.asarray(se) < 0.2 * np.abs(np.asarray(exact_P)).max())


@pytest.mark.parametrize("k", [pytest.param(20, marks=pytest.mark.slow), 5, pytest.param(1, marks=pytest.mark.slow)])
@pytest.mark.parametrize("cls", [PES, ESSingle])
def test_truncated_es_is_unbiased(cls, k):
    problem, theta = lq(), theta0()
    est = cls(problem=problem, trunc=lockstep(k), num_tasks=1, sigma=SIGMA)
    samples = repeats(est, theta, T // k, 4000)
    assert_unbiased(samples, exact_grad(problem, theta, 1.0 / k))


@pytest.mark.parametrize("strategy", ["open_es", "pgpe"])
def test_full_horizon_evosax_es_is_unbiased(strategy):
    problem, theta = lq(), theta0()
    est = FullES(problem=problem, strategy=strategy, fitness_shaping="identity", population_size=2,
                 horizon=T, num_tasks=1, sigma=SIGMA)
    samples = repeats(est, theta, 1, 4000)
    # OpenES's step is the ES gradient; PGPE's omits the 1/σ² (evosax's convention).
    scale = 1.0 / T if strategy == "open_es" else SIGMA**2 / T
    assert_unbiased(samples, exact_grad(problem, theta, scale))


def test_tbptt_over_the_whole_horizon_is_the_exact_gradient():
    problem, theta = lq(), theta0()
    est = TBPTT(problem=problem, trunc=lockstep(T), num_tasks=2)
    g = episode(est, theta, jax.random.key(0), 1)
    np.testing.assert_allclose(g, exact_grad(problem, theta, 1.0 / T), rtol=1e-10)


def test_tbptt_truncated_drops_long_range_terms():
    """Truncated backprop is biased: it differs from the exact gradient by more than round-off."""
    problem, theta = lq(), theta0()
    g = episode(TBPTT(problem=problem, trunc=lockstep(2), num_tasks=1), theta, jax.random.key(0), T // 2)
    assert not np.allclose(g, exact_grad(problem, theta, 0.5), rtol=1e-3)


@pytest.mark.slow
def test_es_single_variance_is_flat_and_matches_theory():
    """tr Var(ĝ) = (P+1)‖∇L‖² for one antithetic pair, for any number of truncations."""
    problem, theta = lq(), theta0()
    ratios = []
    for k in (20, 4, 1):
        est = ESSingle(problem=problem, trunc=lockstep(k), num_tasks=1, sigma=SIGMA)
        samples = repeats(est, theta, T // k, 20000, seed=k)
        g = exact_grad(problem, theta, 1.0 / k)
        ratios.append(float(jnp.sum(samples.var(0, ddof=1)) / jnp.sum(g**2)))
    p = theta["theta"].size
    np.testing.assert_allclose(ratios, p + 1, rtol=0.1)


def test_variance_probe_of_es_single_follows_its_law_and_leaves_the_state_alone():
    """With K = T, ES-Single's estimate from a fresh population is full-horizon ES with n = 4
    antithetic pairs (N = 8 particles), whose law is tr Var(ĝ) = (P+1)‖∇L‖²/n = 2(P+1)‖∇L‖²/N.
    The probe must see it: ES-Single keeps its perturbations in the state, so repeats that did
    not redraw them (`resample`) would all be equal (tr Var ~1e-32)."""
    problem, theta = lq(), theta0()
    est = ESSingle(problem=problem, trunc=lockstep(T), num_tasks=4, sigma=SIGMA)
    r, p = 8000, theta["theta"].size
    state = est.init(theta, jax.random.key(0))
    before = jax.tree.map(np.array, state)
    stats = variance_probe(est, theta, state, jax.random.key(1), r)
    g = exact_grad(problem, theta, 1.0 / T)
    law = 2 * (p + 1) * float(jnp.sum(g**2)) / (2 * est.num_tasks)
    # The trace's sampling error at r = 8000 is 1.1% (spread over seeds); 6% is ~5 of those.
    np.testing.assert_allclose(stats["probe/total_variance"], law, rtol=0.06)
    assert abs(float(stats["probe/mean_norm"]) - float(jnp.linalg.norm(g))) < 5 * np.sqrt(law / r)
    # The outer loop probes the state it trains from: the probe reads it, never donates or alters it.
    jax.tree.map(np.testing.assert_array_equal, state, before)  # raises on a deleted (donated) buffer


def test_variance_probe_of_pes_equals_brute_force_repeats():
    """Mid-problem (ξ ≠ 0, K = 5): the probe's tr Var is the one of many independent estimates
    from the same state computed directly, within 5 standard errors of their difference."""
    problem, theta = lq(), theta0()
    est = PES(problem=problem, trunc=lockstep(5), num_tasks=2, sigma=SIGMA)
    estimate = jax.jit(est.estimate)
    state = est.init(theta, jax.random.key(0))
    for k in jax.random.split(jax.random.key(1), 2):
        _, state, _ = estimate(theta, state, k)
    assert np.abs(np.asarray(state.accum["theta"])).min() > 0
    r = 8000
    stats = variance_probe(est, theta, state, jax.random.key(2), r)
    grads = np.asarray(jax.jit(jax.vmap(lambda k: est.estimate(theta, state, k)[0]["theta"]))(
        jax.random.split(jax.random.key(3), r)))
    dev = np.sum((grads - grads.mean(0)) ** 2, axis=1)  # ‖ĝ_i − ḡ‖²: their mean is tr Var
    brute, se = dev.sum() / (r - 1), dev.std(ddof=1) / np.sqrt(r)
    assert se < 0.05 * brute  # the comparison resolves a 10% error
    assert abs(float(stats["probe/total_variance"]) - brute) < 5 * np.sqrt(2) * se, (stats, brute, se)
    assert abs(float(stats["probe/mean_norm"]) - np.linalg.norm(grads.mean(0))) < 5 * np.sqrt(2 * brute / r)


def direct_full_es(problem, theta, eps, scale):
    """ε (L(θ+ε) − L(θ−ε)) / 2σ² with L = scale·Σ_t l_t over the full horizon."""

    def total(th):
        s = problem.init(th, None)
        return scale * jnp.sum(jax.lax.scan(lambda s, _: problem.step(th, s, None), s, None, T)[1])

    plus = total({"theta": theta["theta"] + eps})
    minus = total({"theta": theta["theta"] - eps})
    return eps * (plus - minus) / (2 * SIGMA**2)


def test_es_single_summed_over_truncations_equals_full_horizon_es():
    problem, theta = lq(), theta0()
    key = jax.random.key(3)
    k_init, _ = jax.random.split(key)
    eps = ESSingle(problem=problem, trunc=lockstep(5), num_tasks=1, sigma=SIGMA).init(theta, k_init).eps["theta"][0]
    summed = episode(ESSingle(problem=problem, trunc=lockstep(5), num_tasks=1, sigma=SIGMA), theta, key, T // 5)
    np.testing.assert_allclose(summed, direct_full_es(problem, theta, eps, 1.0 / 5), rtol=1e-9)
    single = episode(ESSingle(problem=problem, trunc=lockstep(T), num_tasks=1, sigma=SIGMA), theta, key, 1)
    np.testing.assert_allclose(summed, single * T / 5, rtol=1e-9)


def test_pes_with_one_truncation_equals_full_es():
    problem, theta = lq(), theta0()
    est = PES(problem=problem, trunc=lockstep(T), num_tasks=1, sigma=SIGMA)
    g, state, _ = jax.jit(est.estimate)(theta, est.init(theta, jax.random.key(0)), jax.random.key(1))
    eps = state.accum["theta"][0]  # after one truncation the accumulator is exactly its noise
    np.testing.assert_allclose(g["theta"], direct_full_es(problem, theta, eps, 1.0 / T), rtol=1e-9)


@struct.dataclass
class Shifted:
    """The same problem with a constant added to every loss."""

    problem: LinearQuadratic
    c: float

    def init(self, theta, key):
        return self.problem.init(theta, key)

    def step(self, theta, s, key):
        s, loss = self.problem.step(theta, s, key)
        return s, loss + self.c

    def final_loss(self, theta, s, key):
        return self.problem.final_loss(theta, s, key) + self.c


BIG = 1e9  # max_loss far above the shifted losses: the shift must not read as divergence


@pytest.mark.parametrize("make", [
    lambda p: PES(problem=p, trunc=lockstep(5, BIG), num_tasks=3, sigma=SIGMA),
    lambda p: ESSingle(problem=p, trunc=lockstep(5, BIG), num_tasks=3, sigma=SIGMA),
    lambda p: FullES(problem=p, strategy="open_es", fitness_shaping="identity", population_size=6, horizon=T,
                     max_loss=BIG),
    lambda p: FullES(problem=p, strategy="pgpe", fitness_shaping="identity", population_size=6, horizon=T,
                     max_loss=BIG),
    lambda p: FullES(problem=p, strategy="snes", fitness_shaping="standardize", population_size=6, horizon=T,
                     max_loss=BIG),
], ids=["pes", "es_single", "open_es", "pgpe", "snes_standardize"])
def test_adding_a_constant_to_every_loss_changes_nothing(make):
    """Each of these uses raw loss values (antithetic differences, identity or standardizing
    shaping), so each could leak the offset. Left out because they cannot: TBPTT (a constant has
    no gradient) and rank-based shapings (ranks ignore it)."""
    theta = theta0()
    base_est, shifted = make(Shifted(lq(), 0.0)), make(Shifted(lq(), 123.0))
    g0 = episode(base_est, theta, jax.random.key(7), 2)
    g1 = episode(shifted, theta, jax.random.key(7), 2)
    assert np.abs(np.asarray(g0)).max() > 1e-3
    np.testing.assert_allclose(g1, g0, rtol=1e-7, atol=1e-10)


def test_reset_inside_a_truncation_weights_the_new_problem_by_the_new_noise():
    """PES with horizon 6 and K = 4: the second truncation holds a reset. The sum over an
    episode stays unbiased for the objective of the problems it covers (three problems of
    6 steps in 18 steps = 4.5 truncations is not whole, so use 12 steps = 3 truncations)."""
    problem, theta = lq(), theta0()
    h = 6
    est = PES(problem=problem, trunc=Truncation(trunc_length=4, min_horizon=h, max_horizon=h, lockstep=True),
              num_tasks=1, sigma=SIGMA)
    samples = repeats(est, theta, 3, 4000)

    def objective(th):  # two back-to-back problems of h steps
        s = problem.init(th, None)
        _, losses = jax.lax.scan(lambda s, _: problem.step(th, s, None), s, None, h)
        return 2 * jnp.sum(losses) / 4

    exact = jax.grad(objective)(theta)["theta"]
    assert_unbiased(samples, exact)
    k_init, k_run = jax.random.split(jax.random.key(0))
    state = est.init(theta, k_init)
    for k in jax.random.split(k_run, 2):
        _, state, metrics = jax.jit(est.estimate)(theta, state, k)
    assert int(metrics["inner/resets"]) == 1 and int(state.slots.step[0]) == 2


def test_staggered_slots_cover_the_horizon():
    problem, theta = lq(), theta0()
    est = PES(problem=problem, trunc=Truncation(trunc_length=5, min_horizon=50, max_horizon=200), num_tasks=64)
    state = est.init(theta, jax.random.key(0))
    h = np.asarray(state.slots.horizon)
    assert h.min() >= 1 and h.max() <= 200 and len(np.unique(h)) > 30
    horizons = np.asarray(est.trunc.sample_horizon(jax.random.key(1), (4000,)))
    assert horizons.min() >= 50 and horizons.max() <= 200
    # Log-uniform: the geometric midpoint √(50·200) = 100 splits the mass in half.
    assert abs(np.mean(horizons < 100) - 0.5) < 0.05
    assert Truncation(lockstep=True).sample_horizon(jax.random.key(0), (3,)).tolist() == [1000] * 3
