"""The per-parameter accumulators and features of the μLO family, read by `lopt.mulo` and `lopt.velo`.

For one tensor p with gradient g, the accumulators are: three momenta m_k, the second moment v,
and three Adafactor factored second moments (row and column means of g², one per decay). From
them come 28 features (`FEATURE_NAMES`), each divided by its RMS over the tensor, plus 11 time
features tanh(t/x − 1). Decays arrive as arrays so that they can be meta-learned.
`FEATURE_VERSION` is the file version of both architectures. Celo's own, smaller set of
accumulators and features is `lopt.celo_features`.

>>> import jax.numpy as jnp
>>> acc = init_accumulators(jnp.zeros((4, 3)))
>>> acc.mom.shape, acc.row.shape, acc.col.shape
((3, 4, 3), (3, 4), (3, 3))
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lopt import common

FEATURE_VERSION = 1
NUM_DECAYS = 3
EPS = 1e-8
TIME_SCALES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4, 3e4, 1e5)
FEATURE_NAMES = (
    ("g", "p")
    + tuple(f"m{k}" for k in range(3))
    + ("v",)
    + tuple(f"m{k}_rsqrt_v" for k in range(3))
    + ("rsqrt_v",)
    + tuple(f"g_fac{k}" for k in range(3))
    + tuple(f"row{k}" for k in range(3))
    + tuple(f"col{k}" for k in range(3))
    + tuple(f"rsqrt_row{k}" for k in range(3))
    + tuple(f"rsqrt_col{k}" for k in range(3))
    + tuple(f"m{k}_fac{k}" for k in range(3))
)
NUM_FEATURES = len(FEATURE_NAMES)  # 28
NUM_TIME_FEATURES = len(TIME_SCALES)  # 11


class Accumulators(NamedTuple):
    """Accumulators of one tensor of shape S. For tensors of rank < 2, `row` holds the full
    (unfactored) second moment per decay and `col` is unused."""

    mom: jax.Array  # (3,) + S
    v: jax.Array  # S
    row: jax.Array  # (3,) + S[:-1], or (3,) + S for rank < 2
    col: jax.Array  # (3,) + S[:-2] + S[-1:], or (3,) for rank < 2


def _factored(p: jax.Array) -> bool:
    return p.ndim >= 2


def init_accumulators(p: jax.Array) -> Accumulators:
    s, dt = p.shape, common.acc_dtype(p)
    if _factored(p):
        row = jnp.zeros((NUM_DECAYS,) + s[:-1], dt)
        col = jnp.zeros((NUM_DECAYS,) + s[:-2] + s[-1:], dt)
    else:
        row, col = jnp.zeros((NUM_DECAYS,) + s, dt), jnp.zeros((NUM_DECAYS,), dt)
    return Accumulators(jnp.zeros((NUM_DECAYS,) + s, dt), jnp.zeros(s, dt), row, col)


def _lead(x: jax.Array, ndim: int) -> jax.Array:
    """Reshapes a (3,) decay vector to broadcast against a (3,) + shape-of-rank-ndim array."""
    return x.reshape((-1,) + (1,) * ndim)


def update_accumulators(
    acc: Accumulators, g: jax.Array, mom_decay_3: jax.Array, rms_decay: jax.Array, fac_decay_3: jax.Array
) -> Accumulators:
    """One EMA step of every accumulator with gradient g, in the accumulators' dtype (decays are
    cast to it, so that float64 decays under x64 cannot promote a float32 state)."""
    dt = acc.v.dtype
    g = g.astype(dt)
    mom_decay_3, rms_decay, fac_decay_3 = (jnp.asarray(d).astype(dt) for d in (mom_decay_3, rms_decay, fac_decay_3))
    b_m = _lead(mom_decay_3, g.ndim)
    mom = b_m * acc.mom + (1 - b_m) * g[None]
    v = rms_decay * acc.v + (1 - rms_decay) * g * g
    g2 = g * g + 1e-30
    if _factored(g):
        b_r, b_c = _lead(fac_decay_3, g.ndim - 1), _lead(fac_decay_3, g.ndim - 1)
        row = b_r * acc.row + (1 - b_r) * g2.mean(axis=-1)[None]
        col = b_c * acc.col + (1 - b_c) * g2.mean(axis=-2)[None]
    else:
        b_f = _lead(fac_decay_3, g.ndim)
        row, col = b_f * acc.row + (1 - b_f) * g2[None], acc.col
    return Accumulators(mom, v, row, col)


def _factored_rsqrt(acc: Accumulators, ndim: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(rsqrt of the factored second moment, row stat, col stat), all broadcast to (3,) + S."""
    if ndim >= 2:
        row_mean = acc.row.mean(axis=-1, keepdims=True)
        row_factor = (_floored(jax.lax.rsqrt, acc.row) * _floored(jnp.sqrt, row_mean))[..., None]
        col_factor = _floored(jax.lax.rsqrt, acc.col)[..., None, :]
        row_b = jnp.broadcast_to(acc.row[..., None], acc.mom.shape)
        col_b = jnp.broadcast_to(acc.col[..., None, :], acc.mom.shape)
        return row_factor * col_factor, row_b, col_b
    return _floored(jax.lax.rsqrt, acc.row), acc.row, acc.row


