"""The small-real-model half of the optimistic meta-gradients reproduction, (b).

Fashion-MNIST, centre-cropped 28→24, 3×3 average-pooled to 8×8 (64 features), standardized per
pixel with the training set's statistics; an MLP 64-128-10 (ReLU, He-normal weights, zero biases),
softmax cross-entropy, batches of 128 drawn with replacement. The learner is an optax
transformation: a baseline (`optax.sgd`, SGD with momentum, `optax.adam`) or
`lopt.online_meta(rule, optax.adam(meta_lr), ...)` with an element-wise learning rate per weight
(`lopt.elementwise_sgd(lr0)` or `lopt.elementwise_adam(lr0)`, 9,610 rates).

The meta-objective is evaluated on the next batch B_{t+1}, the batch whose gradient the learner
uses next: standard mode reuses that gradient (one gradient per step), and the
optimistic target's L steps see B_{t+1} (`obj_fn`), so optimistic with L = 1 is the standard
meta-gradient times α (identical under Adam up to its ε) and costs 1 + L gradients per step.

`make_run(method, hp)` gives `init(key)` and `chunk(state)`: `log_every` learner steps in a
`lax.scan`, returning the TensorBoard keys of `METRICS` (means over the chunk; test metrics, the
rates' percentiles and the skipped count at its end). `train` runs whole runs for many seeds and
hyperparameters at once (`vmap`); `experiments.optimism.online_run` drives one run with TensorBoard logging.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt
from inner_tasks import datasets

SIZES = (64, 128, 10)
BATCH = 128
KINDS = ("sgd", "momentum", "adam", "meta")
RULES = ("sgd", "adam")
MODES = ("standard", "optimistic")
METRICS = ("learner/train_loss", "learner/test_loss", "learner/test_accuracy", "meta/grad_norm",
           "meta/matching_loss", "meta/skipped", "rates/p10", "rates/p50", "rates/p90")


@functools.lru_cache(maxsize=2)
def fmnist_8x8(data_dir: str | None = None) -> dict[str, np.ndarray]:
    """{train_x [60000, 64] float32, train_y int32, test_x [10000, 64], test_y}: crop, pool, standardize."""
    raw = datasets.image_arrays("fashion_mnist", 28, data_dir)

    def pool(x):
        x = x[:, 2:26, 2:26].astype(np.float32) / 255.0
        return x.reshape(-1, 8, 3, 8, 3).mean((2, 4)).reshape(-1, 64)

    tr, te = pool(raw["train_x"]), pool(raw["valid_x"])
    mean, std = tr.mean(0), tr.std(0)
    return {"train_x": (tr - mean) / std, "train_y": raw["train_y"].astype(np.int32),
            "test_x": (te - mean) / std, "test_y": raw["valid_y"].astype(np.int32)}


def init_he_mlp(key: jax.Array, sizes: tuple[int, ...] = SIZES) -> dict[str, jax.Array]:
    """He-normal weights (std √(2/fan_in)), zero biases: {"w0", "b0", "w1", "b1", ...}."""
    params = {}
    for i, (k, fi, fo) in enumerate(zip(jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:])):
        params[f"w{i}"] = jax.random.normal(k, (fi, fo), jnp.float32) * math.sqrt(2.0 / fi)
        params[f"b{i}"] = jnp.zeros((fo,), jnp.float32)
    return params


def mlp_logits(params: dict, x_BxD: jax.Array) -> jax.Array:
    n = len(params) // 2
    h = x_BxD
    for i in range(n):
        h = h @ params[f"w{i}"] + params[f"b{i}"][None, :]
        if i < n - 1:
            h = jax.nn.relu(h)
    return h


def mlp_loss(params: dict, x_BxD: jax.Array, y_B: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(mlp_logits(params, x_BxD), y_B).mean()


@dataclasses.dataclass(frozen=True)
class Method:
    """A learner. kind "sgd" / "momentum" / "adam": an optax baseline at learning rate `lr`;
    kind "meta": `online_meta(rule, adam(meta_lr), mode, target_steps, target_lr)` starting from the
    rule's learning rate `lr` (lr0). `lr` and `meta_lr` may be overridden by traced values (`train`)."""

    name: str
    kind: str
    lr: float
    rule: str = "sgd"
    mode: str = "standard"
    target_steps: int = 1
    target_lr: float | None = None  # α; None: lr0
    meta_lr: float = 3e-3
    momentum: float = 0.9
    meta_optimizer: str = "adam"  # or "sgd"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; valid: {KINDS}")
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; valid: {RULES}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid: {MODES}")
        if self.meta_optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown meta_optimizer {self.meta_optimizer!r}; valid: ['adam', 'sgd']")

    @property
    def gradients_per_step(self) -> int:
        return 1 + self.target_steps if self.kind == "meta" and self.mode == "optimistic" else 1

    def learner(self, lr=None, meta_lr=None) -> optax.GradientTransformationExtraArgs:
        lr = self.lr if lr is None else lr
        if self.kind == "sgd":
            return optax.with_extra_args_support(optax.sgd(lr))
        if self.kind == "momentum":
            return optax.with_extra_args_support(optax.sgd(lr, momentum=self.momentum))
        if self.kind == "adam":
            return optax.with_extra_args_support(optax.adam(lr))
        rule = self.rule_obj()
        meta_lr = self.meta_lr if meta_lr is None else meta_lr
        meta = optax.adam(meta_lr) if self.meta_optimizer == "adam" else optax.sgd(meta_lr)
        if self.mode == "standard":
            return lopt.online_meta(rule, meta, mode="standard")
        return lopt.online_meta(rule, meta, mode="optimistic", target_steps=self.target_steps,
                                target_lr=float(self.target_lr or self.lr))

    def rule_obj(self) -> lopt.UpdateRule:
        return lopt.elementwise_sgd(self.lr) if self.rule == "sgd" else lopt.elementwise_adam(self.lr)


