"""evaluation.evaluate and its parts: the runner against a plain training loop, the baselines
against optax's own optimizers, the learned optimizer as users load it, tuning per metric, the
verdicts, reuse of tuned baselines, the test ledger, and one clear error for bad input."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import inner_tasks
import lopt
from evaluation import baselines as bl
from evaluation import evaluate as ev
from evaluation import ledger, protocol, runner, suites, tables
from evaluation.speedup import speedup_at_reference
from evaluation.tasks import EvalTask
from evaluation.user_tasks import UserTaskSpec

SEEDS = 2
LRS = {"adam": [1e-3, 3e-2], "adam_cos": [1e-3, 3e-2], "adamw": [3e-2], "adamw_cos": [3e-2], "sgd": [0.1],
       "lion": [1e-3]}
MULTIPLIERS = [0.5, 1.0, 2.0]


@pytest.fixture(scope="module")
def lopt_file(tmp_path_factory):
    arch = lopt.LearnableAdam(learning_rate=3e-2)
    return str(lopt.save(tmp_path_factory.mktemp("lopt") / "adam.safetensors", arch, arch.init(jax.random.key(0))))


def _iris(steps=20, points=2, label="iris_mlp"):
    spec = UserTaskSpec(model="mlp", model_kwargs={"widths": (16,)}, dataset="iris", batch_size=32)
    return EvalTask(label, spec, steps, points=points, rows=4)


def _digits_mup(steps=20):
    return EvalTask("digits_mup", inner_tasks.get_spec("mlp", dataset="digits", width=16, depth=1), steps, points=2)


SUITE = suites.Suite("tiny", (_iris(), _digits_mup()), quick=("iris_mlp",))
TEST_SUITE = dataclasses.replace(SUITE, name="tiny_test", ledger=True)


@pytest.fixture(scope="module")
def run(lopt_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    results = ev.evaluate(SUITE, [lopt_file], seeds=SEEDS, out_dir=out, lrs=LRS, multipliers=MULTIPLIERS,
                          ledger_path=None)
    return results, out


def _plain_run(task, opt, seed, num_steps, every):
    """A plain Python loop over the documented keys: the reference for `runner.run_one`."""
    k_init, k_run = jax.random.split(jax.random.key(seed))
    params = task.init(k_init)
    state = opt.init(params)
    samples = [runner.fixed_sample(task, s) for s in ("train", "valid")]
    losses = lambda p: [float(runner.sample_loss(task, p, s)) for s in samples]
    out = [losses(params)]
    keys = jax.random.split(k_run, num_steps)
    for t in range(num_steps):
        batch = task.sample_batch(keys[t], "train")
        loss, grads = jax.value_and_grad(task.loss)(params, batch)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        if (t + 1) % every == 0:
            out.append(losses(params))
    return np.asarray(out).T  # [2, points + 1]


def test_runner_matches_a_plain_loop_for_every_family_row():
    """Rows of the one vmapped Adam-family program are optax.adam / adamw with the users' schedule."""
    task = _iris().make()
    n, every = 20, 10
    rows = [(3e-2, 0.0, 0.0), (3e-2, 0.0, 1.0), (1e-2, 0.1, 1.0)]
    got = runner.run_rows(task, runner.BaselineMaker("adam"), None, np.asarray(rows), [1, 2, 1], n, every, 2)
    refs = [optax.adam(3e-2), optax.adam(lambda c: 3e-2 * bl.warmup_cosine(n)(c)),
            optax.adamw(lambda c: 1e-2 * bl.warmup_cosine(n)(c), weight_decay=0.1)]
    for i, (opt, seed) in enumerate(zip(refs, [1, 2, 1])):
        ref = _plain_run(task, opt, seed, n, every)
        np.testing.assert_allclose(got.train[i], ref[0], rtol=2e-5)
        np.testing.assert_allclose(got.valid[i], ref[1], rtol=2e-5)


def test_warmup_cosine_is_the_users_schedule():
    s = bl.warmup_cosine(100)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(1.0) and float(s(100)) == pytest.approx(0.0)
    assert float(s(2)) == pytest.approx(0.4) and float(s(52)) == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))


