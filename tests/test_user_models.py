"""evaluation.user_models and evaluation.user_tasks: flax default init, user-style data preparation,
the speed-up summary, tuning, an end-to-end run and bad input."""

import json
import math

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
import sklearn.datasets
from sklearn.model_selection import train_test_split

import inner_tasks
import lopt
from evaluation import evaluate as ev
from evaluation import reuse
from evaluation import user_models as um
from evaluation import user_tasks as ut


# ------------------------------------------------------------------------------------- models
def _flax_reference(path: tuple[str, ...], shape: tuple[int, ...], key) -> np.ndarray | None:
    """What flax's own default initializer draws for a leaf of this name and shape (None: exact 0/1)."""
    name = path[-1]
    if name in ("bias", "scale"):
        return None
    if name == "embedding":
        return np.asarray(nn.linear.default_embed_init(key, shape))
    assert name == "kernel", path
    if len(shape) == 3:  # attention's DenseGeneral kernels: flax initializes them as a 2-D (fan_in, fan_out) matrix
        flat = (shape[0], shape[1] * shape[2]) if path[-2] in ("query", "key", "value") else (shape[0] * shape[1], shape[2])
        return np.asarray(nn.initializers.lecun_normal()(key, flat))
    return np.asarray(nn.initializers.lecun_normal()(key, shape))


def _check_default_init(params):
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    kinds = set()
    for i, (p, x) in enumerate(leaves):
        path = tuple(k.key for k in p)
        x = np.asarray(x, np.float64)
        ref = _flax_reference(path, x.shape, jax.random.key(100 + i))
        kinds.add(path[-1])
        if ref is None:
            np.testing.assert_array_equal(x, 0.0 if path[-1] == "bias" else 1.0, err_msg=str(path))
            continue
        n = x.size
        tol = 6.0 / math.sqrt(2 * n) + 0.02  # sampling error of two std estimates, truncation
        assert abs(x.std() / ref.std() - 1) < tol, (path, x.std(), ref.std())
        assert abs(x.mean()) < 6 * ref.std() / math.sqrt(n), path
    return kinds


def test_mlp_default_init_and_shapes():
    task = um.TASKS["iris_mlp_w64_d2"].make()
    params = task.init(jax.random.key(3))
    assert _check_default_init(params) == {"kernel", "bias"}
    module = task.spec.module()  # what a user writes: module.init on an example input
    same = module.init(jax.random.key(3), np.zeros((1, 4), np.float32))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), params, same))
    wide = jax.eval_shape(um.TASKS["digits_mlp_w1024_d2"].make().init, jax.random.key(0))["params"]
    assert [wide[f"Dense_{i}"]["kernel"].shape for i in range(3)] == [(64, 1024), (1024, 1024), (1024, 10)]
    deep = jax.eval_shape(um.TASKS["digits_mlp_w128_d8"].make().init, jax.random.key(0))["params"]
    assert len(deep) == 9 and deep["Dense_8"]["kernel"].shape == (128, 10)
    _check_default_init(um.TASKS["digits_mlp_w128_d8"].make().init(jax.random.key(1)))


def test_conv_default_init(fashion_mnist_dir):
    del fashion_mnist_dir
    task = um.TASKS["fmnist28_conv_c8_c16"].make()
    params = task.init(jax.random.key(4))
    assert _check_default_init(params) == {"kernel", "bias"}
    p = params["params"]
    assert p["Conv_0"]["kernel"].shape == (3, 3, 1, 8) and p["Conv_1"]["kernel"].shape == (3, 3, 8, 16)
    assert p["Dense_0"]["kernel"].shape == (7 * 7 * 16, 64)
    batch = task.sample_batch(jax.random.key(0), "train")
    assert batch["x"].shape == (64, 28, 28, 1) and task.loss(params, batch).shape == ()


