"""VeLO-style learned optimizer: a per-tensor LSTM steering a bank of per-parameter MLPs.

Every step, each parameter tensor contributes a row of statistics (log momentum and
second-moment scales, log parameter scale, rank one-hot), to which the loss features (the loss
relative to its first value and to three EMAs) and the training-progress features
tanh(10·(t/T − x)) are appended. A mixing layer adds a max over tensors, then one LSTM cell,
shared by all tensors, updates each tensor's hidden state. From it come softmax mixing weights
over a bank of small per-parameter MLPs (blended into one MLP per tensor) and a learning-rate
multiplier. The blended MLP reads μLO's 28 RMS-normalized features (`lopt.mulo_features`) and
outputs (d, m); the step is −step_mult·lr_mult·d·exp(exp_mult·m). Under μP, `optimizer` chains
`lopt.scale_by_mup` after it (1/fan_in on hidden weights), so the optimizer's state is the pair
(VeLOState, optax.EmptyState()). As in μVeLO, the step is not multiplied by the parameter norm.

It needs the total number of steps (`optimizer(theta, num_steps=T)`) and the loss at every step
(`update(grads, state, params, value=loss)`, optax's extra-args convention).

>>> import jax
>>> arch = VeLO()
>>> opt = arch.optimizer(arch.init(jax.random.key(0)), num_steps=100)
>>> params = {"w": jax.numpy.ones((3, 2)), "b": jax.numpy.zeros((2,))}
>>> updates, state = opt.update(params, opt.init(params), params, value=jax.numpy.float32(1.0))
>>> jax.tree.map(jax.numpy.shape, updates)
{'b': (2,), 'w': (3, 2)}
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt import common, mulo_features, mup
from lopt.mulo_features import NUM_FEATURES

PyTree = Any
PROGRESS_POINTS = (0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1)
LOSS_DECAYS = (0.9, 0.99, 0.999)
MAX_RANK = 4  # ranks 0..3 and "4 or more"
NUM_TENSOR_STATS = 3 + 1 + 1 + (MAX_RANK + 1)
NUM_GLOBAL = 1 + len(LOSS_DECAYS) + len(PROGRESS_POINTS)
# theta, the loss features and the per-tensor LSTM are float32 whatever the params' dtype (and
# with x64 on), so that the state keeps its dtypes from one step to the next.
F32 = jnp.float32


class VeLOState(NamedTuple):
    count: jax.Array
    acc: PyTree
    lstm_h: jax.Array  # (tensors, hidden)
    lstm_c: jax.Array
    loss_first: jax.Array  # first finite loss seen (nan before)
    loss_ema: jax.Array  # (3,)


def _tensor_stats(p: jax.Array, acc: mulo_features.Accumulators) -> jax.Array:
    log_mean = lambda x: jnp.log(jnp.mean(x) + 1e-12)
    mom = jnp.stack([log_mean(acc.mom[k] ** 2) for k in range(3)])
    rank = jax.nn.one_hot(min(p.ndim, MAX_RANK), MAX_RANK + 1)
    scales = jnp.stack([log_mean(acc.v), log_mean(p.astype(acc.v.dtype) ** 2)])
    return jnp.concatenate([mom, scales, rank])


def _loss_features(loss, first, ema_3) -> jax.Array:
    rel = lambda a, b: jnp.clip(jnp.log(jnp.maximum(a, 1e-12) / jnp.maximum(b, 1e-12)), -5.0, 5.0)
    feats = jnp.concatenate([rel(loss, first)[None], rel(loss, ema_3)])
    return jnp.where(jnp.isfinite(feats), feats, 0.0)


@dataclasses.dataclass(frozen=True)
class VeLO:
    """Architecture config (static)."""

    name: ClassVar[str] = "velo"
    version: ClassVar[int] = mulo_features.FEATURE_VERSION
    lstm_hidden: int = 32
    mix_hidden: int = 16
    num_mlps: int = 8
    mlp_hidden: int = 4
    step_mult: float = 0.01
    exp_mult: float = 0.001
    mom_decays: tuple[float, float, float] = (0.9, 0.99, 0.999)
    rms_decay: float = 0.999
    fac_decays: tuple[float, float, float] = (0.9, 0.99, 0.999)

    def __post_init__(self):
        for f in ("lstm_hidden", "mix_hidden", "num_mlps", "mlp_hidden"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")

    def init(self, key: jax.Array) -> dict:
        k_bank, k_mix, k_lstm, k_out = jax.random.split(key, 4)
        n_in, hid = NUM_TENSOR_STATS + NUM_GLOBAL, self.lstm_hidden
        lstm_in = n_in + self.mix_hidden + hid
        return {
            "bank": common.init_mlp(k_bank, (NUM_FEATURES, self.mlp_hidden, self.mlp_hidden, 2), (self.num_mlps,)),
            "mix": common.init_mlp(k_mix, (n_in, self.mix_hidden)),
            "lstm": {
                "w": jax.random.normal(k_lstm, (lstm_in, 4 * hid), F32) / jnp.sqrt(jnp.float32(lstm_in)),
                "b": jnp.zeros((4 * hid,), F32).at[hid : 2 * hid].set(1.0),  # forget-gate bias 1
            },
            "out": {
                "w_mix": 0.01 * jax.random.normal(k_out, (hid, self.num_mlps), F32),
                "b_mix": jnp.zeros((self.num_mlps,), F32),
                "w_lr": jnp.zeros((hid,), F32),
                "b_lr": jnp.zeros((), F32),
            },
        }

    def _lstm(self, theta, x_NxI, h_NxH, c_NxH):
        mixed = jax.nn.relu(x_NxI @ theta["mix"]["w0"] + theta["mix"]["b0"][None, :])
        glob = jnp.broadcast_to(mixed.max(axis=0, keepdims=True), mixed.shape)
        z = jnp.concatenate([x_NxI, glob, h_NxH], axis=1) @ theta["lstm"]["w"] + theta["lstm"]["b"][None, :]
        i, f, g, o = jnp.split(z, 4, axis=1)
        c = jax.nn.sigmoid(f) * c_NxH + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    def _tensor_step(self, theta, mix_K, lr_mult, p, g, acc):
        mlp = jax.tree.map(lambda w: jnp.tensordot(mix_K, w, axes=(0, 0)), theta["bank"])
        hf = common.is_hidden_first(self.mlp_hidden)
        h = common.add_bias(mulo_features.project_features(p, g, acc, mlp["w0"], hf), mlp["b0"], hf)
        out = common.apply_mlp_tail(mlp, h, hidden_first=hf)
        d, m = (out[0], out[1]) if hf else (out[..., 0], out[..., 1])
        step = self.step_mult * lr_mult * d * jnp.exp(self.exp_mult * m)
        return (-step).astype(g.dtype)

    def optimizer(
        self, theta: dict, *, roles: PyTree | None = None, fan_in: PyTree | None = None, num_steps: int | None = None
    ) -> optax.GradientTransformationExtraArgs:
        """The optax transformation; needs num_steps, and `value=loss` at every update.

        roles/fan_in switch on μP update scaling (`lopt.scale_by_mup`, chained after VeLO's step)."""
        if num_steps is None or num_steps < 1:
            raise ValueError(f"VeLO needs the total number of steps: optimizer(theta, num_steps=T), got {num_steps}")
        decays = (jnp.asarray(self.mom_decays), jnp.asarray(self.rms_decay), jnp.asarray(self.fac_decays))
        progress_pts, loss_decays = jnp.asarray(PROGRESS_POINTS, F32), jnp.asarray(LOSS_DECAYS, F32)

        def init_fn(params):
            n = len(jax.tree.leaves(params))
            # explicit dtypes throughout: weak-typed NaN loss fields made the second jitted update retrace
            zeros = jnp.zeros((n, self.lstm_hidden), F32)
            return VeLOState(
                jnp.zeros((), jnp.int32), jax.tree.map(mulo_features.init_accumulators, params), zeros, zeros,
                jnp.full((), jnp.nan, F32), jnp.full((len(LOSS_DECAYS),), jnp.nan, F32),
            )

        def update_fn(updates, state, params=None, *, value=None, **extra):
            del extra
            common.require_params(params, "VeLO")
            if value is None:
                raise ValueError("VeLO needs the loss at every step: update(grads, state, params, value=loss)")
            loss = jnp.asarray(value, F32)
            first = jnp.where(jnp.isnan(state.loss_first), loss, state.loss_first)
            ema = jnp.where(jnp.isnan(state.loss_ema), loss, state.loss_ema)
            ema = loss_decays * ema + (1 - loss_decays) * loss
            acc = jax.tree.map(lambda g, a: mulo_features.update_accumulators(a, g, *decays), updates, state.acc)
            g_leaves, treedef = jax.tree.flatten(updates)
            p_leaves = treedef.flatten_up_to(params)
            a_leaves = treedef.flatten_up_to(acc)
            frac = state.count.astype(F32) / num_steps
            glob = jnp.concatenate([_loss_features(loss, first, ema), jnp.tanh(10 * (frac - progress_pts))])
            stats = jnp.stack([_tensor_stats(p, a) for p, a in zip(p_leaves, a_leaves)]).astype(F32)
            x = jnp.concatenate([stats, jnp.broadcast_to(glob[None, :], (stats.shape[0], glob.shape[0]))], axis=1)
            h, c = self._lstm(theta, x, state.lstm_h, state.lstm_c)
            mix_NxK = jax.nn.softmax(h @ theta["out"]["w_mix"] + theta["out"]["b_mix"][None, :], axis=-1)
            lr_N = jnp.exp(h @ theta["out"]["w_lr"] + theta["out"]["b_lr"])
            new = [
                self._tensor_step(theta, mix_NxK[i], lr_N[i], p, g, a)
                for i, (p, g, a) in enumerate(zip(p_leaves, g_leaves, a_leaves))
            ]
            state = VeLOState(optax.safe_increment(state.count), acc, h, c, first, ema)
            return jax.tree.unflatten(treedef, new), state

        core = optax.GradientTransformationExtraArgs(init_fn, update_fn)
        return optax.chain(core, mup.scale_by_mup(roles, fan_in))

