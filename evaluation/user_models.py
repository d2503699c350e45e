"""The user-model suite: does `lopt.load(name, num_steps=N)` train ordinary flax models better than
tuned optax baselines? None of these models, datasets or initializations appear in meta-training.

    python -m evaluation.user_models --lopt PATH_OR_NAME [--quick] [--seeds 3] [--out DIR] [--tasks a,b]
                                     [--baselines ""] [--baselines_from EARLIER_OUT_DIR] [--steps N]

Tasks (`SUITES`, models and data in `evaluation.user_tasks`): flax.linen models with flax's default
initialization on sklearn's bundled datasets (StandardScaler features, standardized regression
targets, a fixed 80/20 split), Fashion-MNIST 28×28 and a byte-level corpus of licence texts;
cross-entropy for classification and text, MSE for regression; batch 64 (LMs: 16 sequences;
linnerud: its whole 16-row training split); 25 evaluation points per run.

| suite | task | model | horizon |
|---|---|---|---|
| full | iris_mlp_w64_d2 | MLP 64-64 | 300 |
| full | wine_mlp_w128_d2 | MLP 128-128 | 500 |
| full | breast_cancer_mlp_w256_d3 | MLP 256×3 | 1000 |
| full | diabetes_mlp_w256_d2 | MLP 256-256, regression | 1000 |
| full | linnerud_mlp_w32_d2 | MLP 32-32, regression of 3 targets, full batch | 300 |
| full | digits_mlp_w1024_d2 | MLP 1024-1024 | 1000 |
| full | digits_mlp_w128_d8 | MLP 128×8 | 2000 |
| full | fmnist28_mlp_w128_d2 | MLP 128-128 on 784 pixels | 5000 |
| full | fmnist28_conv_c8_c16 | conv 8, pool, conv 16, pool, dense 64 | 500 |
| full | licenses_lm_w64_d2_ctx32 | transformer, 2 blocks of width 64, 4 heads, context 32 | 1000 |
| quick | iris_mlp_w64_d2, diabetes_mlp_w256_d2, digits_mlp_w128_d8 | as above | 300 |
| quick | fmnist28_conv_c4_c8 | conv 4, pool, conv 8, pool, dense 32 | 300 |
| quick | licenses_lm_w32_d1_ctx32 | transformer, 1 block of width 32, 2 heads, context 32 | 300 |

Protocol (`evaluation.evaluate`'s, run through its `_evaluate_task`): the learned optimizer runs
untuned as `lopt.load(PATH_OR_NAME, num_steps=horizon)` and nothing else. Adam, AdamW (weight
decay 1e-4), SGD with momentum 0.9 and Lion are each tuned per task on the 7-point half-decade grid
`GRID` (1e-4 … 1e-1; the quick suite too) on seed 0 by final validation loss, then run at the
chosen rate on evaluation seeds 1..S; every optimizer sees the same keys (inits, batches,
validation batches). Reported per task: final training loss (mean minibatch loss over the last
evaluation interval) and validation loss, mean ± std over seeds; wins (the learned optimizer's
mean final validation loss below the tuned baseline's); whether it never diverged (no non-finite
loss on any seed) and never ended above its initial validation loss; VeLO's speed-up against
tuned Adam on the smoothed training loss (`speedup`).

Cost on the development machine (2 CPU cores shared with other jobs, load average 2-4), with the
shipped mulo_sp and 3 seeds: `--quick` 7.1-7.4 min (the convnet 4.8 min of it: XLA:CPU's
convolutions are slow), the full suite 36 min (the 1024-wide MLP 13.5 min, the convnet 8, the
LM 5.5, the 5000-step MLP 3.4; the sklearn tasks a few minutes together). Each task compiles two
programs (the learned optimizer's runs; every baseline run, a `lax.switch` over the four
baselines) whose rows run one after another under `lax.map`: vmapped, μLO's update was 4× slower
(its per-parameter MLP loses its fused 2-D kernels) and the convnet 1.5× slower.

`--baselines_from DIR` reuses DIR's tuned baselines (they do not depend on the learned optimizer)
after checking that tasks, grid and seeds match, and runs only the learned optimizer: a full-suite
comparison of a new candidate then costs its own runs (`evaluation.reuse`).

Outputs in --out (default runs/eval/user_models[_quick]): results.json, results.md and, per task,
<task>_valid.png and <task>_train.png (mean curves over seeds, min–max shaded).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # as in evaluation.evaluate: single-threaded Eigen, set before the backend starts
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import argparse
import dataclasses
import json
import math
import pathlib
import shlex
import sys
import time
from typing import Any, Sequence

import jax
import numpy as np
import tqdm

import inner_tasks
import lopt
from evaluation import evaluate as ev
from evaluation import reuse
from evaluation.speedup import SPEEDUP_BASIS, speedup, speedup_number
from evaluation.user_tasks import UserTaskSpec, load_arrays

GRID: tuple[float, ...] = ev._half_decades(-4, -1)  # 1e-4, 3.16e-4, …, 0.1
POINTS = 25  # evaluation points per run; the training curve's smoothing window is horizon / POINTS
TUNE_METRIC = "valid"


class UserModelsError(ValueError):
    """Bad input to the user-model suite: task names, seeds or grid."""


@dataclasses.dataclass(frozen=True)
class UserTask:
    """One suite entry: a `UserTaskSpec` trained for num_steps, evaluated every eval_every steps.
    Has the fields `evaluate._evaluate_task` reads from a `SuiteTask`."""

    label: str
    spec: UserTaskSpec
    num_steps: int
    eval_every: int

    def __post_init__(self):
        if self.num_steps < 1 or self.eval_every < 1 or self.num_steps % self.eval_every:
            raise UserModelsError(f"{self.label}: num_steps={self.num_steps} is not a positive multiple of "
                                  f"eval_every={self.eval_every}")

    task = "user"

    @property
    def kwargs(self) -> dict[str, Any]:
        fields = {f.name: getattr(self.spec, f.name) for f in dataclasses.fields(self.spec)}
        fields["model_kwargs"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.spec.model_kwargs}
        return fields

    def make(self) -> inner_tasks.Task:
        return self.spec.make()

    def with_steps(self, steps: int, points: int = POINTS) -> UserTask:
        """This task at another horizon, with `points` evaluation points (fewer if steps has no such divisor)."""
        every = max(d for d in range(1, steps + 1) if steps % d == 0 and steps // d >= min(points, steps))
        return dataclasses.replace(self, num_steps=steps, eval_every=every)


def _task(label: str, model: str, dataset: str, steps: int, batch: int | None = 64, valid: int | None = None,
          **model_kwargs) -> UserTask:
    context = model_kwargs.pop("context", 64)
    spec = UserTaskSpec(model=model, model_kwargs=model_kwargs, dataset=dataset, batch_size=batch,
                        valid_batch=valid, context=context)
    return UserTask(label, spec, steps, steps // POINTS)


def _mlp(label, dataset, width, depth, steps, **kw) -> UserTask:
    return _task(label, "mlp", dataset, steps, widths=(width,) * depth, **kw)


SUITES: dict[str, tuple[UserTask, ...]] = {
    "full": (
        _mlp("iris_mlp_w64_d2", "iris", 64, 2, 300),
        _mlp("wine_mlp_w128_d2", "wine", 128, 2, 500),
        _mlp("breast_cancer_mlp_w256_d3", "breast_cancer", 256, 3, 1000),
        _mlp("diabetes_mlp_w256_d2", "diabetes", 256, 2, 1000),
        _mlp("linnerud_mlp_w32_d2", "linnerud", 32, 2, 300, batch=None),
        _mlp("digits_mlp_w1024_d2", "digits", 1024, 2, 1000),
        _mlp("digits_mlp_w128_d8", "digits", 128, 8, 2000),
        _mlp("fmnist28_mlp_w128_d2", "fashion_mnist", 128, 2, 5000, valid=512),
        _task("fmnist28_conv_c8_c16", "conv", "fashion_mnist", 500, valid=256, channels=(8, 16), hidden=64),
        _task("licenses_lm_w64_d2_ctx32", "lm", "licenses", 1000, batch=16, valid=64, width=64, depth=2, heads=4,
              context=32),
    ),
    # 300 steps each; a smaller convnet and LM than the full suite's, to fit about 10 minutes.
    "quick": (
        _mlp("iris_mlp_w64_d2", "iris", 64, 2, 300),
        _mlp("diabetes_mlp_w256_d2", "diabetes", 256, 2, 300),
        _mlp("digits_mlp_w128_d8", "digits", 128, 8, 300),
        _task("fmnist28_conv_c4_c8", "conv", "fashion_mnist", 300, valid=256, channels=(4, 8), hidden=32),
        _task("licenses_lm_w32_d1_ctx32", "lm", "licenses", 300, batch=16, valid=64, width=32, depth=1, heads=2,
              context=32),
    ),
}
# Every task by label; where both suites have a model, the full suite's horizon.
TASKS: dict[str, UserTask] = {t.label: t for suite in ("quick", "full") for t in SUITES[suite]}


def resolve_tasks(suite: str | Sequence[UserTask], names: Sequence[str] | None = None) -> tuple[str, tuple[UserTask, ...]]:
    """(suite name, tasks): a suite name or a sequence of UserTask, optionally narrowed to `names`."""
    if isinstance(suite, str):
        if suite not in SUITES:
            raise UserModelsError(f"unknown suite {suite!r}; valid: {list(SUITES)}")
        name, tasks = suite, SUITES[suite]
    else:
        name, tasks = "custom", tuple(suite)
        if not tasks or not all(isinstance(t, UserTask) for t in tasks):
            raise UserModelsError("tasks must be a suite name or a non-empty sequence of UserTask")
    if names:
        known = {t.label: t for t in tasks}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UserModelsError(f"unknown task names {unknown}; the {name} suite has {list(known)}")
        tasks = tuple(known[n] for n in dict.fromkeys(names))
    if len({t.label for t in tasks}) != len(tasks):
        raise UserModelsError("task labels must be unique")
    return name, tasks


def _best_chunk(rows: Sequence[int], lo: int = 4, hi: int = 16) -> int:
    """Rows per call of the one compiled baseline program: the fewest padded rows over the row
    groups, the most rows on a tie (the rows run one after another, so padding is wasted time)."""
    return min(range(lo, hi + 1), key=lambda c: (sum(-(-r // c) * c for r in rows), -c))


def _finish_entry(entry: dict, names: list[str], seeds: int) -> None:
    learned = entry["optimizers"][ev.LEARNED]
    entry["wins"] = {n: learned["valid_mean"] is not None and (
        entry["optimizers"][n]["valid_mean"] is None or learned["valid_mean"] < entry["optimizers"][n]["valid_mean"])
        for n in names}
    entry["never_diverged"] = learned["nonfinite"] == 0
    entry["never_above_initial"] = learned["above_initial"] == 0
    if "adam" in names:
        adam = entry["optimizers"]["adam"]
        entry["speedup"] = speedup(adam["train_curve_mean"], entry["steps"][1:], learned["train_mean"],
                                   entry["num_steps"])
        entry["speedup_valid"] = speedup(adam["valid_curve_mean"], entry["steps"], learned["valid_mean"],
                                         entry["num_steps"], basis="valid")


def summarize(results: dict) -> dict:
    tasks = list(results["tasks"].values())
    beats = {n: {"tasks": len(tasks), "learned_lower": sum(t["wins"][n] for t in tasks)} for n in results["baselines"]}
    for b in beats.values():
        b["fraction"] = b["learned_lower"] / b["tasks"]
    out = {"learned_beats": beats, "runs_per_optimizer": len(tasks) * results["seeds"],
           "learned_nonfinite_runs": sum(t["optimizers"][ev.LEARNED]["nonfinite"] for t in tasks),
           "learned_above_initial_runs": sum(t["optimizers"][ev.LEARNED]["above_initial"] for t in tasks)}
    for key in ("speedup", "speedup_valid"):
        values = [speedup_number(t[key]) for t in tasks if t.get(key) and t[key]["status"] != "learned_diverged"]
        median = float(np.median(values)) if values else None  # never reached counts as +inf
        out[key] = {"median": median if median is None or math.isfinite(median) else None,
                    "median_never_reached": median == math.inf, "tasks": len(values),
                    "never_reached": sum(v == math.inf for v in values)}
    return out


def run_suite(lopt_path_or_name: str, suite: str | Sequence[UserTask] = "quick", seeds: int = 3,
              out_dir: str | pathlib.Path | None = None, tasks: Sequence[str] | None = None,
              grid: Sequence[float] = GRID, baselines: Sequence[str] | None = None, plots: bool = True,
              command: str | None = None, baselines_from: str | pathlib.Path | None = None,
              steps: int | None = None) -> dict:
    """Runs the protocol (module docstring), writes results.json, results.md and PNGs; returns the JSON.
    `baselines_from`: an earlier run's directory whose tuned baselines are reused (`evaluation.reuse`);
    `steps`: every task's horizon instead of its own (`UserTask.with_steps`)."""
    t0 = time.time()
    suite_name, todo = resolve_tasks(suite, tasks)
    if steps is not None:
        if not isinstance(steps, int) or steps < 1:
            raise UserModelsError(f"steps must be a positive integer, got {steps!r}")
        todo = tuple(t.with_steps(steps) for t in todo)
    names = list(ev.BASELINES) if baselines is None else [b for b in ev.BASELINES if b in baselines]
    unknown = sorted(set(baselines or ()) - set(ev.BASELINES))
    if unknown:
        raise UserModelsError(f"unknown baselines {unknown}; valid: {list(ev.BASELINES)}")
    if not isinstance(seeds, int) or seeds < 1:
        raise UserModelsError(f"seeds must be a positive integer, got {seeds!r}")
    grid = tuple(float(g) for g in grid)
    if not grid or not all(g > 0 and math.isfinite(g) for g in grid):
        raise UserModelsError(f"the learning-rate grid must be non-empty and positive, got {grid}")
    arch, _, _ = lopt.load_theta(lopt_path_or_name)  # a bad file or name fails here, before any data or compile
    for t in todo:
        load_arrays(t.spec.dataset)  # missing data fails here
    eval_seeds = list(range(1, seeds + 1))
    grids = {n: grid for n in names}
    chunk = _best_chunk([len(names) * len(grid), len(names) * seeds]) if names else 1
    header = {"seeds": seeds, "eval_seeds": eval_seeds, "tune_seed": ev.TUNE_SEED, "tuning_metric": TUNE_METRIC,
              "grid": list(grid), "points_per_run": POINTS}
    reused = None if baselines_from is None else reuse.pick(reuse.read(baselines_from), header, {
        t.label: (json.loads(json.dumps(t.kwargs)), t.num_steps, t.eval_every) for t in todo}, names)
    out = pathlib.Path(out_dir or f"runs/eval/user_models{'_quick' if suite_name == 'quick' else ''}")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "suite": suite_name, "lopt": str(lopt_path_or_name), "lopt_arch": arch.name, "seeds": seeds,
        "eval_seeds": eval_seeds, "tune_seed": ev.TUNE_SEED, "tuning_metric": TUNE_METRIC, "baselines": names,
        "grid": list(grid), "points_per_run": POINTS, "speedup_basis": SPEEDUP_BASIS,
        "command": command or f"run_suite({str(lopt_path_or_name)!r}, {suite_name!r}, seeds={seeds})", "tasks": {},
    }
    if baselines_from is not None:
        results["baselines_from"] = str(baselines_from)
    runs = seeds + (0 if reused else len(names) * (len(grid) + seeds))
    bar = tqdm.tqdm(total=len(todo) * runs, desc="runs", unit="run")
    for t in todo:
        bar.set_postfix_str(t.label)
        start = time.time()
        opt = lopt.load(lopt_path_or_name, num_steps=t.num_steps)  # the product promise, nothing else
        entry = ev._evaluate_task(t, arch, None, [] if reused else names, eval_seeds, TUNE_METRIC, chunk, bar,
                                  grids=grids, learned_opt=opt, sequential=True)
        if reused:
            entry["optimizers"].update(reused[t.label])
        params = jax.eval_shape(t.make().init, jax.random.key(0))
        entry.update(dataset=t.spec.dataset, model=t.spec.model, kind=t.spec.kind, batch_size=t.spec.batch_size,
                     loss="mse" if t.spec.kind == "regression" else "cross-entropy",
                     num_params=int(sum(np.prod(x.shape) for x in jax.tree.leaves(params))))
        _finish_entry(entry, names, seeds)
        entry["wall_s"] = round(time.time() - start, 1)
        results["tasks"][t.label] = entry
        if plots:
            for metric in ("valid", "train"):
                ev.plot_task(t.label, entry, out / f"{ev._slug(t.label)}_{metric}.png",
                             f"{ev.LEARNED} ({pathlib.Path(str(lopt_path_or_name)).stem})", metric)
    bar.close()
    results["summary"] = summarize(results)
    results["wall_s"] = round(time.time() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False))
    (out / "results.md").write_text(markdown(results))
    return results


