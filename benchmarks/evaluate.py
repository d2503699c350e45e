"""Evaluate a learned optimizer against tuned optax baselines on a fixed suite of inner tasks.

    python -m benchmarks.evaluate --lopt PATH_OR_NAME --suite quick [--seeds 3] [--out DIR] [--steps N]
    python -m benchmarks.evaluate --lopt runs/x/opt.safetensors --suite fmnist_mlp --seeds 5

Suites (`SUITES`) and their cost with a μLO file on 2 shared CPU cores: `digits` under a minute
and `quick` about 1.5 min with 3 seeds (measured); `conv`, `fmnist_mlp` (28×28 and width-1024
MLPs, 2000 steps) and `lm` are not timed: expect tens of minutes to hours. A small suite's time
is mostly compilation of two programs per task: one for the learned optimizer, one for every
baseline run (a `lax.switch` over the optax baselines, vmapped over (baseline, learning rate,
seed) rows in chunks of 4 × seeds).

Protocol. The learned optimizer runs untuned: `arch.optimizer(theta, num_steps=...)`, plus
`roles=`/`fan_in=` on μP tasks. Each baseline (adam; adamw with optax's decoupled weight decay
1e-4, scaled by the learning rate; sgd with momentum 0.9; lion without weight decay) is tuned per
task over the log-spaced grid in `GRIDS` (half-decade steps) on one tuning seed: the learning
rate with the lowest final validation loss wins, NaN/inf counting as worst (if every rate
diverges, the smallest wins). The winner then runs on `--seeds` evaluation seeds. Keys: tuning
uses `jax.random.key(0)`, evaluation seed i uses `jax.random.key(1 + i)` (see `seed_keys`); every
task and optimizer sees the same keys (same inits, batches and validation batches per seed).
Validation loss is `inner_tasks.train`'s: mean over 4 fresh validation batches.

Outputs in `--out` (default runs/eval/<suite>): results.json (what `evaluate` returns),
results.md (mean ± std of the final validation loss, chosen learning rate in parentheses, best
mean in bold) and one PNG of learning curves per task (mean over seeds, min–max shaded).
`--steps N` overrides every task's num_steps and picks the divisor of N that keeps each task's
number of validation points closest to its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import re
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

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TUNE_SEED = 0
LEARNED = "learned"


class EvaluateError(ValueError):
    """Bad input to `evaluate`: suite, seeds, steps or a suite task's settings."""