class RunState(NamedTuple):
    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array


def _batch(data: dict, key: jax.Array, step: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
    idx = jax.random.randint(jax.random.fold_in(key, step), (batch,), 0, data["train_x"].shape[0])
    return data["train_x"][idx], data["train_y"][idx]


def make_run(method: Method, data: dict, log_every: int, *, lr=None, meta_lr=None, batch: int = BATCH,
             sizes: tuple[int, ...] = SIZES) -> tuple[Callable, Callable]:
    """(init(key) -> RunState, chunk(RunState) -> (RunState, metrics)) for one run of `method`.

    Step t draws B_t (from fold_in(key, t)); the learner's gradient is on B_t, the meta-objective
    (`obj_fn`) on B_{t+1}. `lr`/`meta_lr` override the method's (they may be traced)."""
    opt = method.learner(lr, meta_lr)
    is_meta = method.kind == "meta"
    rule = method.rule_obj() if is_meta else None
    fixed_lr = method.lr if lr is None else lr

    def init(key):
        k_init, k_data = jax.random.split(key)
        params = init_he_mlp(k_init, sizes)
        return RunState(params, opt.init(params), k_data, jnp.zeros((), jnp.int32))

    def step(state: RunState, _):
        x, y = _batch(data, state.key, state.step, batch)
        loss, grads = jax.value_and_grad(mlp_loss)(state.params, x, y)
        if is_meta:
            xn, yn = _batch(data, state.key, state.step + 1, batch)
            updates, opt_state = opt.update(grads, state.opt_state, state.params, obj_fn=lambda p: mlp_loss(p, xn, yn))
            extra = (opt_state.meta_grad_norm, opt_state.matching_loss)
        else:
            updates, opt_state = opt.update(grads, state.opt_state, state.params)
            extra = (jnp.zeros(()), jnp.zeros(()))
        params = optax.apply_updates(state.params, updates)
        return RunState(params, opt_state, state.key, state.step + 1), (loss, *extra)

    def chunk(state: RunState):
        state, (loss, gnorm, match) = jax.lax.scan(step, state, None, length=log_every)
        logits = mlp_logits(state.params, data["test_x"])
        test_loss = optax.softmax_cross_entropy_with_integer_labels(logits, data["test_y"]).mean()
        acc = jnp.mean(jnp.argmax(logits, -1) == data["test_y"])
        if is_meta:
            rates = jnp.concatenate([r.ravel() for r in jax.tree.leaves(rule.rates(state.opt_state.w))])
            pct = jnp.percentile(rates, jnp.array([10.0, 50.0, 90.0]))
            skipped = state.opt_state.skipped.astype(jnp.float32)
        else:
            pct = jnp.full((3,), fixed_lr, jnp.float32)
            skipped = jnp.zeros(())
        metrics = dict(zip(METRICS, (loss.mean(), test_loss, acc, gnorm.mean(), match.mean(), skipped,
                                     pct[0], pct[1], pct[2])))
        return state, metrics

    return init, chunk


def device_data(data_dir: str | None = None) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in fmnist_8x8(data_dir).items()}


