"""Task families sample varied, valid, reproducible tasks and build vmappable batches."""

import collections
import dataclasses

import jax
import numpy as np
import pytest

import inner_tasks


def _draw(family, n=40):
    return family.specs(jax.random.key(0), n)


def test_mlp_family_covers_every_axis():
    fam = inner_tasks.MLPFamily(
        widths=(16, 32), depths=(1, 2), activations=("relu", "tanh"), batch_sizes=(32, 64),
        datasets=("fashion_mnist",), resolutions=(8, 16),
    )
    specs = _draw(fam, 80)
    for field, axis in [("width", fam.widths), ("depth", fam.depths), ("activation", fam.activations),
                        ("batch_size", fam.batch_sizes), ("dataset", fam.datasets), ("resolution", fam.resolutions)]:
        assert {getattr(s, field) for s in specs} == set(axis), field


def test_sampling_is_reproducible_and_key_dependent():
    fam = inner_tasks.LMFamily()
    assert _draw(fam) == _draw(fam)
    assert len(set(_draw(fam))) > 5
    assert fam.sample(jax.random.key(1)) == fam.sample(jax.random.key(1))
    assert fam.sample(jax.random.PRNGKey(1)) == fam.sample(jax.random.PRNGKey(1))  # raw keys too


@pytest.mark.parametrize("name", sorted(inner_tasks.FAMILIES))
def test_every_family_builds_valid_trainable_batches(name, request):
    # Families are for meta-training, so image families use Fashion-MNIST (never held-out digits).
    images = {"mlp": {}, "conv": {}, "flax_mlp": dict(resolutions=(8,), resolution_weights=None)}
    overrides = {"lm": dict(widths=(32,), contexts=(16,)), **images}
    if name in images:
        overrides[name]["data_dir"] = request.getfixturevalue("fashion_mnist_dir")
    fam = inner_tasks.get_family(name, **overrides.get(name, {}))
    tasks = fam.task_batch(jax.random.key(0), 2)
    keys = jax.random.split(jax.random.key(1), 2)

    def grad_norm(t, k):
        params = t.init(k)
        g = jax.grad(t.loss)(params, t.sample_batch(k))
        return sum((x**2).sum() for x in jax.tree.leaves(g))

    norms = jax.jit(jax.vmap(grad_norm, in_axes=(tasks.in_axes(), 0)))(tasks, keys)
    assert norms.shape == (2,) and np.all(np.isfinite(norms)) and np.all(norms > 0)


def test_mixture_family_mixes_kinds():
    mix = inner_tasks.MixtureFamily(
        families=(inner_tasks.QuadraticFamily(), inner_tasks.MLPFamily(), inner_tasks.LMFamily()),
        weights=(1.0, 1.0, 2.0),
    )
    kinds = collections.Counter(s.name for s in _draw(mix, 60))
    assert set(kinds) == {"quadratic", "mlp", "lm"} and kinds["lm"] > kinds["quadratic"]
    with pytest.raises(ValueError, match="weights"):
        inner_tasks.MixtureFamily(families=(inner_tasks.QuadraticFamily(),), weights=(1.0, 2.0))


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("mlp", dict(resolutions=(12,)), "no resolution"),
        ("mlp", dict(datasets=("digits",)), "held-out evaluation data"),
        ("tabular", dict(kinds=("ranking",)), "valid: .*regression"),
        ("tabular", dict(kinds=("regression",), generators=("moons",)), "no generator"),
        ("flax_mlp", dict(resolutions=(8, 16)), "resolution_weights"),
        ("mlp", dict(activations=("relu", "sine")), "valid: .*gelu"),
        ("mlp", dict(widths=()), "empty"),
        ("mlp", dict(widths=(32, -1)), "non-positive"),
        ("conv", dict(resolutions=(8,), depths=(4,)), "too deep"),
        ("lm", dict(widths=(40,), head_dim=16), "multiple of head_dim"),
        ("quadratic", dict(noises=(-0.1,)), "noises"),
    ],
)
def test_bad_family_axes_rejected_at_construction(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        inner_tasks.get_family(name, **kwargs)


def test_family_specs_are_hashable_and_frozen():
    spec = inner_tasks.MLPFamily().sample(jax.random.key(0))
    assert hash(spec) == hash(dataclasses.replace(spec))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.width = 3


@pytest.mark.parametrize("name,axes", [("conv", dict(resolutions=(8,), channels=(8,), depths=(2,))),
                                       ("lm", dict(widths=(16,), depths=(1,), contexts=(16,), batch_sizes=(4,))),
                                       ("mlp", dict(widths=(16,), depths=(1,)))])
def test_conv_lm_and_mlp_families_reparametrize_on_request_and_only_then(name, axes):
    """param_scales wraps each draw in a ReparamSpec; without it the draws are exactly as before."""
    plain = inner_tasks.get_family(name, **axes)
    aug = inner_tasks.get_family(name, **axes, param_scales=(1e-3, 1e3), loss_scales=(0.5, 2.0))
    spec = aug.sample(jax.random.key(0))
    assert isinstance(spec, inner_tasks.ReparamSpec) and spec.inner == plain.sample(jax.random.key(0))
    assert spec.param_scales == (1e-3, 1e3) and spec.loss_scales == (0.5, 2.0) and spec.name == name
    assert not isinstance(plain.sample(jax.random.key(0)), inner_tasks.ReparamSpec)
    with pytest.raises(ValueError, match="param_scales"):
        inner_tasks.get_family(name, **axes, param_scales=(2.0, 1.0))
