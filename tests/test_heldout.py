"""evaluation.optimizer_for (the one way every evaluation builds a learned optimizer for a task)
and evaluation.heldout.Evaluator built from typed values."""

import jax
import numpy as np
import pytest

import inner_tasks
import lopt
from evaluation import heldout, optimizer_for

NUM_STEPS = 20


def _updates(opt, task, key=jax.random.key(0)):
    """The first two updates of `opt` on `task` (the second sees a non-trivial state)."""
    params = task.init(key)
    state = opt.init(params)
    out = []
    for k in jax.random.split(jax.random.fold_in(key, 1), 2):
        batch = task.sample_batch(k, "train")
        loss, grads = jax.value_and_grad(task.loss)(params, batch)
        updates, state = opt.update(grads, state, params, value=loss)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        out.append(updates)
    return out


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("parametrization", ["mup", "sp"])
def test_optimizer_for_passes_roles_and_fan_in_exactly_on_mup_tasks(parametrization):
    task = inner_tasks.get_task("mlp", dataset="digits", width=16, depth=2, batch_size=32,
                                parametrization=parametrization)
    assert task.parametrization == parametrization
    arch = lopt.MuLO(hidden_size=4)
    theta = arch.init(jax.random.key(0))
    got = _updates(optimizer_for(arch, theta, task, NUM_STEPS), task)
    with_mup = _updates(arch.optimizer(theta, num_steps=NUM_STEPS, roles=task.roles, fan_in=task.fan_in), task)
    without = _updates(arch.optimizer(theta, num_steps=NUM_STEPS), task)
    assert not _same(with_mup, without)  # the hidden weights' fan-in (16) changes their updates
    if parametrization == "mup":
        assert _same(got, with_mup)
    else:
        assert _same(got, without)


def test_optimizer_for_on_a_task_without_a_parametrization_setting():
    quad = inner_tasks.get_task("quadratic", dim=4)
    arch = lopt.LearnableAdam()
    theta = arch.init(jax.random.key(0))
    assert quad.parametrization == "sp" and quad.mup_options() == {}
    assert _same(_updates(optimizer_for(arch, theta, quad, NUM_STEPS), quad),
                 _updates(arch.optimizer(theta, num_steps=NUM_STEPS), quad))


class _Recorder:
    """A `monitoring.Writer` stand-in that keeps what it is given."""

    def __init__(self):
        self.scalar, self.figures, self.hists = {}, [], {}

    def scalars(self, step, metrics):
        self.scalar.update({k: float(v) for k, v in metrics.items()})

    def figure(self, step, tag, fig):
        self.figures.append(tag)

    def histogram(self, step, tag, values):
        self.hists[tag] = np.asarray(values)


@pytest.fixture(scope="module")
def evaluator(fashion_mnist_dir):
    # configs/tiny.py's settings: Fashion-MNIST 8×8 MLPs of width 8, μLO hidden 4, 20 eval steps, curve every 10
    family = inner_tasks.get_family("mlp", datasets=("fashion_mnist",), resolutions=(8,), widths=(8,), depths=(1,),
                                    batch_sizes=(32,), data_dir=fashion_mnist_dir)
    arch = lopt.MuLO(hidden_size=4)
    return heldout.Evaluator(arch, family, num_tasks=2, num_steps=NUM_STEPS, curve_every=10, adam_lr=3e-3,
                             key=jax.random.key(5)), family, arch


def test_evaluator_from_typed_values_logs_finite_metrics(evaluator):
    ev, family, arch = evaluator
    assert ev.specs == family.specs(jax.random.key(5), 2) and len(ev.tasks) == 2
    theta = arch.init(jax.random.key(0))
    writer = _Recorder()
    summary = ev.run(writer, 0, theta)
    assert set(summary) == {"eval/heldout_meta_loss", "eval/lopt_over_adam"}
    assert all(np.isfinite(v) for v in writer.scalar.values()) and len(writer.scalar) == 2 + 3 * 2
    assert writer.figures == ["eval/learning_curves"]
    # task i trains from fold_in(fold_in(key, 1), i) with the optimizer `optimizer_for` builds
    task = ev.tasks[1]
    curve = inner_tasks.train(task, optimizer_for(arch, theta, task, NUM_STEPS), NUM_STEPS,
                              jax.random.fold_in(jax.random.fold_in(jax.random.key(5), 1), 1), eval_every=10)
    np.testing.assert_allclose(writer.scalar["eval/task1/lopt_valid"], float(curve.valid_loss[-1]), rtol=1e-5)
    ev.histograms(writer, 3, theta)
    assert {"lopt/update", "lopt/direction", "lopt/magnitude"} <= set(writer.hists)
    assert all(np.isfinite(v).all() and v.size for v in writer.hists.values())