def test_transformer_default_init_and_causality():
    task = um.TASKS["licenses_lm_w64_d2_ctx32"].make()
    params = task.init(jax.random.key(5))
    assert _check_default_init(params) == {"kernel", "bias", "embedding", "scale"}
    p = params["params"]
    assert p["Block_0"]["MultiHeadDotProductAttention_0"]["query"]["kernel"].shape == (64, 4, 16)
    assert len([k for k in p if k.startswith("Block_")]) == 2
    module = task.spec.module()
    tokens = np.random.default_rng(0).integers(0, 256, (1, 32))
    changed = tokens.copy()
    changed[0, 20:] = (changed[0, 20:] + 1) % 256
    a, b = module.apply(params, tokens), module.apply(params, changed)
    np.testing.assert_allclose(a[0, :20], b[0, :20], rtol=1e-5, atol=1e-5)  # no position sees the future
    assert not np.allclose(a[0, 20:], b[0, 20:])


# ----------------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name, regression", [("iris", False), ("wine", False), ("breast_cancer", False),
                                              ("digits", False), ("diabetes", True), ("linnerud", True)])
def test_sklearn_data_standardized_and_split(name, regression):
    got = ut.DATASETS[name].loader()
    again = ut.DATASETS[name].loader()
    for k in got:
        np.testing.assert_array_equal(got[k], again[k])  # deterministic
    bunch = getattr(sklearn.datasets, f"load_{name}")()
    x, y = np.asarray(bunch.data, np.float64), np.asarray(bunch.target)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.2, random_state=0, stratify=None if regression else y)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std = np.where(std == 0, 1.0, std)
    np.testing.assert_allclose(got["train_x"], (x_tr - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["valid_x"], (x_va - mean) / std, rtol=1e-5, atol=1e-5)
    live = x_tr.std(0) > 0
    np.testing.assert_allclose(got["train_x"].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(got["train_x"].std(0)[live], 1, atol=1e-4)
    assert len(got["train_x"]) + len(got["valid_x"]) == len(x) and len(got["valid_x"]) == math.ceil(0.2 * len(x))
    if regression:
        y_tr = y_tr.reshape(len(y_tr), -1)
        assert got["train_y"].shape == y_tr.shape and got["train_y"].dtype == np.float32
        np.testing.assert_allclose(got["train_y"].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(got["train_y"].std(0), 1, atol=1e-4)
    else:
        np.testing.assert_array_equal(got["train_y"], y_tr)
        np.testing.assert_array_equal(got["valid_y"], y_va)


def test_fashion_mnist_standardized(fashion_mnist_dir):
    del fashion_mnist_dir
    arrs = ut.load_arrays("fashion_mnist")
    assert arrs["train_x"].shape == (60000, 28, 28) and arrs["valid_x"].shape == (10000, 28, 28)
    spec = ut.UserTaskSpec(model="mlp", model_kwargs={"widths": (8,)}, dataset="fashion_mnist", batch_size=4096)
    x = np.asarray(spec.make().sample_batch(jax.random.key(0), "train")["x"])
    assert x.shape == (4096, 784) and abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05


def test_text_corpus_not_meta_training_and_missing(monkeypatch, tmp_path):
    files = ut.text_files()
    assert files and all(f.is_file() and not f.is_symlink() for f in files)
    assert not any(f.suffix == ".py" for f in files)
    data = ut._text()
    total = sum(f.stat().st_size for f in files)
    assert len(data["train"]) + len(data["valid"]) == total
    assert 0.08 < len(data["valid"]) / total < 0.12
    monkeypatch.setenv(ut.TEXT_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(inner_tasks.DatasetNotFoundError, match="text corpus not found.*nowhere"):
        ut._text()


# ------------------------------------------------------------------------------------ metrics
def test_summary_median_speedup():
    def results(*statuses_values):
        tasks = {str(i): {"wins": {}, "optimizers": {"learned": {"nonfinite": 0, "above_initial": 0}},
                          "speedup": {"status": st, "value": v}, "speedup_valid": {"status": "reached", "value": 0.1}}
                 for i, (st, v) in enumerate(statuses_values)}
        return {"tasks": tasks, "baselines": [], "seeds": 1}
    s = um.summarize(results(("reached", 0.5), ("never_reached", None), ("reached", 0.8)))["speedup"]
    assert s["median"] == 0.8 and not s["median_never_reached"] and s["never_reached"] == 1
    s = um.summarize(results(("reached", 0.5), ("never_reached", None), ("never_reached", None),
                             ("learned_diverged", None)))
    assert s["speedup"]["median"] is None and s["speedup"]["median_never_reached"] and s["speedup"]["tasks"] == 3
    assert s["speedup_valid"]["median"] == pytest.approx(0.1) and s["speedup_valid"]["tasks"] == 4


def test_choose_lr_toy():
    grid = (1e-4, 1e-3, 1e-2, 1e-1)
    assert ev.choose_lr(grid, [0.9, 0.4, 0.2, math.nan]) == 1e-2
    assert ev.choose_lr(grid, [0.9, 0.4, 0.5, math.inf]) == 1e-3
    assert ev.choose_lr(grid, [math.nan] * 4) == 1e-4  # everything diverged: the smallest
    assert ev.choose_lr(grid, [0.3, 0.3, 0.5, 0.6]) == 1e-4  # a tie: the smaller


def test_best_chunk():
    assert um._best_chunk([28, 12]) == 4  # the full protocol with 3 seeds: 40 rows, none padded
    assert um._best_chunk([16, 16]) == 16 and um._best_chunk([10, 4]) == 5  # 10 + 5 rows (one padded) beat 12 + 4


# --------------------------------------------------------------------------------- end to end
STEPS, GRID2 = 30, (1e-4, 1e-1)


@pytest.fixture(scope="module")
def lopt_file(tmp_path_factory):
    arch = lopt.LearnableAdam(learning_rate=3e-2)
    return lopt.save(tmp_path_factory.mktemp("lopt") / "adam.safetensors", arch, arch.init(jax.random.key(0)))


@pytest.fixture(scope="module")
def run(lopt_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("user_models")
    task = um.TASKS["iris_mlp_w64_d2"].with_steps(STEPS, points=3)
    return um.run_suite(str(lopt_file), [task], seeds=1, out_dir=out, grid=GRID2), out


def test_end_to_end_fields(run):
    results, out = run
    assert json.loads((out / "results.json").read_text()) == results
    assert (out / "results.md").read_text() == um.markdown(results)
    assert {"suite", "lopt", "lopt_arch", "seeds", "eval_seeds", "tune_seed", "tuning_metric", "baselines", "grid",
            "points_per_run", "speedup_basis", "command", "tasks", "summary", "wall_s"} <= set(results)
    assert results["grid"] == list(GRID2) and results["baselines"] == list(ev.BASELINES)
    (label, e), = results["tasks"].items()
    assert (out / f"{label}_valid.png").stat().st_size > 0 and (out / f"{label}_train.png").stat().st_size > 0
    assert {"num_steps", "eval_every", "steps", "optimizers", "dataset", "model", "loss", "num_params", "wins",
            "never_diverged", "never_above_initial", "speedup", "speedup_valid", "wall_s"} <= set(e)
    assert e["num_steps"] == STEPS and e["eval_every"] == 10 and e["num_params"] == 4 * 64 + 64 + 64 * 64 + 64 + 64 * 3 + 3
    assert set(e["optimizers"]) == {"learned", *ev.BASELINES}
    for o in e["optimizers"].values():
        for k in ("valid_mean", "valid_std", "train_mean", "train_std", "final_valid_loss", "final_train_loss",
                  "nonfinite", "above_initial", "valid_curve_mean", "train_curve_mean"):
            assert k in o
        assert len(o["final_valid_loss"]) == 1 and len(o["valid_curve_mean"]) == len(e["steps"]) == 4
    assert set(e["wins"]) == set(ev.BASELINES)
    for n, won in e["wins"].items():
        assert won == (e["optimizers"]["learned"]["valid_mean"] < e["optimizers"][n]["valid_mean"])
    assert e["speedup"]["target"] == e["optimizers"]["learned"]["train_mean"]
    ref = um.speedup(e["optimizers"]["adam"]["train_curve_mean"], e["steps"][1:], e["speedup"]["target"], STEPS)
    assert e["speedup"] == ref
    assert e["speedup_valid"]["target"] == e["optimizers"]["learned"]["valid_mean"]
    assert e["speedup_valid"] == um.speedup(e["optimizers"]["adam"]["valid_curve_mean"], e["steps"],
                                            e["speedup_valid"]["target"], STEPS, basis="valid")
    s = results["summary"]
    assert s["learned_beats"]["adam"]["learned_lower"] == int(e["wins"]["adam"])
    assert s["learned_nonfinite_runs"] == e["optimizers"]["learned"]["nonfinite"]
    assert {"speedup", "speedup_valid", "learned_above_initial_runs", "runs_per_optimizer"} <= set(s)
    assert set(s["speedup"]) == {"median", "median_never_reached", "tasks", "never_reached"}
    md = (out / "results.md").read_text()
    assert "below tuned adam: " in md and "Median speed-up" in md and label in md


def test_learned_is_plain_lopt_load_and_tuning_picks_right_lr(run, lopt_file):
    results, _ = run
    (label, e), = results["tasks"].items()
    task = um.TASKS[label].make()
    opt = lopt.load(str(lopt_file), num_steps=STEPS)  # the product promise: nothing else
    curve = inner_tasks.train(task, opt, STEPS, jax.random.key(1), eval_every=10)
    np.testing.assert_allclose(e["optimizers"]["learned"]["final_valid_loss"][0], float(curve.valid_loss[-1]), rtol=1e-5)
    for n in ev.BASELINES:
        o = e["optimizers"][n]
        assert o["tuning"]["lrs"] == list(GRID2)
        assert o["lr"] == ev.choose_lr(GRID2, [math.inf if v is None else v for v in o["tuning"]["final_valid_loss"]])
    adam = e["optimizers"]["adam"]
    assert adam["lr"] == 1e-1  # 30 steps at 1e-4 barely move an MLP; at 0.1 Adam fits iris
    tuned = inner_tasks.train(task, optax.adam(0.1), STEPS, jax.random.key(ev.TUNE_SEED), eval_every=10)
    np.testing.assert_allclose(adam["tuning"]["final_valid_loss"][1], float(tuned.valid_loss[-1]), rtol=1e-4)


# -------------------------------------------------------------------------------------- errors
def test_bad_input(lopt_file, tmp_path, capsys, monkeypatch):
    with pytest.raises(um.UserModelsError, match=r"unknown task names \['nope'\]"):
        um.run_suite(str(lopt_file), "quick", tasks=["nope"], out_dir=tmp_path)
    assert um.main(["--lopt", str(lopt_file), "--tasks", "iris_mlp_w64_d2,nope", "--out", str(tmp_path)]) == 2
    assert "unknown task names ['nope']" in capsys.readouterr().err
    assert um.main(["--lopt", str(tmp_path / "missing"), "--quick", "--out", str(tmp_path)]) == 2
    assert "no learned-optimizer file" in capsys.readouterr().err
    with pytest.raises(um.UserModelsError, match="seeds"):
        um.run_suite(str(lopt_file), "quick", seeds=0, out_dir=tmp_path)
    monkeypatch.setenv(ut.TEXT_ENV, str(tmp_path / "nowhere"))
    ut.load_arrays.cache_clear()
    try:
        assert um.main(["--lopt", str(lopt_file), "--tasks", "licenses_lm_w64_d2_ctx32", "--out", str(tmp_path)]) == 2
    finally:
        ut.load_arrays.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "text corpus not found" in err and "Traceback" not in err
    assert not (tmp_path / "results.json").exists()


def test_suites():
    assert len(um.SUITES["quick"]) == 5 and all(t.num_steps == 300 for t in um.SUITES["quick"])
    full = um.SUITES["full"]
    assert {t.label for t in full} == {t.label for t in um.TASKS.values() if t in full}
    assert max(t.num_steps for t in full) == 5000 and min(t.num_steps for t in full) == 300
    assert {t.spec.model for t in full} == {"mlp", "conv", "lm"}
    assert {ut.DATASETS[t.spec.dataset].kind for t in full} == {"classification", "regression", "text"}
    for t in full + um.SUITES["quick"]:
        assert t.num_steps // t.eval_every == um.POINTS
    labels = {t.label for t in full}
    assert {"digits_mlp_w1024_d2", "digits_mlp_w128_d8"} <= labels
    assert um.GRID == (1e-4, 3.16e-4, 1e-3, 3.16e-3, 0.01, 0.0316, 0.1)


def test_model_card_from_user_model_results_and_a_continuation_chain(run, tmp_path):
    """`evaluation.report.card` renders user-model results and the init_from chain in the file's provenance."""
    from tensorboardX import SummaryWriter

    from evaluation import report
    workdir = tmp_path / "run"
    writer = SummaryWriter(str(workdir))
    for step in (10, 20, 30):
        writer.add_scalar("meta/loss", 1.0 / step, step)
    writer.close()
    arch = lopt.Celo()
    first = {"date": "2026-12-05T17:07:37+00:00", "meta_training_steps": 1900, "config": {}}
    prov = {"meta_training_steps": 30, "config": {"seed": 0}, "total_meta_training_steps": 1930,
            "continues": {"init_from": "exports/first.safetensors", "sha256": "ab" * 32, "provenance": first}}
    lopt.save(workdir / "lopt.safetensors", arch, arch.init(jax.random.key(0)), prov)
    assert report.continuation_chain(prov) == [{"init_from": "exports/first.safetensors", "sha256": "ab" * 32,
                                                "date": first["date"], "meta_training_steps": 1900}]
    report.card("gen", str(workdir), "configs/generalist.py", [str(run[1])], None, out_dir=tmp_path / "pre",
                machine="a test machine")
    md = (tmp_path / "pre" / "gen.md").read_text()
    assert 'opt = lopt.load("gen", num_steps=N)\n' in md and "on a test machine" in md
    assert "1. `exports/first.safetensors` (sha256 `abababababababab…`" in md and "1930 meta-steps in all" in md
    assert "## Results: user-model suite" in md and "| iris_mlp_w64_d2 |" in md and "## Final validation loss" in md


def test_cli_runs_the_learned_optimizer_alone(lopt_file, tmp_path, capsys):
    """`--baselines ''` runs only the learned optimizer (a quick screen of a candidate file)."""
    args = ["--lopt", str(lopt_file), "--tasks", "iris_mlp_w64_d2", "--seeds", "1", "--baselines", "", "--no-plots",
            "--out", str(tmp_path)]
    assert um.main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["baselines"] == [] and list(results["tasks"]["iris_mlp_w64_d2"]["optimizers"]) == ["learned"]
    out = capsys.readouterr().out
    assert "| task | steps | learned (" in out and "|  |" not in out
    assert um.main(args[:-2] + ["--baselines", "adam,nope", "--out", str(tmp_path)]) == 2
    assert "unknown baselines ['nope']" in capsys.readouterr().err


def test_baselines_from_reuses_the_tuned_baselines_exactly(run, lopt_file, tmp_path):
    """Re-running the same file with --baselines_from gives the same results as running every
    baseline again; another learned optimizer is compared against the stored baselines."""
    results, out = run
    (label, _), = results["tasks"].items()
    task = um.TASKS[label].with_steps(STEPS, points=3)
    again = um.run_suite(str(lopt_file), [task], seeds=1, out_dir=tmp_path / "same", grid=GRID2, plots=False,
                         baselines_from=out)
    assert again["baselines_from"] == str(out)
    strip = ("wall_s",)
    assert {k: v for k, v in again["tasks"][label].items() if k not in strip} == \
        {k: v for k, v in results["tasks"][label].items() if k not in strip}
    assert again["summary"] == results["summary"]
    other = lopt.LearnableAdam(learning_rate=1e-3)
    other_file = lopt.save(tmp_path / "slow.safetensors", other, other.init(jax.random.key(0)))
    slow = um.run_suite(str(other_file), [task], seeds=1, out_dir=tmp_path / "slow", grid=GRID2, plots=False,
                        baselines_from=out / "results.json")
    e = slow["tasks"][label]
    for n in ev.BASELINES:
        assert e["optimizers"][n] == results["tasks"][label]["optimizers"][n]
        assert e["wins"][n] == (e["optimizers"]["learned"]["valid_mean"] < e["optimizers"][n]["valid_mean"])
    assert e["optimizers"]["learned"]["valid_mean"] > results["tasks"][label]["optimizers"]["learned"]["valid_mean"]
    assert "reused from" in (tmp_path / "slow" / "results.md").read_text()


def test_baselines_from_refuses_what_would_not_compare(run, lopt_file, tmp_path, capsys):
    results, out = run
    (label, _), = results["tasks"].items()
    task = um.TASKS[label].with_steps(STEPS, points=3)
    kw = dict(seeds=1, out_dir=tmp_path / "x", grid=GRID2, plots=False)
    with pytest.raises(reuse.BaselineReuseError, match="grid"):
        um.run_suite(str(lopt_file), [task], **dict(kw, grid=(1e-3, 1e-1)), baselines_from=out)
    with pytest.raises(reuse.BaselineReuseError, match="seeds"):
        um.run_suite(str(lopt_file), [task], **dict(kw, seeds=2), baselines_from=out)
    with pytest.raises(reuse.BaselineReuseError, match="differs in num_steps"):
        um.run_suite(str(lopt_file), [um.TASKS[label].with_steps(60, points=3)], **kw, baselines_from=out)
    with pytest.raises(reuse.BaselineReuseError, match="no task 'wine_mlp_w128_d2'"):
        um.run_suite(str(lopt_file), [um.TASKS["wine_mlp_w128_d2"].with_steps(STEPS, points=3)], **kw,
                     baselines_from=out)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text('{"tasks": ')
    with pytest.raises(reuse.BaselineReuseError, match="not valid JSON"):
        um.run_suite(str(lopt_file), [task], **kw, baselines_from=tmp_path / "bad")
    alone = json.loads((out / "results.json").read_text())
    alone["baselines"] = []
    (tmp_path / "alone.json").write_text(json.dumps(alone))
    with pytest.raises(reuse.BaselineReuseError, match=r"no tuned \['adam'\]"):
        um.run_suite(str(lopt_file), [task], **dict(kw, grid=GRID2), baselines=["adam"],
                     baselines_from=tmp_path / "alone.json")
    assert um.main(["--lopt", str(lopt_file), "--tasks", "iris_mlp_w64_d2", "--out", str(tmp_path / "y"),
                    "--baselines_from", str(tmp_path / "nowhere")]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()  # refused before anything is written


def test_steps_sets_every_horizon(lopt_file, tmp_path):
    """`--steps N` runs each task at horizon N (25 evaluation points where N allows), nothing else changed."""
    args = ["--lopt", str(lopt_file), "--tasks", "iris_mlp_w64_d2", "--seeds", "1", "--baselines", "", "--no-plots",
            "--steps", "50", "--out", str(tmp_path)]
    assert um.main(args) == 0
    e = json.loads((tmp_path / "results.json").read_text())["tasks"]["iris_mlp_w64_d2"]
    assert e["num_steps"] == 50 and e["eval_every"] == 2 and e["steps"][-1] == 50
    with pytest.raises(um.UserModelsError, match="steps must be a positive integer"):
        um.run_suite(str(lopt_file), "quick", steps=0, out_dir=tmp_path / "x")
