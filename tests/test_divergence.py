"""The divergence rule (`estimators.unroll`) and the masking of non-finite estimates (float64).

`Cliff` is a one-parameter unroll whose smooth part rewards a larger θ while its state explodes
for θ above about 1.14: the capped objective L̃(θ) = Σ_t ℓ̃_t / K (ℓ̃ = max_loss from the first
step at or above it) is computed here in NumPy, independently of the estimators, and its
Gaussian smoothing's gradient by quadrature. `Poisoned` makes some slots' losses overflow to inf,
so that NaN enters the backward pass through the masked terms.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from estimators import ESSingle, FullES, PES, TBPTT, Truncation
from estimators.protocol import DEFAULT_MAX_LOSS
from estimators.reduce import slot_mean
from estimators.toy import LinearQuadratic

pytestmark = pytest.mark.usefixtures("x64")

T, K, SIGMA, MAX_LOSS = 20, 5, 0.1, 5.0
S0, RATE = 0.01, 2.0


@struct.dataclass
class Cliff:
    """s ← s·exp(RATE(θ−1)) from S0; loss exp(−θ) + s²: falls with θ until s explodes."""

    def init(self, theta, key):
        del key
        return jnp.asarray(S0, theta["theta"].dtype)

    def step(self, theta, s, key):
        del key
        th = theta["theta"][0]
        s = s * jnp.exp(RATE * (th - 1.0))
        return s, jnp.exp(-th) + s**2

    def final_loss(self, theta, s, key):
        del key
        return jnp.exp(-theta["theta"][0]) + s**2


def capped_objective(th: np.ndarray) -> np.ndarray:
    """L̃ for θ of shape (..., T), θ_t applied at step t: Σ_t ℓ̃_t / K, where ℓ̃ is max_loss from
    the first ℓ ≥ max_loss on. A scalar-per-row θ (..., 1) applies at every step."""
    th = np.broadcast_to(th, th.shape[:-1] + (T,))
    s = S0 * np.exp(np.cumsum(RATE * (th - 1.0), axis=-1))
    loss = np.exp(-th) + s**2
    dead = np.cumsum(loss >= MAX_LOSS, axis=-1) > 0
    return np.where(dead, MAX_LOSS, loss).sum(-1) / K


def smoothed_gradient(theta: float) -> tuple[float, float]:
    """ES-Single's target, one perturbation for the whole problem: d/dθ E_z L̃(θ + σz) =
    E[z L̃(θ + σz)] / σ, by the trapezoid rule on a fine grid (error ~1e-6); (value, 0)."""
    z = np.linspace(-9, 9, 400_001)
    w = np.exp(-z**2 / 2) / np.sqrt(2 * np.pi)
    return float(np.trapezoid(z * capped_objective(theta + SIGMA * z[:, None]) * w, z) / SIGMA), 0.0


def pes_smoothed_gradient(theta: float, n: int = 400_000) -> tuple[float, float]:
    """PES's target, an independent perturbation per truncation: ∇ E L̃(θ + ε_1, …, θ + ε_J),
    by Monte Carlo of its antithetic score-function identity over whole problems (no truncation,
    no estimator code): (mean, standard error)."""
    eps = SIGMA * np.random.default_rng(0).standard_normal((n, T // K))
    path = np.repeat(eps, K, axis=1)
    g = eps.sum(1) * (capped_objective(theta + path) - capped_objective(theta - path)) / (2 * SIGMA**2)
    return float(g.mean()), float(g.std(ddof=1) / np.sqrt(n))


def trunc(k=K):
    return Truncation(trunc_length=k, min_horizon=T, max_horizon=T, lockstep=True, max_loss=MAX_LOSS)


def episode_sums(est, theta, n_trunc, r, seed=0):
    """The sum of the estimates over one inner problem's truncations, r independent times."""

    def one(key):
        k_init, k_run = jax.random.split(key)
        state = est.init(theta, k_init)

        def body(state, k):
            g, state, m = est.estimate(theta, state, k)
            return state, (g["theta"][0], m["inner/diverged"])

        _, (gs, div) = jax.lax.scan(body, state, jax.random.split(k_run, n_trunc))
        return jnp.sum(gs), jnp.sum(div)

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), r))


