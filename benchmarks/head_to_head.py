"""Head-to-head: every recipe meta-trained for the same wall-clock budget, then scored on one suite.

    python -m benchmarks.head_to_head --budget_minutes 20 --out runs/h2h
    python -m benchmarks.head_to_head --budget_minutes 1 --out /tmp/h2h --recipes quick   # smoke check
    python -m benchmarks.head_to_head --recipes quick,es_single --set estimator.min_horizon=1000 \
        --set estimator.max_horizon=4000 --out runs/h2h_long   # the same change to every recipe

Per recipe (configs/<recipe>.py), each phase in a fresh subprocess (no compilation cache or
memory shared; a crash costs one recipe; JAX_COMPILATION_CACHE_DIR is dropped from its env):
1. calibrate: CALIB_STEPS meta-steps in a throwaway workdir, timed in-process per step: the
   startup (held-out evaluation at step 0, compilation, the first step), the steady seconds per
   step (median after the second step) and the tail (final held-out evaluation, checkpoint, export);
2. run: num_steps chosen so that startup + (num_steps - 1) x s/step + tail fills the budget
   (`choose_num_steps`, at least MIN_STEPS), in a fresh workdir; the held-out evaluation runs at
   step 0 and the end only, the variance probe and histograms are off (diagnostics, not
   training); the outer learning-rate schedule spans num_steps as in any run;
3. evaluate: WORKDIR/lopt.safetensors against tuned Adam on `--suite` (`python -m evaluation.evaluate`).
The budget covers phase 2 only; calibration and evaluation times are reported apart. Groups that
redraw a task spec of a new shape recompile mid-run, which the short calibration does not see, so
the wall time may overshoot the budget by those compilations; the table shows the actual time.
Outputs: OUT/results.json (rewritten after every recipe), OUT/table.md, OUT/logs/*.log.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import math
import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

RECIPES = ("quick", "es_single", "bmg", "full_es", "tbptt", "velo")
CALIB_STEPS = 8  # steps 1-2 hold compilation; the steady rate is the median of the later steps
MIN_STEPS = 10


def overrides(config, num_steps: int, calibrate: bool = False) -> dict[str, Any]:
    """Dotted config changes for a budgeted run of num_steps (only the keys that change). A
    calibration logs every step: logging fetches the step's metrics, so each step's end is synced
    (JAX dispatches asynchronously; between logs the loop's Python runs ahead of the computation)."""
    want = {"num_steps": num_steps, "eval.every": num_steps, "probe.every": 0, "log.histograms_every": 0,
            "outer.warmup_steps": min(config.outer.warmup_steps, num_steps - 1)}
    want |= {"log.every": 1, "checkpoint.every": num_steps} if calibrate else {}
    get = lambda key: config[key] if "." not in key else config[key.split(".")[0]][key.split(".")[1]]
    return {k: v for k, v in want.items() if get(k) != v}


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """`--set key=value` items as {dotted key: Python literal, or the text when it is not one}."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value (a dotted config key), got {item!r}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def load_config(recipe: str, num_steps: int, calibrate: bool = False, sets: dict[str, Any] | None = None):
    """configs/<recipe>.py with `sets` (the same for every recipe) and then `overrides` applied;
    returns (config, every change as dotted keys)."""
    config = importlib.import_module(f"configs.{recipe}").get_config()
    config.lock()  # a misspelt key fails instead of adding a field (as meta_train.py's flags do)
    config.update_from_flattened_dict(dict(sets or {}))
    changes = dict(sets or {}) | overrides(config, num_steps, calibrate)
    config.update_from_flattened_dict(changes)
    return config, changes


def timing(t0: float, step_times: Sequence[float], end: float) -> dict[str, float]:
    """From a run's start, the times of `on_step` after each step and its end: startup (to the first
    `on_step`), seconds per step (the median interval after the second step: steady, when every
    step is synced; and their mean over the whole run) and tail (after the last `on_step`).
    So startup + (steps - 1) x s/step + tail is the run's wall time."""
    if len(step_times) < 3:
        raise ValueError(f"need at least 3 timed steps, got {len(step_times)}")
    steady = [b - a for a, b in zip(step_times[1:], step_times[2:])]
    return {"startup_s": step_times[0] - t0, "s_per_step": statistics.median(steady),
            "mean_s_per_step": (step_times[-1] - step_times[0]) / (len(step_times) - 1), "tail_s": end - step_times[-1]}