def _floored(fn, x: jax.Array, floor: float = 1e-20) -> jax.Array:
    """fn(max(x, floor)) through a select, so that the derivative is never taken below the
    floor: rsqrt' of an all-zero-gradient statistic (~1e-30) overflows float32 and turns
    meta-gradients into NaN."""
    return fn(jnp.where(x > floor, x, floor))


def _elementwise(p: jax.Array, g: jax.Array, acc: Accumulators) -> tuple[jax.Array, jax.Array]:
    """(g, p, m, v, m/√v, 1/√v, g·fac, m·fac) stacked as (16,) + S, and the factored rsqrt."""
    p, g = p.astype(acc.v.dtype), g.astype(acc.v.dtype)
    rsqrt_v = jax.lax.rsqrt(acc.v + EPS)
    fac_rsqrt, _, _ = _factored_rsqrt(acc, p.ndim)
    return jnp.concatenate(
        [g[None], p[None], acc.mom, acc.v[None], acc.mom * rsqrt_v[None], rsqrt_v[None], g[None] * fac_rsqrt,
         acc.mom * fac_rsqrt],
        axis=0,
    )


# Slices of FEATURE_NAMES: the elementwise features, and the row and column statistics.
ELEMENTWISE = (slice(0, 13), slice(25, 28))
ROWS = (slice(13, 16), slice(19, 22))
COLS = (slice(16, 19), slice(22, 25))


def _rows_of(w: jax.Array, parts: tuple[slice, ...]) -> jax.Array:
    return jnp.concatenate([w[s] for s in parts], axis=0)


def raw_features(p: jax.Array, g: jax.Array, acc: Accumulators) -> jax.Array:
    """The 28 un-normalized features of one tensor, stacked as (28,) + S (order: FEATURE_NAMES).

    `acc` must already include this step's gradient."""
    elem = _elementwise(p, g, acc)
    _, row_b, col_b = _factored_rsqrt(acc, p.ndim)
    stats = [row_b, col_b, jax.lax.rsqrt(row_b + EPS), jax.lax.rsqrt(col_b + EPS)]
    return jnp.concatenate([elem[:13], *stats, elem[13:]], axis=0)


def _project(x_FxS: jax.Array, w_FxH: jax.Array, hidden_first: bool) -> jax.Array:
    """Σ_f x[f] · w[f, :]: S + (H,), or (H,) + S unrolled over f with hidden_first."""
    if not hidden_first:
        return jnp.tensordot(x_FxS, w_FxH, axes=(0, 0))
    lead = (1,) * (x_FxS.ndim - 1)
    return sum(w_FxH[f].reshape((-1,) + lead) * x_FxS[f][None] for f in range(x_FxS.shape[0]))