@pytest.mark.parametrize("cls, reference", [(PES, pes_smoothed_gradient), (ESSingle, smoothed_gradient)])
def test_es_is_unbiased_for_the_capped_objective_and_pushes_away_from_divergence(cls, reference):
    """At θ = 1.1 about a third of the θ+ε members diverge, at different truncations, while
    their twins run on. The episode sums must estimate ∇ of the capped objective under the
    estimator's own smoothing (one ε per problem for ES-Single, one per truncation for PES: the
    two differ here, where L̃ is not quadratic), which points to smaller θ although the loss's
    smooth part falls with θ."""
    theta = {"theta": jnp.asarray([1.1])}
    est = cls(problem=Cliff(), trunc=trunc(), num_tasks=1, sigma=SIGMA)
    sums, diverged = episode_sums(est, theta, T // K, 6000)
    sums = np.asarray(sums)
    ref, ref_se = reference(1.1)
    mean, se = sums.mean(), sums.std(ddof=1) / np.sqrt(len(sums))
    assert 0.2 < np.mean(np.asarray(diverged) > 0) < 0.9  # a member diverged in many problems, not all
    assert abs(mean - ref) < 5 * np.hypot(se, ref_se) and se < 0.1 * abs(ref), (mean, se, ref, ref_se)
    smooth_part = -np.exp(-1.1) * T / K  # ∇ of Σ exp(−θ)/K alone: toward larger θ
    assert ref > 0 > smooth_part and mean > 5 * se  # away from the instability
    # Far from the cliff the same estimator follows the smooth part.
    far, _ = episode_sums(est, {"theta": jnp.asarray([0.5])}, T // K, 500, seed=1)
    assert np.mean(np.asarray(far)) < 0


def test_full_es_scores_a_diverged_member_at_the_cap_and_is_unbiased():
    theta = {"theta": jnp.asarray([1.1])}
    est = FullES(problem=Cliff(), strategy="open_es", fitness_shaping="identity", population_size=2, horizon=T,
                 num_tasks=1, sigma=SIGMA, max_loss=MAX_LOSS)
    sums, _ = episode_sums(est, theta, 1, 6000)
    sums = np.asarray(sums) * T / K  # full ES's objective is the mean over the T steps
    ref, _ = smoothed_gradient(1.1)
    assert abs(sums.mean() - ref) < 5 * sums.std(ddof=1) / np.sqrt(len(sums))


def test_tbptt_is_the_exact_gradient_of_the_capped_objective():
    """θ = 1.2 dies inside the unroll: the gradient is that of the terms before the divergence
    (the cap is a constant), matching central differences of the NumPy objective."""
    th, h = 1.2, 1e-6
    t = np.arange(1, T + 1)
    loss = np.exp(-th) + (S0 * np.exp(RATE * (th - 1) * t)) ** 2
    assert 0 < np.argmax(loss >= MAX_LOSS) < T - 1  # it dies mid-unroll
    est = TBPTT(problem=Cliff(), trunc=trunc(T), num_tasks=2)
    g, state, m = jax.jit(est.estimate)({"theta": jnp.asarray([th])}, est.init({"theta": jnp.asarray([th])},
                                        jax.random.key(0)), jax.random.key(1))
    fd = (capped_objective(np.asarray([th + h])) - capped_objective(np.asarray([th - h]))) / (2 * h) * K / T
    np.testing.assert_allclose(float(g["theta"][0]), fd, rtol=1e-6)
    assert int(m["inner/diverged"]) == 2 and int(m["inner/dead"]) == 2 and int(m["meta/masked"]) == 0
    assert np.all(np.asarray(state.slots.dead))


@struct.dataclass
class Poisoned:
    """LinearQuadratic whose instances are poisoned at random (probability ½, from the init key):
    a poisoned instance's loss is multiplied by exp(1e4·θ₀), inf in float64, so the backward pass
    of the masked term computes 0·inf = NaN."""

    problem: LinearQuadratic

    def init(self, theta, key):
        return self.problem.init(theta, key), jax.random.bernoulli(key).astype(jnp.float64)

    def step(self, theta, s, key):
        x, poison = s
        x, loss = self.problem.step(theta, x, key)
        return (x, poison), loss * jnp.exp(1e4 * poison * theta["theta"][0])

    def final_loss(self, theta, s, key):
        return self.problem.final_loss(theta, s[0], key)


def test_tbptt_masks_only_the_slots_whose_backward_pass_carries_nan():
    lq = LinearQuadratic.create(jax.random.key(0), n=8, p=4, dtype=jnp.float64)
    theta = {"theta": jnp.asarray([0.3, -0.2, 0.5, 0.1])}
    est = TBPTT(problem=Poisoned(lq), trunc=Truncation(trunc_length=T, min_horizon=T, max_horizon=T, lockstep=True),
                num_tasks=6)
    state = est.init(theta, jax.random.key(3))
    poisoned = int(jnp.sum(state.slots.inner[1][:, 0]))
    assert 0 < poisoned < 6
    g, _, m = jax.jit(est.estimate)(theta, state, jax.random.key(4))

    def clean(th):  # every clean slot runs the same deterministic problem
        s = lq.init(th, None)
        return jnp.sum(jax.lax.scan(lambda s, _: lq.step(th, s, None), s, None, T)[1]) / T

    # The premise: masking a poisoned loss by value leaves NaN in its gradient.
    step_loss = lambda th: Poisoned(lq).step(th, (lq.s0, jnp.asarray(1.0)), None)[1]
    naive = jax.grad(lambda th: jnp.where(jnp.isfinite(step_loss(th)), step_loss(th), 0.0))(theta)
    assert np.isnan(np.asarray(naive["theta"])).any()
    np.testing.assert_allclose(g["theta"], jax.grad(clean)(theta)["theta"], rtol=1e-10)
    assert int(m["meta/masked"]) == poisoned and int(m["meta/dropped"]) == 0


def test_every_slot_masked_drops_the_estimate():
    lq = LinearQuadratic.create(jax.random.key(0), n=8, p=4, dtype=jnp.float64)
    theta = {"theta": jnp.asarray([0.3, -0.2, 0.5, 0.1])}

    @struct.dataclass
    class AllPoisoned(Poisoned):
        def init(self, theta, key):
            return self.problem.init(theta, key), jnp.asarray(1.0)

    est = TBPTT(problem=AllPoisoned(lq), trunc=trunc(T), num_tasks=3)
    g, _, m = jax.jit(est.estimate)(theta, est.init(theta, jax.random.key(0)), jax.random.key(1))
    assert int(m["meta/dropped"]) == 1 and int(m["meta/masked"]) == 3
    assert not np.any(np.asarray(g["theta"]))


def test_slot_mean_averages_the_finite_valid_slots():
    x = {"a": jnp.asarray([[1.0, 2.0], [jnp.nan, 0.0], [3.0, 4.0]]), "b": jnp.asarray([1.0, 5.0, jnp.inf])}
    mean, masked, dropped = slot_mean(x)
    np.testing.assert_allclose(mean["a"], [1.0, 2.0]) and np.testing.assert_allclose(mean["b"], 1.0)
    assert int(masked) == 2 and not bool(dropped)
    mean, masked, dropped = slot_mean(x, valid_N=jnp.asarray([False, True, True]))
    assert int(masked) == 3 and bool(dropped) and float(mean["b"]) == 0.0


def test_max_loss_has_one_finite_default_shared_by_library_and_configs():
    from configs.base import base_config

    assert base_config().estimator.max_loss == DEFAULT_MAX_LOSS == Truncation().max_loss
    assert FullES(problem=Cliff()).max_loss == DEFAULT_MAX_LOSS and np.isfinite(DEFAULT_MAX_LOSS)
    with pytest.raises(ValueError, match="max_loss must be a positive finite number"):
        Truncation(max_loss=float("inf"))


@pytest.mark.parametrize("cls", [PES, ESSingle, TBPTT])
def test_lazy_freeze_keeps_the_rule(cls):
    """`Truncation.lazy_freeze` freezes the dead members only on steps where one is dead: the same
    estimates, metrics and states as the select on every step, here where members die mid-unroll
    (their frozen states stay finite; unfrozen, they would overflow)."""
    theta = {"theta": jnp.asarray([1.15])}
    kw = {} if cls is TBPTT else {"sigma": SIGMA}

    def run(lazy):
        est = cls(problem=Cliff(), trunc=Truncation(trunc_length=K, min_horizon=T, max_horizon=T, lockstep=True,
                                                    max_loss=MAX_LOSS, lazy_freeze=lazy), num_tasks=16, **kw)

        def body(state, k):
            g, state, m = est.estimate(theta, state, k)
            return state, (g, m)

        return jax.jit(lambda key: jax.lax.scan(body, est.init(theta, key), jax.random.split(key, T // K)))(
            jax.random.key(0))

    (state, (g, m)), (lazy_state, (lazy_g, lazy_m)) = run(False), run(True)
    assert int(jnp.sum(m["inner/diverged"])) > 0 and np.all(np.isfinite(np.asarray(state.slots.inner)))
    for a, b in zip(jax.tree.leaves((state, g, m)), jax.tree.leaves((lazy_state, lazy_g, lazy_m))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
