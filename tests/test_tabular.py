"""Models as users write them: generated tabular tasks, flax default-init MLPs, their families,
task augmentation (parameter and loss scales), and the held-out rule for sklearn's bundled data."""

import collections
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import inner_tasks
from configs import build, tiny
from inner_tasks import flax_families, tabular
from inner_tasks.augment import ReparamSpec

SMALL = dict(num_train=256, num_valid=128, batch_size=32, width=16)


def test_generated_data_is_a_pure_function_of_the_spec():
    for gen in tabular.GENERATORS:
        spec = inner_tasks.TabularSpec(generator=gen, num_features=6, num_classes=2, seed=3, **SMALL)
        a, b = tabular.tabular_arrays(spec), tabular.tabular_arrays(spec)
        assert all(np.array_equal(a[k], b[k]) for k in a), gen
        assert a["train_x"].shape == (256, 6) and a["valid_x"].shape == (128, 6) and a["train_x"].dtype == np.float32
        assert a["train_y"].dtype == (np.int32 if spec.kind == "classification" else np.float32)
        other = tabular.tabular_arrays(dataclasses.replace(spec, seed=4))
        assert not np.array_equal(a["train_x"], other["train_x"]), gen


def test_feature_and_target_transforms():
    base = dict(generator="friedman2", num_features=6, noise=0.0, **SMALL)
    z = tabular.tabular_arrays(inner_tasks.TabularSpec(**base))
    np.testing.assert_allclose(z["train_x"].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z["train_x"].std(0), 1, rtol=1e-4)
    np.testing.assert_allclose([z["train_y"].mean(), z["train_y"].std()], [0, 1], atol=1e-4)
    raw = tabular.tabular_arrays(inner_tasks.TabularSpec(**base, standardize_x=False, standardize_y=False))
    assert raw["train_x"][:, 1].std() > 100 and raw["train_y"].std() > 100  # friedman2's natural scales
    scaled = tabular.tabular_arrays(inner_tasks.TabularSpec(**base, x_scale=100.0, y_scale=0.1, x_shift=10.0))
    np.testing.assert_allclose(scaled["train_x"].std(0), 100, rtol=1e-4)  # shift is constant per feature
    assert np.abs(scaled["train_x"].mean(0)).max() > 100
    np.testing.assert_allclose(scaled["train_y"], 0.1 * z["train_y"], rtol=1e-5)
    # label noise: `noise` of the labels replaced by random classes
    clean = tabular.tabular_arrays(inner_tasks.TabularSpec(generator="blobs", num_classes=5, noise=0.0, **SMALL))
    noisy = tabular.tabular_arrays(inner_tasks.TabularSpec(generator="blobs", num_classes=5, noise=0.5, **SMALL))
    changed = (clean["train_y"] != noisy["train_y"]).mean()
    assert 0.25 < changed < 0.55 and set(np.unique(noisy["train_y"])) == set(range(5))


@pytest.mark.parametrize("gen", ["classification", "friedman2"])
@pytest.mark.parametrize("depth", [0, 8])
def test_losses_are_finite_at_extreme_scales(gen, depth):
    spec = inner_tasks.TabularSpec(generator=gen, num_features=8, num_classes=3 if gen == "classification" else 2,
                                   depth=depth, standardize_x=False, x_scale=100.0, x_shift=10.0, x_spread=1.0,
                                   standardize_y=False, y_scale=10.0, **SMALL)
    task = spec.make()

    @jax.jit
    def run(task, key):
        params = task.init(key)
        batch = task.sample_batch(key, "valid")
        loss, grads = jax.value_and_grad(task.loss)(params, batch)
        logits = task.logits(params, batch) if spec.kind == "classification" else None
        return params, loss, grads, logits

    params, loss, grads, logits = run(task, jax.random.key(0))
    assert len(params) == depth + 1 and params[f"Dense_{depth}"]["kernel"].shape == (16 if depth else 8, spec.out_dim)
    assert loss.shape == () and np.isfinite(loss) and loss > 0
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    if spec.kind == "classification":
        assert logits.shape == (32, 3)
    else:
        with pytest.raises(NotImplementedError, match="not a classifier"):
            task.logits(params, task.sample_batch(jax.random.key(1)))


class UserMLP(nn.Module):
    """An MLP as a user writes it with flax.linen."""

    @nn.compact
    def __call__(self, x):
        x = nn.gelu(nn.Dense(256)(x))
        x = nn.gelu(nn.Dense(256)(x))
        return nn.Dense(3)(x)


