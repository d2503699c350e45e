"""Numerics shared by the learned-optimizer architectures (Celo, μLO, VeLO, learnable Adam).

Small per-parameter MLPs (`init_mlp`, which initializes those of Celo, μLO and VeLO, and their
hidden-first or fused evaluation), the accumulators' dtype, μLO's decay reparametrization, the
params check and a finiteness test. Each family's own features live in its feature module
(`lopt.mulo_features`, `lopt.celo_features`); μP's update scaling is `lopt.mup.scale_by_mup`,
chained after each architecture's step."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

PyTree = Any


def init_mlp(key: jax.Array, sizes: Sequence[int], lead: tuple[int, ...] = ()) -> dict:
    """LeCun-normal weights and zero biases for an MLP with layer sizes `sizes`.

    `lead` prepends axes to every array (a bank of MLPs)."""
    params = {}
    for i, (k, fi, fo) in enumerate(zip(jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:])):
        params[f"w{i}"] = jax.random.normal(k, lead + (fi, fo), jnp.float32) / jnp.sqrt(jnp.float32(fi))
        params[f"b{i}"] = jnp.zeros(lead + (fo,), jnp.float32)
    return params


def acc_dtype(p: jax.Array) -> jnp.dtype:
    """Accumulators are kept in at least float32, whatever the params' dtype."""
    return jnp.promote_types(p.dtype, jnp.float32)


def decay_from_logit(theta_k: jax.Array, base: jax.Array) -> jax.Array:
    """μLO's reparametrization 1 − (1 − base)·exp(10·θ) of a learned decay, kept inside [0, 1 − 1e-6]."""
    return jnp.clip(1.0 - (1.0 - base) * jnp.exp(10.0 * theta_k), 0.0, 1.0 - 1e-6)


UNROLL_MAX = 8  # per-parameter MLPs this narrow run hidden-first as unrolled multiply-adds


def is_hidden_first(hidden_size: int) -> bool:
    """Whether a per-parameter MLP of this width runs hidden-first.

    Hidden-first, the activations of a tensor of shape S are (H,) + S and each layer is an
    unrolled sum of H scaled copies of the tensor: XLA fuses them with the feature math and
    vectorizes along the tensor's own minor axis. A matmul with a 4-wide inner or outer dimension
    over many rows vectorizes badly on CPU; on the throughput benchmark's population, hidden-first
    is about 3× faster at hidden size 4."""
    return hidden_size <= UNROLL_MAX


def add_bias(h: jax.Array, b: jax.Array, hidden_first: bool = False) -> jax.Array:
    """h + b, with b (n,) on h's last axis, or on its first with hidden_first (explicit broadcast,
    so that it works under strict rank promotion)."""
    if hidden_first:
        return h + b.reshape(b.shape + (1,) * (h.ndim - 1))
    return h + b.reshape((1,) * (h.ndim - 1) + b.shape)


def dense(h: jax.Array, w: jax.Array, hidden_first: bool = False) -> jax.Array:
    """h[..., i] @ w[i, j]; hidden_first: Σ_i w[i, j] · h[i, ...] unrolled over i, giving (J,) + S."""
    if not hidden_first:
        return h @ w
    lead = (1,) * (h.ndim - 1)
    return sum(w[i].reshape(w.shape[1:] + lead) * h[i][None] for i in range(w.shape[0]))


def apply_mlp_tail(params: dict, h: jax.Array, start: int = 1, hidden_first: bool = False) -> jax.Array:
    """Layers `start`, `start`+1, … of an MLP (ReLU between, none after the last)."""
    n = len([k for k in params if k.startswith("w")])
    for i in range(start, n):
        h = jax.nn.relu(h) if i > 0 else h
        h = add_bias(dense(h, params[f"w{i}"], hidden_first), params[f"b{i}"], hidden_first)
    return h


def dense_pairs(h: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """h @ w + b for a 2-D h, written as a dot into zero-interleaved columns summed in pairs.

    The same numbers as `h @ w` (each sum adds an exact zero), but XLA:CPU then fuses the whole
    MLP, this layer included, into one YNNPACK kernel whose root is the reduction: a plain dot
    whose narrow result is sliced is emitted on its own, and so is every layer before it."""
    w_pad = jnp.stack([w, jnp.zeros_like(w)], axis=-1).reshape(w.shape[0], -1)
    return add_bias((h @ w_pad).reshape(h.shape[:-1] + w.shape[1:] + (2,)).sum(-1), b)


def require_params(params: PyTree | None, name: str) -> None:
    """Raises the one clear error for an `update` called without params (learned steps read them)."""
    if params is None:
        raise ValueError(f"{name}.update needs params: call update(grads, state, params)")


def all_finite(tree: PyTree) -> jax.Array:
    """Whether every entry of every leaf of `tree` is finite (True for a tree without leaves)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
