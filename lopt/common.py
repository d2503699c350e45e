"""Pieces shared by the learned-optimizer architectures: small MLPs and the μP update scaling."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from lopt import mup

PyTree = Any


def init_mlp(key: jax.Array, sizes: Sequence[int], lead: tuple[int, ...] = ()) -> dict:
    """LeCun-normal weights and zero biases for an MLP with layer sizes `sizes`.

    `lead` prepends axes to every array (a bank of MLPs)."""
    params = {}
    for i, (k, fi, fo) in enumerate(zip(jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:])):
        params[f"w{i}"] = jax.random.normal(k, lead + (fi, fo), jnp.float32) / jnp.sqrt(jnp.float32(fi))
        params[f"b{i}"] = jnp.zeros(lead + (fo,), jnp.float32)
    return params


def add_bias(h: jax.Array, b: jax.Array) -> jax.Array:
    """h (..., n) + b (n,), broadcasting explicitly (works under strict rank promotion)."""
    return h + b.reshape((1,) * (h.ndim - 1) + b.shape)


def apply_mlp_tail(params: dict, h: jax.Array, start: int = 1) -> jax.Array:
    """Layers `start`, `start`+1, … of an MLP (ReLU between, none after the last)."""
    n = len([k for k in params if k.startswith("w")])
    for i in range(start, n):
        h = jax.nn.relu(h) if i > 0 else h
        h = add_bias(dense(h, params[f"w{i}"]), params[f"b{i}"])
    return h


def mup_mults(params: PyTree, roles: PyTree | None, fan_in: PyTree | None) -> PyTree | None:
    """Per-tensor multipliers for these params, or None without μP metadata."""
    if roles is None and fan_in is None:
        return None
    if roles is None or fan_in is None:
        raise ValueError("μP needs both roles= and fan_in= (see lopt.infer_roles)")
    mults = mup.multipliers(roles, fan_in)
    mup.check_structure(mults, params)
    return mults


def require_params(params: PyTree | None, name: str) -> None:
    if params is None:
        raise ValueError(f"{name}.update needs params: call update(grads, state, params)")


SMALL_DENSE = 64  # weights with at most this many entries run as fused multiply-adds


def dense(x: jax.Array, w: jax.Array) -> jax.Array:
    """x[..., i] @ w[i, j]. Tiny weights (hidden sizes ≤ 8) are unrolled into elementwise
    multiply-adds that XLA fuses with the surrounding feature math, which on CPU is several
    times faster than a matmul with a 4-wide inner dimension over millions of rows."""
    if w.size > SMALL_DENSE:
        return x @ w
    lead = (1,) * (x.ndim - 1)
    return sum(x[..., i, None] * w[i].reshape(lead + w.shape[1:]) for i in range(w.shape[0]))
