"""configs/celo_generalist: each stage's recipe is the config stored in the file that stage produced,
each starts from the previous stage's file, and the documented adoption command reproduces its file."""

import dataclasses
import importlib
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from configs import build

ROOT = pathlib.Path(__file__).resolve().parents[1]
HERE = ROOT / "configs" / "celo_generalist"
# stage -> the file it produced (the last is the shipped one)
PRODUCED = {"stage1": "configs/celo_generalist/stage1.safetensors", "stage2": "configs/celo_generalist/stage2.safetensors",
            "stage4": "configs/celo_generalist/stage4.safetensors", "stage5": "configs/celo_generalist/stage5.safetensors",
            "stage9": "celo_generalist"}


def _stored(config: dict) -> dict:
    return json.loads(json.dumps(build.without_added_off(config)))


def test_the_folder_holds_one_recipe_per_stage_and_only_the_files_they_start_from():
    assert sorted(p.stem for p in HERE.glob("stage*.py")) == sorted(PRODUCED)
    starts = {importlib.import_module(f"configs.celo_generalist.{s}").get_config().init_from for s in PRODUCED}
    assert {f"configs/celo_generalist/{p.name}" for p in HERE.glob("*.safetensors")} == starts - {""}
    table = (HERE / "README.md").read_text()
    for stage in PRODUCED:
        assert f"--config configs/celo_generalist/{stage}.py" in table


@pytest.mark.parametrize("stage", sorted(PRODUCED))
def test_each_stage_is_the_config_its_file_records_and_starts_from_the_previous_file(stage):
    module = importlib.import_module(f"configs.celo_generalist.{stage}")
    config = module.get_config()
    arch, theta, header = lopt.load_theta(PRODUCED[stage])
    prov = header["provenance"]
    recipe, stored = _stored(config.to_dict()), _stored(prov["config"])
    # the file recorded the path the previous file had then; its digest identifies it
    assert recipe.pop("init_from") == config.init_from and stored.pop("init_from") is not None
    assert recipe == stored
    assert build.build(config).arch == arch and all(np.isfinite(x).all() for x in jax.tree.leaves(theta))
    if stage == "stage1":
        assert config.init_from == "" and "continues" not in prov
    else:
        previous = list(PRODUCED)[list(PRODUCED).index(stage) - 1]
        assert config.init_from == PRODUCED[previous]
        assert prov["continues"]["sha256"] == lopt.load_theta(config.init_from)[2]["sha256"]
    assert f"--config configs/celo_generalist/{stage}.py" in module.__doc__
    assert header["sha256"][:12] in module.__doc__ and str(prov["meta_training_steps"]) in module.__doc__


def test_the_documented_adoption_command_gives_the_stage2_file_with_the_step_priors(tmp_path):
    command = re.search(r'python -c "(.*?)"', (HERE / "README.md").read_text()).group(1)
    out = tmp_path / "stage2_priors.safetensors"
    assert "'runs/stage2_priors.safetensors'" in command
    exec(command.replace("'runs/stage2_priors.safetensors'", repr(str(out))), {})  # noqa: S102
    stage2_arch, stage2_theta, stage2_header = lopt.load_theta(HERE / "stage2.safetensors")
    arch, theta, header = lopt.load_theta(out)
    assert arch == dataclasses.replace(stage2_arch, width_power=1.0, depth_power=1.0)
    assert header["sha256"] == stage2_header["sha256"]  # the same θ: the priors are static
    # at and below the references (fan-in 64, 3 matrices) it steps as stage 2; a wider matrix less
    small = {"w0": jnp.full((16, 32), 0.1), "w1": jnp.full((32, 4), -0.1), "b": jnp.zeros((4,))}
    wide = {"w0": jnp.full((256, 32), 0.1)}
    for params, same in ((small, True), (wide, False)):
        grads = jax.tree.map(lambda p: jnp.sin(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)), params)
        got = [a.optimizer(t, num_steps=10).update(grads, a.optimizer(t, num_steps=10).init(params), params)[0]
               for a, t in ((arch, theta), (stage2_arch, stage2_theta))]
        for name in params:
            ratio = float(jnp.linalg.norm(got[0][name]) / jnp.linalg.norm(got[1][name]))
            assert ratio == pytest.approx(1.0 if same else 64 / 256, rel=1e-5), name
