"""The learned optimizers shipped in lopt/pretrained/: load offline by name, documented, reproducible
from a recipe in configs/, and they train unseen tasks without diverging."""

import importlib
import json
import pathlib

import jax
import numpy as np
import optax
import pytest

import inner_tasks
import lopt
from configs import build

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = ("mulo_mup", "mulo_sp")


def test_the_shipped_names_are_listed():
    assert set(SHIPPED) <= set(lopt.list_pretrained())


@pytest.mark.parametrize("name", SHIPPED)
def test_file_card_and_recipe_agree(name):
    arch, theta, header = lopt.load_theta(name)
    prov = header["provenance"]
    card = (ROOT / "lopt" / "pretrained" / f"{name}.md").read_text()
    assert prov["model_card"] == f"{name}.md" and f"`{prov['recipe']}`" in card
    assert (ROOT / "lopt" / "pretrained" / f"{name}_curve.png").stat().st_size > 0
    module = importlib.import_module(prov["recipe"].removesuffix(".py").replace("/", "."))
    config = module.get_config()
    # the shipped θ came from this recipe as it is now: same config, same architecture (the device
    # mesh, added later, only lays the same computation out over devices; init_from, added later,
    # is empty: these files started from the architecture's init)
    recipe = json.loads(json.dumps(build.without_added_off(config.to_dict())))  # settings added later, off
    assert recipe.pop("mesh") == {"particles": 0} and recipe.pop("init_from") == "" and recipe == prov["config"]
    assert build.build(config).arch == arch
    assert prov["meta_training_steps"] == config.num_steps == prov["compute"]["meta_steps"]
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(theta))


@pytest.mark.parametrize("name, parametrization", [("mulo_mup", "mup"), ("mulo_sp", "sp")])
def test_loads_as_optax_and_trains_an_unseen_task(name, parametrization):
    """One line gives an optax optimizer; on a task outside the meta-training family it lowers
    the validation loss without a non-finite value."""
    task = inner_tasks.get_task("mlp", dataset="digits", width=48, depth=2, parametrization=parametrization)
    extra = dict(roles=task.roles, fan_in=task.fan_in) if parametrization == "mup" else {}
    opt = lopt.load(name, num_steps=200, **extra)
    assert isinstance(opt, optax.GradientTransformation)
    curve = inner_tasks.train(task, opt, 200, jax.random.key(0), eval_every=100)
    assert np.isfinite(curve.train_loss).all()
    assert curve.valid_loss[-1] < 0.5 * curve.valid_loss[0]
