"""TensorBoard monitoring of a meta-training run, written with tensorboardX.

View a run with `tensorboard --logdir WORKDIR` (binds to localhost). Metrics arrive as flat
dicts with slash-separated keys; arrays stay on device until `scalars` fetches them.

>>> import tempfile, numpy as np
>>> with tempfile.TemporaryDirectory() as d:
...     w = Writer(d)
...     w.scalars(3, {"meta/loss": np.float32(0.5)})
...     w.close()
"""

from __future__ import annotations

import functools
import json
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import tensorboardX

import inner_tasks
from inner_tasks.train import train_step

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)


class _Discard:
    """Takes any SummaryWriter call and does nothing (the writers of non-primary hosts)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


class Writer:
    """A tensorboardX SummaryWriter with the few calls meta-training needs.

    `purge_step` (on resume) drops events a previous process wrote at or after that step;
    `enabled=False` writes nothing (every host but the first of a multi-host run)."""

    def __init__(self, logdir: str, purge_step: int | None = None, enabled: bool = True):
        self._w = tensorboardX.SummaryWriter(logdir, purge_step=purge_step) if enabled else _Discard()

    def scalars(self, step: int, metrics: Mapping[str, Any]) -> None:
        for k, v in jax.device_get(dict(metrics)).items():
            self._w.add_scalar(k, float(np.asarray(v)), step)

    def histogram(self, step: int, tag: str, values: Any) -> None:
        values = np.asarray(jax.device_get(values), np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size:
            self._w.add_histogram(tag, values, step)

    def figure(self, step: int, tag: str, fig) -> None:
        self._w.add_figure(tag, fig, step, close=True)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._w.add_text(tag, text, step)

    def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Writes the hparams plugin's record (tensorboardX puts it in a sub-run of the logdir)."""
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        self._w.add_hparams(clean, {f"hparam/{k}": float(v) for k, v in metrics.items()}, name="hparams")

    def flush(self) -> None:
        self._w.flush()

    def close(self) -> None:
        self._w.close()


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as {"estimator.sigma": 0.01, …}; tuples become their JSON text."""
    out = {}
    for k, v in config.items():
        if isinstance(v, Mapping):
            out.update(flat_hparams(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(list(v)) if isinstance(v, (list, tuple)) else v
    return out


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


# ----------------------------------------------------------------------------- held-out evaluation
def _optimizer(arch, task, theta, num_steps: int, mup: bool):
    kw = dict(roles=task.roles, fan_in=task.fan_in) if mup else {}
    return arch.optimizer(theta, num_steps=num_steps, **kw)


@functools.partial(jax.jit, static_argnames=("arch", "num_steps", "every", "mup"))
def train_with_lopt(arch, task, theta, key, num_steps: int, every: int, mup: bool) -> inner_tasks.Curve:
    """`inner_tasks.train` with the learned optimizer at θ; θ is an argument (no recompiles)."""
    return inner_tasks.train(task, _optimizer(arch, task, theta, num_steps, mup), num_steps, key, eval_every=every)


@functools.partial(jax.jit, static_argnames=("arch", "steps", "mup"))
def lopt_outputs(arch, task, theta, key, steps: int, mup: bool) -> dict[str, jax.Array]:
    """After `steps` learned-optimizer steps on `task`: the next update of every parameter, and
    the per-parameter MLP's outputs where the architecture exposes them (μLO's d and m)."""
    opt = optax.with_extra_args_support(_optimizer(arch, task, theta, max(steps, 1), mup))
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

    Logs each task's final validation loss for both, their ratio, the held-out meta-loss (the
    learned optimizer's mean training loss over the run divided by its first loss, as in
    meta-training) and a learning-curve figure."""

    def __init__(self, setup, key: jax.Array):
        self.setup = setup
        self.specs = setup.eval_family.specs(key, setup.eval_tasks)
        self.tasks = [setup.eval_family.task(s) for s in self.specs]
        self.key = jax.random.fold_in(key, 1)
        self._adam: dict[int, Any] = {}
        self._adam_opt = optax.adam(setup.eval_adam_lr)

    def _mup(self, i: int) -> bool:
        return getattr(self.specs[i], "parametrization", "sp") == "mup"

    def _title(self, i: int) -> str:
        s = self.specs[i]
        names = ("dataset", "resolution", "width", "depth", "channels")
        fields = [f"{k}={getattr(s, k)}" for k in names if hasattr(s, k)]
        return f"{s.name} " + " ".join(fields)

    def run(self, writer: Writer, step: int, theta) -> dict[str, float]:
        s = self.setup
        scalars, panels, metas, ratios = {}, [], [], []
        for i, task in enumerate(self.tasks):
            k = jax.random.fold_in(self.key, i)
            lo = jax.device_get(train_with_lopt(s.arch, task, theta, k, s.eval_steps, s.eval_curve_every, self._mup(i)))
            if i not in self._adam:
                self._adam[i] = jax.device_get(inner_tasks.train(task, self._adam_opt, s.eval_steps, k,
                                                                 eval_every=s.eval_curve_every))
            adam = self._adam[i]
            lo_final, adam_final = float(lo.valid_loss[-1]), float(adam.valid_loss[-1])
            meta = float(np.mean(lo.train_loss) / max(abs(float(lo.train_loss[0])), 1e-8))
            scalars.update({f"eval/task{i}/lopt_valid": lo_final, f"eval/task{i}/adam_valid": adam_final,
                            f"eval/task{i}/heldout_meta_loss": meta})
            metas.append(meta)
            ratios.append(lo_final / adam_final if np.isfinite(lo_final) else float("inf"))
            panels.append({"learned optimizer": (lo.valid_step, lo.valid_loss), f"Adam {s.eval_adam_lr:g}":
                           (adam.valid_step, adam.valid_loss)})
        summary = {"eval/heldout_meta_loss": float(np.mean(metas)), "eval/lopt_over_adam": float(np.mean(ratios))}
        writer.scalars(step, {**scalars, **summary})
        writer.figure(step, "eval/learning_curves", curve_figure(panels, [self._title(i) for i in range(len(panels))]))
        return summary

    def histograms(self, writer: Writer, step: int, theta) -> None:
        s = self.setup
        outs = lopt_outputs(s.arch, self.tasks[0], theta, self.key, steps=min(50, s.eval_steps), mup=self._mup(0))
        for tag, values in outs.items():
            writer.histogram(step, tag, values)
