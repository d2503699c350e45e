"""The learned optimizers shipped in lopt/pretrained/: load offline by name, documented, reproducible
from a recipe in configs/, and they train unseen tasks without diverging."""

import importlib
import json
import pathlib

import jax
import jax.numpy as jnp
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


def test_celo_generalist_is_a_version_1_file_that_steps_as_shipped():
    """The shipped file predates Celo version 2 and has no progress feature, so it loads unchanged;
    its steps match numbers recorded with the code it was shipped with (commit 84cb658)."""
    arch, _, header = lopt.load_theta("celo_generalist")
    assert header["arch_version"] == 1 and not arch.progress_feature and arch.decay_gate
    assert header["sha256"].startswith("ff80761e0617")
    params = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4),
              "b": jnp.linspace(-0.5, 0.5, 4, dtype=jnp.float32)}
    opt = lopt.load("celo_generalist", num_steps=20)
    state = opt.init(params)
    for t in range(5):
        grads = jax.tree.map(lambda p: jnp.cos(3 * p + t), params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    want_b = [-0.518165647983551, -0.17234376072883606, 0.17278946936130524, 0.5075386166572571]
    want_w = [-0.990410327911377, -0.8221869468688965, -0.6504969000816345, -0.48041972517967224,
              -0.2894304394721985, -0.09696739912033081, 0.09537547081708908, 0.28599393367767334,
              0.4710253179073334, 0.6552330851554871, 0.8229184150695801, 0.9898793697357178]
    np.testing.assert_allclose(np.asarray(params["b"]), want_b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(params["w"]).ravel(), want_w, rtol=1e-6, atol=1e-7)


ADOPTED_ON_DEV = {"horizon_exponent": 0.5, "relative_step": 0.1, "relative_to": "init"}


@pytest.mark.parametrize("name, newton_schulz", [("celo2_generalist", True), ("celo2_base", False)])
def test_celo2_files_are_stage_1s_theta_shipped_with_the_settings_chosen_on_dev(name, newton_schulz):
    """The default and its cheap variant: stage 1's exported θ (configs/celo2/stage1.safetensors,
    the same tensors), their provenance the stage-1 recipe as it ran, shipped with the settings
    chosen on dev after meta-training (the horizon rule, the step relative to each tensor's initial
    RMS and, in the default, Newton–Schulz) recorded as adopted."""
    import dataclasses

    arch, theta, header = lopt.load_theta(name)
    prov = header["provenance"]
    assert arch == lopt.Celo2(relative_step=0.1, relative_to="init", newton_schulz=newton_schulz)
    assert header["arch_version"] == lopt.Celo2.version
    assert prov["recipe"] == "configs/celo2/stage1.py" and prov["model_card"] == f"{name}.md"
    card = (ROOT / "lopt" / "pretrained" / f"{name}.md").read_text()
    assert "`configs/celo2/stage1.py`" in card and f'lopt.load("{name}", num_steps=N)' in card
    stage1 = importlib.import_module("configs.celo2.stage1").get_config()
    trained = build.build(stage1).arch
    adopted = dict(ADOPTED_ON_DEV, **({"newton_schulz": True} if newton_schulz else {}))
    assert prov["adopted"]["settings"] == adopted
    assert lopt.Celo2(**prov["adopted"]["meta_trained_with"]) == trained  # (fields added since take their defaults)
    assert dataclasses.replace(trained, **adopted) == arch
    stored = json.loads(json.dumps(build.without_added_off(prov["config"])))
    assert stored == json.loads(json.dumps(build.without_added_off(stage1.to_dict())))
    _, theta1, header1 = lopt.load_theta("configs/celo2/stage1.safetensors")
    assert header1["sha256"] == header["sha256"] and prov["meta_training_steps"] == prov["compute"]["meta_steps"]
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta1)))


@pytest.mark.parametrize("name", ["celo2_generalist", "celo2_base"])
def test_celo2_files_load_with_num_steps_alone_and_train_an_unseen_task(name):
    task = inner_tasks.get_task("mlp", dataset="digits", width=48, depth=2, parametrization="sp")
    curve = inner_tasks.train(task, lopt.load(name, num_steps=200), 200, jax.random.key(0),
                              eval_every=100)
    assert np.isfinite(curve.train_loss).all()
    assert curve.train_loss[-20:].mean() < 0.1 * curve.train_loss[:10].mean()
    assert curve.valid_loss[-1] < 0.5 * curve.valid_loss[0]