def choose_num_steps(budget_s: float, startup_s: float, s_per_step: float, tail_s: float,
                     min_steps: int = MIN_STEPS) -> int:
    """The most steps with startup + (n - 1) x s_per_step + tail within the budget, at least min_steps."""
    if s_per_step <= 0:
        raise ValueError(f"s_per_step must be positive, got {s_per_step}")
    return max(min_steps, math.floor((budget_s - startup_s - tail_s) / s_per_step) + 1)


def suite_score(results: dict) -> dict:
    """The (first) learned optimizer, zero-tune, against Adam tuned for validation loss on an
    `evaluation.evaluate` results dict: per-task mean final validation loss and the ratio
    learned/Adam, their geometric mean, and tasks won (a lower mean; a tie is not a win)."""
    label = results["lopts"][0]["label"]
    per_task, diverged, runs = {}, 0, 0
    for name, t in results["tasks"].items():
        mine, adam = t["learned"][label]["zero_tune"], t["baselines"]["adam"]["valid"]
        lo, ad = mine["valid_mean"], adam["valid_mean"]
        ratio = lo / ad if lo is not None and ad is not None and ad > 0 else None
        per_task[name] = {"learned": lo, "adam": ad, "adam_lr": adam["hparams"]["learning_rate"], "ratio": ratio}
        diverged += mine["nonfinite"]
        runs += len(mine["seeds"])
    ratios = [p["ratio"] for p in per_task.values()]
    ok = all(r is not None and r > 0 for r in ratios)
    wins = sum(p["learned"] is not None and (p["adam"] is None or p["learned"] < p["adam"]) for p in per_task.values())
    return {"per_task": per_task, "geomean_ratio": math.exp(statistics.fmean(map(math.log, ratios))) if ok else None,
            "wins": wins, "tasks": len(per_task), "metric": "valid", "diverged_runs": diverged, "runs": runs}