def train(method: Method, seeds: int, steps: int, log_every: int, *, lrs: list[float] | None = None,
          meta_lrs: list[float] | None = None, data: dict | None = None, seed_offset: int = 0) -> dict:
    """Whole runs of `method` for every (lr or meta_lr, seed), vmapped, each a scan of chunks.

    Sweeps `lrs` (baselines) or `meta_lrs` (meta) — at most one of them; returns numpy arrays
    {metric: [values, seeds, steps // log_every]} and "values" (the swept values, or [None])."""
    if steps % log_every:
        raise ValueError(f"steps={steps} must be a multiple of log_every={log_every}")
    data = device_data() if data is None else data
    sweep_name = "lr" if lrs is not None else "meta_lr" if meta_lrs is not None else None
    values = lrs if lrs is not None else meta_lrs if meta_lrs is not None else [None]

    def one(value, key):
        kw = {} if sweep_name is None else {sweep_name: value}
        init, chunk = make_run(method, data, log_every, **kw)
        _, metrics = jax.lax.scan(lambda s, _: chunk(s), init(key), None, length=steps // log_every)
        return metrics

    keys = jax.vmap(jax.random.key)(jnp.arange(seed_offset, seed_offset + seeds))
    if sweep_name is None:
        out = jax.jit(jax.vmap(lambda k: one(None, k)))(keys)
        out = jax.tree.map(lambda a: a[None], out)
    else:
        vals = jnp.asarray(values, jnp.float32)
        out = jax.jit(jax.vmap(lambda v: jax.vmap(lambda k: one(v, k))(keys)))(vals)
    out = {k: np.asarray(v) for k, v in out.items()}
    out["values"] = list(values)
    return out


def summarize(curves: dict, log_every: int, at: int | None = None, window: int = 200) -> list[dict]:
    """Per swept value: train CE (mean minibatch loss over the `window` steps before `at`), test
    CE and accuracy at `at` (default: the end), mean and std over seeds; median rate at the end."""
    n = curves["learner/train_loss"].shape[-1]
    end = n if at is None else at // log_every
    w = max(1, window // log_every)
    rows = []
    for i, v in enumerate(curves["values"]):
        train = curves["learner/train_loss"][i, :, end - w:end].mean(-1)
        row = {"value": v, "train_ce": float(train.mean()), "train_ce_std": float(train.std()),
               "train_ce_seeds": train.tolist()}
        for key, name in (("learner/test_loss", "test_ce"), ("learner/test_accuracy", "test_acc")):
            x = curves[key][i, :, end - 1]
            row[name], row[name + "_std"], row[name + "_seeds"] = float(x.mean()), float(x.std()), x.tolist()
        row["finite"] = bool(np.all(np.isfinite(curves["learner/train_loss"][i, :, :end])))
        for p in ("p10", "p50", "p90"):
            row[f"rate_{p}"] = float(np.median(curves[f"rates/{p}"][i, :, end - 1]))
        row["skipped"] = float(curves["meta/skipped"][i, :, end - 1].max())
        rows.append(row)
    return rows
