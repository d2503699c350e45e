"""The one runner: training runs of a task under a grid of hyperparameters, vmapped into one compiled
program per (task, optimizer family), with losses on fixed samples of both splits.

A run trains from `task.init(k_init)` for `num_steps` minibatch steps (`inner_tasks.train`'s
step, the loss passed as optax's `value`), and at step 0 and every `eval_every` steps takes

- the training loss on a fixed, large sample of the training split, and
- the validation loss on a fixed sample of the validation split,

the same samples for every run of the task (`fixed_sample`): a task spec's own `fixed_sample(data,
split)` where it has one (the user tasks: the whole split when small, else 2048 fixed examples),
else `SAMPLE_BATCHES` batches drawn with a fixed key. Seed s trains from `jax.random.key(s)`
(`k_init, k_run = split(key)`, step t's batch from `split(k_run, num_steps)[t]`), so every
optimizer sees the same inits and batches per seed.

>>> import inner_tasks, numpy as np
>>> from evaluation.baselines import BASELINES
>>> task = inner_tasks.get_task("quadratic", dim=4)
>>> make = BaselineMaker("adam")
>>> c = run_rows(task, make, None, np.asarray([BASELINES["adam"].rows()[-1]]), [1], 20, 10)
>>> c.train.shape, bool(c.train[0, -1] < c.train[0, 0])
((1, 3), True)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import inner_tasks
from evaluation.learned import optimizer_for
from evaluation.baselines import FAMILIES
from inner_tasks.train import train_step

# What the fixed samples are is part of every stored result: changing them (here or in a spec's
# `fixed_sample`) must bump `evaluation.reuse.RESULTS_VERSION`, so that --baselines_from and
# --resume refuse results taken on other samples.
SAMPLE_SEED = 20261207
SAMPLE_BATCHES = 8


def fixed_sample(task: inner_tasks.Task, split: str) -> Any:
    """The fixed evaluation sample of a split, as batches with a leading axis (see module docstring)."""
    own = getattr(task.spec, "fixed_sample", None)
    if own is not None:
        return own(task.data, split)
    keys = jax.random.split(jax.random.key(SAMPLE_SEED), SAMPLE_BATCHES)
    return jax.vmap(lambda k: task.sample_batch(k, split))(keys)


def sample_loss(task: inner_tasks.Task, params: Any, sample: Any) -> jax.Array:
    """Mean loss over the batches of a fixed sample (equal-sized batches: the sample's mean loss)."""
    return jax.lax.map(lambda batch: task.loss(params, batch), sample).mean()


@dataclasses.dataclass(frozen=True)
class BaselineMaker:
    """An optax baseline family (`evaluation.baselines.FAMILIES`) at a traced hyperparameter row."""

    family: str

    def __call__(self, hp: jax.Array, num_steps: int, args: Any, task: inner_tasks.Task) -> optax.GradientTransformation:
        del args, task
        return FAMILIES[self.family](hp, num_steps)


@dataclasses.dataclass(frozen=True)
class LearnedMaker:
    """A learned optimizer at θ (`args`), told the horizon and given `options` ((name, value) pairs
    for its `optimizer`), its step times the multiplier hp[0] (1 is the optimizer as users load it)."""

    arch: Any
    options: tuple[tuple[str, Any], ...] = ()

    def __call__(self, hp: jax.Array, num_steps: int, theta: Any, task: inner_tasks.Task) -> optax.GradientTransformation:
        return optax.chain(optimizer_for(self.arch, theta, task, num_steps, **dict(self.options)), optax.scale(hp[0]))


Maker = Callable[[jax.Array, int, Any, inner_tasks.Task], optax.GradientTransformation]


def run_one(task: inner_tasks.Task, opt: optax.GradientTransformation, key: jax.Array, samples: tuple[Any, Any],
            num_steps: int, eval_every: int) -> tuple[jax.Array, jax.Array]:
    """One run's (training-sample loss, validation-sample loss), each [num_steps // eval_every + 1]."""
    opt = optax.with_extra_args_support(opt)
    k_init, k_run = jax.random.split(key)
    params = task.init(k_init)
    losses = lambda p: (sample_loss(task, p, samples[0]), sample_loss(task, p, samples[1]))
    step = functools.partial(train_step, task, opt)

    def interval(carry, keys):
        carry, _ = jax.lax.scan(step, carry, keys)
        return carry, losses(carry[0])

    keys = jax.random.split(k_run, num_steps).reshape(num_steps // eval_every, eval_every)
    first = losses(params)
    _, (train, valid) = jax.lax.scan(interval, (params, opt.init(params)), keys)
    return jnp.concatenate([first[0][None], train]), jnp.concatenate([first[1][None], valid])


@functools.partial(jax.jit, static_argnames=("make", "num_steps", "eval_every"))
def _run_rows(task, make: Maker, args, hparams, keys, num_steps: int, eval_every: int):
    samples = (fixed_sample(task, "train"), fixed_sample(task, "valid"))
    one = lambda hp, key: run_one(task, make(hp, num_steps, args, task), key, samples, num_steps, eval_every)
    return jax.vmap(one)(hparams, keys)


@dataclasses.dataclass
class Curves:
    """Losses of R runs at the evaluation points: `train` and `valid`, each [R, points + 1]."""

    train: np.ndarray
    valid: np.ndarray


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    return jax.vmap(jax.random.key)(jnp.asarray(list(seeds), jnp.uint32))


def run_rows(task: inner_tasks.Task, make: Maker, args: Any, hparams: np.ndarray, seeds: Sequence[int],
             num_steps: int, eval_every: int, rows_per_call: int = 8,
             progress: Callable[[int], None] | None = None) -> Curves:
    """Run i trains with `make(hparams[i])` from seed `seeds[i]`; `rows_per_call` runs are vmapped
    per call of one compiled program (the last call padded to the same shape, so that every call
    of a task and maker reuses one program)."""
    hparams = np.asarray(hparams, np.float32).reshape(len(seeds), -1)
    total = len(seeds)
    size = max(1, rows_per_call)
    pad = -total % size
    hp = np.concatenate([hparams, np.repeat(hparams[-1:], pad, 0)])
    sd = list(seeds) + [seeds[-1]] * pad
    train, valid = [], []
    for s in range(0, total + pad, size):
        t, v = _run_rows(task, make, args, jnp.asarray(hp[s:s + size]), seed_keys(sd[s:s + size]),
                         num_steps=num_steps, eval_every=eval_every)
        train.append(np.asarray(t, np.float64))
        valid.append(np.asarray(v, np.float64))
        if progress is not None:
            progress(min(size, total - s))
    return Curves(np.concatenate(train)[:total], np.concatenate(valid)[:total])