def _minutes(s: float | None) -> str:
    return "—" if s is None else f"{s / 60:.1f} min"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def table(records: Sequence[dict], command: str | None = None) -> str:
    """The markdown table of head-to-head records (failed recipes get a row saying where)."""
    head = ("| recipe | estimator | budget | meta-steps | inner steps | meta-train wall | held-out meta-loss "
            "init → final | learned / tuned Adam (geo-mean; per task) | wins vs Adam | calibration | suite eval |")
    ncols = head.count("|") - 1
    lines = [head, "|---" * ncols + "|"]
    for r in records:
        cells = [r["recipe"], r.get("estimator", "?"), f"{r['budget_minutes']:g} min"]
        if "error" in r:
            lines.append("| " + " | ".join(cells + [f"failed: {r['error']}"] + [""] * (ncols - 4)) + " |")
            continue
        s = r["suite_score"]
        per = " / ".join(_num(p["ratio"], ".2f") for p in s["per_task"].values())
        cells += [str(r["meta_steps"]), f"{r['inner_steps']:,}", _minutes(r["wall_s"]),
                  f"{_num(r['heldout_init'])} → {_num(r['heldout_final'])}", f"{_num(s['geomean_ratio'], '.2f')} ({per})",
                  f"{s['wins']}/{s['tasks']}", _minutes(r["calibration"]["wall_s"]), _minutes(r["eval_wall_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", "Learned / tuned Adam: mean final validation loss over the evaluation seeds, per suite task in "
             "order, below 1 is better; wins: tasks where the learned optimizer's mean is lower. Meta-training runs:"]
    notes += [f"- `{r['recipe']}`: `{r['meta_train_command']}`" for r in records if "meta_train_command" in r]
    notes += ["", f"Command: `{command}`"] if command else []
    return "\n".join(lines + notes) + "\n"


def _calibrate(recipe: str, workdir: str, sets: dict[str, Any]) -> dict:
    import meta_train
    config, _ = load_config(recipe, CALIB_STEPS, calibrate=True, sets=sets)
    times: list[float] = []
    t0 = time.perf_counter()
    meta_train.run(config, workdir, on_step=lambda _: times.append(time.perf_counter()))
    return timing(t0, times, time.perf_counter()) | {"steps": len(times)}


def _run(recipe: str, num_steps: int, workdir: str, sets: dict[str, Any]) -> dict:
    import jax
    import meta_train
    from configs.build import build
    from evaluation import report
    config, changes = load_config(recipe, num_steps, sets=sets)
    setup = build(config)
    est = setup.make_estimator(setup.family.task(setup.family.sample(jax.random.key(config.seed))))
    per_meta_step = setup.inner_steps_per_meta_step([est] * setup.num_groups)
    times: list[float] = []
    t0 = time.perf_counter()
    summary = meta_train.run(config, workdir, on_step=lambda _: times.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    steps, values, _ = report.scalars(workdir, "eval/heldout_meta_loss")
    flags = " ".join(shlex.quote(f"--config.{k}={v}") for k, v in changes.items())
    return {"estimator": config.estimator.name, "lopt": config.lopt.name, "meta_steps": int(summary["step"]),
            "inner_steps_per_meta_step": per_meta_step, "inner_steps": per_meta_step * int(summary["step"]),
            "wall_s": wall, **{f"run_{k}": v for k, v in timing(t0, times, t0 + wall).items() if k != "s_per_step"},
            "heldout_init": float(values[0]) if steps[0] == 0 else None, "heldout_final": float(values[-1]),
            "heldout_final_step": int(steps[-1]), "lopt_over_adam_untuned": summary.get("eval/lopt_over_adam"),
            "export": summary.get("export"),
            "meta_train_command": f"python meta_train.py --config configs/{recipe}.py --workdir {workdir} {flags}"}


class PhaseError(RuntimeError):
    pass


def _subprocess(args: list[str], log: pathlib.Path, timeout_s: float) -> float:
    """Runs `python args` from the repository root, output to `log`; returns its wall time."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        try:
            rc = subprocess.run([sys.executable, *args], stdout=f, stderr=subprocess.STDOUT, env=env,
                                cwd=pathlib.Path(__file__).resolve().parents[1], timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            raise PhaseError(f"timed out after {timeout_s:.0f} s (see {log})") from None
    if rc != 0:
        tail = log.read_text().strip().splitlines()[-1:] or [""]
        raise PhaseError(f"exit {rc}: {tail[0][:200]} (see {log})")
    return time.perf_counter() - t0


def _one_recipe(recipe: str, budget_minutes: float, out: pathlib.Path, suite: str, seeds: int,
                sets: Sequence[str]) -> dict:
    rec: dict[str, Any] = {"recipe": recipe, "budget_minutes": budget_minutes, "suite": suite, "seeds": seeds,
                           "set": list(sets)}
    me = ["-m", "benchmarks.head_to_head", "--one", recipe, *(a for item in sets for a in ("--set", item))]
    calib_dir, run_dir, eval_dir = (out / d / recipe for d in ("calib", "runs", "eval"))
    phase = "setup"
    try:
        rec["estimator"] = importlib.import_module(f"configs.{recipe}").get_config().estimator.name
        for d in (calib_dir, run_dir, eval_dir):
            shutil.rmtree(d, ignore_errors=True)
        phase = "calibrate"
        wall = _subprocess(me + ["--phase", "calibrate", "--workdir", str(calib_dir)], out / "logs" /
                           f"{recipe}.calibrate.log", 3600)
        calib = json.loads((calib_dir / "h2h.json").read_text()) | {"wall_s": wall}
        shutil.rmtree(calib_dir / "checkpoints", ignore_errors=True)
        rec["calibration"] = calib
        n = choose_num_steps(budget_minutes * 60, calib["startup_s"], calib["s_per_step"], calib["tail_s"])
        rec["predicted_wall_s"] = calib["startup_s"] + (n - 1) * calib["s_per_step"] + calib["tail_s"]
        print(f"[{recipe}] calibrated: {calib['s_per_step']:.3f} s/step, startup {calib['startup_s']:.1f} s, "
              f"tail {calib['tail_s']:.1f} s -> {n} steps", flush=True)
        phase = "run"
        _subprocess(me + ["--phase", "run", "--num_steps", str(n), "--workdir", str(run_dir)],
                    out / "logs" / f"{recipe}.run.log", 2 * budget_minutes * 60 + 3600)
        rec |= json.loads((run_dir / "h2h.json").read_text())
        print(f"[{recipe}] trained: {rec['meta_steps']} steps in {rec['wall_s']:.0f} s, held-out meta-loss "
              f"{_num(rec['heldout_init'])} -> {_num(rec['heldout_final'])}", flush=True)
        phase = "evaluate"
        if not rec.get("export"):
            raise PhaseError(f"no export: the run stopped at step {rec['meta_steps']}")
        rec["eval_wall_s"] = _subprocess(["-m", "evaluation.evaluate", "--lopt", rec["export"], "--suite", suite,
                                          "--baselines", "adam", "--seeds", str(seeds), "--out", str(eval_dir),
                                          "--no-plots"],
                                         out / "logs" / f"{recipe}.evaluate.log", 3600)
        rec["suite_score"] = suite_score(json.loads((eval_dir / "results.json").read_text()))
        print(f"[{recipe}] suite {suite}: learned/Adam {_num(rec['suite_score']['geomean_ratio'], '.2f')}, wins "
              f"{rec['suite_score']['wins']}/{rec['suite_score']['tasks']}", flush=True)
    except (PhaseError, OSError, ValueError, KeyError) as e:
        rec["error"] = f"{phase}: {type(e).__name__}: {e}"
        print(f"[{recipe}] FAILED {rec['error']}", flush=True)
    return rec


def head_to_head(recipes: Sequence[str], budget_minutes: float, out: pathlib.Path, suite: str, seeds: int,
                 sets: Sequence[str] = (), command: str | None = None) -> list[dict]:
    """Runs every recipe in turn; OUT/results.json keeps earlier recipes' records (a rerun replaces one)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    records = json.loads(path.read_text()) if path.exists() else []
    for recipe in recipes:
        rec = _one_recipe(recipe, budget_minutes, out, suite, seeds, sets)
        records = [r for r in records if r["recipe"] != recipe] + [rec]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=1))
        tmp.replace(path)
        (out / "table.md").write_text(table(records, command))
    return records


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget_minutes", type=float, default=20.0, help="meta-training wall clock per recipe")
    ap.add_argument("--out", default="runs/h2h", help="output directory")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated configs/<name>.py recipes")
    ap.add_argument("--suite", default="quick", help="evaluation suite (evaluation.suites.SUITES)")
    ap.add_argument("--seeds", type=int, default=3, help="evaluation seeds")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config change for every recipe, e.g. --set estimator.max_horizon=2000 (repeatable)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one phase of one recipe, in this process
    ap.add_argument("--phase", choices=("calibrate", "run"), help=argparse.SUPPRESS)
    ap.add_argument("--num_steps", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sets = parse_sets(args.set)
    if args.one:
        rec = _calibrate(args.one, args.workdir, sets) if args.phase == "calibrate" else \
            _run(args.one, args.num_steps, args.workdir, sets)
        pathlib.Path(args.workdir, "h2h.json").write_text(json.dumps(rec, indent=1))
        return 0
    from evaluation.suites import SUITES
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in recipes if importlib.util.find_spec(f"configs.{r}") is None]
    if unknown or not recipes or args.budget_minutes <= 0 or args.suite not in SUITES:
        print(f"error: need known recipes (configs/<name>.py; unknown: {unknown}), a positive budget and a suite "
              f"of {sorted(SUITES)}", file=sys.stderr)
        return 2
    try:  # a misspelt or mistyped --set fails here, before anything runs
        [load_config(recipe, CALIB_STEPS, calibrate=True, sets=sets) for recipe in recipes]
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        print(f"error: --set: {e}", file=sys.stderr)
        return 2
    command = "python -m benchmarks.head_to_head " + shlex.join(sys.argv[1:] if argv is None else argv)
    records = head_to_head(recipes, args.budget_minutes, pathlib.Path(args.out).resolve(), args.suite, args.seeds,
                           args.set, command)
    print(table(records, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