def test_fixed_training_sample_is_the_whole_small_split():
    task = _iris().make()
    params = task.init(jax.random.key(3))
    data = task.data
    logits = task.spec.module().apply(params, data["train_x"])
    whole = optax.softmax_cross_entropy_with_integer_labels(logits, data["train_y"]).mean()
    got = runner.sample_loss(task, params, runner.fixed_sample(task, "train"))
    np.testing.assert_allclose(float(got), float(whole), rtol=1e-6)


def test_learned_at_multiplier_one_is_lopt_load(lopt_file):
    """Zero-tune is the product promise: `lopt.load(file, num_steps=N)` and nothing else."""
    task = _iris().make()
    arch, theta, _ = lopt.load_theta(lopt_file)
    got = runner.run_rows(task, runner.LearnedMaker(arch), theta, np.asarray([[1.0], [2.0]]), [1, 1], 20, 10, 1)
    ref = _plain_run(task, lopt.load(lopt_file, num_steps=20), 1, 20, 10)
    np.testing.assert_allclose(got.train[0], ref[0], rtol=2e-5)
    doubled = _plain_run(task, optax.chain(lopt.load(lopt_file, num_steps=20), optax.scale(2.0)), 1, 20, 10)
    np.testing.assert_allclose(got.valid[1], doubled[1], rtol=2e-5)


@pytest.fixture(scope="module")
def celo2_file(tmp_path_factory):
    arch = lopt.Celo2()
    return str(lopt.save(tmp_path_factory.mktemp("lopt") / "celo2.safetensors", arch, arch.init(jax.random.key(0))))


def test_learned_options_reach_the_optimizer_as_users_pass_them(celo2_file):
    """`lopt_options` are `lopt.load(file, num_steps=N, **options)`: Celo2's weight decay here."""
    task = _iris().make()
    arch, theta, _ = lopt.load_theta(celo2_file)
    hp = np.asarray([[30.0]])  # a large step, so that the decay's effect is far above float noise
    got = runner.run_rows(task, runner.LearnedMaker(arch, (("weight_decay", 3.0),)), theta, hp, [1], 20, 10, 1)
    plain = runner.run_rows(task, runner.LearnedMaker(arch), theta, hp, [1], 20, 10, 1)
    ref = _plain_run(task, optax.chain(lopt.load(celo2_file, num_steps=20, weight_decay=3.0), optax.scale(30.0)),
                     1, 20, 10)
    np.testing.assert_allclose(got.train[0], ref[0], rtol=2e-5)
    assert abs(float(got.train[0][-1]) - float(plain.train[0][-1])) > 1e-3


def test_multiplier_one_on_the_evaluation_seeds_reuses_the_zero_tune_runs_exactly(lopt_file):
    """The zero-tune runs stand for multiplier 1 on the evaluation seeds: the same numbers as running them."""
    et = _iris()
    task = et.make()
    arch, theta, _ = lopt.load_theta(lopt_file)
    calls = []
    got = protocol.run_learned(et, task, arch, theta, [1.0], [1, 2], calls.append)
    ran = runner.run_rows(task, runner.LearnedMaker(arch), theta, np.ones((2, 1)), [1, 2], et.num_steps,
                          et.eval_every, 1)
    for m in protocol.METRICS:
        assert got["tuned"][m]["hparams"] == {"multiplier": 1.0}
        np.testing.assert_array_equal(got["tuned"][m][f"final_{m}"], getattr(ran, m)[:, -1])
    assert sum(calls) == 2 + 1 + 2  # zero-tune, the tuning row, the reused evaluation runs


