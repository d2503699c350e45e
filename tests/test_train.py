"""The baseline trainer: every task kind learns with Adam; curves, optima and vmapping behave."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import inner_tasks

# (task settings, Adam learning rate, steps, required ratio of final to initial validation loss)
KINDS = {
    "quadratic": (dict(dim=16, cond=100.0), 0.05, 300, 0.02),
    "linreg": (dict(dim=8, noise=0.1), 0.05, 300, 0.05),
    "mlp_digits": (dict(dataset="digits", width=64, depth=2), 1e-2, 200, 0.3),
    "conv_digits": (dict(dataset="digits", channels=16, depth=2), 1e-2, 200, 0.5),
    "lm": (dict(width=64, depth=1, num_heads=4, context=32, batch_size=16, max_bytes=1 << 20), 1e-2, 200, 0.6),
    "lm_sp": (dict(width=64, depth=1, num_heads=4, context=32, batch_size=16, max_bytes=1 << 20,
                   parametrization="sp"), 3e-3, 200, 0.6),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_adam_clearly_reduces_loss(kind):
    kwargs, lr, steps, ratio = KINDS[kind]
    task = inner_tasks.get_task(kind.split("_")[0], **kwargs)
    curve = inner_tasks.train(task, optax.adam(lr), steps, jax.random.key(0), eval_every=steps // 2)
    v = np.asarray(curve.valid_loss)
    assert np.all(np.isfinite(v)) and v[-1] < ratio * v[0], v
    assert np.mean(curve.train_loss[-20:]) < ratio * np.mean(curve.train_loss[:5])


@pytest.mark.parametrize("name, res", [("mlp", 8), ("mlp", 28), pytest.param("conv", 16, marks=pytest.mark.slow)])
def test_adam_learns_fashion_mnist(fashion_mnist_dir, name, res):
    kw = dict(width=128) if name == "mlp" else dict(channels=16)
    task = inner_tasks.get_task(name, resolution=res, parametrization="sp", **kw)
    curve = inner_tasks.train(task, optax.adam(3e-3), 200, jax.random.key(0))
    v0, v1 = np.asarray(curve.valid_loss)
    assert abs(v0 - np.log(10)) < 0.5 and v1 < 0.6 * v0, (v0, v1)


def test_quadratic_and_linreg_reach_their_optima():
    quad = inner_tasks.get_task("quadratic", dim=8, cond=10.0, key=jax.random.key(2))
    curve = inner_tasks.train(quad, optax.sgd(8.0), 400, jax.random.key(0))  # lr = dim: steps of 1 - h
    np.testing.assert_allclose(curve.params["x"], quad.spec.optimum(quad.inst)["x"], atol=1e-3)
    lin = inner_tasks.get_task("linreg", dim=4, batch_size=256, num_train=256)
    curve = inner_tasks.train(lin, optax.adam(optax.cosine_decay_schedule(0.05, 1000)), 1000, jax.random.key(0))
    best = lin.spec.optimum(lin.inst)
    np.testing.assert_allclose(curve.params["w"], best["w"], atol=5e-3)


def test_curve_layout_and_argument_checks():
    task = inner_tasks.get_task("quadratic", dim=4)
    curve = inner_tasks.train(task, optax.adam(0.1), 60, jax.random.key(0), eval_every=20)
    assert curve.train_loss.shape == (60,) and curve.valid_step.tolist() == [0, 20, 40, 60]
    with pytest.raises(ValueError, match="multiple of eval_every"):
        inner_tasks.train(task, optax.adam(0.1), 50, jax.random.key(0), eval_every=20)
    again = inner_tasks.train(task, optax.adam(0.1), 60, jax.random.key(0), eval_every=20)
    np.testing.assert_array_equal(curve.train_loss, again.train_loss)


def test_train_vmaps_over_seeds_instances_and_traced_learning_rates():
    tasks = inner_tasks.get_task("quadratic", dim=8, cond=10.0).instances(jax.random.key(0), 3)
    lrs = jnp.array([1e-3, 1e-2, 1e-1])

    def final_loss(t, lr, key):
        return inner_tasks.train(t, optax.adam(lr), 100, key).valid_loss[-1]

    losses = jax.jit(jax.vmap(final_loss, in_axes=(tasks.in_axes(), 0, 0)))(
        tasks, lrs, jax.random.split(jax.random.key(1), 3)
    )
    assert losses.shape == (3,) and losses[2] < losses[0]
    # Each vmapped lane equals the same run done alone.
    lane = jax.tree.map(lambda x: x[2], tasks.inst)
    alone = final_loss(tasks.replace(inst=lane), lrs[2], jax.random.split(jax.random.key(1), 3)[2])
    np.testing.assert_allclose(losses[2], alone, rtol=1e-5)


def test_loss_reaches_optimizer_as_extra_arg():
    seen = []

    def update(updates, state, params=None, *, value=None, **extra):
        seen.append(value)
        return jax.tree.map(lambda g: -0.1 * g, updates), state

    opt = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
    task = inner_tasks.get_task("quadratic", dim=4)
    inner_tasks.train(task, opt, 5, jax.random.key(0))
    assert seen and seen[0] is not None and seen[0].shape == ()
