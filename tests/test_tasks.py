"""The Task API on every task kind: pure functions, jit/vmap, μP metadata and initialization rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import inner_tasks
from inner_tasks import models

# Small settings per kind; digits keeps image tests independent of the system package.
SMALL = {
    "quadratic": dict(dim=8, cond=10.0, noise=0.1),
    "linreg": dict(dim=4, num_train=64, num_valid=32, batch_size=8),
    "mlp": dict(dataset="digits", width=32, depth=2, batch_size=16),
    "conv": dict(dataset="digits", channels=8, depth=2, batch_size=16),
    "lm": dict(width=32, depth=2, num_heads=2, context=16, batch_size=4, max_bytes=1 << 18),
    "tabular": dict(generator="friedman1", num_features=6, width=16, depth=2, num_train=64, num_valid=32,
                    batch_size=8),
    "flax_mlp": dict(dataset="digits", width=16, depth=2, batch_size=16),
}


@pytest.fixture(params=sorted(SMALL), scope="module")
def task(request):
    return inner_tasks.get_task(request.param, **SMALL[request.param])


def test_every_task_kind_is_covered():
    assert set(SMALL) == set(inner_tasks.TASKS)


def test_api_is_pure_and_jittable(task):
    key = jax.random.key(0)
    params = jax.jit(task.init)(key)
    batch = jax.jit(task.sample_batch, static_argnums=1)(key, "train")
    loss = jax.jit(task.loss)(params, batch)
    assert loss.shape == () and jnp.isfinite(loss)
    # Pure: the same key gives the same params, batch and loss, traced together or apart.
    fused = jax.jit(lambda k: task.loss(task.init(k), task.sample_batch(k, "train")))(key)
    np.testing.assert_allclose(loss, fused, rtol=1e-6)
    grads = jax.jit(jax.grad(task.loss))(params, batch)
    assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))
    valid = task.sample_batch(jax.random.key(1), "valid")
    assert jax.tree.structure(valid) == jax.tree.structure(batch)
    with pytest.raises(ValueError, match="split"):
        task.sample_batch(key, "test")


def test_task_passes_data_as_arguments_not_constants(task):
    """Data arrays are pytree leaves, so they never get baked into the compiled program."""
    lowered = jax.jit(lambda t, k: t.loss(t.init(k), t.sample_batch(k))).lower(task, jax.random.key(0))
    assert len(lowered.as_text()) < 2_000_000
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(task))


def test_meta_matches_params(task):
    params = task.init(jax.random.key(0))
    assert jax.tree.structure(task.roles) == jax.tree.structure(params)
    assert jax.tree.structure(task.fan_in) == jax.tree.structure(params)
    for p, role, fan_in in zip(jax.tree.leaves(params), jax.tree.leaves(task.roles), jax.tree.leaves(task.fan_in)):
        assert role in inner_tasks.ROLES and isinstance(fan_in, int)
        if role == "vector":
            assert fan_in == 1 and p.ndim <= 1
        elif role in ("hidden", "output") or (role == "input" and task.name != "lm"):
            assert fan_in == int(np.prod(p.shape[:-1])), (role, p.shape)


def test_instances_vmap(task):
    batch_task = task.instances(jax.random.key(3), 3)
    keys = jax.random.split(jax.random.key(4), 3)

    def loss_at_init(t, k):
        return t.loss(t.init(k), t.sample_batch(k))

    losses = jax.jit(jax.vmap(loss_at_init, in_axes=(batch_task.in_axes(), 0)))(batch_task, keys)
    assert losses.shape == (3,) and jnp.all(jnp.isfinite(losses))
    # The shared data is not copied per instance.
    assert jax.tree.leaves(batch_task.data) == jax.tree.leaves(task.data) or not jax.tree.leaves(task.data)


def test_quadratic_instances_differ_and_optimum_is_exact():
    task = inner_tasks.get_task("quadratic", dim=8, cond=100.0).instances(jax.random.key(0), 2)
    assert not np.allclose(task.inst["x_star"][0], task.inst["x_star"][1])
    single = inner_tasks.get_task("quadratic", dim=8, cond=100.0, key=jax.random.key(5))
    x_star = single.spec.optimum(single.inst)
    batch = single.sample_batch(jax.random.key(0), "valid")
    assert float(single.loss(x_star, batch)) == 0.0
    np.testing.assert_allclose(jax.grad(single.loss)(x_star, batch)["x"], 0.0)
    h = np.asarray(single.inst["h"])
    assert h.max() <= 1.0 and h.min() >= 1 / 100.0


def test_linreg_optimum_zeroes_full_gradient():
    task = inner_tasks.get_task("linreg", dim=6, num_train=100)
    opt = task.spec.optimum(task.inst)
    full = {"x": task.inst["train_x"], "y": task.inst["train_y"]}
    grads = jax.grad(task.loss)(opt, full)
    np.testing.assert_allclose(np.concatenate([grads["w"][:, 0], grads["b"]]), 0.0, atol=1e-4)


@pytest.mark.parametrize("name", ["mlp", "conv", "lm"])
def test_mup_init_rules(name):
    spec_kw = dict(SMALL[name], parametrization="mup")
    if name == "mlp":
        spec_kw.update(width=512)
    task = inner_tasks.get_task(name, **spec_kw)
    params = task.init(jax.random.key(0))
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    for (path, p), role, fan_in in zip(flat, jax.tree.leaves(task.roles), jax.tree.leaves(task.fan_in)):
        if role == "output":
            assert not np.any(p), path  # zero-initialized readout
        elif role in ("input", "hidden") and p.size >= 256:
            np.testing.assert_allclose(np.std(p), 1 / np.sqrt(fan_in), rtol=0.15, err_msg=str(path))
    # Zero readout: every class equally likely at initialization.
    loss = task.loss(params, task.sample_batch(jax.random.key(1)))
    num_classes = 256 if name == "lm" else 10
    np.testing.assert_allclose(loss, np.log(num_classes), rtol=1e-5)


def test_mup_output_multiplier_is_one_over_fan_in():
    spec_mup = inner_tasks.get_spec("mlp", dataset="digits", width=64, depth=1, parametrization="mup")
    spec_sp = inner_tasks.get_spec("mlp", dataset="digits", width=64, depth=1, parametrization="sp")
    params = models.init_mlp(jax.random.key(0), spec_sp)  # non-zero readout
    x = jax.random.normal(jax.random.key(1), (5, 64))
    out_mup = models.apply_mlp(params, x, spec_mup) - params["out"]["b"][None, :]
    out_sp = models.apply_mlp(params, x, spec_sp) - params["out"]["b"][None, :]
    np.testing.assert_allclose(out_mup * 64, out_sp, rtol=1e-5, atol=1e-5)


def test_attention_logits_divided_by_head_dim():
    kw = dict(width=32, depth=1, num_heads=2, context=8, batch_size=2)
    sp, mup = inner_tasks.get_spec("lm", **kw, parametrization="sp"), inner_tasks.get_spec("lm", **kw, parametrization="mup")
    block = models.init_transformer(jax.random.key(0), sp)["block_0"]
    x = jax.random.normal(jax.random.key(1), (2, 8, 32))
    # Scaling q by √d_head under 'mup' (÷d_head) must reproduce 'sp' (÷√d_head).
    dh = 16
    scaled = jax.tree.map(lambda a: a, block)
    w = scaled["qkv"]["w"]
    scaled["qkv"]["w"] = w.at[:, :32].multiply(np.sqrt(dh))
    np.testing.assert_allclose(
        models._attention(scaled, x, mup), models._attention(block, x, sp), rtol=2e-4, atol=2e-5
    )


def test_roles_of_mlp_and_transformer():
    mlp = inner_tasks.get_task("mlp", dataset="digits", width=16, depth=3)
    assert mlp.roles == {
        "layer_0": {"w": "input", "b": "vector"}, "layer_1": {"w": "hidden", "b": "vector"},
        "layer_2": {"w": "hidden", "b": "vector"}, "out": {"w": "output", "b": "vector"},
    }
    assert mlp.fan_in["layer_0"]["w"] == 64 and mlp.fan_in["layer_2"]["w"] == 16
    lm = inner_tasks.get_spec("lm", width=32, num_heads=2, depth=1)
    roles = jax.tree.map(lambda m: m.role, lm.meta())
    assert roles["block_0"]["fc_2"]["w"] == "hidden" and lm.meta()["block_0"]["fc_2"]["w"].fan_in == 128
    assert roles["out"]["w"] == "output" and roles["ln_f"] == {"scale": "vector", "bias": "vector"}


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("lm", dict(width=30, num_heads=4), "not divisible by num_heads"),
        ("mlp", dict(activation="swish2"), "valid: .*relu"),
        ("mlp", dict(width=0), "width must be positive"),
        ("mlp", dict(dataset="digits", resolution=16), "resolutions"),
        ("conv", dict(resolution=8, depth=4), "below 1px"),
        ("lm", dict(parametrization="ntk"), "valid: .*mup"),
        ("quadratic", dict(cond=0.5), "cond"),
        ("linreg", dict(dim=64, num_train=32), "unique optimum"),
    ],
)
def test_inconsistent_settings_rejected_at_construction(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        inner_tasks.get_spec(name, **kwargs)


def test_unknown_names_list_valid_ones():
    valid = r"\['conv', 'flax_mlp', 'linreg', 'lm', 'mlp', 'quadratic', 'tabular'\]"
    with pytest.raises(ValueError, match=r"unknown task 'resnet'; valid: " + valid):
        inner_tasks.get_task("resnet")
    with pytest.raises(ValueError, match=r"unknown family 'vit'; valid: \[.*'mlp'"):
        inner_tasks.get_family("vit")


def test_initial_validation_loss_is_finite_when_fused_with_init(fashion_mnist_dir):
    """Regression: with `take_along_axis` cross-entropy, XLA:CPU returned NaN for this program
    (init and a vmapped validation loss in one jit); the zero μP readout makes the loss ln(10)."""
    del fashion_mnist_dir
    task = inner_tasks.get_task("mlp", dataset="fashion_mnist", resolution=8, width=256, depth=2)

    def initial_valid(key):
        k_init, k_valid = jax.random.split(key)
        return inner_tasks.valid_loss(task, task.init(k_init), k_valid)

    got = jax.jit(jax.vmap(initial_valid))(jax.random.split(jax.random.key(1), 3))
    np.testing.assert_allclose(got, np.log(10.0), rtol=1e-6)


@pytest.mark.parametrize("stride,padding,kernel,size", [(2, "SAME", 3, 8), (1, "SAME", 3, 7), (2, "VALID", 3, 9),
                                                        (2, "SAME", 5, 7), (1, "VALID", 1, 4)])
def test_conv_as_patches_times_kernels_matches_flax_conv(stride, padding, kernel, size):
    """`models.conv2d` (patches × kernels) gives flax nn.Conv's outputs and gradients, also vmapped over
    particles that hold different kernels (the grouped-convolution case it replaces)."""
    import flax.linen as nn

    conv = nn.Conv(5, (kernel, kernel), strides=(stride, stride), padding=padding, use_bias=False)
    x = jax.random.normal(jax.random.key(0), (4, 3, size, size, 3))  # particles × batch × H × W × C
    ws = jax.vmap(lambda k: conv.init(k, x[0])["params"]["kernel"])(jax.random.split(jax.random.key(1), 4))
    ref = jax.vmap(lambda w, xi: conv.apply({"params": {"kernel": w}}, xi))(ws, x)
    ours = jax.vmap(lambda w, xi: models.conv2d(xi, w, stride, padding))(ws, x)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    loss_ref = lambda w, xi: jnp.sum(jnp.sin(conv.apply({"params": {"kernel": w}}, xi)))
    loss_ours = lambda w, xi: jnp.sum(jnp.sin(models.conv2d(xi, w, stride, padding)))
    np.testing.assert_allclose(jax.vmap(jax.grad(loss_ours))(ws, x), jax.vmap(jax.grad(loss_ref))(ws, x),
                               rtol=1e-4, atol=1e-4)
