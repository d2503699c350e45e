"""lopt.online as an optax transformation: bad input, skipping non-finite meta-steps, jit / vmap /
dtypes, and behaviour (element-wise rates adapt on a noisy quadratic; a learned rule adapts θ).
The exact identities are in test_online_identities.py."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt import online, online_rules

# ----------------------------------------------------------------------------- bad input

def _f(p):
    return jnp.sum(jnp.cosh(p["w"])) + jnp.sum(p["b"] ** 2)


def _params(dtype=jnp.float32):
    return {"w": jnp.linspace(-1.0, 1.0, 6, dtype=dtype).reshape(2, 3), "b": jnp.ones((3,), dtype)}


@dataclasses.dataclass(frozen=True)
class _WrongWRule(online_rules.ElementwiseSGD):
    """init's w has the wrong shape for one leaf."""

    def init(self, params):
        w, s = super().init(params)
        return {**w, "b": jnp.zeros((4,))}, s


@dataclasses.dataclass(frozen=True)
class _WrongUpdatesRule(online_rules.ElementwiseSGD):
    """apply drops a leaf of the updates."""

    def apply(self, w, rule_state, grads, params):
        updates, rule_state = super().apply(w, rule_state, grads, params)
        return {"w": updates["w"]}, rule_state


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="nope"), "unknown mode"),
    (dict(target_steps=0, mode="optimistic"), "target_steps"),
    (dict(target_steps=1.5, mode="optimistic"), "target_steps"),
    (dict(unroll=0), "unroll"),
    (dict(unroll=2, mode="optimistic"), "unroll applies"),
    (dict(target_steps=2), "mode='optimistic' only"),
    (dict(target_lr=-1.0, mode="optimistic"), "target_lr"),
])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        online.online_meta(lopt.elementwise_sgd(0.1), optax.sgd(1.0), **kwargs)


def test_bad_rule_meta_optimizer_and_missing_target_lr():
    with pytest.raises(TypeError, match="rule must implement"):
        online.online_meta(optax.sgd(0.1), optax.sgd(1.0))
    with pytest.raises(TypeError, match="meta_optimizer"):
        online.online_meta(lopt.momentum(), lambda g: g)
    with pytest.raises(ValueError, match="target_lr="):
        online.online_meta(lopt.momentum(), optax.sgd(1.0), mode="optimistic")
    with pytest.raises(ValueError, match="learning_rate"):
        lopt.elementwise_sgd(0.0)


@pytest.mark.parametrize("rule, match", [(_WrongWRule(0.1), "meta-parameters w"),
                                         (_WrongUpdatesRule(0.1), "updates")])
def test_rule_disagreeing_with_params_raises_in_init(rule, match):
    with pytest.raises(ValueError, match=match):
        online.online_meta(rule, optax.sgd(1.0)).init(_params())


def test_meta_parameters_not_matching_params_raise_in_init_and_update():
    params = _params()
    with pytest.raises(ValueError, match="init_w"):
        online.online_meta(lopt.elementwise_sgd(0.1), optax.sgd(1.0), init_w={"w": jnp.zeros((2, 3))}).init(params)
    opt = online.online_meta(lopt.elementwise_sgd(0.1), optax.sgd(1.0))
    state = opt.init(params)
    bad = state._replace(w={"w": state.w["w"].T, "b": state.w["b"]})
    grads = jax.grad(_f)(params)
    for update in (opt.update, jax.jit(opt.update)):
        with pytest.raises(ValueError, match=r"state\.w"):
            update(grads, bad, params)
    with pytest.raises(ValueError, match="grads"):
        opt.update({"w": grads["w"]}, state, params)
    with pytest.raises(ValueError, match="needs params"):
        opt.update(grads, state)


@pytest.mark.parametrize("kwargs", [dict(mode="optimistic"), dict(mode="lookahead"), dict(unroll=2)])
def test_missing_obj_fn_raises_at_trace_time(kwargs):
    opt = online.online_meta(lopt.elementwise_sgd(0.1), optax.sgd(1.0), **kwargs)
    params = _params()
    state = opt.init(params)
    with pytest.raises(ValueError, match="obj_fn="):
        jax.jit(opt.update)(jax.grad(_f)(params), state, params)
    with pytest.raises(TypeError, match="obj_fn"):
        opt.update(jax.grad(_f)(params), state, params, obj_fn=3.0)


