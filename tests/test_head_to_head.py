"""benchmarks.head_to_head's pure parts: the budgeted step count, timing, config changes, the suite
score and the table (no meta-training here)."""

import math

import pytest

from benchmarks import head_to_head as h2h
from configs import quick
from configs.build import build


def test_num_steps_fill_the_budget_and_one_more_would_not():
    budget, startup, s, tail = 1200.0, 75.0, 0.8, 12.0
    n = h2h.choose_num_steps(budget, startup, s, tail)
    predicted = lambda k: startup + (k - 1) * s + tail
    assert n == 1392 and predicted(n) <= budget < predicted(n + 1)


def test_num_steps_never_below_the_minimum():
    assert h2h.choose_num_steps(60.0, startup_s=90.0, s_per_step=5.0, tail_s=10.0) == h2h.MIN_STEPS
    assert h2h.choose_num_steps(60.0, 1.0, 1.0, 1.0, min_steps=100) == 100
    with pytest.raises(ValueError, match="positive"):
        h2h.choose_num_steps(60.0, 1.0, 0.0, 1.0)


def test_timing_splits_a_run_into_startup_steady_steps_and_tail():
    t0, times, end = 100.0, [130.0, 136.0, 137.0, 138.0, 142.0], 150.0
    t = h2h.timing(t0, times, end)
    assert t["startup_s"] == 30.0 and t["tail_s"] == 8.0
    assert t["s_per_step"] == 1.0  # median of 1, 1, 4: the second step (6 s, compiling) left out
    assert t["mean_s_per_step"] == 3.0
    assert t["startup_s"] + (len(times) - 1) * t["mean_s_per_step"] + t["tail_s"] == end - t0
    with pytest.raises(ValueError, match="3 timed steps"):
        h2h.timing(0.0, [1.0, 2.0], 3.0)


def test_overrides_evaluate_only_at_both_ends_and_keep_the_recipe_otherwise():
    config = quick.get_config()
    assert h2h.overrides(config, 500) == {"num_steps": 500, "eval.every": 500, "probe.every": 0,
                                          "log.histograms_every": 0}
    calib = h2h.overrides(config, 8, calibrate=True)
    assert calib["outer.warmup_steps"] == 7 and calib["log.every"] == 1 and calib["checkpoint.every"] == 8
    loaded, changes = h2h.load_config("quick", 500)
    assert changes == h2h.overrides(config, 500)
    assert (loaded.num_steps, loaded.eval.every, loaded.probe.every) == (500, 500, 0)
    assert loaded.estimator.to_dict() == config.estimator.to_dict() and loaded.log.every == config.log.every


def test_sets_parse_literals_apply_to_the_recipe_and_refuse_misspelt_keys():
    sets = h2h.parse_sets(["estimator.max_horizon=2000", "lopt.name=velo", "family.widths=(32, 64)"])
    assert sets == {"estimator.max_horizon": 2000, "lopt.name": "velo", "family.widths": (32, 64)}
    config, changes = h2h.load_config("quick", 500, sets={"estimator.max_horizon": 2000})
    assert config.estimator.max_horizon == 2000 and changes["estimator.max_horizon"] == 2000
    assert changes["num_steps"] == 500
    with pytest.raises(KeyError, match="max_horizon"):
        h2h.load_config("quick", 500, sets={"estimator.maxx_horizon": 2000})
    with pytest.raises(ValueError, match="key=value"):
        h2h.parse_sets(["estimator.max_horizon"])


@pytest.mark.parametrize("recipe", h2h.RECIPES)
def test_every_recipe_builds_at_the_calibration_and_minimum_lengths(recipe):
    for steps, calibrate in ((h2h.CALIB_STEPS, True), (h2h.MIN_STEPS, False)):
        setup = build(h2h.load_config(recipe, steps, calibrate)[0])
        assert setup.num_steps == steps and setup.eval_every == steps and setup.probe_every == 0


def _results(learned: list, adam: list) -> dict:
    run = lambda mean: {"valid_mean": mean, "nonfinite": 0 if mean is not None else 3, "seeds": [1, 2, 3]}
    tasks = {f"task{i}": {"learned": {"x": {"zero_tune": run(lo)}},
                          "baselines": {"adam": {"valid": run(ad) | {"hparams": {"learning_rate": 3e-3}}}}}
             for i, (lo, ad) in enumerate(zip(learned, adam))}
    return {"tasks": tasks, "baselines": ["adam"], "lopts": [{"label": "x"}]}


def test_suite_score_ratios_geometric_mean_and_wins():
    s = h2h.suite_score(_results([0.5, 0.9, 2.0], [1.0, 0.9, 1.0]))
    assert [p["ratio"] for p in s["per_task"].values()] == [0.5, 1.0, 2.0]
    assert s["geomean_ratio"] == pytest.approx(1.0)
    assert (s["wins"], s["tasks"], s["runs"]) == (1, 3, 9)  # a tie is not a win
    diverged = h2h.suite_score(_results([None, 0.4], [1.0, 0.8]))
    assert diverged["per_task"]["task0"]["ratio"] is None and diverged["geomean_ratio"] is None
    assert (diverged["wins"], diverged["diverged_runs"]) == (1, 3)


def test_table_has_one_row_per_recipe_and_every_row_the_header_width():
    ok = {"recipe": "quick", "estimator": "pes", "budget_minutes": 20.0, "meta_steps": 1390,
          "inner_steps": 1390 * 640, "wall_s": 1185.0, "heldout_init": 1.4, "heldout_final": 0.3125,
          "calibration": {"wall_s": 95.0}, "eval_wall_s": 70.0,
          "suite_score": h2h.suite_score(_results([0.5, 0.9, 2.0], [1.0, 0.9, 1.0])),
          "meta_train_command": "python meta_train.py --config configs/quick.py --workdir w --config.num_steps=1390"}
    failed = {"recipe": "full_es", "estimator": "full_es", "budget_minutes": 20.0, "error": "run: exit 1: boom"}
    text = h2h.table([ok, failed], command="python -m benchmarks.head_to_head --budget_minutes 20")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 4 and len({r.count("|") for r in rows}) == 1
    assert "| quick | pes | 20 min | 1390 | 889,600 | 19.8 min | 1.400 → 0.312 | 1.00 (0.50 / 1.00 / 2.00) | 1/3 |" \
        in rows[2]
    assert "failed: run: exit 1: boom" in rows[3]
    assert "--config.num_steps=1390" in text and "--budget_minutes 20`" in text
    assert math.isclose(ok["suite_score"]["geomean_ratio"], 1.0)
