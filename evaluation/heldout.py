"""Held-out evaluation during meta-training: fixed tasks trained with the current learned
optimizer (built by `evaluation.optimizer_for`) and with Adam, logged through a
`Writer` (a `monitoring.Writer` in meta-training).

`Evaluator` takes typed values (the architecture, the held-out family and the run's numbers), not
the config; meta-training calls `run` every `eval.every` steps and `histograms` every
`log.histograms_every`.

>>> import jax, inner_tasks, lopt
>>> ev = Evaluator(lopt.LearnableAdam(), inner_tasks.get_family("quadratic", dims=(4,)), num_tasks=2,
...                num_steps=4, curve_every=2, adam_lr=1e-2, key=jax.random.key(0))
>>> [t.name for t in ev.tasks]
['quadratic', 'quadratic']
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Protocol, Sequence

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import inner_tasks
from evaluation.learned import optimizer_for
from inner_tasks.train import train_step

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)


class Writer(Protocol):
    """Where `Evaluator` logs: the part of a TensorBoard writer it uses (`monitoring.Writer` is one)."""

    def scalars(self, step: int, metrics: Mapping[str, Any]) -> None: ...

    def figure(self, step: int, tag: str, fig: Any) -> None: ...

    def histogram(self, step: int, tag: str, values: Any) -> None: ...


def curve_figure(curves: Sequence[Mapping[str, tuple[np.ndarray, np.ndarray]]], titles: Sequence[str]):
    """One panel per task; each panel plots {label: (steps, losses)}; log-scaled loss axis."""
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
    for ax, panel, title in zip(axes[0], curves, titles):
        for label, (steps, losses) in panel.items():
            ax.plot(np.asarray(steps), np.asarray(losses), label=label)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("inner step")
        ax.set_ylabel("validation loss")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@functools.partial(jax.jit, static_argnames=("arch", "num_steps", "every"))
def train_with_lopt(arch, task, theta, key, num_steps: int, every: int) -> inner_tasks.Curve:
    """`inner_tasks.train` with the learned optimizer at θ; θ is an argument (no recompiles)."""
    return inner_tasks.train(task, optimizer_for(arch, theta, task, num_steps), num_steps, key, eval_every=every)


@functools.partial(jax.jit, static_argnames=("arch", "steps"))
def lopt_outputs(arch, task, theta, key, steps: int) -> dict[str, jax.Array]:
    """After `steps` learned-optimizer steps on `task`: the next update of every parameter, and
    the per-parameter MLP's outputs where the architecture exposes them (μLO's d and m, from the
    optimizer's whole state as `optimizer_for` builds it)."""
    opt = optax.with_extra_args_support(optimizer_for(arch, theta, task, max(steps, 1)))
    k_init, k_run, k_last = jax.random.split(key, 3)
    params = task.init(k_init)
    carry = (params, opt.init(params))
    carry, _ = jax.lax.scan(functools.partial(train_step, task, opt), carry, jax.random.split(k_run, steps))
    params, state = carry
    loss, grads = jax.value_and_grad(task.loss)(params, task.sample_batch(k_last, "train"))
    updates, _ = opt.update(grads, state, params, value=loss)
    out = {"lopt/update": jnp.concatenate([u.ravel() for u in jax.tree.leaves(updates)])}
    if hasattr(arch, "outputs"):
        out.update({f"lopt/{k}": v for k, v in arch.outputs(theta, grads, state, params).items()})
    return out


class Evaluator:
    """Trains fixed held-out tasks with the current learned optimizer and with Adam.

    `num_tasks` specs are sampled from `family` with `key`; each task i trains for `num_steps`
    steps from `fold_in(fold_in(key, 1), i)`, its validation loss taken every `curve_every` steps;
    Adam runs at `adam_lr` (once per task, cached). Logs each task's final validation loss for
    both, their ratio, the held-out meta-loss (the learned optimizer's mean training loss over the
    run divided by its first loss, as in meta-training) and a learning-curve figure."""

    def __init__(self, arch: Any, family: inner_tasks.TaskFamily, num_tasks: int, num_steps: int, curve_every: int,
                 adam_lr: float, key: jax.Array):
        self.arch, self.num_steps, self.curve_every, self.adam_lr = arch, num_steps, curve_every, adam_lr
        self.specs = family.specs(key, num_tasks)
        self.tasks = [family.task(s) for s in self.specs]
        self.key = jax.random.fold_in(key, 1)
        self._adam: dict[int, Any] = {}
        self._adam_opt = optax.adam(adam_lr)

    def _title(self, i: int) -> str:
        s = self.specs[i]
        names = ("dataset", "resolution", "width", "depth", "channels")
        fields = [f"{k}={getattr(s, k)}" for k in names if hasattr(s, k)]
        return f"{s.name} " + " ".join(fields)

    def run(self, writer: Writer, step: int, theta) -> dict[str, float]:
        scalars, panels, metas, ratios = {}, [], [], []
        for i, task in enumerate(self.tasks):
            k = jax.random.fold_in(self.key, i)
            lo = jax.device_get(train_with_lopt(self.arch, task, theta, k, self.num_steps, self.curve_every))
            if i not in self._adam:
                self._adam[i] = jax.device_get(inner_tasks.train(task, self._adam_opt, self.num_steps, k,
                                                                 eval_every=self.curve_every))
            adam = self._adam[i]
            lo_final, adam_final = float(lo.valid_loss[-1]), float(adam.valid_loss[-1])
            meta = float(np.mean(lo.train_loss) / max(abs(float(lo.train_loss[0])), 1e-8))
            scalars.update({f"eval/task{i}/lopt_valid": lo_final, f"eval/task{i}/adam_valid": adam_final,
                            f"eval/task{i}/heldout_meta_loss": meta})
            metas.append(meta)
            ratios.append(lo_final / adam_final if np.isfinite(lo_final) else float("inf"))
            panels.append({"learned optimizer": (lo.valid_step, lo.valid_loss), f"Adam {self.adam_lr:g}":
                           (adam.valid_step, adam.valid_loss)})
        summary = {"eval/heldout_meta_loss": float(np.mean(metas)), "eval/lopt_over_adam": float(np.mean(ratios))}
        writer.scalars(step, {**scalars, **summary})
        writer.figure(step, "eval/learning_curves", curve_figure(panels, [self._title(i) for i in range(len(panels))]))
        return summary

    def histograms(self, writer: Writer, step: int, theta) -> None:
        outs = lopt_outputs(self.arch, self.tasks[0], theta, self.key, steps=min(50, self.num_steps))
        for tag, values in outs.items():
            writer.histogram(step, tag, values)