# ----------------------------------------------------------------------------- non-finite meta-steps

@pytest.mark.parametrize("kwargs", [dict(mode="optimistic", target_steps=2), dict(mode="lookahead"), dict(unroll=2)])
def test_non_finite_meta_gradient_skips_the_meta_step(kwargs):
    """A NaN objective on one call: w and the meta-state stay, `skipped` counts it, the learner's
    update uses the valid w and is finite; the next call with a finite objective meta-steps again."""
    rule = lopt.elementwise_sgd(0.1)
    opt = online.online_meta(rule, optax.adam(1e-2), **kwargs)
    nan_f = lambda p: _f(p) * jnp.nan
    step = jax.jit(lambda g, s, p, bad: opt.update(g, s, p, obj_fn=lambda q: jax.lax.cond(bad, nan_f, _f, q)))
    x = _params()
    state = opt.init(x)
    for t, bad in enumerate([False, True, False]):
        expected_update = rule.apply(state.w, state.rule_state, jax.grad(_f)(x), x)[0]
        updates, new = step(jax.grad(_f)(x), state, x, bad)
        assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), updates, expected_update)
        moved = any(np.any(np.asarray(a) != np.asarray(b))
                    for a, b in zip(jax.tree.leaves(new.w), jax.tree.leaves(state.w)))
        assert moved != bad and int(new.skipped) == (1 if t >= 1 else 0)
        if bad:
            assert int(new.meta_state[0].count) == int(state.meta_state[0].count)
        state, x = new, optax.apply_updates(x, updates)
    assert np.isfinite(float(state.meta_grad_norm)) and int(state.count) == 3


def test_non_finite_gradient_in_standard_mode_skips_the_meta_step():
    opt = online.online_meta(lopt.elementwise_sgd(0.1), optax.sgd(1.0))
    x = _params()
    state = opt.init(x)
    _, state = opt.update(jax.grad(_f)(x), state, x)
    nan_grads = jax.tree.map(lambda g: g.at[0].set(jnp.nan), jax.grad(_f)(x))
    _, new = opt.update(nan_grads, state, x)
    assert int(new.skipped) == 1
    jax.tree.map(np.testing.assert_array_equal, new.w, state.w)


# ----------------------------------------------------------------------------- jit, vmap, dtypes

MODES = {"standard": dict(), "standard-unroll2": dict(unroll=2), "optimistic": dict(mode="optimistic", target_steps=2),
         "lookahead": dict(mode="lookahead")}


def _avals(tree):
    return [jax.typeof(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name", sorted(MODES))
def test_jit_traces_once_with_obj_fn_closed_over_or_static(name):
    opt = online.online_meta(lopt.elementwise_adam(1e-2), optax.adam(1e-2), **MODES[name])
    loss = lambda p, c: _f(p) * c
    traces = []

    @jax.jit
    def step(x, s, c):
        traces.append(1)
        u, s = opt.update(jax.grad(loss)(x, c), s, x, obj_fn=lambda p: loss(p, c))
        return optax.apply_updates(x, u), s

    x = _params()
    s0 = opt.init(x)
    x, s = step(x, s0, 1.0)
    x, s = step(x, s, 2.0)
    assert len(traces) == 1 and _avals(s) == _avals(s0)
    update = jax.jit(opt.update, static_argnames="obj_fn")
    update(jax.grad(_f)(x), s, x, obj_fn=_f)
    update(jax.grad(_f)(x), s, x, obj_fn=_f)
    assert update._cache_size() == 1


@pytest.mark.parametrize("name", ["standard", "optimistic"])
def test_vmap_over_seeds_equals_each_seed_alone(name):
    opt = online.online_meta(lopt.elementwise_sgd(0.1), optax.adam(1e-2), **MODES[name])

    def run_seed(key):
        x = jax.tree.map(lambda p: p + jax.random.normal(key, p.shape), _params())

        def body(carry, k):
            x, s = carry
            noisy = lambda p: _f(p) + jnp.sum(jax.random.normal(k, (3,)) * p["b"])
            u, s = opt.update(jax.grad(noisy)(x), s, x, obj_fn=noisy)
            return (optax.apply_updates(x, u), s), None

        return jax.lax.scan(body, (x, opt.init(x)), jax.random.split(key, 5))[0]

    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.jit(jax.vmap(run_seed))(keys)
    for i, key in enumerate(keys):
        alone = jax.jit(run_seed)(key)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6), batched, alone)
    assert not np.allclose(batched[1].w["b"][0], batched[1].w["b"][1])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", sorted(MODES))