def test_flax_model_is_what_users_write_with_flax_defaults():
    task = inner_tasks.get_task("tabular", num_features=64, num_classes=3, width=256, depth=2, activation="gelu")
    key, x = jax.random.key(7), task.sample_batch(jax.random.key(8))["x"]

    @jax.jit
    def both(task, key, x):
        params, user = task.init(key), UserMLP().init(key, x)["params"]
        return params, user, task.logits(params, {"x": x}), UserMLP().apply({"params": user}, x)

    params, user, logits, user_logits = both(task, key, x)
    assert jax.tree.structure(params) == jax.tree.structure(user)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(user)))
    np.testing.assert_allclose(logits, user_logits, rtol=1e-6)
    # Statistics against flax's own nn.Dense default init: variance 1/fan_in, truncated tails, zero bias.
    dense_init = jax.jit(lambda key, x: nn.Dense(256).init(key, x)["params"]["kernel"])
    for name in ("Dense_0", "Dense_1"):
        k = params[name]["kernel"]
        ref = dense_init(jax.random.key(9), jnp.zeros((1, k.shape[0])))
        np.testing.assert_allclose(k.var(), ref.var(), rtol=0.05)
        np.testing.assert_allclose(np.abs(k).max(), np.abs(ref).max(), rtol=0.05)
        np.testing.assert_allclose(k.var() * k.shape[0], 1.0, rtol=0.05)
        assert not np.any(params[name]["bias"])
    assert task.parametrization == "sp" and task.mup_options() == {}


def test_meta_reads_roles_and_fan_ins_off_the_shapes():
    linear = inner_tasks.get_task("tabular", num_features=5, depth=0, num_train=64, num_valid=32)
    assert linear.roles == {"Dense_0": {"kernel": "output", "bias": "vector"}}
    deep = inner_tasks.get_task("tabular", num_features=5, num_classes=4, depth=3, width=12, num_train=64, num_valid=32)
    assert [deep.roles[f"Dense_{i}"]["kernel"] for i in range(4)] == ["input", "hidden", "hidden", "output"]
    assert [deep.fan_in[f"Dense_{i}"]["kernel"] for i in range(4)] == [5, 12, 12, 12]
    assert jax.tree.structure(deep.roles) == jax.tree.structure(jax.eval_shape(deep.init, jax.random.key(0)))


@jax.jit
def _reparam_check(task, plain, many, key):
    """Wrapped and plain losses at init, grads and logits, and `many` instances' losses (one program)."""
    k_init, k_batch = jax.random.split(key)
    batch = task.sample_batch(k_batch)
    p_prime, p0 = task.init(k_init), plain.init(k_init)
    p = task.spec.model_params(task.inst, p_prime)
    out = dict(loss=task.loss(p_prime, batch), plain=plain.loss(p0, batch), g_prime=jax.grad(task.loss)(p_prime, batch),
               g=jax.grad(plain.loss)(p, batch))
    if plain.name != "quadratic":
        out.update(logits=task.logits(p_prime, batch), plain_logits=plain.logits(p0, batch))
    out["many"] = jax.vmap(lambda t, k: t.loss(t.init(k), t.sample_batch(k)), in_axes=(many.in_axes(), 0))(
        many, jax.random.split(key, 3))
    return out


