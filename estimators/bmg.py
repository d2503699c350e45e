"""Bootstrapped meta-gradients (Flennerhag et al., 2022) for a learned optimizer.

Unroll K differentiable inner steps x_K(θ); build a target x̃ from x_K by L−1 further
learned-optimizer steps and one plain SGD step of size `target_lr` along the gradient of the
problem's per-step objective (normalized as the problem normalizes it: for `LOProblem`, the
training loss divided by the inner problem's first loss, so that `target_lr` means the same on
tasks of any loss scale), all under stop-gradient; descend the matching loss μ(x̃, x_K(θ)), which
is differentiable in x_K only. The effective horizon is K + L while backpropagation covers K
steps. The inner problem continues from x_K.

Matchings (`MATCHINGS`):
    sqdist          μ = ½‖x̃ − x_K‖², summed over the parameter tensors: the paper's μ. With
                    L = 1 its gradient is exactly `target_lr` times truncated backprop's gradient
                    of the (normalized) objective at x_K (`objective="truncation_end"`).
    sqdist_scaled   μ = ½ Σ_i w_i ‖x̃_i − x_K,i‖² with per-tensor weights fixed from the target
                    alone, w_i = 1 / (mean(x̃_i²) + `SCALED_EPS`) under stop-gradient: a relative
                    distance, so that tensors of different scales count alike. The weights carry
                    no gradient and do not depend on the distance being differentiated; a tensor at
                    zero (a fresh bias) weighs at most 1/`SCALED_EPS`.
    kl              KL(p_x̃ ‖ p_x_K) of the predictions on a training batch (classifiers only).

The former per-tensor-normalised "sqdist", Σ_i d_i / stop_grad(d_i) with d_i = ½‖x̃_i − x_i‖², is
gone: its value is always the number of tensors and its gradient scales as 1/‖x̃_i − x_i‖, so
nearly converged slots and tensors dominate the estimate (configs/bmg.py meta-trained with it
diverged on held-out tasks). The former "sqdist_raw" is now "sqdist" and is refused under its old
name with that explanation.

Problems: BMG works on any `Problem` that also provides
    params(s) -> x                  the inner parameters inside state s (what is matched)
    objective_grad(s, key) -> g     ∇_x of the problem's normalized per-step objective at s
    logits(s, x, key) -> logits     (kl only) predictions at params x on a batch drawn with key
such as `LOProblem` and the linear-quadratic toy (`estimators.toy.LinearQuadratic`).

Masking: each slot's gradient is computed apart (one copy of θ per slot) and averaged with
`slot_mean` over the slots whose member is alive at the end of the truncation, whose target
is finite and whose gradient is finite; the others are counted in `meta/masked`. A dead member
follows the divergence rule of `estimators.unroll` (frozen, cut from the backward pass, kept to
its horizon); a live member whose target diverged (the learned optimizer blows up within the L − 1
steps after x_K, or the SGD step overflows) has its slot restarted at the next estimate.
Metrics: `meta/loss` is the inner loss (from the unroll), `bmg/matching` the mean matching loss
over the slots kept, `bmg/bad_targets` the number of live members whose target is not finite.

>>> import jax, inner_tasks, lopt
>>> from estimators import LOProblem, Truncation
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = BMG(problem=problem, trunc=Truncation(trunc_length=5, min_horizon=10, max_horizon=50), target_steps=3)
>>> theta = problem.arch.init(jax.random.key(0))
>>> grad, state, metrics = est.estimate(theta, est.init(theta, jax.random.key(1)), jax.random.key(2))
>>> float(metrics["bmg/matching"]) > 0
True
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from estimators.protocol import Problem, Truncated, Truncation
from estimators.reduce import slot_mean, slot_metrics
from estimators.unroll import SlotState, broadcast_theta, final_keys, guarded, init_slots, tree_select, unroll

PyTree = Any
MATCHINGS = ("sqdist", "sqdist_scaled", "kl")
RENAMED_MATCHINGS = {
    "sqdist_raw": "matching 'sqdist_raw' is now 'sqdist' (½‖x̃ − x_K‖², the paper's μ); the former per-tensor-"
                  "normalised 'sqdist' is gone (its gradient scaled as 1/‖x̃ − x‖, so nearly converged slots "
                  "dominated); 'sqdist_scaled' weighs tensors by weights fixed from the target",
}
SCALED_EPS = 1e-4  # sqdist_scaled's w_i = 1 / (mean(x̃_i²) + SCALED_EPS)


def target(problem: Problem, theta: PyTree, s: PyTree, key: jax.Array, lo_steps: int, lr: jax.Array) -> PyTree:
    """Params after `lo_steps` more learned-optimizer steps of `problem` from its state `s`, then
    one SGD step of size `lr` along `problem.objective_grad` (the normalized objective, on a
    batch drawn with `key` itself); no gradient flows into the result."""
    theta, s = jax.lax.stop_gradient((theta, s))
    if lo_steps:
        s, _ = jax.lax.scan(lambda c, k: (problem.step(theta, c, k)[0], None), s,
                            jax.random.split(jax.random.fold_in(key, 1), lo_steps))
    grads = problem.objective_grad(s, key)
    return jax.lax.stop_gradient(jax.tree.map(lambda p, g: p - lr * g, problem.params(s), grads))


def scaled_weights(target: PyTree) -> PyTree:
    """sqdist_scaled's per-tensor weights, 1 / (mean(x̃_i²) + SCALED_EPS), from the target alone."""
    return jax.tree.map(lambda t: 1.0 / (jnp.mean(jnp.square(jax.lax.stop_gradient(t))) + SCALED_EPS), target)


