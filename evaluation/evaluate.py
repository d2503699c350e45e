"""Evaluate a learned optimizer against tuned optax baselines on a fixed suite of inner tasks.

    python -m evaluation.evaluate --lopt PATH_OR_NAME --suite quick [--seeds 3] [--out DIR] [--steps N]
    python -m evaluation.evaluate --lopt mulo_mup --suite heldout --metric train
    python -m evaluation.evaluate --lopt mulo_sp --suite width_sp --baselines adam

Suites (`evaluation.suites.SUITES`): `digits` under a minute and `quick` about 1.5 min with 3
seeds on 2 shared CPU cores; `heldout` (tasks meta-training never saw, see evaluation/RESULTS.md
for its measured cost), `width_mup`/`width_sp` (the width sweep), `conv`, `fmnist_mlp` and `lm`.
A small suite's time is mostly compilation of two programs per task: one for the learned
optimizer, one for every baseline run (a `lax.switch` over the optax baselines, vmapped over
(baseline, learning rate, seed) rows in chunks of 4 × seeds).

Protocol. The learned optimizer runs untuned: `evaluation.optimizer_for(arch, theta, task,
num_steps)`, which adds `roles=`/`fan_in=` on μP tasks. Each baseline (adam; adamw with optax's
decoupled weight decay 1e-4, scaled by the learning rate; sgd with momentum 0.9; lion without
weight decay) is tuned per task over the log-spaced grid in `GRIDS` (half-decade steps) on one
tuning seed: the learning rate with the lowest final `--metric` wins, NaN/inf counting as worst (if
every rate diverges, the smallest wins). The winner then runs on `--seeds` evaluation seeds. Keys:
tuning uses `jax.random.key(0)`, evaluation seed i uses `jax.random.key(1 + i)` (see `seed_keys`);
every task and optimizer sees the same keys (same inits, batches and validation batches per seed).
Metrics: `valid` is `inner_tasks.train`'s validation loss (mean over 4 fresh validation batches);
`train` is the mean minibatch training loss over the last `eval_every` steps. Both are recorded for
every run; a run counts as diverged if a loss is non-finite or its final validation loss is above
its initial one.

Outputs in `--out` (default runs/eval/<suite>): results.json (what `evaluate` returns, with a
`summary`: on how many tasks the learned optimizer beats each tuned baseline, and its diverged
runs), results.md (mean ± std of the final metric, chosen learning rate in parentheses, best
mean in bold) and one PNG of learning curves per task (mean over seeds, min–max shaded).
`--steps N` overrides every task's num_steps and picks the divisor of N that keeps each task's
number of validation points closest to its own.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # XLA:CPU's multi-threaded Eigen kernels sporadically return NaN on an oversubscribed CPU (see
    # tests/conftest.py); a benchmark must not count such a glitch as a divergence. Set before the
    # backend starts.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import argparse
import functools
import json
import math
import pathlib
import re
import shlex
import sys
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import tqdm

import inner_tasks
import lopt
from evaluation import optimizer_for
from evaluation.suites import SUITES, SuiteTask

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TUNE_SEED = 0
LEARNED = "learned"
METRICS = {"valid": "validation loss", "train": "training loss (mean minibatch loss over the last eval interval)"}


class EvaluateError(ValueError):
    """Bad input to `evaluate`: suite, seeds, steps or a suite task's settings."""


# Learning-rate grids, log-spaced in half-decades (9 points each). They reach a decade above the
# usual ranges (adam 1e-4..1e-1, sgd 1e-3..1, lion 1e-5..1e-2) because plain optimizers on μP
# models (zero readout with a 1/fan_in multiplier) often want larger rates; with the usual ranges
# most quick-suite choices sat at the top end. results.md marks a choice at either end with †.
_half_decades = lambda lo, hi: tuple(float(f"{10.0 ** (e / 2):.3g}") for e in range(2 * lo, 2 * hi + 1))
GRIDS: dict[str, tuple[float, ...]] = {  # same keys and order as BASELINES
    "adam": _half_decades(-4, 0), "adamw": _half_decades(-4, 0), "sgd": _half_decades(-3, 1),
    "lion": _half_decades(-5, -1),
}
BASELINES: dict[str, Callable[[jax.Array], optax.GradientTransformation]] = {
    "adam": lambda lr: optax.adam(lr),
    "adamw": lambda lr: optax.adamw(lr, weight_decay=1e-4),
    "sgd": lambda lr: optax.sgd(lr, momentum=0.9),
    "lion": lambda lr: optax.lion(lr, weight_decay=0.0),
}
assert list(GRIDS) == list(BASELINES)


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """Typed keys [len(seeds)]: seed s trains from `jax.random.key(s)` (inits, batches, validation)."""
    return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


