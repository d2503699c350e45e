"""The lopt command line.

Until the estimators land, the main job samples an inner task from the configured family,
trains it with a baseline optax optimizer and prints its learning curve:

    python meta_train.py --config configs/demo.py --workdir /tmp/lopt_demo

Overrides use ml_collections syntax: `--config.train.learning_rate=1e-3`.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags

import inner_tasks

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/<name>.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for this run's outputs.")

BASELINES = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "lion": optax.lion}


def family_from_config(c: ml_collections.ConfigDict) -> inner_tasks.TaskFamily:
    """Builds the typed TaskFamily from a config section (name plus axes)."""
    kwargs = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in c.items() if k != "name"}
    try:
        return inner_tasks.get_family(c.name, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad settings for family {c.name!r}: {e}") from e


def baseline_from_config(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
    if c.optimizer not in BASELINES:
        raise ValueError(f"unknown optimizer {c.optimizer!r}; valid: {sorted(BASELINES)}")
    if not c.learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {c.learning_rate}")
    return BASELINES[c.optimizer](c.learning_rate)


def run(config: ml_collections.ConfigDict, workdir: str | None) -> inner_tasks.Curve:
    """Samples a task, trains it with the baseline and prints (and saves) the curve."""
    family = family_from_config(config.family)
    opt = baseline_from_config(config.train)
    k_task, k_train = jax.random.split(jax.random.key(config.seed))
    spec = family.sample(k_task)
    print(f"task: {spec}")
    curve = inner_tasks.train(
        family.task(spec), opt, config.train.num_steps, k_train, eval_every=config.train.eval_every
    )
    train_loss = np.asarray(curve.train_loss).reshape(-1, config.train.eval_every).mean(axis=1)
    print(f"{'step':>6} {'train':>8} {'valid':>8}")
    print(f"{0:6d} {'':>8} {float(curve.valid_loss[0]):8.4f}")
    for step, tl, vl in zip(np.asarray(curve.valid_step[1:]), train_loss, np.asarray(curve.valid_loss[1:])):
        print(f"{int(step):6d} {tl:8.4f} {vl:8.4f}")
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        record = {
            "task": repr(spec), "valid_step": np.asarray(curve.valid_step).tolist(),
            "valid_loss": np.asarray(curve.valid_loss).tolist(), "train_loss": np.asarray(curve.train_loss).tolist(),
        }
        with open(os.path.join(workdir, "curve.json"), "w") as f:
            json.dump(record, f)
    return curve


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        raise app.UsageError("--config is required, e.g. --config configs/demo.py")
    run(_CONFIG.value, _WORKDIR.value)


def cli():
    app.run(main)


if __name__ == "__main__":
    cli()
