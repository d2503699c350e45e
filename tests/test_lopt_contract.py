"""Contract over every learned-optimizer architecture, plus μP scaling and traced-theta use."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt

NUM_STEPS = 50


def _params(dtype=jnp.float32):
    k = jax.random.split(jax.random.key(0), 4)
    return {
        "dense": {"kernel": jax.random.normal(k[0], (6, 5), dtype), "bias": jnp.zeros((5,), dtype)},
        "conv": jax.random.normal(k[1], (3, 3, 2, 4), dtype),
        "scalar": jnp.ones((), dtype),
    }


def _quad_loss(params):
    return sum(jnp.sum(jnp.square(x.astype(jnp.float32) - 0.5)) for x in jax.tree.leaves(params))


def archs(slow=()):
    """Every architecture's name, for `parametrize("arch", archs(...), indirect=True)`; those in
    `slow` are marked slow (expensive there only, mostly VeLO's compile times; CI skips them)."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in sorted(lopt.ARCHITECTURES)]


@pytest.fixture(params=archs())
def arch(request):
    return lopt.get_arch(request.param)


def _opt(arch, theta, **kw):
    return arch.optimizer(theta, num_steps=NUM_STEPS, **kw)


@pytest.mark.parametrize("arch, dtype", [
    pytest.param(name, dtype, marks=pytest.mark.slow) if (name, dtype) == ("velo", jnp.float32) else (name, dtype)
    for name in sorted(lopt.ARCHITECTURES) for dtype in (jnp.float32, jnp.bfloat16)
], indirect=["arch"])
def test_updates_are_finite_with_matching_shapes_and_dtypes(arch, dtype):
    params = _params(dtype)
    opt = _opt(arch, arch.init(jax.random.key(1)))
    state = opt.init(params)
    grads = jax.grad(_quad_loss)(params)
    updates, state = jax.jit(opt.update)(grads, state, params, value=_quad_loss(params))
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        assert u.shape == p.shape and u.dtype == p.dtype and jnp.all(jnp.isfinite(u))
    assert any(jnp.any(u != 0) for u in jax.tree.leaves(updates))


def _train_scan(opt, params, steps):
    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(_quad_loss)(params)
        updates, state = opt.update(grads, state, params, value=loss)
        return (optax.apply_updates(params, updates), state), loss

    return jax.lax.scan(step, (params, opt.init(params)), length=steps)


def test_random_init_trains_a_quadratic_under_scan_without_nan(arch):
    opt = _opt(arch, arch.init(jax.random.key(2)))
    (params, _), losses = jax.jit(lambda p: _train_scan(opt, p, NUM_STEPS))(_params())
    assert jnp.all(jnp.isfinite(losses)) and all(jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params))
    assert losses.shape == (NUM_STEPS,)


def test_composes_with_weight_decay_and_schedule(arch):
    theta = arch.init(jax.random.key(0))
    schedule = optax.linear_schedule(1.0, 0.0, NUM_STEPS)
    opt = optax.chain(optax.add_decayed_weights(1e-2), _opt(arch, theta), optax.scale_by_schedule(schedule))
    params = _params()
    state = opt.init(params)
    grads = jax.grad(_quad_loss)(params)
    updates, _ = jax.jit(opt.update)(grads, state, params, value=_quad_loss(params))
    alone = _opt(arch, theta)
    decayed = jax.tree.map(lambda g, p: g + 1e-2 * p, grads, params)
    plain, _ = jax.jit(alone.update)(decayed, alone.init(params), params, value=_quad_loss(params))
    # Step 0 of the schedule is 1.0: the chain equals the optimizer fed decayed gradients.
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


class MLP(nn.Module):
    width: int = 32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width)(x))
        x = nn.relu(nn.Dense(self.width)(x))
        return nn.Dense(3)(x)