def match(problem: Problem, target: PyTree, s: PyTree, key: jax.Array, kind: str) -> jax.Array:
    """BMG's matching loss μ(target, params of s) (one of `MATCHINGS`), differentiable in s only."""
    params = problem.params(s)
    target = jax.lax.stop_gradient(target)
    if kind == "kl":
        logp_t = jax.nn.log_softmax(problem.logits(s, target, key), axis=-1)
        logp = jax.nn.log_softmax(problem.logits(s, params, key), axis=-1)
        return jnp.mean(jnp.sum(jnp.exp(logp_t) * (logp_t - logp), axis=-1))
    sq = jax.tree.map(lambda t, p: 0.5 * jnp.sum(jnp.square(t - p)), target, params)
    if kind == "sqdist_scaled":
        sq = jax.tree.map(lambda w, d: w * d, scaled_weights(target), sq)
    elif kind != "sqdist":
        raise ValueError(_matching_error(kind))
    return sum(jax.tree.leaves(sq))


def _matching_error(kind: str) -> str:
    return RENAMED_MATCHINGS.get(kind, f"unknown matching {kind!r}; valid: {list(MATCHINGS)}")


def _all_finite_N(tree: PyTree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    n = leaves[0].shape[0]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x.reshape(n, -1)), axis=1) for x in leaves]), axis=0)


@struct.dataclass
class BMG(Truncated):
    """Static: problem (a `Problem` with `params` and `objective_grad`, and `logits` for kl),
    truncation (K = trunc_length), num_tasks, target_steps (L), matching (one of `MATCHINGS`).
    Traced: target_lr (the target's SGD step on the normalized objective)."""

    problem: Any
    trunc: Truncation = struct.field(pytree_node=False, default=Truncation())
    num_tasks: int = struct.field(pytree_node=False, default=8)
    target_steps: int = struct.field(pytree_node=False, default=5)
    matching: str = struct.field(pytree_node=False, default="sqdist")
    target_lr: float = 0.1

    def __post_init__(self):
        if self.target_steps < 1:
            raise ValueError(f"target_steps (L) must be >= 1, got {self.target_steps}")
        if self.matching not in MATCHINGS:
            raise ValueError(_matching_error(self.matching))

    def init(self, theta: PyTree, key: jax.Array) -> SlotState:
        return SlotState(init_slots(self.problem, self.trunc, theta, key, self.num_tasks, self.members))

    def estimate(self, theta: PyTree, state: SlotState, key: jax.Array):
        keys = final_keys(key, self.num_tasks)
        tgt_fn = jax.vmap(functools.partial(target, self.problem), in_axes=(None, 0, 0, None, None))
        match_fn = jax.vmap(functools.partial(match, self.problem), in_axes=(0, 0, 0, None))

        def objective(thetas_N):  # one copy of θ per slot, so that each slot's gradient is its own
            thetas = jax.tree.map(lambda t: t[:, None], thetas_N)
            slots, out = unroll(self.problem, self.trunc, thetas, None, state.slots, key)
            dead_N = slots.dead[:, 0]
            # A dead member's state is frozen and cut from the backward pass (as in the unroll).
            inner = jax.tree.map(lambda x: x[:, 0], guarded(slots.dead, slots.inner))
            tgt = tgt_fn(theta, inner, keys, self.target_steps - 1, self.target_lr)
            bad_N = ~dead_N & ~_all_finite_N(tgt)  # a dead member's target is moot (the divergence rule applies)
            skip_N = dead_N | bad_N
            # Slots left out match their own (stopped) params: μ = 0 with no gradient, not NaN.
            own_N = jax.lax.stop_gradient(jax.vmap(self.problem.params)(inner))
            tgt = jax.vmap(tree_select)(skip_N, own_N, tgt)
            mu_N = match_fn(tgt, inner, keys, self.matching)
            valid_N = ~skip_N & jnp.isfinite(mu_N)
            return jnp.sum(jnp.where(valid_N, mu_N, 0.0)), (slots, out, mu_N, valid_N, bad_N)

        thetas_N = jax.tree.map(lambda t: t[:, 0], broadcast_theta(theta, self.num_tasks))
        grads_N, (slots, out, mu_N, valid_N, bad_N) = jax.grad(objective, has_aux=True)(thetas_N)
        grad, masked, dropped = slot_mean(grads_N, valid_N)
        kept_N = valid_N & _all_finite_N(grads_N)
        matching = jnp.sum(jnp.where(kept_N, mu_N, 0.0)) / jnp.maximum(jnp.sum(kept_N), 1).astype(mu_N.dtype)
        # A slot whose target diverged is restarted at the next estimate.
        slots = slots.replace(horizon=jnp.where(bad_N, slots.step, slots.horizon))
        metrics = slot_metrics(slots, out, grad, masked, dropped) | {
            "bmg/matching": matching, "bmg/bad_targets": jnp.sum(bad_N)}
        return grad, SlotState(slots), metrics