def baseline(h: tuple[jax.Array, jax.Array]) -> optax.GradientTransformationExtraArgs:
    """Baseline number h[0] (order of `BASELINES`) at learning rate h[1], both traceable.

    A `lax.switch` over optax's own transformations, each keeping its own state, so one compiled
    program vmaps over every (baseline, learning rate) pair of a task."""
    idx, lr = h
    opts = [optax.with_extra_args_support(make(lr)) for make in BASELINES.values()]

    def update(grads, state, params=None, **extra):
        def branch(i):
            def apply(state):
                updates, s = opts[i].update(grads, state[i], params, **extra)
                return updates, state[:i] + (s,) + state[i + 1:]
            return apply
        return jax.lax.switch(idx, [branch(i) for i in range(len(opts))], state)

    return optax.GradientTransformationExtraArgs(lambda p: tuple(o.init(p) for o in opts), update)


@functools.partial(jax.jit, static_argnames=("make_opt", "num_steps", "eval_every", "sequential"))
def _curves(task, make_opt, hparams, keys, num_steps: int, eval_every: int,
            sequential: bool = False) -> tuple[jax.Array, jax.Array]:
    """Curves of run i, trained with make_opt(hparams[i]) from keys[i]: validation [runs, points]
    and training [runs, points - 1] (the mean minibatch loss over each eval_every steps).

    The runs are vmapped, or with `sequential` run one after another by `lax.map` in the same
    single program (faster on CPU for a learned optimizer or a convnet: vmapped, μLO's
    per-parameter MLP loses its fused 2-D kernels and convolutions become grouped ones)."""
    def one(h, key):
        curve = inner_tasks.train(task, make_opt(h), num_steps, key, eval_every=eval_every)
        return curve.valid_loss, curve.train_loss.reshape(-1, eval_every).mean(-1)
    if sequential:
        return jax.lax.map(lambda hk: one(*hk), (hparams, keys))
    return jax.vmap(one)(hparams, keys)


