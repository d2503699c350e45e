"""Celo's per-tensor accumulators and features (`lopt.celo` builds the optimizer from them).

Per parameter tensor: two momenta, a second moment and Adafactor's factored second moment
(`CeloAcc`, `update_acc`); the 10 per-element features of `FEATURE_NAMES` (`raw_features`); the MLP
over them (`mlp_direction`, fused forward `mlp_units`, matmul backward `mlp_stacked`); and the
per-tensor step features: the schedule of the training fraction, the tensor's shape, the model's
depth and the gradient progress. The μLO family's 28 features are `lopt.mulo_features`.

>>> import jax.numpy as jnp
>>> acc = update_acc(init_acc(jnp.ones((3, 2))), jnp.ones((3, 2)), jnp.asarray([0.9, 0.99]), jnp.asarray(0.999))
>>> [f.shape for f in raw_features(jnp.ones((3, 2)), jnp.ones((3, 2)), acc)][:2]
[(3, 2), (3, 2)]
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lopt import common

PyTree = Any
FEATURE_NAMES = ("g", "p", "m0", "m1", "g_rsqrt_v", "m0_rsqrt_v", "m1_rsqrt_v", "g_fac", "m0_fac", "rsqrt_v")
NUM_FEATURES = len(FEATURE_NAMES)  # 10
ADAM_FEATURE = FEATURE_NAMES.index("m0_rsqrt_v")
PARAM_FEATURE = FEATURE_NAMES.index("p")
SCHEDULE_POINTS = (0.0, 0.25, 0.5, 0.75, 1.0)
NUM_TENSOR_FEATURES = len(SCHEDULE_POINTS) + 2
PROGRESS_DECAY = 0.9
PROGRESS_RANGE = (-4.0, 0.0)  # decades of gradient RMS below its peak
V_EPS = 1e-30  # inside rsqrt(v): features are normalized per tensor, so only zero needs guarding
NORM_EPS = 1e-8  # inside each feature's per-tensor mean square, before its rsqrt
OUT_EPS = 1e-12


class CeloAcc(NamedTuple):
    """Accumulators of one tensor of shape S (rank < 2: `row` is the full second moment, `col` unused)."""

    mom: jax.Array  # (2,) + S
    v: jax.Array  # S
    row: jax.Array  # S[:-1], or S for rank < 2
    col: jax.Array  # S[:-2] + S[-1:], or () for rank < 2
    g2: jax.Array | None = None  # with progress_feature or decay_gate, (2,): the peak of the EMA of mean g², and that EMA


class CeloState(NamedTuple):
    count: jax.Array
    acc: PyTree  # a CeloAcc per parameter tensor


def init_acc(p: jax.Array, progress: bool = False) -> CeloAcc:
    s, dt = p.shape, common.acc_dtype(p)
    if p.ndim >= 2:
        row, col = jnp.zeros(s[:-1], dt), jnp.zeros(s[:-2] + s[-1:], dt)
    else:
        row, col = jnp.zeros(s, dt), jnp.zeros((), dt)
    return CeloAcc(jnp.zeros((2,) + s, dt), jnp.zeros(s, dt), row, col, jnp.zeros((2,), dt) if progress else None)


def update_acc(acc: CeloAcc, g: jax.Array, mom_decay_2: jax.Array, rms_decay: jax.Array) -> CeloAcc:
    """One EMA step of every accumulator with gradient g (the factored moment uses `rms_decay`)."""
    g = g.astype(acc.v.dtype)
    b = mom_decay_2.astype(g.dtype).reshape((2,) + (1,) * g.ndim)
    rms_decay = rms_decay.astype(g.dtype)
    mom = b * acc.mom + (1 - b) * g[None]
    g2 = g * g
    v = rms_decay * acc.v + (1 - rms_decay) * g2
    if g.ndim >= 2:
        row = rms_decay * acc.row + (1 - rms_decay) * g2.mean(axis=-1)
        col = rms_decay * acc.col + (1 - rms_decay) * g2.mean(axis=-2)
    else:
        row, col = v, acc.col
    if acc.g2 is None:
        return CeloAcc(mom, v, row, col)
    mean_g2 = jnp.mean(g2)
    started = acc.g2[0] > 0
    ema = jnp.where(started, PROGRESS_DECAY * acc.g2[1] + (1 - PROGRESS_DECAY) * mean_g2, mean_g2)
    g2_stats = jnp.stack([jnp.maximum(acc.g2[0], ema), ema])
    return CeloAcc(mom, v, row, col, g2_stats)


def progress_feature(acc: CeloAcc) -> jax.Array:
    """log10 of the tensor's recent gradient RMS (EMA of mean g², decay PROGRESS_DECAY, started at
    the first nonzero gradient) over that EMA's peak so far, clipped to PROGRESS_RANGE: in [-4, 0],
    0 before any nonzero gradient. Shape (1,)."""
    ratio = (acc.g2[1] + V_EPS) / (acc.g2[0] + V_EPS)
    return jnp.clip(0.5 * jnp.log10(ratio), *PROGRESS_RANGE).astype(jnp.float32)[None]


def _sqrt(x: jax.Array) -> jax.Array:
    """sqrt(x) with a zero (not infinite) derivative at x == 0."""
    pos = x > V_EPS
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _rsqrt(x: jax.Array) -> jax.Array:
    """rsqrt(x) for x > 0 and 0 where x == 0, with no infinite derivative anywhere."""
    pos = x > V_EPS
    return jnp.where(pos, jax.lax.rsqrt(jnp.where(pos, x, 1.0)), 0.0)


def raw_features(p: jax.Array, g: jax.Array, acc: CeloAcc) -> tuple[jax.Array, ...]:
    """The 10 un-normalized features of one tensor (order: FEATURE_NAMES), each of its shape S."""
    p, g = p.astype(acc.v.dtype), g.astype(acc.v.dtype)
    rsqrt_v = _rsqrt(acc.v)
    if p.ndim >= 2:
        row_mean = acc.row.mean(axis=-1, keepdims=True)
        fac = (_rsqrt(acc.row) * _sqrt(row_mean))[..., None] * _rsqrt(acc.col)[..., None, :]
    else:
        fac = rsqrt_v
    m0, m1 = acc.mom[0], acc.mom[1]
    return (g, p, m0, m1, g * rsqrt_v, m0 * rsqrt_v, m1 * rsqrt_v, g * fac, m0 * fac, rsqrt_v)


def mlp_units(layers: tuple, skip: jax.Array, x: tuple[jax.Array, ...]) -> jax.Array:
    """MLP(x) + skip · x, written unit by unit as S-shaped arrays combined with scalar weights, so
    that XLA fuses features, MLP and skip into one elementwise loop with no (H,) + S intermediates."""
    h = list(x)
    for i, (w, b) in enumerate(layers):
        h = [sum(w[j, k] * h[j] for j in range(len(h))) + b[k] for k in range(w.shape[1])]
        h = h if i == len(layers) - 1 else [jax.nn.relu(hk) for hk in h]
    return sum(skip[f] * x[f] for f in range(len(x))) + h[0]


def mlp_stacked(layers: tuple, skip: jax.Array, x: tuple[jax.Array, ...]) -> jax.Array:
    """The same function as `mlp_units`, on an S + (F,) stack with matrix products."""
    x_SxF = jnp.stack(x, axis=-1)
    lead = (1,) * (x_SxF.ndim - 1)
    h = x_SxF
    for i, (w, b) in enumerate(layers):
        h = jnp.matmul(h, w, precision=jax.lax.Precision.HIGHEST) + b.reshape(lead + b.shape)
        h = h if i == len(layers) - 1 else jax.nn.relu(h)
    return h[..., 0] + jnp.matmul(x_SxF, skip, precision=jax.lax.Precision.HIGHEST)


@jax.custom_vjp
def mlp_direction(layers: tuple, skip: jax.Array, x: tuple[jax.Array, ...]) -> jax.Array:
    """MLP(x) + skip · x for features x (a tuple of F arrays of shape S) and layers ((w, b), ...).

    The forward pass is unit by unit (`mlp_units`: one fused loop, fast in a train step); the
    backward pass differentiates the stacked form (`mlp_stacked`), whose weight gradients are a
    few matrix products. Differentiating the unit-by-unit form instead gives XLA one reduction per
    weight, each re-fusing the whole forward loop: compiling two meta-gradient steps of a 4-tensor
    model took 7 minutes and 16 GB on CPU."""
    return mlp_units(layers, skip, x)


def _mlp_direction_fwd(layers, skip, x):
    return mlp_units(layers, skip, x), (layers, skip, x)


def _mlp_direction_bwd(res, ct):
    return jax.vjp(mlp_stacked, *res)[1](ct)


mlp_direction.defvjp(_mlp_direction_fwd, _mlp_direction_bwd)


def schedule_features(count: jax.Array, num_steps: int | None) -> jax.Array:
    """tanh(4·(t/T − c)) at the 5 points c of SCHEDULE_POINTS (t/T = 0 without num_steps)."""
    frac = jnp.zeros((), jnp.float32) if num_steps is None else count.astype(jnp.float32) / num_steps
    return jnp.tanh(4.0 * (frac - jnp.asarray(SCHEDULE_POINTS, jnp.float32)))


def num_matrices(params: PyTree) -> int:
    """The number of tensors of rank >= 2 in `params` (static)."""
    return sum(1 for p in jax.tree.leaves(params) if jnp.ndim(p) >= 2)


def model_feature(params: PyTree) -> jax.Array:
    """log(number of tensors of rank >= 2, at least 1)/log(16): 1 for a 16-matrix model (static)."""
    return jnp.asarray([math.log(max(num_matrices(params), 1)) / math.log(16.0)], jnp.float32)


def fan_in(shape: tuple[int, ...]) -> int:
    """The product of all axes but the last (flax's kernel layout); 1 for vectors and scalars."""
    return math.prod(shape[:-1]) if len(shape) >= 2 else 1


def shape_features(shape: tuple[int, ...]) -> jax.Array:
    """(is a matrix, log(fan-in)/log(1024)) of a tensor (`fan_in`)."""
    return jnp.asarray([float(len(shape) >= 2), math.log(fan_in(shape)) / math.log(1024.0)], jnp.float32)
