"""The population of a truncated estimator and one truncation of it: slots, the unroll, the divergence rule.

A population holds `num_tasks` slots; each slot runs `M` members that share the task, the data
and every key and differ only in the meta-parameters they apply (M=2 for an antithetic pair θ±ε,
M=1 for the gradient-based estimators). Slots are step-unlocked: each has its own step counter
and horizon, and a slot whose horizon ends restarts on a freshly sampled task inside the
truncation. `unroll` runs every slot through one truncation and returns `Unrolled`, what the
estimators reduce into a gradient (`estimators.reduce`); `SlotState` is the state of the
estimators (TBPTT, BMG) that keep nothing per slot but the slots.

Divergence (one rule for every estimator): a member whose per-step objective is non-finite or
reaches `max_loss` is dead for the rest of its inner problem. Every objective term it produces
from that step on, the diverging one included, is the constant `max_loss`; its state is frozen
and cut from the backward pass, so no NaN or inf reaches a gradient. Its twin (the other member
of an antithetic pair) runs on unaffected, and the slot keeps its horizon: problem boundaries
never depend on θ. Each estimator therefore estimates its usual quantity for the capped
objective ℓ̃_t = ℓ_t before the first divergence, max_loss from it on: the ES estimators are
unbiased for its Gaussian smoothing, which rises toward θ that diverge, so a perturbation that
diverges pushes θ away; TBPTT and BMG differentiate it exactly (a diverging step adds nothing but
a constant). The price is the dead members' steps, computed and discarded until the horizon ends
(`inner/dead` counts the dead members after each estimate).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from estimators.protocol import Problem, PyTree, Truncation
from estimators.sharding import constrain


@struct.dataclass
class Slots:
    """The population: inner states (N, M, ...), per-slot step counters and horizons (N,), and
    which members are dead (N, M) under the divergence rule."""

    inner: PyTree
    step: jax.Array
    horizon: jax.Array
    dead: jax.Array


@struct.dataclass
class SlotState:
    """The state of an estimator that keeps nothing per slot but the slots (TBPTT, BMG)."""

    slots: Slots


@struct.dataclass
class Unrolled:
    """What one truncation produced, per slot: objective split at the first reset, and flags."""

    before_NxM: jax.Array  # objective terms of the problem the slot started the truncation on
    after_NxM: jax.Array  # ... and of the problems started inside the truncation
    reset_N: jax.Array  # number of resets inside the truncation
    diverged_N: jax.Array  # number of members that diverged inside the truncation
    loss_NxM: jax.Array  # mean per-step objective, capped (for logging)
    dead_N: jax.Array  # number of dead members at the end of the truncation


def tree_select(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    """Leafwise where(pred, a, b), with a scalar predicate broadcast explicitly."""
    return jax.tree.map(lambda a, b: jnp.where(jnp.broadcast_to(pred, jnp.shape(a)), a, b), on_true, on_false)


def broadcast_theta(theta: PyTree, n: int) -> PyTree:
    """θ for n single-member slots: leaves (n, 1, ...), differentiable."""
    return jax.tree.map(lambda t: jnp.broadcast_to(t, (n, 1) + jnp.shape(t)), theta)


def antithetic(theta: PyTree, eps: PyTree) -> PyTree:
    """θ for N antithetic pairs: eps leaves (N, ...) → leaves (N, 2, ...) holding (θ+ε, θ−ε)."""
    return jax.tree.map(lambda t, e: jnp.stack([t[None] + e, t[None] - e], axis=1), theta, eps)


def perturbations(key: jax.Array, theta: PyTree, n: int, sigma: jax.Array) -> PyTree:
    """n Gaussian perturbations of θ with std sigma, drawn leaf by leaf: leaves (n, *shape)."""
    leaves, treedef = jax.tree.flatten(theta)
    keys = jax.random.split(key, len(leaves))
    eps = [sigma * jax.random.normal(k, (n,) + jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, eps)


def init_slots(problem: Problem, trunc: Truncation, theta: PyTree, key: jax.Array, n: int, members: int,
               particle_axis: int = 0) -> Slots:
    """n slots on fresh tasks; unless lockstep, the first horizon is cut short at random so that
    slots restart at different times and the population covers every phase of inner training.
    Under a mesh, the slots (or, with `particle_axis=1`, the members) are sharded."""
    k_h, k_cut, k_init = jax.random.split(key, 3)
    horizon = trunc.sample_horizon(k_h, (n,))
    if not trunc.lockstep:
        horizon = jnp.floor(jax.random.uniform(k_cut, (n,)) * horizon).astype(jnp.int32) + 1

    def one(k):
        s = problem.init(theta, k)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (members,) + jnp.shape(x)), s)

    inner = jax.vmap(one)(jax.random.split(k_init, n))
    slots = Slots(inner=inner, step=jnp.zeros((n,), jnp.int32), horizon=horizon, dead=jnp.zeros((n, members), bool))
    return constrain(slots) if particle_axis == 0 else slots.replace(inner=constrain(inner, particle_axis))


def unroll(
    problem: Problem, trunc: Truncation, thetas_before: PyTree, thetas_after: PyTree | None, slots: Slots,
    key: jax.Array, particle_axis: int = 0,
) -> tuple[Slots, Unrolled]:
    """All slots for one truncation, a `lax.scan` over steps of a step vmapped over slots and
    members. thetas_*: leaves (N, M, ...); `thetas_after` (None: the same) applies from a slot's
    first reset inside the truncation. Fresh problems are built only on steps where some slot
    restarts (`lax.cond` at population level), so resets cost nothing on the other steps. Dead
    members follow the module docstring's rule (`guarded`, `_frozen`).

    Under a mesh (see `estimators.sharding`), the carry is pinned to the particle axis: the
    slots (`particle_axis=0`) or the members (`particle_axis=1`, full-horizon ES)."""
    n = slots.step.shape[0]
    pin = lambda tree: constrain(tree, particle_axis)
    per_slot_pin = (lambda tree: tree) if particle_axis else constrain
    thetas_before = pin(thetas_before)
    thetas_after = None if thetas_after is None else pin(thetas_after)
    k_steps, k_final = jax.random.split(key)
    per_slot = lambda fn: jax.vmap(jax.vmap(fn, in_axes=(0, 0, None)), in_axes=(0, 0, 0))
    init_all = jax.vmap(jax.vmap(problem.init, in_axes=(0, None)), in_axes=(0, 0))

    def current(after):
        return thetas_before if thetas_after is None else jax.vmap(tree_select)(after, thetas_after, thetas_before)

    def body(carry, k):
        inner, step, horizon, after, dead = carry
        inner, (step, horizon, after, dead) = pin(inner), per_slot_pin((step, horizon, after, dead))
        k_reset, k_h, k_step = jax.random.split(k, 3)
        reset = step >= horizon
        after = after | reset
        dead = dead & ~reset[:, None]
        thetas = current(after)
        restart = lambda inner: jax.vmap(tree_select)(reset, init_all(thetas, jax.random.split(k_reset, n)), inner)
        inner = jax.lax.cond(jnp.any(reset), restart, lambda inner: inner, inner)
        horizon = jnp.where(reset, trunc.sample_horizon(k_h, (n,)), horizon)
        step = jnp.where(reset, 0, step)
        (thetas_in, inner_in) = guarded(dead, (thetas, inner))
        new, loss_NxM = per_slot(problem.step)(thetas_in, inner_in, jax.random.split(k_step, n))
        diverged = ~dead & _diverges(loss_NxM, trunc.max_loss)
        dead = dead | diverged
        inner = _frozen(dead, inner_in, new, trunc.lazy_freeze)
        loss_NxM = jnp.where(dead, jnp.asarray(trunc.max_loss, loss_NxM.dtype), loss_NxM)
        return (inner, step + 1, horizon, after, dead), (loss_NxM, after, reset, jnp.sum(diverged, axis=1))

    carry = (slots.inner, slots.step, slots.horizon, jnp.zeros((n,), bool), slots.dead)
    keys = jax.random.split(k_steps, trunc.trunc_length)
    (inner, step, horizon, after, dead), (loss_KxNxM, after_KxN, reset_KxN, div_KxN) = jax.lax.scan(body, carry, keys)
    inner = pin(inner)
    diverged_N = jnp.sum(div_KxN, axis=0)
    k = trunc.trunc_length
    if trunc.objective == "mean":
        w_after = after_KxN.astype(loss_KxNxM.dtype)[:, :, None]
        before = jnp.sum(loss_KxNxM * (1 - w_after), axis=0) / k
        after_obj = jnp.sum(loss_KxNxM * w_after, axis=0) / k
    else:
        final, dead, newly = final_objective(problem, trunc, current(after), inner, dead, final_keys(key, n))
        before = jnp.where(after[:, None], 0.0, final)
        after_obj = jnp.where(after[:, None], final, 0.0)
        diverged_N = diverged_N + jnp.sum(newly, axis=1)
    out = Unrolled(
        before_NxM=before, after_NxM=after_obj, reset_N=jnp.sum(reset_KxN, axis=0),
        diverged_N=diverged_N, loss_NxM=jnp.mean(loss_KxNxM, axis=0), dead_N=jnp.sum(dead, axis=1),
    )
    return Slots(inner=inner, step=step, horizon=horizon, dead=dead), out


def _frozen(dead_NxM: jax.Array, old: PyTree, new: PyTree, lazy: bool) -> PyTree:
    """The inner states after a step: `new`, but `old` for the dead members. `lazy`
    (`Truncation.lazy_freeze`) selects only on steps where some member is dead."""
    if not lazy:
        return _per_member(tree_select)(dead_NxM, old, new)
    return jax.lax.cond(jnp.any(dead_NxM), _per_member(tree_select), lambda dead, old, new: new, dead_NxM, old, new)


def _per_member(fn):
    """fn(pred, *trees) mapped over slots and members: pred (N, M), tree leaves (N, M, ...)."""
    return jax.vmap(jax.vmap(fn))


def guarded(dead_NxM: jax.Array, tree: PyTree) -> PyTree:
    """`tree` (leaves (N, M, ...)) with the dead members' entries cut from the backward pass: the
    select passes no cotangent to them, so whatever their (frozen, possibly overflowing) inputs
    produce downstream, NaN or inf never reaches θ or a live member."""
    return _per_member(tree_select)(dead_NxM, jax.lax.stop_gradient(tree), tree)


def _diverges(loss: jax.Array, max_loss: float) -> jax.Array:
    return ~jnp.isfinite(loss) | (loss >= max_loss)


def final_objective(problem: Problem, trunc: Truncation, thetas: PyTree, inner: PyTree, dead: jax.Array,
                    keys_N: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`Problem.final_loss` of every member at `inner` under the divergence rule:
    (capped objective (N, M), members dead after it, members it killed)."""
    thetas_in, inner_in = guarded(dead, (thetas, inner))
    per_slot = jax.vmap(jax.vmap(problem.final_loss, in_axes=(0, 0, None)), in_axes=(0, 0, 0))
    final = per_slot(thetas_in, inner_in, keys_N)
    newly = ~dead & _diverges(final, trunc.max_loss)
    dead = dead | newly
    return jnp.where(dead, jnp.asarray(trunc.max_loss, final.dtype), final), dead, newly


def final_keys(key: jax.Array, n: int) -> jax.Array:
    """The per-slot keys `unroll` hands to `final_loss` (BMG's target step uses them too)."""
    return jax.random.split(jax.random.split(key)[1], n)