@pytest.mark.parametrize("arch", archs(slow={"velo"}), indirect=True)
def test_works_on_a_real_flax_model(arch):
    x = jax.random.normal(jax.random.key(0), (64, 8))
    y = jnp.argmax(x[:, :3], axis=1)
    model = MLP()
    params = model.init(jax.random.key(1), x)
    roles, fan_in = lopt.infer_roles(params)
    opt = _opt(arch, arch.init(jax.random.key(2)), roles=roles, fan_in=fan_in)

    def loss_fn(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    state = opt.init(params)
    for _ in range(5):
        params, state, loss = step(params, state)
        assert jnp.isfinite(loss)


@pytest.mark.parametrize("arch", archs(slow={"velo"}), indirect=True)
def test_traced_theta_under_jit_grad_and_vmap(arch):
    params = _params()

    def meta_loss(theta):
        opt = _opt(arch, theta)
        (final, _), _ = _train_scan(opt, params, 5)
        return _quad_loss(final)

    theta = arch.init(jax.random.key(3))
    g = jax.jit(jax.grad(meta_loss))(theta)
    leaves = jax.tree.leaves(g)
    assert all(jnp.all(jnp.isfinite(x)) for x in leaves) and any(jnp.any(x != 0) for x in leaves)
    thetas = jax.vmap(arch.init)(jax.random.split(jax.random.key(4), 3))
    losses = jax.jit(jax.vmap(meta_loss))(thetas)
    assert losses.shape == (3,) and jnp.all(jnp.isfinite(losses))
    np.testing.assert_allclose(losses[1], jax.jit(meta_loss)(jax.tree.map(lambda t: t[1], thetas)), rtol=1e-4)


def test_mup_scales_exactly_the_hidden_weights(arch):
    params = _params()
    roles = {"dense": {"kernel": "hidden", "bias": "vector"}, "conv": "input", "scalar": "vector"}
    fan_in = {"dense": {"kernel": 6, "bias": 1}, "conv": 18, "scalar": 1}
    theta = arch.init(jax.random.key(0))
    grads = jax.grad(_quad_loss)(params)
    loss = _quad_loss(params)
    plain = _opt(arch, theta)
    mup = _opt(arch, theta, roles=roles, fan_in=fan_in)
    u_plain, _ = jax.jit(plain.update)(grads, plain.init(params), params, value=loss)
    u_mup, _ = jax.jit(mup.update)(grads, mup.init(params), params, value=loss)
    np.testing.assert_allclose(u_mup["dense"]["kernel"], u_plain["dense"]["kernel"] / 6, rtol=1e-6)
    for path in (("dense", "bias"), ("conv",), ("scalar",)):
        a, b = u_mup, u_plain
        for k in path:
            a, b = a[k], b[k]
        np.testing.assert_array_equal(a, b)


def test_clear_errors(arch):
    theta = arch.init(jax.random.key(0))
    opt = _opt(arch, theta)
    params = _params()
    with pytest.raises(ValueError, match="needs params"):
        opt.update(params, opt.init(params), None, value=1.0)
    with pytest.raises(ValueError, match="tree structure"):
        bad = _opt(arch, theta, roles={"x": "hidden"}, fan_in={"x": 3})
        bad.update(params, bad.init(params), params, value=1.0)
    with pytest.raises(ValueError, match="both roles= and fan_in="):
        half = _opt(arch, theta, roles=jax.tree.map(lambda _: "vector", params))
        half.update(params, half.init(params), params, value=1.0)


def test_velo_requires_num_steps_and_loss():
    arch = lopt.VeLO()
    theta = arch.init(jax.random.key(0))
    with pytest.raises(ValueError, match="num_steps"):
        arch.optimizer(theta)
    opt = arch.optimizer(theta, num_steps=10)
    params = _params()
    with pytest.raises(ValueError, match="value=loss"):
        opt.update(params, opt.init(params), params)


def test_unknown_architecture_lists_valid_ones():
    with pytest.raises(ValueError, match=r"valid: \['adam', 'celo', 'celo2', 'mulo', 'velo'\]"):
        lopt.get_arch("lion")


@pytest.mark.parametrize("arch", archs(slow={"velo"}), indirect=True)
def test_meta_gradient_is_finite_when_some_gradients_are_exactly_zero(arch):
    """Zero-initialized readouts give exactly-zero gradients to other layers at the first step;
    the meta-gradient through two such updates must stay finite (no rsqrt' overflow)."""
    params = _params()
    theta = arch.init(jax.random.key(0))

    def meta_loss(theta):
        opt = _opt(arch, theta)
        state, p = opt.init(params), params
        for scale in (0.0, 1.0):
            grads = jax.tree.map(lambda x: scale * jnp.ones_like(x), p)
            upd, state = opt.update(grads, state, p, value=_quad_loss(p))
            p = optax.apply_updates(p, upd)
        return _quad_loss(p)

    g = jax.jit(jax.grad(meta_loss))(theta)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g))
    assert any(bool(jnp.any(x != 0)) for x in jax.tree.leaves(g))
