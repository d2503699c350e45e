"""Reductions of an unroll: antithetic ES gradients, means over the slots whose terms are
finite, and the flat metrics every estimator reports.

>>> import jax.numpy as jnp
>>> mean, masked, dropped = slot_mean({"w": jnp.asarray([[1.0], [jnp.nan], [3.0]])})
>>> float(mean["w"][0]), int(masked), bool(dropped)
(2.0, 1, False)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from estimators.unroll import Slots, Unrolled
from lopt.common import all_finite

PyTree = Any


def unroll_metrics(out: Unrolled, grad: PyTree, mean_step: jax.Array, masked: jax.Array,
                   dropped: jax.Array) -> dict[str, jax.Array]:
    """Flat, slash-separated metrics of one estimate (left on device); `mean_step` is the mean
    step counter of the inner problems where the unroll left them, `masked` and `dropped` as
    `Estimator.estimate` defines them."""
    gnorm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grad)))
    return {
        "meta/loss": jnp.mean(out.loss_NxM),
        "meta/grad_norm": gnorm,
        "meta/masked": jnp.asarray(masked, jnp.int32),
        "meta/dropped": jnp.asarray(dropped, jnp.int32),
        "inner/resets": jnp.sum(out.reset_N),
        "inner/diverged": jnp.sum(out.diverged_N),
        "inner/dead": jnp.sum(out.dead_N),
        "inner/mean_step": mean_step,
    }


def slot_metrics(slots: Slots, out: Unrolled, grad: PyTree, masked: jax.Array,
                 dropped: jax.Array) -> dict[str, jax.Array]:
    """`unroll_metrics` of a truncated estimator's slots."""
    return unroll_metrics(out, grad, jnp.mean(slots.step.astype(jnp.float32)), masked, dropped)


def antithetic_grad(out: Unrolled, w_before: PyTree, w_after: PyTree, sigma: jax.Array
                    ) -> tuple[PyTree, jax.Array, jax.Array]:
    """ES gradient of a population of antithetic pairs: the mean over slots of
    [w_before·(L⁺−L⁻)_before + w_after·(L⁺−L⁻)_after] / (2σ²), w_* leaves (N, ...), over the
    slots whose term is finite (`slot_mean`): (gradient, masked count, dropped)."""
    d_before = out.before_NxM[:, 0] - out.before_NxM[:, 1]
    d_after = out.after_NxM[:, 0] - out.after_NxM[:, 1]
    n = d_before.shape[0]

    def leaf(wb, wa):
        shape = (n,) + (1,) * (wb.ndim - 1)
        total = wb * d_before.reshape(shape).astype(wb.dtype) + wa * d_after.reshape(shape).astype(wa.dtype)
        return total / (2 * sigma**2)

    return slot_mean(jax.tree.map(leaf, w_before, w_after))


def after_reset(out: Unrolled) -> jax.Array:
    """(N,) bool: the slot restarted inside the truncation."""
    return out.reset_N > 0


def slot_mean(per_slot: PyTree, valid_N: jax.Array | None = None) -> tuple[PyTree, jax.Array, jax.Array]:
    """Mean over slots (axis 0 of every leaf) of the slots whose contribution is finite (and
    valid): (mean, number masked, dropped = no slot left, in which case the mean is zeros)."""
    leaves = jax.tree.leaves(per_slot)
    n = leaves[0].shape[0]
    finite_N = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x.reshape(n, -1)), axis=1) for x in leaves]), axis=0)
    if valid_N is not None:
        finite_N = finite_N & valid_N
    count = jnp.sum(finite_N)

    def leaf(x):
        keep = finite_N.reshape((n,) + (1,) * (x.ndim - 1))
        return jnp.sum(jnp.where(keep, x, jnp.zeros_like(x)), axis=0) / jnp.maximum(count, 1).astype(x.dtype)

    return jax.tree.map(leaf, per_slot), n - count, count == 0


def finite_or_zero(grad: PyTree) -> tuple[PyTree, jax.Array]:
    """The gradient, or zeros if any entry is non-finite; also whether it was dropped (full ES,
    whose step is one vector for the whole population)."""
    finite = all_finite(grad)
    return jax.tree.map(lambda g: jnp.where(finite, g, jnp.zeros_like(g)), grad), ~finite
