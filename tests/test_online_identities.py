"""lopt.online: the exact identities of online meta-learning in float64:
heavy ball and Nesterov iterate for iterate, optimistic L = 1 = α × standard, the element-wise
closed form against autodiff, and the unrolled meta-gradient against finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import lopt
from lopt import online

EXACT = dict(rtol=1e-12, atol=1e-12)


def decayed_sgd(eta: float, beta: float) -> optax.GradientTransformation:
    """w ← βw − ηG (gradient descent on G·w + (1−β)/(2η)‖w‖²)."""
    return optax.chain(optax.add_decayed_weights((1 - beta) / eta), optax.sgd(eta))


def split(x):
    """A two-leaf pytree of a vector (the identities run on pytrees)."""
    return {"a": x[:2], "b": x[2:]}


def join(p):
    return jnp.concatenate([p["a"], p["b"]])


def quadratic():
    """(f on pytrees in JAX, ∇f on vectors in NumPy, x0, 1/L)."""
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 5))
    a, b = m @ m.T / 5 + 0.1 * np.eye(5), rng.normal(size=5)
    f = lambda p: 0.5 * join(p) @ jnp.asarray(a) @ join(p) - jnp.asarray(b) @ join(p)
    return f, lambda x: a @ x - b, rng.normal(size=5), 1 / np.linalg.eigvalsh(a).max()


def logistic():
    """Logistic regression + ½λ‖x‖² (smooth, not quadratic): (f, ∇f in NumPy, x0, 1/L)."""
    rng = np.random.default_rng(1)
    z, lam = rng.normal(size=(30, 5)), 0.05
    y = np.sign(z @ rng.normal(size=5) + 0.5 * rng.normal(size=30))
    margin = lambda p: jnp.asarray(y) * (jnp.asarray(z) @ join(p))
    f = lambda p: jnp.mean(jnp.logaddexp(0.0, -margin(p))) + 0.5 * lam * join(p) @ join(p)
    grad = lambda x: -z.T @ (y / (1 + np.exp(y * (z @ x)))) / len(y) + lam * x
    return f, grad, 2 * rng.normal(size=5), 1 / (np.linalg.eigvalsh(z.T @ z).max() / (4 * len(y)) + lam)


PROBLEMS = {"quadratic": quadratic, "logistic": logistic}


def run(opt, f, x0, steps):
    """The iterates x_0, x_1, …, x_steps of opt on f (obj_fn = f), jitted."""
    @jax.jit
    def step(x, s):
        u, s = opt.update(jax.grad(f)(x), s, x, obj_fn=f)
        return optax.apply_updates(x, u), s

    x, s, xs = split(jnp.asarray(x0)), None, [np.asarray(x0)]
    s = opt.init(x)
    for _ in range(steps):
        x, s = step(x, s)
        xs.append(np.asarray(join(x)))
    return np.stack(xs), s


def numpy_momentum(grad, x0, eta, beta, steps, nesterov=False):
    """z_0, …, z_steps with z_{−1} = z_0 = x0: heavy ball or Nesterov."""
    prev, z, zs = x0.copy(), x0.copy(), [x0.copy()]
    for _ in range(steps):
        v = beta * (z - prev)
        prev, z = z, z + v - eta * grad(z + v if nesterov else z)
        zs.append(z)
    return np.stack(zs)


# ----------------------------------------------------------------------------- exact identities

@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("mode", ["standard", "lookahead"])
def test_momentum_rule_is_heavy_ball_standard_and_nesterov_lookahead(problem, mode):
    """φ = w (w_0 = 0) with decayed-SGD meta-learning: x_{n+1} = z_n for n ≥ 0, where z is heavy
    ball (standard) or Nesterov (lookahead) from z_{−1} = z_0 = x_0 (the first call does not move)."""
    f, grad, x0, inv_l = PROBLEMS[problem]()
    eta, beta, steps = 0.9 * inv_l, 0.8, 40
    xs, state = run(online.online_meta(lopt.momentum(), decayed_sgd(eta, beta), mode=mode), f, x0, steps)
    zs = numpy_momentum(grad, x0, eta, beta, steps - 1, nesterov=mode == "lookahead")
    np.testing.assert_allclose(xs[0], xs[1], **EXACT)
    np.testing.assert_allclose(xs[1:], zs, **EXACT)
    assert np.abs(zs[-1] - zs[0]).max() > 0.1 and int(state.skipped) == 0 and int(state.count) == steps


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_bmg_target_with_one_bootstrapped_step_is_nesterov(problem):
    """x̃ = y − η∇f(y), y = x_{t+1} + βw_t (bmg_target of φ = w at βw_t, L = 2, α = η), matched
    exactly: w_{t+1} = x̃ − x_{t+1}. Same indexing as above."""
    f, grad, x0, inv_l = PROBLEMS[problem]()
    eta, beta, steps = 0.9 * inv_l, 0.8, 30
    rule = lopt.momentum()
    x = split(jnp.asarray(x0))
    w, s = rule.init(x)
    xs = [x0]

    @jax.jit
    def step(x, w, s):
        u, s = rule.apply(w, s, None, x)
        x = optax.apply_updates(x, u)
        target = online.bmg_target(rule, jax.tree.map(lambda v: beta * v, w), s, x, f, target_steps=2, target_lr=eta)
        return x, jax.tree.map(jnp.subtract, target, x), s

    for _ in range(steps):
        x, w, s = step(x, w, s)
        xs.append(np.asarray(join(x)))
    np.testing.assert_allclose(np.stack(xs)[1:], numpy_momentum(grad, x0, eta, beta, steps - 1, nesterov=True), **EXACT)


def _point(rule, seed=0):
    """x_t, w_t (perturbed from the rule's init), the rule state, g_t, and the batch objective f."""
    f = PROBLEMS["logistic"]()[0]
    key_x, key_w = jax.random.split(jax.random.key(seed))
    x = split(jax.random.normal(key_x, (5,), jnp.float64))
    w, s = rule.init(x)
    leaves, tree = jax.tree.flatten(w)
    keys = jax.random.split(key_w, len(leaves))
    w = jax.tree.unflatten(tree, [v + 0.3 * jax.random.normal(k, v.shape, v.dtype) for v, k in zip(leaves, keys)])
    return x, w, s, jax.grad(f)(x), f


RULES = {"sgd": lambda: lopt.elementwise_sgd(0.3), "adam": lambda: lopt.elementwise_adam(0.05),
         "momentum": lopt.momentum}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("rule_name", sorted(RULES))
def test_optimistic_one_step_is_alpha_times_standard(rule_name):
    """L = 1, Euclidean matching: G^BMG = α · D_wφᵀ ∇f(x_{t+1}) (same x_t, w_t, batch objective);
    also end to end: one optimistic call moves w by α × what standard's second call does (meta-SGD, lr 1)."""
    rule, alpha = RULES[rule_name](), 0.7
    x, w, s, g, f = _point(rule)
    u, s_next = rule.apply(w, s, g, x)
    x_next = optax.apply_updates(x, u)
    standard = online.standard_meta_grad(rule, w, s, g, x, jax.grad(f)(x_next))
    optimistic = online.optimistic_meta_grad(rule, w, s, g, x, f, target_steps=1, target_lr=alpha)
    assert optax.tree.norm(standard) > 1e-3
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, alpha * b, **EXACT), optimistic.grad, standard)

    std = online.online_meta(rule, optax.sgd(1.0), init_w=w)
    opt = online.online_meta(rule, optax.sgd(1.0), mode="optimistic", target_lr=alpha, init_w=w)
    state_std = std.init(x)
    u0, state_std = std.update(g, state_std, x)
    _, state_std = std.update(jax.grad(f)(optax.apply_updates(x, u0)), state_std, optax.apply_updates(x, u0))
    _, state_opt = opt.update(g, opt.init(x), x, obj_fn=f)
    jax.tree.map(lambda a, b, w0: np.testing.assert_allclose(a - w0, alpha * (b - w0), **EXACT),
                 state_opt.w, state_std.w, w)
    np.testing.assert_allclose(state_opt.meta_grad_norm, alpha * state_std.meta_grad_norm, rtol=1e-6)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_elementwise_sgd_closed_form_equals_autodiff_of_the_matching_loss(steps):
    """e^w ⊙ g_t ⊙ (x̃ − x_{t+1}) = ∇_w ½‖x̃ − (x_t − e^w ⊙ g_t)‖² = optimistic_meta_grad, for L = 1, 2, 5."""
    rule = lopt.elementwise_sgd(0.3)
    x, w, s, g, f = _point(rule, seed=1)
    x_next = optax.apply_updates(x, rule.apply(w, s, g, x)[0])
    target = online.bmg_target(rule, w, s, x_next, f, steps, 0.3)
    matching = lambda w_: 0.5 * optax.tree.norm(jax.tree.map(
        lambda t, xi, u: t - (xi + u), target, x, rule.apply(w_, s, g, x)[0]), squared=True)
    closed = lopt.elementwise_sgd_bmg_closed_form(w, g, target, x_next)
    autodiff = jax.grad(matching)(w)
    library = online.optimistic_meta_grad(rule, w, s, g, x, f, steps, 0.3)
    assert optax.tree.norm(closed) > 1e-3
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **EXACT), closed, autodiff)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **EXACT), library.grad, autodiff)
    np.testing.assert_allclose(library.loss, matching(w), **EXACT)


@pytest.mark.usefixtures("x64")
def test_unrolled_meta_grad_matches_finite_differences_and_one_step_is_same_batch_standard():
    rule = lopt.elementwise_adam(0.05)
    x, w, s, g, f = _point(rule, seed=2)
    mg = online.unrolled_meta_grad(rule, w, s, g, x, f, unroll=3)
    flat, unravel = ravel_pytree(w)
    h = jax.jit(lambda v: online.unrolled_meta_grad(rule, unravel(v), s, g, x, f, unroll=3).loss)
    eps = 1e-6
    fd = np.array([(h(flat + eps * e) - h(flat - eps * e)) / (2 * eps) for e in np.eye(flat.size)])
    np.testing.assert_allclose(ravel_pytree(mg.grad)[0], fd, rtol=1e-6, atol=1e-9)
    x_next = optax.apply_updates(x, rule.apply(w, s, g, x)[0])
    one = online.unrolled_meta_grad(rule, w, s, g, x, f, unroll=1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **EXACT), one.grad,
                 online.standard_meta_grad(rule, w, s, g, x, jax.grad(f)(x_next)))