def _num(x: float, like: float | None = None) -> str:
    """4 decimals, or scientific notation for a value (or the mean it goes with) below 0.01."""
    ref = x if like is None else like
    return f"{x:.4f}" if ref == 0 or abs(ref) >= 0.01 else f"{x:.1e}"


def _cell(o: dict, which: str, best: float | None = None) -> str:
    m = o[f"{which}_mean"]
    if m is None:
        return "diverged"
    cell = f"{_num(m)} ± {_num(o[f'{which}_std'], m)}"
    return f"**{cell}**" if best is not None and m == best else cell


def _speedup_text(s: dict | None) -> str:
    if not s:
        return "–"
    if s["status"] == "learned_diverged":
        return "n/a (learned diverged)"
    if s["status"] == "never_reached":
        return "> 1 (never reached)"
    return f"{'≤ ' if s['first_window'] else ''}{s['value']:.2f}"


def markdown(results: dict) -> str:
    """Tables of final validation and training losses, per-task verdicts and the summary lines."""
    names = results["baselines"]
    cols = [ev.LEARNED, *names]
    head = "| " + " | ".join(["task", "steps", f"{ev.LEARNED} ({pathlib.Path(results['lopt']).stem})", *names]) + " |"
    grid = results["grid"]
    lines = [f"# User-model suite `{results['suite']}`: `{results['lopt']}` ({results['lopt_arch']})", "",
             f"Mean ± std over {results['seeds']} seeds; best in bold; each baseline's learning rate (in "
             f"parentheses) tuned per task on seed {results['tune_seed']} over {len(grid)} points "
             f"{grid[0]:.3g} … {grid[-1]:.3g} by final validation loss. The learned optimizer is untuned.", ""]
    for which, title in (("valid", "Final validation loss"),
                         ("train", "Final training loss (mean minibatch loss over the last evaluation interval, "
                                   f"1/{results['points_per_run']} of the run)")):
        lines += [f"## {title}", "", head, "|---" * (len(cols) + 2) + "|"]
        for label, e in results["tasks"].items():
            opts = e["optimizers"]
            means = [opts[c][f"{which}_mean"] for c in cols if opts[c][f"{which}_mean"] is not None]
            best = min(means) if means and len(cols) > 1 else None
            cells = [_cell(opts[c], which, best) + (f" ({opts[c]['lr']:.3g})" if opts[c]["lr"] is not None else "")
                     for c in cols]
            lines.append(f"| {label} | {e['num_steps']} | " + " | ".join(cells) + " |")
        lines.append("")
    yes = lambda b: "yes" if b else "**no**"
    row = lambda cells: "| " + " | ".join(cells) + " |"
    lines += ["## Per task", "", row(["task", *(f"beats {n}" for n in names), "never diverged", "never above initial",
                                      "speed-up vs Adam (train)", "(valid)"]), "|---" * (len(names) + 5) + "|"]
    for label, e in results["tasks"].items():
        lines.append(row([label, *(yes(e["wins"][n]) for n in names), yes(e["never_diverged"]),
                          yes(e["never_above_initial"]), _speedup_text(e.get("speedup")),
                          _speedup_text(e.get("speedup_valid"))]))
    s = results["summary"]
    runs = s["runs_per_optimizer"]
    lines += ["", "## Summary", ""]
    for n, b in s["learned_beats"].items():
        lines.append(f"- Learned optimizer's mean final validation loss below tuned {n}: "
                     f"{b['learned_lower']}/{b['tasks']} tasks ({100 * b['fraction']:.0f}%).")
    lines.append(f"- Learned-optimizer runs with a non-finite loss: {s['learned_nonfinite_runs']} of {runs}; "
                 f"ending above their initial validation loss: {s['learned_above_initial_runs']} of {runs}.")
    med = lambda m: "> 1 (never reached)" if m["median_never_reached"] else f"{m['median']:.2f}"
    if s["speedup"]["tasks"]:
        lines.append(f"- Median speed-up against tuned Adam: {med(s['speedup'])} over {s['speedup']['tasks']} tasks "
                     f"({s['speedup']['never_reached']} never reached); on validation loss {med(s['speedup_valid'])} "
                     f"({s['speedup_valid']['never_reached']} never reached). Speed-up: the steps tuned Adam needs "
                     "to reach the learned optimizer's final training loss (mean over seeds of the mean minibatch "
                     f"loss over each evaluation interval, 1/{results['points_per_run']} of the run; the valid "
                     "column: its final validation loss), divided by the horizon; > 1: the learned optimizer is "
                     "faster; ≤: Adam's first interval already reaches it.")
    lines += ["", f"Command: `{results['command']}`" + (f"; wall time {results['wall_s'] / 60:.1f} min."
                                                        if "wall_s" in results else "")]
    if results.get("baselines_from"):
        lines += ["", f"The tuned baselines' runs are reused from `{results['baselines_from']}` (same tasks, grid and "
                      "seeds; `evaluation.reuse`); only the learned optimizer ran here."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lopt", required=True, help="learned-optimizer file or pretrained name")
    ap.add_argument("--quick", action="store_true", help="the quick suite (5 tasks, 300 steps each)")
    ap.add_argument("--seeds", type=int, default=3, help="evaluation seeds per (task, optimizer)")
    ap.add_argument("--out", default=None, help="output directory (default runs/eval/user_models[_quick])")
    ap.add_argument("--tasks", default="", help="comma-separated task names (default: the whole suite)")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG curves")
    ap.add_argument("--baselines", default=",".join(ev.BASELINES),
                    help="comma-separated subset of the baselines; empty for the learned optimizer alone")
    ap.add_argument("--steps", type=int, default=None, help="every task's horizon (default: each task's own)")
    ap.add_argument("--baselines_from", default=None,
                    help="an earlier run's directory: reuse its tuned baselines, run only the learned optimizer")
    args = ap.parse_args(argv)
    command = "python -m evaluation.user_models " + shlex.join(sys.argv[1:] if argv is None else argv)
    return ev.run_cli(lambda: run_suite(args.lopt, "quick" if args.quick else "full", args.seeds, args.out,
                                        [n for n in args.tasks.split(",") if n], plots=not args.no_plots,
                                        baselines=[b for b in args.baselines.split(",") if b], command=command,
                                        baselines_from=args.baselines_from, steps=args.steps),
                      markdown, UserModelsError, reuse.BaselineReuseError)


if __name__ == "__main__":
    sys.exit(main())