@dataclasses.dataclass(frozen=True)
class SuiteTask:
    """One evaluation task: `inner_tasks.get_task(task, **dict(kwargs))` trained for num_steps."""

    label: str
    task: str
    kwargs: tuple[tuple[str, Any], ...]
    num_steps: int
    eval_every: int

    def __post_init__(self):
        if isinstance(self.kwargs, dict):
            object.__setattr__(self, "kwargs", tuple(sorted(self.kwargs.items())))
        if self.num_steps < 1 or self.eval_every < 1 or self.num_steps % self.eval_every:
            raise ValueError(f"{self.label}: num_steps={self.num_steps} is not a positive multiple of "
                             f"eval_every={self.eval_every}")

    def spec(self) -> inner_tasks.TaskSpec:
        return inner_tasks.get_spec(self.task, **dict(self.kwargs))

    def make(self) -> inner_tasks.Task:
        return inner_tasks.get_task(self.task, **dict(self.kwargs))

    def with_steps(self, steps: int) -> SuiteTask:
        """This task with num_steps=steps and the eval_every dividing it that best keeps the point count."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        points = self.num_steps // self.eval_every
        every = min((d for d in range(1, steps + 1) if steps % d == 0), key=lambda d: (abs(steps // d - points), -d))
        return dataclasses.replace(self, num_steps=steps, eval_every=every)


def _mlp(label: str, width: int, depth: int = 2, resolution: int = 8, steps: int = 1000, every: int = 100,
         dataset: str = "fashion_mnist", **kw) -> SuiteTask:
    kwargs = dict(dataset=dataset, resolution=resolution, width=width, depth=depth, **kw)
    return SuiteTask(label, "mlp", kwargs, steps, every)


def _conv(label: str, channels: int, depth: int, resolution: int, steps: int = 1000) -> SuiteTask:
    kwargs = dict(dataset="fashion_mnist", resolution=resolution, channels=channels, depth=depth)
    return SuiteTask(label, "conv", kwargs, steps, 100)


def _lm(label: str, width: int, depth: int, context: int = 64, steps: int = 1000) -> SuiteTask:
    kwargs = dict(width=width, depth=depth, num_heads=width // 16, context=context, batch_size=16)
    return SuiteTask(label, "lm", kwargs, steps, 100)


# Every model uses its spec's default parametrization, μP, and batch size 128 (LMs 16).
# Meta-training (configs/base.py) sees 8×8 MLPs of widths 32-64 (depth 1-2); 128 and up are wider.
SUITES: dict[str, tuple[SuiteTask, ...]] = {
    "digits": (
        _mlp("digits_mlp_w32_d2", 32, dataset="digits", steps=200, every=50),
        _mlp("digits_mlp_w64_d1", 64, depth=1, dataset="digits", steps=200, every=50),
    ),
    "quick": (
        _mlp("fmnist8_mlp_w32_d2", 32, steps=300, every=50),
        _mlp("fmnist8_mlp_w128_d2", 128, steps=300, every=50),
        _mlp("fmnist8_mlp_w128_d3_tanh", 128, depth=3, steps=300, every=50, activation="tanh"),
    ),
    "fmnist_mlp": (
        _mlp("fmnist8_mlp_w32_d2", 32),
        _mlp("fmnist8_mlp_w128_d2", 128),
        _mlp("fmnist8_mlp_w512_d2", 512),
        _mlp("fmnist8_mlp_w1024_d2", 1024),
        _mlp("fmnist8_mlp_w128_d4", 128, depth=4),
        _mlp("fmnist28_mlp_w128_d2", 128, resolution=28, steps=2000, every=200),
        _mlp("fmnist28_mlp_w512_d2", 512, resolution=28, steps=2000, every=200),
        _mlp("fmnist28_mlp_w1024_d2", 1024, resolution=28, steps=2000, every=200),
    ),
    "conv": (
        _conv("fmnist8_conv_c16_d2", 16, 2, 8),
        _conv("fmnist8_conv_c32_d3", 32, 3, 8),
        _conv("fmnist16_conv_c32_d3", 32, 3, 16),
        _conv("fmnist28_conv_c32_d3", 32, 3, 28),
    ),
    "lm": (
        _lm("lm_w32_d1_ctx32", 32, 1, context=32),
        _lm("lm_w64_d2_ctx64", 64, 2),
        _lm("lm_w128_d2_ctx64", 128, 2),
    ),
}

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


@functools.partial(jax.jit, static_argnames=("make_opt", "num_steps", "eval_every"))
def _valid_curves(task, make_opt, hparams, keys, num_steps: int, eval_every: int) -> jax.Array:
    """Validation curves [runs, points]: run i trains with make_opt(hparams[i]) from keys[i]."""
    def one(h, key):
        return inner_tasks.train(task, make_opt(h), num_steps, key, eval_every=eval_every).valid_loss
    return jax.vmap(one)(hparams, keys)


def _baseline_curves(run: Callable, rows: list[tuple[int, float, int]], chunk: int, bar: tqdm.tqdm) -> np.ndarray:
    """Curves of (baseline index, lr, seed) rows, run in padded chunks of one shape (one compile)."""
    padded = rows + rows[-1:] * (-len(rows) % chunk)
    out = []
    for s in range(0, len(padded), chunk):
        idx, lrs, seeds = zip(*padded[s:s + chunk])
        hp = (jnp.asarray(idx, jnp.int32), jnp.asarray(lrs, jnp.float32))
        out.append(np.asarray(run(baseline, hp, seed_keys(seeds))))
        bar.update(min(chunk, len(rows) - s))
    return np.concatenate(out)[: len(rows)]


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _summary(curves: np.ndarray, lr: float | None) -> dict:
    final = curves[:, -1].astype(np.float64)
    ok = np.isfinite(final).all()
    return {
        "lr": lr, "final_valid_loss": [_finite(v) for v in final],
        "mean": _finite(final.mean()) if ok else None, "std": _finite(final.std()) if ok else None,
        "valid_curve_mean": [_finite(v) for v in curves.mean(0)],
        "valid_curve_min": [_finite(v) for v in curves.min(0)], "valid_curve_max": [_finite(v) for v in curves.max(0)],
    }


def _resolve_suite(suite: str | Sequence[SuiteTask]) -> tuple[str, tuple[SuiteTask, ...]]:
    if isinstance(suite, str):
        if suite not in SUITES:
            raise EvaluateError(f"unknown suite {suite!r}; valid: {sorted(SUITES)}")
        return suite, SUITES[suite]
    tasks = tuple(suite)
    if not tasks or not all(isinstance(t, SuiteTask) for t in tasks):
        raise EvaluateError("suite must be a suite name or a non-empty sequence of SuiteTask")
    return "custom", tasks


def evaluate(lopt_path_or_name: str, suite: str | Sequence[SuiteTask], seeds: int, out_dir: str | pathlib.Path,
             steps: int | None = None, command: str | None = None) -> dict:
    """Runs the protocol (module docstring) and writes results.json, results.md and PNGs; returns the JSON."""
    suite_name, tasks = _resolve_suite(suite)
    if not isinstance(seeds, int) or seeds < 1:
        raise EvaluateError(f"seeds must be a positive integer, got {seeds!r}")
    if steps is not None:
        if not isinstance(steps, int) or steps < 1:
            raise EvaluateError(f"steps must be a positive integer, got {steps!r}")
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
        "tune_seed": TUNE_SEED, "eval_seeds": eval_seeds, "grids": {k: list(v) for k, v in GRIDS.items()},
        "command": command or f"evaluate({str(lopt_path_or_name)!r}, {suite_name!r}, seeds={seeds}, steps={steps})",
        "tasks": {},
    }
    names, chunk = list(BASELINES), len(BASELINES) * seeds
    bar = tqdm.tqdm(total=len(tasks) * (seeds + sum(map(len, GRIDS.values())) + chunk), desc="runs", unit="run")
    for st in tasks:
        bar.set_postfix_str(st.label)
        task = st.make()
        run = functools.partial(_valid_curves, task, num_steps=st.num_steps, eval_every=st.eval_every)
        mup = getattr(task.spec, "parametrization", None) == "mup"
        meta = dict(roles=task.roles, fan_in=task.fan_in) if mup else {}
        learned_opt = arch.optimizer(theta, num_steps=st.num_steps, **meta)
        curves = np.asarray(run(lambda _: learned_opt, jnp.zeros(seeds), seed_keys(eval_seeds)))
        bar.update(seeds)
        entry = {"task": st.task, "kwargs": dict(st.kwargs), "num_steps": st.num_steps, "eval_every": st.eval_every,
                 "mup": mup, "steps": list(range(0, st.num_steps + 1, st.eval_every)),
                 "optimizers": {LEARNED: _summary(curves, None)}}
        tune_rows = [(i, lr, TUNE_SEED) for i, n in enumerate(names) for lr in GRIDS[n]]
        tune_final = _baseline_curves(run, tune_rows, chunk, bar)[:, -1]
        chosen, tuning = {}, {}
        for i, n in enumerate(names):
            losses = tune_final[[r[0] == i for r in tune_rows]]
            chosen[n] = GRIDS[n][int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))]
            tuning[n] = {"lrs": list(GRIDS[n]), "final_valid_loss": [_finite(v) for v in losses]}
        eval_rows = [(i, chosen[n], s) for i, n in enumerate(names) for s in eval_seeds]
        curves = _baseline_curves(run, eval_rows, chunk, bar).reshape(len(names), seeds, -1)
        for i, n in enumerate(names):
            entry["optimizers"][n] = dict(_summary(curves[i], chosen[n]), tuning=tuning[n])
        results["tasks"][st.label] = entry
        plot_task(st.label, entry, out / f"{_slug(st.label)}.png", f"{LEARNED} ({arch.name})")
    bar.close()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    return results


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


def markdown(results: dict) -> str:
    """The results table: rows tasks, columns optimizers, mean ± std of the final validation loss."""
    cols = [LEARNED, *GRIDS]
    head = [f"{LEARNED} ({results['lopt_arch']})", *cols[1:]]
    edges = False
    lines = [f"Final validation loss, mean ± std over {results['seeds']} seeds (chosen learning rate); best in bold.",
             "", "| task | " + " | ".join(head) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, entry in results["tasks"].items():
        opts = entry["optimizers"]
        means = [opts[c]["mean"] if opts[c]["mean"] is not None else math.inf for c in cols]
        best = min(means)
        cells = []
        for c, m in zip(cols, means):
            o = opts[c]
            cell = "diverged" if m == math.inf else f"{m:.4f} ± {o['std']:.4f}"
            cell = f"**{cell}**" if m == best and m < math.inf else cell
            edge = "†" if o["lr"] is not None and o["lr"] in (o["tuning"]["lrs"][0], o["tuning"]["lrs"][-1]) else ""
            edges |= bool(edge)
            cells.append(cell + (f" ({o['lr']:.3g}{edge})" if o["lr"] is not None else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "† the chosen learning rate is at an end of its grid (`GRIDS`)."] if edges else []
    lines += ["", f"Command: `{results['command']}`"]
    return "\n".join(lines) + "\n"


def plot_task(label: str, entry: dict, path: pathlib.Path, learned: str = LEARNED) -> None:
    """Validation-loss curves of every optimizer on one task: mean over seeds, min–max shaded."""
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.asarray(entry["steps"])
    nan = lambda xs: np.asarray([np.nan if x is None else x for x in xs], np.float64)
    for name, o in entry["optimizers"].items():
        lr = "" if o["lr"] is None else f" (lr {o['lr']:.3g})"
        line, = ax.plot(steps, nan(o["valid_curve_mean"]), label=(learned if name == LEARNED else name) + lr)
        ax.fill_between(steps, nan(o["valid_curve_min"]), nan(o["valid_curve_max"]), color=line.get_color(), alpha=0.2)
    first = np.nanmax([nan(o["valid_curve_mean"])[0] for o in entry["optimizers"].values()])
    if np.isfinite(first):
        ax.set_ylim(top=1.5 * first)
    ax.set(title=label, xlabel="step", ylabel="validation loss")
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
    args = ap.parse_args(argv)
    command = "python -m benchmarks.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        results = evaluate(args.lopt, args.suite, args.seeds, args.out or f"runs/eval/{args.suite}", args.steps,
                           command=command)
    except (lopt.LoptFileError, EvaluateError, inner_tasks.DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
