"""configs: every recipe builds; mixture families from a config; bad mixtures fail clearly."""

import collections
import importlib
import pathlib

import jax
import ml_collections
import pytest

import inner_tasks
from configs import build, full_es, mulo_mup, mulo_sp

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
# every recipe, in configs/ and its folders (configs/celo_generalist/stage1.py is "celo_generalist/stage1")
RECIPES = sorted(p.relative_to(CONFIGS).with_suffix("").as_posix() for p in CONFIGS.rglob("*.py")
                 if p.stem != "__init__" and p.relative_to(CONFIGS).as_posix() not in ("base.py", "build.py"))


def test_recipes_in_folders_are_found():
    assert "quick" in RECIPES and "celo_generalist/stage1" in RECIPES and "celo_generalist/stage9" in RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_builds_and_documents_its_command(name):
    module = importlib.import_module(f"configs.{name.replace('/', '.')}")
    config = module.get_config()
    assert build.build(config).num_steps > 0
    assert f"--config configs/{name}.py" in module.__doc__ and "Cost on 2 CPU cores" in module.__doc__


def test_mixture_members_and_weights_follow_the_config():
    family = build.build(mulo_mup.get_config()).family
    assert isinstance(family, inner_tasks.MixtureFamily)
    weights = {f.name: w for f, w in zip(family.families, family.weights)}
    assert weights == {"mlp": 3.0, "conv": 1.0, "lm": 1.0}  # matched by name, not by position
    counts = collections.Counter(family.sample(jax.random.key(i)).name for i in range(500))
    assert 0.5 < counts["mlp"] / 500 < 0.7 and counts["conv"] > 50 and counts["lm"] > 50
    mlp = next(f for f in family.families if f.name == "mlp")
    assert mlp.widths == (16, 32, 64) and mlp.resolutions == (8, 16) and mlp.parametrization == "mup"


def test_sp_recipe_differs_only_in_parametrization():
    mup, sp = mulo_mup.get_config().to_dict(), mulo_sp.get_config().to_dict()
    for name, member in sp["family"]["members"].items():
        assert member.pop("parametrization") == "sp"
        assert mup["family"]["members"][name].pop("parametrization") == "mup"
    assert mup == sp
    assert all(f.parametrization == "sp" for f in build.build(mulo_sp.get_config()).family.families)


def _mixture(**members):
    c = mulo_mup.get_config()
    c.family = ml_collections.ConfigDict(dict(name="mixture", members=members))
    return c


@pytest.mark.parametrize("config, match", [
    (lambda: _mixture(), "members must name at least one family"),
    (lambda: _mixture(mlp=dict(widths=(0,))), r"members\.mlp.*non-positive"),
    (lambda: _mixture(resnet=dict(depths=(1,))), "unknown family 'resnet'"),
    (lambda: _mixture(mlp=dict(widths=(8,), weight=-1.0)), "weights"),
    (lambda: _mixture(mlp=dict(widthz=(8,))), r"bad settings for config\.family\.members\.mlp"),
])
def test_bad_mixtures_fail_clearly(config, match):
    with pytest.raises(ValueError, match=match):
        build.build(config())


def test_mixture_rejects_keys_beside_members():
    c = _mixture(mlp=dict(widths=(8,)))
    c.family.weights = (1.0,)
    with pytest.raises(ValueError, match=r"only members.*\['weights'\]"):
        build.build(c)


def test_full_es_refuses_a_strategy_shaping_pair_in_one_clear_error():
    c = full_es.get_config()
    c.estimator.update(strategy="cma_es", fitness_shaping="centered_rank")
    with pytest.raises(ValueError, match=r"^config\.estimator: fitness_shaping='centered_rank' does not work with "
                                         r"strategy='cma_es': .*Valid shapings for 'cma_es': \['default'\]$"):
        build.build(c)
