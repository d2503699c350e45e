"""evaluation.in_family: variants of a learned optimizer on fresh draws of a recipe's family."""

import math

import jax
import numpy as np
import optax
import pytest

import inner_tasks
import lopt
from evaluation import in_family
from inner_tasks.train import train_step, valid_loss

FAMILY = inner_tasks.TabularFamily(widths=(8,), width_weights=(1,), depths=(1,), depth_weights=(1,),
                                   batch_sizes=(16,), batch_size_weights=(1,), num_features=(4,), train_sizes=(64,))


def test_ratio_is_final_over_initial_validation_loss_as_a_plain_loop_computes():
    arch = lopt.Celo()
    theta = arch.init(jax.random.key(0))
    task = FAMILY.task(FAMILY.sample(jax.random.key(4)))  # standardized inputs: well conditioned
    key = jax.random.key(3)
    got = in_family.final_over_initial(arch, jax.tree.map(lambda x: x[None], theta), task, 5, key, seeds=2)
    assert got.shape == (1, 2)
    for s, k in enumerate(jax.random.split(key, 2)):
        k_init, k_valid, k_run = jax.random.split(k, 3)
        opt = arch.optimizer(theta, num_steps=5)
        carry = (task.init(k_init), None)
        carry = (carry[0], opt.init(carry[0]))
        v0 = float(valid_loss(task, carry[0], k_valid, 8))
        for kk in jax.random.split(k_run, 5):
            carry, _ = train_step(task, opt, carry, kk)
        np.testing.assert_allclose(got[0, s], float(valid_loss(task, carry[0], k_valid, 8)) / v0, rtol=2e-5)


def test_progress_variants_start_from_the_file_and_zero_is_the_file_itself(tmp_path):
    base = lopt.Celo()
    path = lopt.save(tmp_path / "c.safetensors", base, base.init(jax.random.key(0)))
    arch, thetas, names = in_family.variants([str(path)], [0.0, 0.5])
    assert arch.progress_feature and len(thetas) == 2 and names[1].startswith("progress_init 0.5")
    assert float(thetas[1]["step"][-1]) == pytest.approx(0.5 * math.log(10))
    ratios = in_family.compare(FAMILY, arch, thetas + [thetas[0]], num_tasks=2, steps=5, log=lambda _: None)
    assert ratios.shape == (2, 3) and np.all(np.isfinite(ratios))
    plain = in_family.compare(FAMILY, base, [base.init(jax.random.key(0))], num_tasks=2, steps=5, log=lambda _: None)
    np.testing.assert_allclose(ratios[:, 0], plain[:, 0], rtol=1e-5)  # weight 0: the file's own optimizer
    np.testing.assert_allclose(ratios[:, 2], ratios[:, 0], rtol=1e-6)
    table = in_family.summary(ratios, names + ["again"])
    assert table.count("\n") == 4 and "| progress_init 0 decade/decade |" in table


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    adam = lopt.LearnableAdam()
    path = lopt.save(tmp_path / "a.safetensors", adam, adam.init(jax.random.key(0)))
    with pytest.raises(ValueError, match="exactly one celo file"):
        in_family.variants([str(path)], [0.5])
    assert in_family.main(["--config", "configs/celo_generalist/stage5.py", "--lopt", str(tmp_path / "none")]) == 2
    assert "no learned-optimizer file" in capsys.readouterr().err
    assert in_family.main(["--config", str(tmp_path / "none.py"), "--lopt", str(path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_summary_floors_zero_ratios_in_the_geometric_mean():
    ratios = np.array([[0.0, 0.01], [0.5, 0.5]])
    rows = in_family.summary(ratios, ["a", "b"]).splitlines()[2:]
    assert rows[0].startswith(f"| a | {math.sqrt(in_family.RATIO_FLOOR * 0.5):.4f} | 0.2500 |")
    assert rows[1].startswith(f"| b | {math.sqrt(0.01 * 0.5):.4f} | 0.2550 |")


def test_decay_gate_variants_zero_is_the_file_itself(tmp_path):
    base = lopt.Celo()
    theta = base.init(jax.random.key(0))
    theta = dict(theta, skip=theta["skip"].at[1].set(0.3))  # a weight decay for the gate to scale
    path = lopt.save(tmp_path / "c.safetensors", base, theta)
    arch, thetas, names = in_family.variants([str(path)], [], [0.0, 0.5])
    assert arch.decay_gate and names == ["decay_gate 0 decade/decade", "decay_gate 0.5 decade/decade"]
    ratios = in_family.compare(FAMILY, arch, thetas, num_tasks=2, steps=5, log=lambda _: None)
    plain = in_family.compare(FAMILY, base, [theta], num_tasks=2, steps=5, log=lambda _: None)
    np.testing.assert_allclose(ratios[:, 0], plain[:, 0], rtol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        in_family.variants([str(path)], [0.5], [0.5])
