"""Celo2's per-tensor numerics (`lopt.celo2` builds the optimizer from them).

Per parameter tensor: one momentum m and one second moment v (`Celo2Acc`, `update_acc`), the
gradient check and clip (`clip_gradient`), the 6 per-element features of `FEATURE_NAMES`
(`raw_features`), the per-tensor-normalized MLP direction (`direction`, on `lopt.celo_features`'
fused `mlp_direction`), the Adam branch's direction (`adam_direction`) and Muon's Newton–Schulz
orthogonalization (`newton_schulz`).

A non-finite gradient is made harmless here: `clip_gradient` reports it per tensor and zeroes it,
and `update_acc` then leaves the accumulators exactly as they were (its decays become 1).

>>> import jax.numpy as jnp
>>> g, ok = clip_gradient(jnp.asarray([[1.0, 2e3], [jnp.nan, 0.0]]))
>>> g.tolist(), bool(ok)
([[1.0, 1000.0], [0.0, 0.0]], False)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lopt import common
from lopt.celo_features import mlp_direction

# The Adam direction m/√v comes first: the skip's one weight at init.
FEATURE_NAMES = ("m_rsqrt_v", "g_rsqrt_v", "g", "m", "p", "rsqrt_v")
NUM_FEATURES = len(FEATURE_NAMES)  # 6
ADAM_FEATURE = FEATURE_NAMES.index("m_rsqrt_v")
GRAD_CLIP = 1000.0  # elementwise, as Celo2
V_EPS = 1e-30  # rsqrt(v) is 0 at v == 0 (never a nonzero gradient): only zero needs guarding
NORM_EPS = 1e-20  # inside each feature's mean square: features are scale-free down to an RMS of ~1e-10
OUT_EPS = 1e-12  # inside the direction's mean square
ADAM_EPS = 1e-8  # the Adam branch's ε, added to √v̂ as optax's
NS_COEFFS = (3.4445, -4.7750, 2.0315)  # Muon's quintic Newton–Schulz iteration
NS_STEPS = 5
NS_EPS = 1e-7


class Celo2Acc(NamedTuple):
    """Accumulators of one tensor of shape S."""

    m: jax.Array  # S: EMA of g
    v: jax.Array  # S: EMA of g²
    count: jax.Array  # (): the updates with a finite gradient (the Adam branch's bias correction)


def init_acc(p: jax.Array) -> Celo2Acc:
    dt = common.acc_dtype(p)
    return Celo2Acc(jnp.zeros(p.shape, dt), jnp.zeros(p.shape, dt), jnp.zeros((), jnp.int32))


def is_finite(g: jax.Array) -> jax.Array:
    """Whether every entry of g is finite, as one max-reduction (max |g| is finite iff every entry
    is: cheaper on CPU than reducing a boolean array); True for an empty tensor."""
    return jnp.asarray(True) if g.size == 0 else jnp.isfinite(jnp.max(jnp.abs(g)))


def clip_gradient(g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(g clipped to ±GRAD_CLIP with its non-finite entries zeroed, `is_finite(g)`)."""
    return jnp.where(jnp.isfinite(g), jnp.clip(g, -GRAD_CLIP, GRAD_CLIP), 0.0).astype(g.dtype), is_finite(g)


def update_acc(acc: Celo2Acc, g: jax.Array, ok: jax.Array, b1: float, b2: float) -> Celo2Acc:
    """One EMA step with the (clipped, finite) gradient g; with `ok` False the decays are 1 and the
    accumulators stay exactly as they were (1·m + 0·g == m)."""
    g = g.astype(acc.v.dtype)
    b1 = jnp.where(ok, b1, 1.0).astype(g.dtype)
    b2 = jnp.where(ok, b2, 1.0).astype(g.dtype)
    return Celo2Acc(b1 * acc.m + (1 - b1) * g, b2 * acc.v + (1 - b2) * (g * g), acc.count + ok.astype(jnp.int32))


def rsqrt(x: jax.Array) -> jax.Array:
    """rsqrt(x) for x > 0 and 0 where x == 0, with no infinite derivative anywhere."""
    pos = x > V_EPS
    return jnp.where(pos, jax.lax.rsqrt(jnp.where(pos, x, 1.0)), 0.0)


def sqrt(x: jax.Array) -> jax.Array:
    """sqrt(x) with a zero (not infinite) derivative at x == 0."""
    pos = x > V_EPS
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def raw_features(p: jax.Array, g: jax.Array, acc: Celo2Acc) -> tuple[jax.Array, ...]:
    """The 6 un-normalized features of one tensor (order: FEATURE_NAMES), each of its shape S;
    `acc` already includes g."""
    p, g = p.astype(acc.v.dtype), g.astype(acc.v.dtype)
    rv = rsqrt(acc.v)
    return (acc.m * rv, g * rv, g, acc.m, p, rv)


def direction(mlp: dict, skip: jax.Array, x: tuple[jax.Array, ...]) -> jax.Array:
    """MLP(x̂) + skip · x̂ for the features x̂ = x / RMS(x) (each over the whole tensor): the RMS are
    folded into the first layer's and the skip's weights, and the MLP runs unit by unit, so that
    XLA fuses it with the feature math into one elementwise loop (`celo_features.mlp_direction`)."""
    inv_rms = jax.lax.rsqrt(jnp.stack([jnp.mean(xf * xf) for xf in x]) + NORM_EPS)
    n_layers = len([k for k in mlp if k.startswith("w")])
    layers = ((mlp["w0"] * inv_rms[:, None].astype(mlp["w0"].dtype), mlp["b0"]),
              *((mlp[f"w{i}"], mlp[f"b{i}"]) for i in range(1, n_layers)))
    return mlp_direction(layers, skip * inv_rms.astype(skip.dtype), x)


def unit_rms(d: jax.Array) -> jax.Array:
    """d rescaled to RMS 1 over the tensor (0 stays 0)."""
    return d * jax.lax.rsqrt(jnp.mean(d * d) + OUT_EPS)


def newton_schulz(d: jax.Array, steps: int = NS_STEPS) -> jax.Array:
    """Muon's orthogonalization of a tensor of rank >= 2: as a matrix (all axes but the last, the
    fan-out, flattened: conv kernels (kh, kw, in, out) become (kh·kw·in, out)), transposed to be
    wide, divided by its Frobenius norm, then `steps` quintic iterations X ← aX + (bA + cA²)X with
    A = XXᵀ. Its singular values end near 1 (Muon's band, about [0.7, 1.2]), not at it."""
    a, b, c = NS_COEFFS
    x = d.reshape(-1, d.shape[-1])
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / (sqrt(jnp.sum(x * x)) + NS_EPS)
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * (A @ A)) @ x
    return (x.T if tall else x).reshape(d.shape)


def adam_direction(acc: Celo2Acc, b1: float, b2: float) -> jax.Array:
    """Adam's bias-corrected m̂ / (√v̂ + ε) over the tensor's own count of finite updates."""
    t = jnp.maximum(acc.count, 1).astype(acc.v.dtype)
    m_hat = acc.m / (1 - jnp.asarray(b1, acc.v.dtype) ** t)
    v_hat = acc.v / (1 - jnp.asarray(b2, acc.v.dtype) ** t)
    return m_hat / (sqrt(v_hat) + ADAM_EPS)
