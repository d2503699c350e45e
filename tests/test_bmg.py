"""BMG against a numerically computed expected gradient on linear-quadratic unrolls (float64).

On `LinearQuadratic` (s ← A s + B θ, loss ½‖s − y‖², params = the state) the target x̃ of L − 1
further steps and one SGD step is computed here in numpy at θ, and the expected gradient is the
central finite difference in θ of μ(x̃, x_K(θ)) with x̃ held fixed, averaged over the slots kept.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from estimators import BMG, PerClassJit, Truncation, bmg
from estimators.toy import LinearQuadratic

pytestmark = pytest.mark.usefixtures("x64")  # float64 throughout (tests/conftest.py)

K, L, LR, HORIZON = 4, 3, 0.3, 50


def lq():
    return LinearQuadratic.create(jax.random.key(0), n=8, p=4, dtype=jnp.float64)


def theta0():
    return {"theta": jnp.asarray([0.3, -0.2, 0.5, 0.1], jnp.float64)}


def make(problem, matching="sqdist", num_tasks=3):
    trunc = Truncation(trunc_length=K, min_horizon=HORIZON, max_horizon=HORIZON, lockstep=True)
    return BMG(problem=problem, trunc=trunc, num_tasks=num_tasks, target_steps=L, matching=matching, target_lr=LR)


def start(est, theta, starts):
    """The estimator's initial state with slot i's state set to starts[i]."""
    state = est.init(theta, jax.random.key(1))
    return state.replace(slots=state.slots.replace(inner=jnp.asarray(starts)[:, None, :]))


def _estimate(est, theta, state, key):
    return est.estimate(theta, state, key)


estimate = PerClassJit(_estimate)


def numpy_lq(problem):
    a, b, y = (np.asarray(x, np.float64) for x in (problem.a, problem.b, problem.y))
    unroll = lambda s, th, k: s if k == 0 else unroll(a @ s + b @ th, th, k - 1)
    return a, b, y, unroll


def expected(problem, theta, starts, matching):
    """(mean over slots of the central-difference gradient of μ(x̃, x_K(θ)), mean μ at θ)."""
    a, b, y, unroll = numpy_lq(problem)
    th0 = np.asarray(theta["theta"], np.float64)
    grads, values = [], []
    for s0 in np.asarray(starts, np.float64):
        x_k = unroll(s0, th0, K)
        x_l = unroll(x_k, th0, L - 1)
        tgt = x_l - LR * (x_l - y)  # one SGD step on ½‖s − y‖²
        w = 1.0 if matching == "sqdist" else 1.0 / (np.mean(tgt**2) + bmg.SCALED_EPS)
        mu = lambda th: 0.5 * w * np.sum((tgt - unroll(s0, th, K)) ** 2)
        h = 1e-3  # μ is quadratic in θ: the central difference is exact up to rounding
        grads.append([(mu(th0 + h * e) - mu(th0 - h * e)) / (2 * h) for e in np.eye(th0.size)])
        values.append(mu(th0))
    return np.mean(grads, axis=0), np.mean(values)


def starts_for(problem, n=3):
    noise = jax.random.normal(jax.random.key(7), (n,) + problem.s0.shape, jnp.float64)
    return np.asarray(problem.s0)[None] + 0.5 * np.asarray(noise)


@pytest.mark.parametrize("matching", ["sqdist", "sqdist_scaled"])
def test_bmg_matches_the_finite_difference_gradient_of_the_matching_loss(matching):
    """L = 3 > 1, three slots from different states: the estimate is the mean over slots of
    ∇θ μ(x̃, x_K(θ)) at fixed x̃. For sqdist_scaled the weight is the constant 1/(mean x̃² + eps)
    computed here from x̃ alone: the weights carry no gradient."""
    problem, theta = lq(), theta0()
    est = make(problem, matching)
    starts = starts_for(problem)
    grad, state, metrics = estimate(est, theta, start(est, theta, starts), jax.random.key(2))
    want, mu = expected(problem, theta, starts, matching)
    assert np.abs(want).max() > 1e-2
    np.testing.assert_allclose(grad["theta"], want, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(metrics["bmg/matching"], mu, rtol=1e-10)
    assert int(metrics["meta/masked"]) == 0 and int(metrics["meta/dropped"]) == 0
    assert int(metrics["bmg/bad_targets"]) == 0
    # meta/loss is the inner loss of the unroll, not the matching loss.
    _, _, y, unroll = numpy_lq(problem)
    th0 = np.asarray(theta["theta"])
    inner = np.mean([np.mean([0.5 * np.sum((unroll(s, th0, t) - y) ** 2) for t in range(1, K + 1)]) for s in starts])
    np.testing.assert_allclose(metrics["meta/loss"], inner, rtol=1e-10)
    # The slots continue from x_K.
    _, _, _, unroll = numpy_lq(problem)
    np.testing.assert_allclose(state.slots.inner[:, 0], [unroll(s, th0, K) for s in starts], rtol=1e-10)


@pytest.mark.parametrize("poison", ["nan", "diverges"])
def test_bmg_masks_a_dead_slot_alone(poison):
    """A slot whose state is NaN or whose loss passes max_loss is dead and left out: the estimate
    is the other slots' mean, unchanged; the dead slot keeps its horizon (`estimators.unroll`)."""
    problem, theta = lq(), theta0()
    starts = starts_for(problem)
    bad = starts.copy()
    bad[1] = np.nan if poison == "nan" else 1e3  # ½‖s − y‖² ≈ 4e6 ≥ max_loss
    est = make(problem)
    grad, state, metrics = estimate(est, theta, start(est, theta, bad), jax.random.key(2))
    two = make(problem, num_tasks=2)
    clean, _, clean_metrics = estimate(two, theta, start(two, theta, starts[[0, 2]]), jax.random.key(2))
    assert np.all(np.isfinite(grad["theta"]))
    np.testing.assert_allclose(grad["theta"], clean["theta"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(metrics["bmg/matching"], clean_metrics["bmg/matching"], rtol=1e-12)
    assert int(metrics["meta/masked"]) == 1 and int(metrics["meta/dropped"]) == 0
    assert int(metrics["bmg/bad_targets"]) == 0  # a dead member's target does not count
    assert int(metrics["inner/diverged"]) == 1
    assert bool(state.slots.dead[1, 0]) and int(state.slots.horizon[1]) == HORIZON
    # Every slot dead: nothing left, the gradient is zeros and flagged as dropped.
    all_bad = np.full_like(starts, np.nan)
    grad, _, metrics = estimate(est, theta, start(est, theta, all_bad), jax.random.key(2))
    assert int(metrics["meta/dropped"]) == 1 and int(metrics["meta/masked"]) == 3
    assert not np.any(grad["theta"])


def test_bmg_restarts_the_slots_whose_target_diverges():
    """A live member whose target is not finite (here an infinite target step) is masked and its
    slot restarts at the next estimate; with every target bad the estimate is dropped."""
    problem, theta = lq(), theta0()
    est = make(problem)
    state = start(est, theta, starts_for(problem))
    grad, state, metrics = estimate(est.replace(target_lr=jnp.inf), theta, state, jax.random.key(2))
    assert int(metrics["bmg/bad_targets"]) == 3 and int(metrics["meta/masked"]) == 3
    assert int(metrics["meta/dropped"]) == 1 and not np.any(grad["theta"])
    assert not np.any(state.slots.dead)
    np.testing.assert_array_equal(state.slots.horizon, state.slots.step)
