"""evaluation.evaluate: outputs, agreement with direct `inner_tasks.train` runs, tuning, errors."""

import dataclasses
import json
import math

import jax
import numpy as np
import optax
import pytest

import inner_tasks
import lopt
from evaluation import evaluate as ev

SEEDS, STEPS = 2, 20


@pytest.fixture(scope="module")
def lopt_file(tmp_path_factory):
    arch = lopt.LearnableAdam(learning_rate=3e-2)
    return lopt.save(tmp_path_factory.mktemp("lopt") / "adam.safetensors", arch, arch.init(jax.random.key(0)))


@pytest.fixture(scope="module")
def tasks():
    """The digits suite's first task, shortened, twice: the baseline program compiles once."""
    first = ev.SUITES["digits"][0].with_steps(STEPS)
    return first, dataclasses.replace(first, label="digits again")


@pytest.fixture(scope="module")
def run(lopt_file, tasks, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return ev.evaluate(str(lopt_file), tasks, seeds=SEEDS, out_dir=out), out


def test_outputs_written(run, tasks):
    results, out = run
    assert json.loads((out / "results.json").read_text()) == results
    assert (out / "results.md").is_file()
    assert [t.label for t in tasks] == list(results["tasks"])
    for label, entry in results["tasks"].items():
        assert (out / f"{ev._slug(label)}.png").stat().st_size > 0
        assert entry["num_steps"] == STEPS and STEPS % entry["eval_every"] == 0
        for o in entry["optimizers"].values():
            assert len(o["valid_curve_mean"]) == len(entry["steps"]) and len(o["final_valid_loss"]) == SEEDS
            assert o["mean"] == pytest.approx(np.mean(o["final_valid_loss"]), rel=1e-6)
            assert o["std"] == pytest.approx(np.std(o["final_valid_loss"]), rel=1e-5, abs=1e-7)


def test_learned_matches_direct_train(run, lopt_file):
    results, _ = run
    arch, theta, _ = lopt.load_theta(lopt_file)
    (label, entry), (_, again) = results["tasks"].items()
    assert entry["kwargs"] == {"dataset": "digits", "resolution": 8, "width": 32, "depth": 2}
    task = inner_tasks.get_task(entry["task"], **entry["kwargs"])
    assert entry["mup"] and task.spec.parametrization == "mup"
    opt = arch.optimizer(theta, roles=task.roles, fan_in=task.fan_in, num_steps=entry["num_steps"])
    for i, got in enumerate(entry["optimizers"]["learned"]["final_valid_loss"]):
        curve = inner_tasks.train(task, opt, entry["num_steps"], jax.random.key(1 + i), eval_every=entry["eval_every"])
        np.testing.assert_allclose(got, float(curve.valid_loss[-1]), rtol=1e-5, err_msg=label)
    for name, o in entry["optimizers"].items():  # same task, same keys: same numbers
        assert again["optimizers"][name]["lr"] == o["lr"], name
        np.testing.assert_allclose(again["optimizers"][name]["final_valid_loss"], o["final_valid_loss"], rtol=1e-5)


def test_baseline_matches_plain_optax(run):
    """The switched, vmapped baseline runs are optax.adam's own runs."""
    results, _ = run
    entry = next(iter(results["tasks"].values()))
    task = inner_tasks.get_task(entry["task"], **entry["kwargs"])
    adam = entry["optimizers"]["adam"]
    curve = inner_tasks.train(task, optax.adam(adam["lr"]), entry["num_steps"], jax.random.key(1),
                              eval_every=entry["eval_every"])
    np.testing.assert_allclose(adam["final_valid_loss"][0], float(curve.valid_loss[-1]), rtol=1e-4)


def test_chosen_lr_is_tuning_argmin(run):
    results, _ = run
    for entry in results["tasks"].values():
        for name, grid in ev.GRIDS.items():
            o = entry["optimizers"][name]
            assert o["tuning"]["lrs"] == list(grid) and o["lr"] in grid
            losses = [math.inf if v is None else v for v in o["tuning"]["final_valid_loss"]]
            assert o["lr"] == grid[int(np.argmin(losses))]


def test_markdown_table(run):
    results, out = run
    md = (out / "results.md").read_text()
    assert md == ev.markdown(results)
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| task")]
    assert len(rows) == len(results["tasks"])
    for row, label in zip(rows, results["tasks"]):
        assert row.startswith(f"| {label} |") and row.count("**") == 2
    assert "Command:" in md


def test_grids_and_suites():
    assert ev.GRIDS["adam"] == ev.GRIDS["adamw"] == (1e-4, 3.16e-4, 1e-3, 3.16e-3, 0.01, 0.0316, 0.1, 0.316, 1.0)
    assert (ev.GRIDS["sgd"][0], ev.GRIDS["sgd"][-1], len(ev.GRIDS["sgd"])) == (1e-3, 10.0, 9)
    assert (ev.GRIDS["lion"][0], ev.GRIDS["lion"][-1], len(ev.GRIDS["lion"])) == (1e-5, 0.1, 9)
    assert list(ev.GRIDS) == list(ev.BASELINES) == ["adam", "adamw", "sgd", "lion"]
    assert {"quick", "fmnist_mlp", "conv", "lm", "digits", "heldout", "width_mup", "width_sp"} <= set(ev.SUITES)
    for tasks in ev.SUITES.values():
        assert len({t.label for t in tasks}) == len(tasks)
        for t in tasks:
            t.spec()  # validated settings; the data loads in `make`
            hash(t)


def test_with_steps_keeps_points():
    t = ev.SuiteTask("t", "mlp", {"dataset": "digits"}, 200, 50)
    assert t.kwargs == (("dataset", "digits"),)
    assert (t.with_steps(20).num_steps, t.with_steps(20).eval_every) == (20, 5)
    assert t.with_steps(7).eval_every == 7
    with pytest.raises(ValueError, match="multiple"):
        ev.SuiteTask("t", "mlp", {}, 100, 30)


def test_unknown_suite(lopt_file, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown suite 'nope'.*quick"):
        ev.evaluate(str(lopt_file), "nope", 1, tmp_path)
    assert ev.main(["--lopt", str(lopt_file), "--suite", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, match", [({"seeds": 0}, "seeds"), ({"seeds": 1, "steps": 0}, "steps")])
def test_bad_numbers(lopt_file, tmp_path, kwargs, match):
    with pytest.raises(ev.EvaluateError, match=match):
        ev.evaluate(str(lopt_file), "digits", out_dir=tmp_path, **kwargs)


def test_bad_input_from_main(lopt_file, tmp_path, capsys):
    assert ev.main(["--lopt", str(lopt_file), "--suite", "digits", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "seeds must be a positive integer" in capsys.readouterr().err
    bad_task = (ev.SuiteTask("wide", "mlp", {"dataset": "digits", "width": -1}, 10, 10),)
    with pytest.raises(ev.EvaluateError, match="suite task 'wide': width must be positive"):
        ev.evaluate(str(lopt_file), bad_task, 1, tmp_path)


def test_bad_lopt_file(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x07garbage, not a safetensors file" * 4)
    with pytest.raises(lopt.LoptFileError, match="corrupted"):
        ev.evaluate(str(bad), "digits", 1, tmp_path / "out")
    assert ev.main(["--lopt", str(bad), "--suite", "digits", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "corrupted" in err and "Traceback" not in err
    assert ev.main(["--lopt", str(tmp_path / "missing"), "--suite", "digits"]) == 2
    assert "no learned-optimizer file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def train_run(lopt_file, tasks, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_train")
    return ev.evaluate(str(lopt_file), tasks[:1], seeds=SEEDS, out_dir=out, metric="train", baselines=["adam"]), out


def test_train_metric_tunes_on_training_loss_and_records_both(train_run, lopt_file):
    results, _ = train_run
    assert results["metric"] == "train" and results["baselines"] == ["adam"]
    entry = next(iter(results["tasks"].values()))
    assert set(entry["optimizers"]) == {"learned", "adam"}
    adam = entry["optimizers"]["adam"]
    losses = [math.inf if v is None else v for v in adam["tuning"]["final_train_loss"]]
    assert adam["lr"] == ev.GRIDS["adam"][int(np.argmin(losses))]
    assert adam["mean"] == adam["train_mean"] == pytest.approx(np.mean(adam["final_train_loss"]), rel=1e-6)
    task = inner_tasks.get_task(entry["task"], **entry["kwargs"])
    curve = inner_tasks.train(task, optax.adam(adam["lr"]), entry["num_steps"], jax.random.key(1),
                              eval_every=entry["eval_every"])
    last = curve.train_loss[-entry["eval_every"]:].mean()  # the last interval's mean minibatch loss
    np.testing.assert_allclose(adam["final_train_loss"][0], float(last), rtol=1e-4)
    np.testing.assert_allclose(adam["final_valid_loss"][0], float(curve.valid_loss[-1]), rtol=1e-4)
    assert len(adam["train_curve_mean"]) == len(entry["steps"]) - 1


def test_summary_counts_wins_and_divergences(train_run):
    results, out = train_run
    entry = next(iter(results["tasks"].values()))
    learned, adam = entry["optimizers"]["learned"]["mean"], entry["optimizers"]["adam"]["mean"]
    assert results["summary"]["learned_beats"] == {"adam": {"tasks": 1, "learned_lower": int(learned < adam)}}
    assert results["summary"]["runs_per_optimizer"] == SEEDS
    assert results["summary"]["learned_diverged_runs"] == entry["optimizers"]["learned"]["diverged"]
    assert "lower than per-task-tuned adam on" in (out / "results.md").read_text()


def test_divergence_rule():
    valid = np.array([[2.0, 1.0, 0.5], [2.0, 1.0, 2.5], [2.0, np.nan, 0.5]])
    train = np.array([[1.0, 0.5], [1.0, 0.5], [1.0, 0.5]])
    assert ev._diverged(valid, train).tolist() == [False, True, True]
    assert ev._diverged(valid[:1], np.array([[1.0, np.inf]])).tolist() == [True]


@pytest.mark.parametrize("kwargs, match", [({"metric": "median"}, "unknown metric"),
                                           ({"baselines": ["adam", "rmsprop"]}, r"unknown baselines \['rmsprop'\]")])
def test_bad_metric_or_baseline(lopt_file, tmp_path, kwargs, match):
    with pytest.raises(ev.EvaluateError, match=match):
        ev.evaluate(str(lopt_file), "digits", 1, tmp_path, **kwargs)