def test_dtypes_are_preserved(name, dtype):
    with jax.enable_x64(True):
        opt = online.online_meta(lopt.elementwise_adam(1e-2), optax.adam(1e-2), **MODES[name])
        x = _params(dtype)
        s0 = opt.init(x)
        update = jax.jit(lambda g, s, p: opt.update(g, s, p, obj_fn=_f))
        u, s = update(jax.grad(_f)(x), s0, x)
        u, s = update(jax.grad(_f)(x), s, optax.apply_updates(x, u))
        assert {v.dtype for v in jax.tree.leaves(u)} == {v.dtype for v in jax.tree.leaves(s.w)} == {jnp.dtype(dtype)}
        assert _avals(s) == _avals(s0)


# ----------------------------------------------------------------------------- behaviour and rules

def test_elementwise_rates_adapt_on_a_noisy_quadratic():
    """lr 1e-3 is far too small for curvatures in [0.1, 1]: standard online meta-learning raises the
    median rate and ends below fixed-lr SGD's loss."""
    curv = jnp.logspace(-1, 0, 20)
    f = lambda x: 0.5 * jnp.sum(curv * x ** 2)
    x0, lr0, steps = jnp.ones(20), 1e-3, 300

    def train(opt):
        def body(carry, k):
            x, s = carry
            g = jax.grad(f)(x) + 0.05 * jax.random.normal(k, x.shape)
            u, s = opt.update(g, s, x)
            return (optax.apply_updates(x, u), s), f(x)

        (x, s), losses = jax.lax.scan(body, (x0, opt.init(x0)), jax.random.split(jax.random.key(0), steps))
        return losses[-50:].mean(), s

    meta_loss, state = jax.jit(lambda: train(online.online_meta(lopt.elementwise_sgd(lr0), optax.adam(3e-2))))()
    sgd_loss, _ = jax.jit(lambda: train(optax.sgd(lr0)))()
    rates = lopt.elementwise_sgd(lr0).rates(state.w)
    assert float(jnp.median(rates)) > 10 * lr0
    assert float(meta_loss) < 0.5 * float(sgd_loss)
    assert int(state.skipped) == 0 and float(state.meta_grad_norm) > 0


@pytest.mark.parametrize("name", ["standard", "optimistic"])
def test_learned_rule_adapts_theta_of_an_architecture(name):
    arch = lopt.LearnableAdam(learning_rate=1e-2)
    theta = arch.init(jax.random.key(0))
    kwargs = dict(mode="optimistic", target_steps=2, target_lr=1e-2) if name == "optimistic" else {}
    opt = online.online_meta(lopt.learned(arch, theta, num_steps=20), optax.adam(1e-2), **kwargs)
    step = jax.jit(lambda x, s: opt.update(jax.grad(_f)(x), s, x, obj_fn=_f))
    x = _params()
    state = opt.init(x)
    for _ in range(4):
        u, state = step(x, state)
        x = optax.apply_updates(x, u)
    assert float(_f(x)) < float(_f(_params()))
    assert float(state.w["log_lr"]) != float(theta["log_lr"]) and int(state.skipped) == 0
    assert lopt.learned(arch, theta, 20).rates(state.w) is None


def test_metrics_chain_and_rates():
    """The state's metrics dict; obj_fn reaches the transform through optax.chain."""
    opt = optax.chain(optax.clip_by_global_norm(10.0),
                      online.online_meta(lopt.elementwise_sgd(0.1), optax.sgd(0.1), mode="optimistic"))
    x = _params()
    u, state = opt.update(jax.grad(_f)(x), opt.init(x), x, obj_fn=_f)
    metrics = state[1].metrics
    assert set(metrics) == {"meta_grad_norm", "meta_loss", "matching_loss", "skipped"}
    assert float(metrics["matching_loss"]) > 0 and float(metrics["meta_grad_norm"]) > 0
    np.testing.assert_allclose(lopt.elementwise_sgd(0.1).rates(opt.init(x)[1].w)["b"], 0.1, rtol=1e-6)