@pytest.mark.parametrize("inner", [
    inner_tasks.get_spec("tabular", generator="classification", num_classes=3, depth=2, **SMALL),
    inner_tasks.get_spec("mlp", dataset="digits", width=16, depth=1, batch_size=16),  # μP, evaluation data
    inner_tasks.get_spec("quadratic", dim=6),
])
def test_reparam_wraps_any_spec(inner):
    spec = ReparamSpec(inner=inner, param_scales=(1e-3, 1e3), loss_scales=(0.1, 10.0))
    task = spec.make(jax.random.key(0))
    plain = task.replace(spec=inner, inst=task.inst["inner"])
    assert (task.name, task.parametrization, task.meta) == (plain.name, plain.parametrization, plain.meta)
    s = [np.exp(float(v)) for v in jax.tree.leaves(task.inst["log_scale"])]
    c = np.exp(float(task.inst["log_loss_scale"]))
    assert all(1e-3 <= v <= 1e3 for v in s) and len(set(s)) == len(s) and 0.1 <= c <= 10.0 and c != 1.0
    many = task.instances(jax.random.key(3), 3)  # instances draw their own scales; vmapped they run
    assert jax.tree.leaves(many.inst["log_scale"])[0].shape == (3,)
    out = _reparam_check(task, plain, many, jax.random.key(1))
    # The function at init is unchanged: the loss is c × the plain loss at the plain init.
    np.testing.assert_allclose(out["loss"], c * out["plain"], rtol=1e-5)
    # ∇_{p'} = c·s·∇_p L at p = s·p', exact up to float32 rounding (relative to each tensor's scale:
    # an entry that is a cancelling sum has a larger relative error).
    for gp, gi, si in zip(jax.tree.leaves(out["g_prime"]), jax.tree.leaves(out["g"]), s):
        expected = c * si * np.asarray(gi)
        np.testing.assert_allclose(gp, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    if "logits" in out:
        np.testing.assert_allclose(out["logits"], out["plain_logits"], rtol=1e-4, atol=1e-6)
    losses = np.asarray(out["many"])
    assert losses.shape == (3,) and np.all(np.isfinite(losses)) and len(set(losses.tolist())) == 3


def test_reparam_loss_scale_cancels_in_an_initial_loss_normalized_objective():
    inner = inner_tasks.get_spec("quadratic", dim=6)
    a = ReparamSpec(inner=inner, param_scales=(1.0, 1.0), loss_scales=(1e-2, 1e2)).make(jax.random.key(0))
    b = a.replace(inst={**a.inst, "log_loss_scale": a.inst["log_loss_scale"] + 3.0})
    p0, batch = a.init(jax.random.key(1)), a.sample_batch(jax.random.key(2))
    p1 = jax.tree.map(lambda x: 0.5 * x, p0)
    assert not np.isclose(a.loss(p1, batch), b.loss(p1, batch))
    np.testing.assert_allclose(a.loss(p1, batch) / a.loss(p0, batch), b.loss(p1, batch) / b.loss(p0, batch),
                               rtol=1e-5)


def _freq(specs, field, values):
    counts = collections.Counter(getattr(s, field) for s in specs)
    return np.array([counts[v] for v in values]) / len(specs)


def test_tabular_family_respects_its_weights_and_covers_the_ranges():
    fam = inner_tasks.TabularFamily(max_step_macs=None)
    specs = fam.specs(jax.random.key(0), 2000)
    for field, values, weights in [("width", fam.widths, fam.width_weights), ("depth", fam.depths, fam.depth_weights),
                                   ("batch_size", fam.batch_sizes, fam.batch_size_weights),
                                   ("activation", fam.activations, fam.activation_weights)]:
        p = np.asarray(weights) / sum(weights)
        sigma = np.sqrt(p * (1 - p) / len(specs))
        assert np.all(np.abs(_freq(specs, field, values) - p) < 4 * sigma + 1e-3), field
    kinds = collections.Counter(s.kind for s in specs)
    assert abs(kinds["classification"] / len(specs) - 0.5) < 0.04
    assert {s.generator for s in specs} == set(tabular.GENERATORS)
    assert {s.num_classes for s in specs if s.kind == "classification"} == set(fam.num_classes)
    assert {s.standardize_x for s in specs} == {True, False}
    raw = [s.x_scale for s in specs if not s.standardize_x]
    assert min(raw) < 0.02 and max(raw) > 50 and all(1e-2 <= x <= 1e2 for x in raw)
    assert all(s.num_features >= tabular.min_features(s.generator, s.num_classes) for s in specs)
    assert all(s.num_train <= 4096 for s in specs)
    # The default cost cap: every draw fits it, yet some are wide and some deep.
    capped = inner_tasks.TabularFamily().specs(jax.random.key(1), 600)
    macs = [flax_families.mlp_step_macs(s.batch_size, s.in_dim, s.width, s.depth, s.out_dim) for s in capped]
    assert max(macs) <= 2**25 and {1024, 8} <= {s.width for s in capped} and {0, 8} <= {s.depth for s in capped}


def test_family_options_augment_and_sample_reproducibly():
    fam = inner_tasks.TabularFamily(param_scales=(1e-3, 1e3), loss_scales=(0.5, 2.0))
    spec = fam.sample(jax.random.key(0))
    assert isinstance(spec, ReparamSpec) and spec.name == "tabular" and spec.loss_scales == (0.5, 2.0)
    assert spec == fam.sample(jax.random.key(0)) and spec != fam.sample(jax.random.key(1))
    with pytest.raises(ValueError, match="param_scales"):
        inner_tasks.TabularFamily(param_scales=(0.0, 1.0))
    with pytest.raises(ValueError, match="width_weights"):
        inner_tasks.TabularFamily(widths=(8, 16), width_weights=(1.0,))
    with pytest.raises(ValueError, match="depths"):
        inner_tasks.FlaxMLPFamily(depths=(9,))
    with pytest.raises(ValueError, match="max_step_macs"):
        inner_tasks.TabularFamily(widths=(1024,), width_weights=None, depths=(8,), depth_weights=None,
                                  max_step_macs=1000).sample(jax.random.key(0))


@pytest.mark.parametrize("name, kwargs", [
    ("tabular", dict(generators=("classification", "digits"))),
    ("tabular", dict(generators=("iris",))),
    ("mlp", dict(datasets=("digits",))),
    ("conv", dict(datasets=("fashion_mnist", "digits"))),
    ("flax_mlp", dict(datasets=("digits",), resolutions=(8,))),
])
def test_families_refuse_held_out_data(name, kwargs):
    with pytest.raises(ValueError, match=r"held-out evaluation data .* never used in meta-training"):
        inner_tasks.get_family(name, **kwargs)


def test_specs_may_still_use_held_out_data_but_tabular_never_loads_it():
    assert inner_tasks.get_spec("mlp", dataset="digits").dataset == "digits"
    assert inner_tasks.get_spec("flax_mlp", dataset="digits").dataset == "digits"
    with pytest.raises(ValueError, match="bundled with scikit-learn, not a generator"):
        inner_tasks.get_spec("tabular", generator="wine")


def test_config_builds_a_mixture_with_the_new_families(fashion_mnist_dir):
    c = tiny.get_config()
    c.family = ml_collections.ConfigDict(dict(name="mixture", members=dict(
        tabular=dict(widths=[8, 16], width_weights=[3, 1], depths=(0, 1, 2), depth_weights=None,
                     kinds=("regression",), param_scales=(1e-3, 1e3), weight=100.0),
        flax_mlp=dict(resolutions=(8,), resolution_weights=None, widths=(8,), width_weights=None),
        mlp=dict(datasets=("fashion_mnist",), widths=(8,), depths=(1,)),
    )))
    family = build.build(c).family
    weights = {f.name: w for f, w in zip(family.families, family.weights)}
    assert weights == {"tabular": 100.0, "flax_mlp": 1.0, "mlp": 1.0}
    tab = next(f for f in family.families if f.name == "tabular")
    assert tab.widths == (8, 16) and tab.width_weights == (3, 1) and tab.param_scales == (1e-3, 1e3)
    c.family.members.tabular.generators = ("moons", "digits")
    with pytest.raises(ValueError, match="config.family.members.tabular: dataset 'digits' is held-out"):
        build.build(c)


@pytest.mark.parametrize("kwargs", [
    dict(generator="friedman1", num_features=8, depth=2, width=32),
    dict(generator="classification", num_features=10, num_classes=4, depth=1, width=32),
])
def test_adam_trains_generated_tasks(kwargs):
    task = inner_tasks.get_task("tabular", batch_size=64, **kwargs)
    curve = inner_tasks.train(task, optax.adam(1e-2), 200, jax.random.key(0), eval_every=200)
    assert np.isfinite(curve.valid_loss).all() and curve.valid_loss[-1] < 0.6 * curve.valid_loss[0]


def test_flax_mlp_family_and_spec():
    fam = inner_tasks.FlaxMLPFamily(resolutions=(8, 16, 28), widths=(16,), width_weights=None, depths=(0, 1),
                                    depth_weights=None)
    specs = fam.specs(jax.random.key(0), 300)
    assert {s.depth for s in specs} == {0, 1} and {s.dataset for s in specs} == {"fashion_mnist"}
    p = np.array(fam.resolution_weights) / sum(fam.resolution_weights)
    assert np.all(np.abs(_freq(specs, "resolution", fam.resolutions) - p) < 4 * np.sqrt(p * (1 - p) / 300))
    # Its spec on (held-out) digits, as an evaluation would build it: vmapped instances train-ready.
    task = inner_tasks.get_task("flax_mlp", dataset="digits", width=16, depth=1, batch_size=32).instances(
        jax.random.key(1), 2)
    losses = jax.jit(jax.vmap(lambda t, k: t.loss(t.init(k), t.sample_batch(k)), in_axes=(task.in_axes(), 0)))(
        task, jax.random.split(jax.random.key(2), 2))
    assert np.all(np.isfinite(losses)) and np.all(np.abs(losses - np.log(10)) < 1.5)


def test_draws_that_differ_only_in_data_share_one_program():
    """Specs that differ only in data-only fields (seed, scales, noise, generator of one kind) compare
    equal, so a jitted function of the Task compiles once; the data they carry still differ."""
    from inner_tasks.tabular import TabularSpec

    a = TabularSpec(generator="regression", seed=1, noise=0.2, x_scale=3.0, num_features=8, width=16)
    b = TabularSpec(generator="friedman1", seed=2, noise=0.0, x_scale=0.5, num_features=8, width=16)
    c = TabularSpec(generator="classification", seed=2, num_features=8, width=16)
    assert a == b and hash(a) == hash(b) and a != c
    ta, tb = a.make(), b.make()
    assert not np.allclose(ta.data["train_x"], tb.data["train_x"])
    traces = []

    @jax.jit
    def loss(task, params):
        traces.append(1)
        return task.loss(params, task.sample_batch(jax.random.key(0)))

    params = ta.init(jax.random.key(0))
    la, lb = loss(ta, params), loss(tb, params)
    assert len(traces) == 1 and float(la) != float(lb)