def _baseline_curves(run: Callable, rows: list[tuple[int, float, int]], chunk: int,
                     bar: tqdm.tqdm) -> tuple[np.ndarray, np.ndarray]:
    """Curves of (baseline index, lr, seed) rows, run in padded chunks of one shape (one compile)."""
    padded = rows + rows[-1:] * (-len(rows) % chunk)
    valid, train = [], []
    for s in range(0, len(padded), chunk):
        idx, lrs, seeds = zip(*padded[s:s + chunk])
        hp = (jnp.asarray(idx, jnp.int32), jnp.asarray(lrs, jnp.float32))
        v, t = run(baseline, hp, seed_keys(seeds))
        valid.append(np.asarray(v))
        train.append(np.asarray(t))
        bar.update(min(chunk, len(rows) - s))
    return np.concatenate(valid)[: len(rows)], np.concatenate(train)[: len(rows)]


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _diverged(valid: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Per run: a non-finite loss anywhere, or a final validation loss above the initial one."""
    bad = ~(np.isfinite(valid).all(-1) & np.isfinite(train).all(-1))
    return bad | (valid[:, -1] > valid[:, 0])


def choose_lr(grid: Sequence[float], losses: Sequence[float]) -> float:
    """The tuning rule: the grid's learning rate with the lowest final loss, NaN/inf counting as
    worst; the first (smallest) on a tie, so the smallest when every rate diverged."""
    losses = np.asarray(losses, np.float64)
    return grid[int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))]


def _summary(valid: np.ndarray, train: np.ndarray, lr: float | None, metric: str) -> dict:
    out = {"lr": lr, "diverged": int(_diverged(valid, train).sum()),
           "nonfinite": int((~(np.isfinite(valid).all(-1) & np.isfinite(train).all(-1))).sum()),
           "above_initial": int((valid[:, -1] > valid[:, 0]).sum())}
    for name, curves in (("valid", valid), ("train", train)):
        final = curves[:, -1].astype(np.float64)
        out[f"final_{name}_loss"] = [_finite(v) for v in final]
        ok = np.isfinite(final).all()
        out[f"{name}_mean"] = _finite(final.mean()) if ok else None
        out[f"{name}_std"] = _finite(final.std()) if ok else None
        for stat in ("mean", "min", "max"):
            out[f"{name}_curve_{stat}"] = [_finite(v) for v in getattr(curves, stat)(0)]
    out["mean"], out["std"] = out[f"{metric}_mean"], out[f"{metric}_std"]
    return out


def _resolve_suite(suite: str | Sequence[SuiteTask]) -> tuple[str, tuple[SuiteTask, ...]]:
    if isinstance(suite, str):
        if suite not in SUITES:
            raise EvaluateError(f"unknown suite {suite!r}; valid: {sorted(SUITES)}")
        return suite, SUITES[suite]
    tasks = tuple(suite)
    if not tasks or not all(isinstance(t, SuiteTask) for t in tasks):
        raise EvaluateError("suite must be a suite name or a non-empty sequence of SuiteTask")
    return "custom", tasks


def _check_args(seeds, steps, metric: str, baselines: Sequence[str]) -> None:
    if not isinstance(seeds, int) or seeds < 1:
        raise EvaluateError(f"seeds must be a positive integer, got {seeds!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise EvaluateError(f"steps must be a positive integer, got {steps!r}")
    if metric not in METRICS:
        raise EvaluateError(f"unknown metric {metric!r}; valid: {list(METRICS)}")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise EvaluateError(f"unknown baselines {unknown}; valid: {list(BASELINES)}")


def evaluate(lopt_path_or_name: str, suite: str | Sequence[SuiteTask], seeds: int, out_dir: str | pathlib.Path,
             steps: int | None = None, command: str | None = None, metric: str = "valid",
             baselines: Sequence[str] | None = None) -> dict:
    """Runs the protocol (module docstring) and writes results.json, results.md and PNGs; returns the JSON.

    `metric` ("valid" or "train") is what tuning minimizes and the table reports; `baselines` is a
    subset of BASELINES (default all, () for the learned optimizer alone)."""
    suite_name, tasks = _resolve_suite(suite)
    names = list(BASELINES) if baselines is None else [b for b in BASELINES if b in baselines]
    _check_args(seeds, steps, metric, list(baselines or ()))
    if steps is not None:
        tasks = tuple(t.with_steps(steps) for t in tasks)
    if len({t.label for t in tasks}) != len(tasks):
        raise EvaluateError("suite task labels must be unique")
    arch, theta, _ = lopt.load_theta(lopt_path_or_name)
    for t in tasks:
        try:
            t.spec()  # validates settings before any run
        except ValueError as e:
            raise EvaluateError(f"suite task {t.label!r}: {e}") from e
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eval_seeds = list(range(1, seeds + 1))
    results: dict[str, Any] = {
        "suite": suite_name, "lopt": str(lopt_path_or_name), "lopt_arch": arch.name, "seeds": seeds,
        "metric": metric, "baselines": names, "tune_seed": TUNE_SEED, "eval_seeds": eval_seeds,
        "grids": {k: list(GRIDS[k]) for k in names},
        "command": command or f"evaluate({str(lopt_path_or_name)!r}, {suite_name!r}, seeds={seeds}, steps={steps})",
        "tasks": {},
    }
    chunk = len(BASELINES) * seeds
    runs_per_task = seeds + sum(len(GRIDS[n]) + seeds for n in names)
    bar = tqdm.tqdm(total=len(tasks) * runs_per_task, desc="runs", unit="run")
    for st in tasks:
        bar.set_postfix_str(st.label)
        results["tasks"][st.label] = entry = _evaluate_task(st, arch, theta, names, eval_seeds, metric, chunk, bar)
        plot_task(st.label, entry, out / f"{_slug(st.label)}.png", f"{LEARNED} ({arch.name})", metric)
    bar.close()
    results["summary"] = summarize(results)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    return results


def _evaluate_task(st: SuiteTask, arch, theta, names: list[str], eval_seeds: list[int], metric: str, chunk: int,
                   bar: tqdm.tqdm, grids: dict[str, Sequence[float]] = GRIDS,
                   learned_opt: optax.GradientTransformation | None = None, sequential: bool = False) -> dict:
    """One task's protocol. `st` is a SuiteTask or any object with its fields and `make()`;
    `learned_opt` replaces `optimizer_for(arch, theta, task, st.num_steps)` when given;
    `sequential` runs each program's rows by `lax.map` rather than vmap (see `_curves`)."""
    task = st.make()
    run = functools.partial(_curves, task, num_steps=st.num_steps, eval_every=st.eval_every, sequential=sequential)
    if learned_opt is None:
        learned_opt = optimizer_for(arch, theta, task, st.num_steps)
    seeds = len(eval_seeds)
    valid, train = map(np.asarray, run(lambda _: learned_opt, jnp.zeros(seeds), seed_keys(eval_seeds)))
    bar.update(seeds)
    entry = {"task": st.task, "kwargs": dict(st.kwargs), "num_steps": st.num_steps, "eval_every": st.eval_every,
             "mup": task.parametrization == "mup", "steps": list(range(0, st.num_steps + 1, st.eval_every)),
             "optimizers": {LEARNED: _summary(valid, train, None, metric)}}
    if not names:
        return entry
    index = {n: list(BASELINES).index(n) for n in names}
    tune_rows = [(index[n], lr, TUNE_SEED) for n in names for lr in grids[n]]
    tune_valid, tune_train = _baseline_curves(run, tune_rows, chunk, bar)
    tune_final = {"valid": tune_valid[:, -1], "train": tune_train[:, -1]}
    chosen, tuning = {}, {}
    for n in names:
        rows = np.asarray([r[0] == index[n] for r in tune_rows])
        chosen[n] = choose_lr(grids[n], tune_final[metric][rows])
        tuning[n] = {"lrs": list(grids[n]), **{f"final_{k}_loss": [_finite(v) for v in f[rows]]
                                                for k, f in tune_final.items()}}
    eval_rows = [(index[n], chosen[n], s) for n in names for s in eval_seeds]
    valid, train = _baseline_curves(run, eval_rows, chunk, bar)
    for i, n in enumerate(names):
        rows = slice(i * seeds, (i + 1) * seeds)
        entry["optimizers"][n] = dict(_summary(valid[rows], train[rows], chosen[n], metric), tuning=tuning[n])
    return entry


def summarize(results: dict) -> dict:
    """Per baseline: on how many tasks the learned optimizer's mean final metric is lower; and the
    learned optimizer's diverged runs."""
    tasks = results["tasks"].values()
    wins = {}
    for n in results["baselines"]:
        beat = [t["optimizers"][LEARNED]["mean"] is not None and (
            t["optimizers"][n]["mean"] is None or t["optimizers"][LEARNED]["mean"] < t["optimizers"][n]["mean"])
            for t in tasks]
        wins[n] = {"tasks": len(beat), "learned_lower": int(sum(beat))}
    return {"learned_beats": wins, "learned_diverged_runs": sum(t["optimizers"][LEARNED]["diverged"] for t in tasks),
            "runs_per_optimizer": len(results["tasks"]) * results["seeds"]}


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


def markdown(results: dict) -> str:
    """The results table: rows tasks, columns optimizers, mean ± std of the final metric."""
    cols = [LEARNED, *results["baselines"]]
    head = [f"{LEARNED} ({results['lopt_arch']})", *cols[1:]]
    edges = False
    lines = [f"Final {METRICS[results['metric']]}, mean ± std over {results['seeds']} seeds "
             "(chosen learning rate); best in bold.",
             "", "| task | " + " | ".join(head) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, entry in results["tasks"].items():
        opts = entry["optimizers"]
        means = [opts[c]["mean"] if opts[c]["mean"] is not None else math.inf for c in cols]
        best = min(means)
        cells = []
        for c, m in zip(cols, means):
            o = opts[c]
            cell = "diverged" if m == math.inf else f"{m:.4f} ± {o['std']:.4f}"
            cell = f"**{cell}**" if m == best and m < math.inf and len(cols) > 1 else cell
            edge = "†" if o["lr"] is not None and o["lr"] in (o["tuning"]["lrs"][0], o["tuning"]["lrs"][-1]) else ""
            edges |= bool(edge)
            cells.append(cell + (f" ({o['lr']:.3g}{edge})" if o["lr"] is not None else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "† the chosen learning rate is at an end of its grid (`GRIDS`)."] if edges else []
    summary = results.get("summary") or summarize(results)
    beats = ", ".join(f"{n} on {w['learned_lower']}/{w['tasks']}" for n, w in summary["learned_beats"].items())
    lines += ["", f"The learned optimizer's mean is lower than per-task-tuned {beats} tasks." if beats else "",
              f"Learned-optimizer runs that diverged (non-finite, or final validation loss above the initial): "
              f"{summary['learned_diverged_runs']} of {summary['runs_per_optimizer']}."]
    lines += ["", f"Command: `{results['command']}`"]
    return "\n".join(line for i, line in enumerate(lines) if line or not i or lines[i - 1]) + "\n"


def plot_task(label: str, entry: dict, path: pathlib.Path, learned: str = LEARNED, metric: str = "valid") -> None:
    """Curves of every optimizer on one task (the chosen metric): mean over seeds, min–max shaded."""
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.asarray(entry["steps"])[(1 if metric == "train" else 0):]
    nan = lambda xs: np.asarray([np.nan if x is None else x for x in xs], np.float64)
    for name, o in entry["optimizers"].items():
        lr = "" if o["lr"] is None else f" (lr {o['lr']:.3g})"
        line, = ax.plot(steps, nan(o[f"{metric}_curve_mean"]), label=(learned if name == LEARNED else name) + lr)
        ax.fill_between(steps, nan(o[f"{metric}_curve_min"]), nan(o[f"{metric}_curve_max"]), color=line.get_color(),
                        alpha=0.2)
    first = np.nanmax([nan(o[f"{metric}_curve_mean"])[0] for o in entry["optimizers"].values()])
    if np.isfinite(first):
        ax.set_ylim(top=1.5 * first)
    ax.set(title=label, xlabel="step", ylabel=METRICS[metric])
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lopt", required=True, help="learned-optimizer file or pretrained name")
    ap.add_argument("--suite", required=True, help=f"one of {sorted(SUITES)}")
    ap.add_argument("--seeds", type=int, default=3, help="evaluation seeds per (task, optimizer)")
    ap.add_argument("--out", default=None, help="output directory (default runs/eval/<suite>)")
    ap.add_argument("--steps", type=int, default=None, help="override every task's num_steps")
    ap.add_argument("--metric", default="valid", help=f"what tuning minimizes and the table shows: {list(METRICS)}")
    ap.add_argument("--baselines", default=",".join(BASELINES),
                    help="comma-separated subset of the baselines; empty for the learned optimizer alone")
    args = ap.parse_args(argv)
    command = "python -m evaluation.evaluate " + shlex.join(sys.argv[1:] if argv is None else argv)
    return run_cli(lambda: evaluate(args.lopt, args.suite, args.seeds, args.out or f"runs/eval/{args.suite}",
                                    args.steps, command=command, metric=args.metric,
                                    baselines=[b for b in args.baselines.split(",") if b]),
                   markdown, EvaluateError)


def run_cli(job: Callable[[], dict], render: Callable[[dict], str], *errors: type[Exception]) -> int:
    """Runs an evaluation's `job` and prints `render(results)`: 0; a bad file, name, setting
    (`errors`) or missing data prints one `error:` line instead: 2."""
    try:
        results = job()
    except (lopt.LoptFileError, inner_tasks.DatasetNotFoundError, inner_tasks.DatasetFormatError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