def test_lopt_options_are_recorded_checked_and_part_of_resume(celo2_file, tmp_path, capsys):
    kw = dict(seeds=1, out_dir=tmp_path / "o", lrs={"adam": [1e-3]}, baselines=["adam"], multipliers=[1.0],
              tasks=["iris_mlp"], plots=False, ledger_path=None)
    results = ev.evaluate(SUITE, [celo2_file], lopt_options={"weight_decay": 0.5}, **kw)
    assert results["lopts"][0]["options"] == {"weight_decay": 0.5}
    assert "lopt_options={'weight_decay': 0.5}" in results["command"]
    with pytest.raises(ev.EvaluateError, match="holds another evaluation"):
        ev.evaluate(SUITE, [celo2_file], resume=True, lopt_options={"weight_decay": 0.1}, **kw)
    capsys.readouterr()
    for options, match in [("nope=1", "unexpected keyword argument 'nope'"), ("weight_decay=-1", "weight_decay"),
                           ("weight_decay=abc", "not a number"), ("weight_decay", "expected NAME=VALUE")]:
        out = str(tmp_path / "bad")
        assert ev.main(["--suite", "dev", "--lopt", celo2_file, "--lopt_options", options, "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and match in err and "Traceback" not in err
        assert not (tmp_path / "bad").exists()
    for grid, match in [("1,x", "expected comma-separated numbers"), ("0", "finite and positive"), ("", "non-empty")]:
        assert ev.main(["--suite", "dev", "--lopt", celo2_file, "--multipliers", grid, "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and match in err and not (tmp_path / "bad").exists()


def test_outputs_and_structure(run):
    results, out = run
    assert json.loads((out / "results.json").read_text()) == results
    assert (out / "results.md").read_text() == tables.markdown(results)
    assert (out / "summary.png").stat().st_size > 0
    assert list(results["tasks"]) == ["iris_mlp", "digits_mup"]
    for label, e in results["tasks"].items():
        assert (out / f"{label}.png").stat().st_size > 0
        assert e["steps"] == [0, 10, 20] and set(e["baselines"]) == set(bl.BASELINES)
        for b in e["baselines"].values():
            for m in protocol.METRICS:
                assert len(b[m][f"final_{m}"]) == SEEDS and len(b[m][f"{m}_curve"]["mean"]) == 3
                assert b[m][f"{m}_mean"] == pytest.approx(np.mean(b[m][f"final_{m}"]), rel=1e-9)


def test_tuning_chooses_per_metric_and_reruns_on_evaluation_seeds(run):
    results, _ = run
    task = _iris().make()
    e = results["tasks"]["iris_mlp"]
    for name, b in e["baselines"].items():
        rows = b["tuning"]["rows"]
        assert len(rows) == len(LRS[name]) * (3 if name.startswith("adamw") else 1)
        for m in protocol.METRICS:
            finals = [math.inf if v is None else v for v in b["tuning"][f"final_{m}"]]
            pick = rows[int(np.argmin(finals))]
            assert b[m]["hparams"]["learning_rate"] == pytest.approx(pick[0])
            if name.startswith("adamw"):
                assert b[m]["hparams"]["weight_decay"] == pytest.approx(pick[1])
    adamw = e["baselines"]["adamw_cos"]["valid"]
    opt = optax.adamw(lambda c: adamw["hparams"]["learning_rate"] * bl.warmup_cosine(20)(c),
                      weight_decay=adamw["hparams"]["weight_decay"])
    ref = _plain_run(task, opt, 2, 20, 10)
    np.testing.assert_allclose(adamw["final_valid"][1], ref[1, -1], rtol=2e-5)


def test_verdicts_follow_the_numbers(run):
    results, _ = run
    label = results["lopts"][0]["label"]
    wins = {"zero_tune": {"train": 0, "valid": 0}, "tuned": {"train": 0, "valid": 0}}
    beats = {"zero_tune": {"train": 0, "valid": 0}, "tuned": {"train": 0, "valid": 0}}
    for e in results["tasks"].values():
        runs = e["learned"][label]
        for m in protocol.METRICS:
            best = min(e["baselines"], key=lambda n: e["baselines"][n][m][f"{m}_mean"])
            assert e["best"][m] == best
            ref = e["baselines"][best][m][f"{m}_mean"]
            for p, mine in (("zero_tune", runs["zero_tune"][f"{m}_mean"]), ("tuned", runs["tuned"][m][f"{m}_mean"])):
                v = runs["verdicts"][p][m]
                assert v["win"] == (mine < ref) and v["within_5pct"] == (mine <= 1.05 * ref)
                assert v["beats_untuned"] == (mine < e["untuned"][f"{m}_mean"])
                wins[p][m] += v["win"]
                beats[p][m] += v["beats_untuned"]
        assert runs["tuned"]["train"]["hparams"]["multiplier"] in MULTIPLIERS
    for p in wins:
        assert results["summary"][label][p]["train_wins"] == wins[p]["train"]
        assert results["summary"][label][p]["valid_wins"] == wins[p]["valid"]
        assert results["summary"][label][p]["untuned_tasks"] == len(results["tasks"])
        for m in protocol.METRICS:
            assert results["summary"][label][p][f"{m}_beats_untuned"] == beats[p][m]


def test_untuned_reference_is_adamw_with_warmup_cosine_at_1e_3(run):
    """What a user gets without tuning: optax.adamw(1e-3 × warmup + cosine, weight_decay=1e-4)."""
    results, _ = run
    et = _iris()
    e = results["tasks"][et.label]["untuned"]
    assert e["hparams"] == {"learning_rate": 1e-3, "weight_decay": 1e-4} and e["seeds"] == [1, 2]
    ref = _plain_run(et.make(), optax.adamw(lambda c: 1e-3 * bl.warmup_cosine(et.num_steps)(c), weight_decay=1e-4),
                     2, et.num_steps, et.eval_every)
    np.testing.assert_allclose(e["final_train"][1], ref[0][-1], rtol=2e-5)
    np.testing.assert_allclose(e["final_valid"][1], ref[1][-1], rtol=2e-5)
    assert "AdamW + cosine at 1e-3 (untuned)" in tables.markdown(results)


def test_summary_of_failures_and_speedup():
    zero = {"nonfinite": 1, "above_initial": 0, "seeds": [1, 2], "train_mean": None}
    tuned = {m: {"nonfinite": 0, "above_initial": 1, "seeds": [1, 2]} for m in protocol.METRICS}
    v = {"train": {"win": False, "within_5pct": False}, "valid": {"win": True, "within_5pct": True},
         "speedup": {"status": "reached", "value": 2.0},
         "speedup_at_baseline": {"status": "reached", "value": 1.6}}
    results = {"lopts": [{"label": "x"}], "tasks": {"t": {"learned": {"x": {
        "zero_tune": zero, "tuned": tuned, "verdicts": {"zero_tune": v, "tuned": v}}}}}}
    s = protocol.summarize(results)["x"]
    assert (s["zero_tune"]["nonfinite_runs"], s["zero_tune"]["runs"], s["zero_tune"]["valid_wins"]) == (1, 2, 1)
    assert (s["tuned"]["above_initial_runs"], s["tuned"]["runs"], s["tuned"]["speedup_median"]) == (2, 4, 2.0)
    assert s["tuned"]["speedup_at_baseline_median"] == 1.6


def test_rescore_recomputes_the_verdicts_of_stored_runs(run, tmp_path):
    """Results written before a verdict existed get it from their stored runs, nothing re-run;
    on current results rescoring changes nothing."""
    import copy
    import shutil

    from evaluation import report

    results, out = run
    again = protocol.rescore(copy.deepcopy(results))
    assert again["summary"] == results["summary"]
    assert all(again["tasks"][t]["learned"] == results["tasks"][t]["learned"] for t in results["tasks"])
    old = copy.deepcopy(results)
    for entry in old["tasks"].values():
        for runs in entry["learned"].values():
            for v in runs["verdicts"].values():
                del v["speedup_at_baseline"]
    for per in old["summary"].values():
        for s in per.values():
            del s["speedup_at_baseline_median"]
    d = tmp_path / "old"
    shutil.copytree(out, d)
    (d / "results.json").write_text(json.dumps(old))
    assert report.rescore_dirs([d]) == [d / "results.json"]
    stored = json.loads((d / "results.json").read_text())
    assert stored["summary"] == results["summary"]
    entry = next(iter(stored["tasks"].values()))
    runs = next(iter(entry["learned"].values()))
    want = speedup_at_reference(runs["zero_tune"]["train_curve"]["mean"], entry["steps"],
                                entry["baselines"][entry["best"]["train"]]["train"]["train_mean"], entry["num_steps"])
    assert runs["verdicts"]["zero_tune"]["speedup_at_baseline"] == want


def test_summary_statistics_of_runs():
    c = runner.Curves(train=np.array([[2.0, 1.0, 0.5], [2.0, 1.0, 2.5], [2.0, np.nan, 0.5]]),
                      valid=np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]))
    s = protocol.summary(c, {"learning_rate": 0.1}, [1, 2, 3])
    assert (s["nonfinite"], s["above_initial"]) == (1, 1)
    assert s["train_mean"] == pytest.approx(7 / 6) and s["valid_mean"] == pytest.approx(1.0)
    assert s["train_curve"]["mean"][1] == pytest.approx(1.0) and s["train_curve"]["max"][2] == 2.5


def test_quick_subset_and_task_selection(lopt_file, tmp_path):
    assert [t.label for t in SUITE.select(quick=True)] == ["iris_mlp"]
    assert [t.label for t in SUITE.select(["digits_mup"])] == ["digits_mup"]
    with pytest.raises(ev.EvaluateError, match=r"unknown tasks \['nope'\]"):
        ev.evaluate(SUITE, [lopt_file], tasks=["nope"], out_dir=tmp_path)


def test_baselines_from_reuses_the_tuned_baselines_exactly(run, lopt_file, tmp_path):
    results, out = run
    again = ev.evaluate(SUITE, [lopt_file], seeds=SEEDS, out_dir=tmp_path, lrs=LRS, multipliers=MULTIPLIERS,
                        baselines_from=out, plots=False, ledger_path=None)
    for label, e in results["tasks"].items():
        assert again["tasks"][label]["baselines"] == e["baselines"]
        assert again["tasks"][label]["learned"] == e["learned"]
        assert again["tasks"][label]["untuned"] == e["untuned"]
    assert again["summary"] == results["summary"]


def test_baselines_from_refuses_what_would_not_compare(run, lopt_file, tmp_path, capsys):
    _, out = run
    kw = dict(seeds=SEEDS, out_dir=tmp_path / "o", lrs=LRS, multipliers=MULTIPLIERS, ledger_path=None)
    with pytest.raises(ev.reuse.BaselineReuseError, match="eval_seeds"):
        ev.evaluate(SUITE, [lopt_file], **{**kw, "seeds": 1}, baselines_from=out)
    with pytest.raises(ev.reuse.BaselineReuseError, match="grids"):
        ev.evaluate(SUITE, [lopt_file], **{**kw, "lrs": {**LRS, "sgd": [0.3]}}, baselines_from=out)
    longer = suites.Suite("tiny", (_iris(steps=40),))
    with pytest.raises(ev.reuse.BaselineReuseError, match="'iris_mlp' differs"):
        ev.evaluate(longer, [lopt_file], **kw, baselines_from=out)
    stored = json.loads((out / "results.json").read_text())
    del stored["tasks"]["digits_mup"]
    (tmp_path / "partial.json").write_text(json.dumps(stored))
    with pytest.raises(ev.reuse.BaselineReuseError, match="no task 'digits_mup'"):
        ev.evaluate(SUITE, [lopt_file], **kw, baselines_from=tmp_path / "partial.json")
    (tmp_path / "corrupt.json").write_text('{"tasks": ')
    assert ev.main(["--suite", "dev", "--lopt", lopt_file, "--baselines_from", str(tmp_path / "corrupt.json"),
                    "--out", str(tmp_path / "o2")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


def test_resume_keeps_finished_tasks_and_refuses_another_evaluation(run, lopt_file, tmp_path):
    results, out = run
    stored = json.loads((out / "results.json").read_text())
    del stored["tasks"]["digits_mup"]
    stored["tasks"]["iris_mlp"]["wall_s"] = -1.0  # marks the entry: a rerun would overwrite it
    (tmp_path / "results.json").write_text(json.dumps(dict(stored, partial=True)))
    kw = dict(seeds=SEEDS, out_dir=tmp_path, lrs=LRS, multipliers=MULTIPLIERS, plots=False, ledger_path=None)
    again = ev.evaluate(SUITE, [lopt_file], resume=True, **kw)
    assert again["tasks"]["iris_mlp"]["wall_s"] == -1.0
    for key in ("baselines", "learned"):
        assert again["tasks"]["digits_mup"][key] == results["tasks"]["digits_mup"][key]
    assert "partial" not in json.loads((tmp_path / "results.json").read_text())
    with pytest.raises(ev.EvaluateError, match="holds another evaluation"):
        ev.evaluate(SUITE, [lopt_file], resume=True, **{**kw, "multipliers": [1.0]})


def test_parts_run_by_their_own_commands_add_up_to_the_whole_suite(run, lopt_file, tmp_path):
    results, _ = run
    parted = dataclasses.replace(SUITE, parts=(("digits_mup",), ("iris_mlp",)))
    assert [t.label for t in parted.select(part=2)] == ["iris_mlp"]
    kw = dict(seeds=SEEDS, out_dir=tmp_path, lrs=LRS, multipliers=MULTIPLIERS, plots=False, ledger_path=None)
    first = ev.evaluate(parted, [lopt_file], part=1, **kw)
    assert list(first["tasks"]) == ["digits_mup"] and first["partial"]
    second = ev.evaluate(parted, [lopt_file], part=2, **kw)
    assert list(second["tasks"]) == ["iris_mlp", "digits_mup"] and "partial" not in second  # the suite's order
    assert second["summary"] == results["summary"]
    for label in ("iris_mlp", "digits_mup"):
        for key in ("baselines", "learned"):
            assert second["tasks"][label][key] == results["tasks"][label][key]
    other = ev.evaluate(parted, [lopt_file], part=2, **{**kw, "multipliers": [1.0]})  # another evaluation
    assert list(other["tasks"]) == ["iris_mlp"]
    with pytest.raises(ev.EvaluateError, match="has no parts"):
        ev.evaluate(SUITE, [lopt_file], part=1, **kw)
    with pytest.raises(ev.EvaluateError, match=r"parts 1\.\.2, got 3"):
        ev.evaluate(parted, [lopt_file], part=3, **kw)
    with pytest.raises(ev.EvaluateError, match="one of a part"):
        ev.evaluate(parted, [lopt_file], part=1, quick=True, **kw)
    with pytest.raises(ValueError, match="every task exactly once"):
        dataclasses.replace(SUITE, parts=(("digits_mup",),))


def test_a_test_suite_run_is_logged_and_a_foreign_ledger_refused(lopt_file, tmp_path):
    book = tmp_path / "ledger.md"
    suite = dataclasses.replace(TEST_SUITE, tasks=(_iris(),), quick=())
    kw = dict(seeds=1, lrs={"adam": [1e-2]}, baselines=["adam"], multipliers=[1.0], plots=False)
    ev.evaluate(suite, [lopt_file], out_dir=tmp_path / "a", ledger_path=book, command="first", **kw)
    ev.evaluate(suite, [lopt_file], out_dir=tmp_path / "b", ledger_path=book, command="second", **kw)
    rows = [r for r in book.read_text().splitlines() if r.startswith("| 20")]
    assert len(rows) == 4 and "`first`" in rows[0] and "`first`" in rows[1] and "`second`" in rows[3]
    assert "| started | started |" in rows[0] and "started" not in rows[1]  # logged before it ran, then its result
    digest = lopt.load_theta(lopt_file)[2]["sha256"][:12]
    assert f"adam ({digest})" in rows[1] and str(tmp_path / "a") in rows[1]
    foreign = tmp_path / "notes.md"
    foreign.write_text("my notes\n")
    with pytest.raises(ledger.LedgerError, match="not a test-suite ledger"):
        ev.evaluate(suite, [lopt_file], out_dir=tmp_path / "c", ledger_path=foreign, **kw)
    assert foreign.read_text() == "my notes\n" and not (tmp_path / "c").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"seeds": 0}, "seeds must be a positive integer"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"baselines": ["adam", "rmsprop"]}, r"unknown baselines \['rmsprop'\]"),
    ({"lrs": {"adam": []}}, "must be non-empty"),
    ({"lrs": {"adam": [1e-3, -1.0]}}, "finite and positive"),
    ({"multipliers": [0.0]}, "finite and positive"),
    ({"lrs": {"lion": [1e-3]}, "baselines": ["adam"]}, "baselines not run"),
])
def test_bad_settings(lopt_file, tmp_path, kwargs, match):
    with pytest.raises(ev.EvaluateError, match=match):
        ev.evaluate("dev", [lopt_file], out_dir=tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_bad_input_from_the_command_line(lopt_file, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "o")
    assert ev.main(["--suite", "nope", "--lopt", lopt_file, "--out", out]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert ev.main(["--suite", "dev", "--lopt", str(tmp_path / "missing.safetensors"), "--out", out]) == 2
    assert "no learned-optimizer file" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x07garbage, not a safetensors file" * 4)
    assert ev.main(["--suite", "dev", "--lopt", f"{lopt_file},{bad}", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "corrupted" in err and "Traceback" not in err
    monkeypatch.setenv("LOPT_USER_TEXT_DIR", str(tmp_path / "empty"))
    assert ev.main(["--suite", "dev", "--tasks", "licenses_transformer_w32_d2", "--lopt", lopt_file,
                    "--out", out]) == 2
    assert "corpus not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_dev_and_test_suites_meet_the_protocol():
    dev, test = suites.SUITES["dev"], suites.SUITES["test"]
    assert not {t.pair for t in dev.tasks} & {t.pair for t in test.tasks}
    assert {m for _, m in (t.pair for t in test.tasks)} - {m for _, m in (t.pair for t in dev.tasks)}
    for s in (dev, test):
        pairs = {t.pair: t for t in s.tasks}
        assert any(d == "fashion_mnist" and t.num_steps >= 5000 and m in ("mlp", "resmlp") for (d, m), t in pairs.items())
        assert any(m in ("conv", "convnorm") and t.num_steps >= 2000 for (d, m), t in pairs.items())
        assert any(m == "lm" and t.num_steps >= 2000 and d in ("licenses", "perl") for (d, m), t in pairs.items())
        models = {m for _, m in pairs}
        assert {"resmlp", "gru", "ae"} <= models
        kinds = {t.spec.kind for t in s.tasks}
        assert {"classification", "regression"} <= kinds
        assert any(t.spec.dataset in inner_tasks.HELDOUT_DATASETS for t in s.tasks)
    assert test.ledger and not dev.ledger and dev.quick and len(test.parts) == 2
    for s in suites.SUITES.values():
        for t in s.tasks:
            hash(t)
            json.dumps(t.fingerprint())


def test_with_steps_and_task_checks():
    t = _iris(steps=200, points=25)
    assert (t.with_steps(20).num_steps, t.with_steps(20).points) == (20, 20)
    assert t.with_steps(7).points == 7 and t.with_steps(1000).eval_every == 40
    with pytest.raises(ValueError, match="multiple"):
        _iris(steps=30, points=4)
    with pytest.raises(TypeError, match="TaskSpec"):
        EvalTask("x", {"model": "mlp"}, 10)


def test_baseline_table():
    assert list(bl.BASELINES) == ["adam", "adam_cos", "adamw", "adamw_cos", "sgd", "lion"]
    assert bl.ADAM_LRS == (1e-4, 3.16e-4, 1e-3, 3.16e-3, 0.01, 0.0316, 0.1)
    assert bl.BASELINES["adamw"].weight_decays == (1e-4, 1e-2, 1e-1)
    assert len(bl.LEARNED_MULTIPLIERS) == len(bl.ADAM_LRS) and 1.0 in bl.LEARNED_MULTIPLIERS
    hp = jnp.asarray([1e-2, 0.0, 0.0])
    params = {"w": jnp.ones(3)}
    g = {"w": jnp.asarray([1.0, -2.0, 3.0])}
    ours = bl.BASELINES["adam"].make(hp, 10)
    u1, _ = ours.update(g, ours.init(params), params)
    u2, _ = optax.adam(1e-2).update(g, optax.adam(1e-2).init(params), params)
    np.testing.assert_array_equal(u1["w"], u2["w"])