def project_features(
    p: jax.Array, g: jax.Array, acc: Accumulators, w_FxH: jax.Array, hidden_first: bool = False
) -> jax.Array:
    """Σ_f normalized_f · w[f] for one tensor of shape S: a first MLP layer (no bias) over
    `normalized_features`, which it equals up to rounding. The result is S + (H,), or (H,) + S
    with hidden_first (see `lopt.common.is_hidden_first`).

    For factored tensors the 12 row and column statistics are constant along one axis, so they
    are normalized and projected on their (…, rows) and (…, cols) vectors and broadcast after the
    projection: 16 per-parameter features instead of 28."""
    if p.ndim < 2:
        raw = raw_features(p, g, acc)
        return _project(raw, w_FxH / feature_rms(raw)[:, None], hidden_first)
    elem = _elementwise(p, g, acc)
    rows = jnp.concatenate([acc.row, jax.lax.rsqrt(acc.row + EPS)], axis=0)  # (6,) + S[:-1]
    cols = jnp.concatenate([acc.col, jax.lax.rsqrt(acc.col + EPS)], axis=0)  # (6,) + S[:-2] + S[-1:]
    h_e = _project(elem, _rows_of(w_FxH, ELEMENTWISE) / feature_rms(elem)[:, None], hidden_first)
    h_r = _project(rows, _rows_of(w_FxH, ROWS) / feature_rms(rows)[:, None], hidden_first)
    h_c = _project(cols, _rows_of(w_FxH, COLS) / feature_rms(cols)[:, None], hidden_first)
    if hidden_first:
        return h_e + h_r[..., :, None] + h_c[..., None, :]
    return h_e + h_r[..., :, None, :] + h_c[..., None, :, :]


# Column order of `feature_matrix` (indices into FEATURE_NAMES): the 16 elementwise features,
# then the row statistics (row, rsqrt_row) and the column statistics (col, rsqrt_col).
MATRIX_ORDER = (*range(13), 25, 26, 27, 13, 14, 15, 19, 20, 21, 16, 17, 18, 22, 23, 24)


def feature_matrix(p: jax.Array, g: jax.Array, acc: Accumulators) -> tuple[jax.Array, jax.Array]:
    """(x, rms) for a tensor of rank >= 2: the 28 raw features as an (N, 28) matrix, features
    last in `MATRIX_ORDER`, and each column's RMS over the tensor.

    Built for XLA:CPU: each transposing concatenate has at most 8 operands, so it fuses into one
    pass with the feature math (XLA fuses no larger concatenate), and x is 2-D, so the MLP that
    reads it fuses into one YNNPACK kernel. The RMS of the elementwise features comes from one
    reduction per block, not from x, so that x has a single reader."""
    if p.ndim < 2:
        raise ValueError(f"feature_matrix needs a tensor of rank >= 2, got shape {p.shape}")
    p, g = p.astype(acc.v.dtype), g.astype(acc.v.dtype)
    rsqrt_v = jax.lax.rsqrt(acc.v + EPS)
    fac_rsqrt, _, _ = _factored_rsqrt(acc, p.ndim)
    elem = [g[None], p[None], acc.mom, acc.v[None], acc.mom * rsqrt_v[None], rsqrt_v[None], g[None] * fac_rsqrt,
            acc.mom * fac_rsqrt]
    rows = jnp.concatenate([acc.row, jax.lax.rsqrt(acc.row + EPS)], axis=0)  # (6,) + S[:-1]
    cols = jnp.concatenate([acc.col, jax.lax.rsqrt(acc.col + EPS)], axis=0)  # (6,) + S[:-2] + S[-1:]
    stats = [jnp.broadcast_to(rows[..., None], (6,) + p.shape), jnp.broadcast_to(cols[..., None, :], (6,) + p.shape)]
    axes = tuple(range(1, p.ndim + 1))
    mean_sq = jnp.concatenate([jnp.mean(b * b, axis=axes) for b in elem])
    rms = jnp.concatenate([jnp.sqrt(mean_sq + EPS), feature_rms(rows), feature_rms(cols)])
    x = jnp.concatenate(
        [jnp.moveaxis(jnp.concatenate(elem, 0), 0, -1), jnp.moveaxis(jnp.concatenate(stats, 0), 0, -1)], axis=-1
    )
    return x.reshape(-1, NUM_FEATURES), rms


def feature_rms(feats_FxS: jax.Array) -> jax.Array:
    """Per-feature RMS over the tensor, shape (F,)."""
    axes = tuple(range(1, feats_FxS.ndim))
    return jnp.sqrt(jnp.mean(feats_FxS * feats_FxS, axis=axes) + EPS)


def normalized_features(p: jax.Array, g: jax.Array, acc: Accumulators) -> jax.Array:
    """The 28 features, each divided by its RMS over the tensor: (28,) + S."""
    feats = raw_features(p, g, acc)
    return feats / _lead(feature_rms(feats), p.ndim)


def time_features(step: jax.Array) -> jax.Array:
    """tanh(t/x − 1) for the 11 time scales x, shape (11,)."""
    t = jnp.asarray(step, jnp.float32)
    return jnp.tanh(t / jnp.asarray(TIME_SCALES, jnp.float32) - 1.0)
