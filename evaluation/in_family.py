"""Learned-optimizer variants compared on fresh draws of a meta-training recipe's own task family.

Where the evaluation suites (`evaluation.evaluate`) should not pick a design constant (`test` never;
`dev` only as the design suite), this compares variants on the distribution meta-training sees: `num_tasks` tasks drawn
from the recipe's family with a key no run uses, each trained `steps` steps from 2 initializations
per variant, scored by final/initial validation loss (8 validation batches; a non-finite end
scores 100). The variants of one architecture are stacked and vmapped, so each task compiles once.

    python -m evaluation.in_family --config RECIPE.py --lopt A.safetensors,B.safetensors --tasks 30
    python -m evaluation.in_family --config configs/celo_generalist/stage5.py \\
        --lopt configs/celo_generalist/stage5.safetensors --progress_init 0,0.25,0.5,1 --tasks 30

The family is the recipe file's `family` section, read as plain settings by
`inner_tasks.family_from_settings` (the recipe is data here: nothing else of it is built or checked).

`--progress_init a1,a2,…` adopts the file into Celo with `progress_feature=True` and the progress
weight at a·ln(10) (a: decades of step per decade of gradient RMS); `--decay_gate k1,k2,…` adopts
it with `decay_gate=True` and the gate's weight at k (decades of weight decay per decade of gradient
RMS below its peak); without either, `--lopt` may list several files of one architecture.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import math
import pathlib
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import inner_tasks
import lopt
from inner_tasks.train import train_step, valid_loss

KEY = 987654  # fresh draws: no meta-training run uses this key
NONFINITE = 100.0
RATIO_FLOOR = 1e-6  # in the geometric mean: a loss driven to exactly 0 would otherwise decide it alone


def final_over_initial(arch, thetas: Any, task: inner_tasks.Task, steps: int, key: jax.Array, seeds: int = 2):
    """final/initial validation loss, (variants, seeds), of `arch` with each stacked theta on `task`."""
    @jax.jit
    def run(theta, k):
        opt = arch.optimizer(theta, num_steps=steps, **task.mup_options())
        k_init, k_valid, k_run = jax.random.split(k, 3)
        params = task.init(k_init)
        v0 = valid_loss(task, params, k_valid, 8)
        (params, _), _ = jax.lax.scan(functools.partial(train_step, task, opt), (params, opt.init(params)),
                                      jax.random.split(k_run, steps))
        return valid_loss(task, params, k_valid, 8) / v0

    r = jax.vmap(lambda th: jax.vmap(lambda k: run(th, k))(jax.random.split(key, seeds)))(thetas)
    r = np.asarray(r, np.float64)
    return np.where(np.isfinite(r), r, NONFINITE)


def compare(family: inner_tasks.TaskFamily, arch, thetas: Sequence[Any], num_tasks: int, steps: int,
            seeds: int = 2, log=print) -> np.ndarray:
    """(tasks, variants) mean final/initial validation loss over `seeds` initializations."""
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *thetas)
    rows = []
    for i in range(num_tasks):
        spec = family.sample(jax.random.fold_in(jax.random.key(KEY), i))
        rows.append(final_over_initial(arch, stacked, family.task(spec), steps, jax.random.key(i), seeds).mean(1))
        log(f"task {i}: {spec}\n  final/initial: {np.round(rows[-1], 4)}")
    return np.array(rows)


def summary(ratios: np.ndarray, names: Sequence[str]) -> str:
    """A markdown table: geometric mean (ratios floored at RATIO_FLOOR) and arithmetic mean, median,
    tasks ending above their start."""
    lines = ["| variant | geometric mean | mean | median | above initial |", "|---|---|---|---|---|"]
    for j, name in enumerate(names):
        r = ratios[:, j]
        lines.append(f"| {name} | {math.exp(np.log(np.maximum(r, RATIO_FLOOR)).mean()):.4f} | {r.mean():.4f} | {np.median(r):.4f} | "
                     f"{int((r > 1).sum())}/{len(r)} |")
    return "\n".join(lines)


def recipe_family(path: str) -> inner_tasks.TaskFamily:
    """The task family of the recipe file at `path`: its `get_config().family` section as settings."""
    spec = importlib.util.spec_from_file_location("recipe", pathlib.Path(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    section = module.get_config().family
    settings = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    return inner_tasks.family_from_settings(settings, "config.family")


def _adopt_one(loaded: list, option: str, **changes) -> tuple[Any, Any]:
    """(architecture, theta) of the one loaded celo file, adopted into the architecture with `changes`."""
    if len(loaded) != 1 or not isinstance(loaded[0][0], lopt.Celo):
        raise ValueError(f"--{option} takes exactly one celo file")
    base_arch, theta, _ = loaded[0]
    arch = dataclasses.replace(base_arch, **changes)
    return arch, arch.adopt(theta, base_arch)


def variants(files: Sequence[str], progress_init: Sequence[float],
             decay_gate: Sequence[float] = ()) -> tuple[Any, list, list[str]]:
    """(architecture, thetas, names) of the files, or of one file at each progress_init or decay_gate."""
    loaded = [lopt.load_theta(f) for f in files]
    if progress_init and decay_gate:
        raise ValueError("give --progress_init or --decay_gate, not both")
    if decay_gate:
        arch, theta = _adopt_one(loaded, "decay_gate", decay_gate=True, decay_gate_init=0.0)
        thetas = [dict(theta, decay_gate=jnp.full((1,), k / arch.step_gain, jnp.float32)) for k in decay_gate]
        return arch, thetas, [f"decay_gate {k:g} decade/decade" for k in decay_gate]
    if progress_init:
        arch, theta = _adopt_one(loaded, "progress_init", progress_feature=True, progress_init=0.0)
        thetas = [dict(theta, step=theta["step"].at[-1].set(a * math.log(10) / arch.step_gain)) for a in progress_init]
        return arch, thetas, [f"progress_init {a:g} decade/decade" for a in progress_init]
    archs = {a for a, _, _ in loaded}
    if len(archs) != 1:
        raise ValueError(f"--lopt files must share one architecture, got {sorted(map(repr, archs))}")
    return loaded[0][0], [t for _, t, _ in loaded], [pathlib.Path(f).stem for f in files]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="a meta-training recipe (configs/*.py); its family is used")
    ap.add_argument("--lopt", required=True, help="comma-separated learned-optimizer files or pretrained names")
    ap.add_argument("--progress_init", default="", help="comma-separated progress weights (decades per decade)")
    ap.add_argument("--decay_gate", default="", help="comma-separated decay-gate weights (decades per decade)")
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        family = recipe_family(args.config)
        arch, thetas, names = variants([f for f in args.lopt.split(",") if f],
                                       [float(a) for a in args.progress_init.split(",") if a],
                                       [float(k) for k in args.decay_gate.split(",") if k])
    except (ValueError, OSError, lopt.LoptFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(compare(family, arch, thetas, args.tasks, args.steps, args.seeds), names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
