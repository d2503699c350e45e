"""Online meta-learning of an update rule, as an optax transformation: standard,
optimistic (a bootstrapped target) and look-ahead meta-gradients.

One learner, one task, one lifetime: the learner steps x_{t+1} = x_t + φ(x_t, w_t) with a rule φ
(`lopt.online_rules`), and its meta-parameters w are adapted while it trains, w_{t+1} = U(w_t, G_t)
with U = `meta_optimizer` (any optax transformation; it sees w as its params). `online_meta` is
that learner: `update(grads, state, params, obj_fn=...)` returns φ(x_t, ·) as the updates.

Modes (call t receives g_t = ∇f(x_t; B_t); `obj_fn`: params -> scalar loss on the current batch):

- "standard", unroll = 1 (no obj_fn; one gradient evaluation per step): call t first finishes the
  previous step's meta-gradient with today's gradient, G_{t−1} = D_wφ(x_{t−1}, w_{t−1})ᵀ g_t (a vjp
  of `rule.apply` at the stored x_{t−1}, g_{t−1}, rule state and w_{t−1}), takes the meta-step
  w_t = U(w_{t−1}, G_{t−1}) (none at t = 0), then returns φ(x_t, w_t). The state keeps a copy of
  the previous params and grads. With `momentum()` and U = decayed SGD (decay (1−β)/η, step η) the
  iterates are heavy ball: x_{t+1} = z_t, where z_{s+1} = z_s + β(z_s − z_{s−1}) − η∇f(z_s),
  z_{−1} = z_0 = x_0 (x_1 = x_0 since w_0 = 0).
- "standard", unroll = K > 1: call t returns φ(x_t, w_t), then G_t = ∇_w obj_fn(x^K(w)) at w_t,
  x^0 = x_t, x^1 = x^0 + φ(x^0, w; g_t), x^{k+1} = x^k + φ(x^k, w; ∇obj_fn(x^k)) (backprop through
  the K steps), and w_{t+1} = U(w_t, G_t). K gradient evaluations and their backward pass.
- "optimistic" (BMG): call t returns φ(x_t, w_t) → x_{t+1}; target y_1 = x_{t+1},
  y_{k+1} = y_k + φ(y_k, w_t) for k < L = `target_steps`, x̃ = sg(y_L − α∇obj_fn(y_L)) (`bmg_target`);
  G_t = ∇_w ½‖x̃ − (x_t + φ(x_t, w))‖² at w_t; w_{t+1} = U(w_t, G_t). L gradient evaluations.
  α = `target_lr`, by default the rule's `learning_rate` (required for rules without one).
- "lookahead": call t returns φ(x_t, w_t) → x_{t+1}; the meta-learner predicts ŵ = w_t + U(w_t, 0)
  (its update for a zero meta-gradient, state not kept), and G_t = ∇_w h_{t+1}(ŵ) with the next
  meta-objective h_{t+1}(w) = obj_fn(x_{t+1} + φ(x_{t+1}, w; ∇obj_fn(x_{t+1}))); w_{t+1} = U(w_t, G_t).
  With `momentum()` and decayed SGD, ŵ = βw_t and the iterates are Nesterov's (same indexing).

A non-finite meta-gradient (or meta-step) is skipped: w and the meta-state stay, `skipped` counts
it, and the learner's update uses the valid w. `meta_grad_norm` keeps the skipped gradient's norm.

>>> import jax, jax.numpy as jnp, numpy as np, optax
>>> f = lambda x: 0.5 * jnp.sum(x ** 2)
>>> opt = online_meta(momentum(), optax.chain(optax.add_decayed_weights((1 - 0.9) / 0.1), optax.sgd(0.1)))
>>> x = jnp.ones(2); state = opt.init(x)
>>> for _ in range(3):
...     u, state = opt.update(jax.grad(f)(x), state, x); x = optax.apply_updates(x, u)
>>> np.asarray(x, float).round(4).tolist(), int(state.count)  # heavy ball, one call late: 1, 1, 0.9, 0.72
([0.72, 0.72], 3)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt import common
from lopt.online_rules import (UpdateRule, elementwise_adam, elementwise_sgd, elementwise_sgd_bmg_closed_form,
                               learned, momentum)
from lopt.tensorfile import path_str

PyTree = Any
ObjFn = Callable[[PyTree], jax.Array]
MODES = ("standard", "optimistic", "lookahead")
__all__ = [  # the rules are re-exported from lopt.online_rules
    "MODES", "MetaGrad", "OnlineMetaState", "PrevStep", "UpdateRule", "bmg_target", "check_like", "elementwise_adam",
    "elementwise_sgd", "elementwise_sgd_bmg_closed_form", "learned", "lookahead_meta_grad", "momentum", "online_meta",
    "optimistic_meta_grad", "rollout", "standard_meta_grad", "unrolled_meta_grad",
]


class PrevStep(NamedTuple):
    """The inputs of the previous learner step (standard mode with unroll = 1)."""

    grads: PyTree
    params: PyTree
    rule_state: PyTree


class OnlineMetaState(NamedTuple):
    """State of `online_meta`. Metrics (float32/int32 scalars): `meta_grad_norm` of the last
    meta-gradient, `meta_loss` (the meta-objective there, 0 in standard mode with unroll = 1),
    `matching_loss` (optimistic: ½‖x̃ − x_{t+1}‖², else 0) and `skipped` (non-finite meta-steps)."""

    count: jax.Array
    w: PyTree
    rule_state: PyTree
    meta_state: optax.OptState
    prev: PrevStep | None
    meta_grad_norm: jax.Array
    meta_loss: jax.Array
    matching_loss: jax.Array
    skipped: jax.Array

    @property
    def metrics(self) -> dict[str, jax.Array]:
        return {"meta_grad_norm": self.meta_grad_norm, "meta_loss": self.meta_loss,
                "matching_loss": self.matching_loss, "skipped": self.skipped}


class MetaGrad(NamedTuple):
    grad: PyTree
    loss: jax.Array


# ----------------------------------------------------------------------------- pure meta-gradients


def _add(params: PyTree, updates: PyTree) -> PyTree:
    return optax.apply_updates(params, updates)


def _cast_like(tree: PyTree, like: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.asarray(a).astype(jnp.result_type(b)), tree, like)


def rollout(rule: UpdateRule, w: PyTree, rule_state: PyTree, params: PyTree, obj_fn: ObjFn,
            steps: int) -> tuple[PyTree, PyTree]:
    """`steps` learner steps y ← y + φ(y, w; ∇obj_fn(y)) from params (a `lax.scan`): (y, rule_state).

    >>> import jax.numpy as jnp
    >>> from lopt.online_rules import elementwise_sgd
    >>> rule = elementwise_sgd(0.5); w, s = rule.init(jnp.ones(1))
    >>> rollout(rule, w, s, jnp.ones(1), lambda x: 0.5 * jnp.sum(x ** 2), 2)[0].tolist()
    [0.25]
    """
    if steps <= 0:
        return params, rule_state

    def body(carry, _):
        y, s = carry
        u, s = rule.apply(w, s, jax.grad(obj_fn)(y), y)
        return (_add(y, u), s), None

    return jax.lax.scan(body, (params, rule_state), length=steps)[0]


def bmg_target(rule: UpdateRule, w: PyTree, rule_state: PyTree, params: PyTree, obj_fn: ObjFn,
               target_steps: int, target_lr: float) -> PyTree:
    """BMG's target x̃ = sg(y_L − α∇obj_fn(y_L)), y_1 = params (= x_{t+1}), y_{k+1} = y_k + φ(y_k, w).

    `rule_state` is the rule's state after the learner step; L = target_steps, α = target_lr.

    >>> import jax.numpy as jnp
    >>> from lopt.online_rules import momentum
    >>> rule = momentum(); _, s = rule.init(jnp.zeros(1))  # y = x + w, then a gradient step
    >>> bmg_target(rule, jnp.ones(1), s, jnp.ones(1), lambda x: 0.5 * jnp.sum(x ** 2), 2, 0.25).tolist()
    [1.5]
    """
    y, _ = rollout(rule, w, rule_state, params, obj_fn, target_steps - 1)
    g = jax.grad(obj_fn)(y)
    return jax.lax.stop_gradient(_cast_like(jax.tree.map(lambda yi, gi: yi - target_lr * gi, y, g), y))


def standard_meta_grad(rule: UpdateRule, w: PyTree, rule_state: PyTree, grads: PyTree, params: PyTree,
                       next_grads: PyTree) -> PyTree:
    """The one-step meta-gradient D_wφ(x_t, w_t)ᵀ ∇f(x_{t+1}), with `next_grads` = ∇f(x_{t+1}).

    >>> import jax.numpy as jnp
    >>> from lopt.online_rules import elementwise_sgd
    >>> rule = elementwise_sgd(1.0); w, s = rule.init(jnp.ones(1))
    >>> standard_meta_grad(rule, w, s, jnp.full(1, 2.0), jnp.ones(1), jnp.full(1, 3.0)).tolist()  # −e^w g_t g_{t+1}
    [-6.0]
    """
    updates, vjp = jax.vjp(lambda w_: rule.apply(w_, rule_state, grads, params)[0], w)
    return vjp(_cast_like(next_grads, updates))[0]


def _optimistic(rule, w, rule_state, grads, params, obj_fn, target_steps, target_lr):
    """(G, matching loss, the learner's updates at w, the rule state after them)."""
    updates, vjp, new_rule_state = jax.vjp(lambda w_: rule.apply(w_, rule_state, grads, params), w, has_aux=True)
    x_next = _add(params, updates)
    diff = jax.tree.map(jnp.subtract, bmg_target(rule, w, new_rule_state, x_next, obj_fn, target_steps, target_lr),
                        x_next)
    grad = vjp(_cast_like(jax.tree.map(jnp.negative, diff), updates))[0]
    return grad, 0.5 * optax.tree.norm(diff, squared=True), updates, new_rule_state


def optimistic_meta_grad(rule: UpdateRule, w: PyTree, rule_state: PyTree, grads: PyTree, params: PyTree,
                         obj_fn: ObjFn, target_steps: int, target_lr: float) -> MetaGrad:
    """G = ∇_w ½‖x̃ − (x_t + φ(x_t, w))‖² at w (x̃ = `bmg_target` after x_{t+1}), and that loss.

    >>> import jax.numpy as jnp
    >>> from lopt.online_rules import elementwise_sgd
    >>> rule = elementwise_sgd(1.0); w, s = rule.init(jnp.ones(1))
    >>> f = lambda x: 0.5 * jnp.sum(x ** 2)  # x_{t+1} = 1 − 1 = 0, x̃ = 0: nothing to match
    >>> optimistic_meta_grad(rule, w, s, jnp.ones(1), jnp.ones(1), f, 1, 0.5).grad.tolist()
    [0.0]
    """
    return MetaGrad(*_optimistic(rule, w, rule_state, grads, params, obj_fn, target_steps, target_lr)[:2])


def unrolled_meta_grad(rule: UpdateRule, w: PyTree, rule_state: PyTree, grads: PyTree, params: PyTree,
                       obj_fn: ObjFn, unroll: int) -> MetaGrad:
    """∇_w obj_fn(x^K(w)) through K = unroll steps from params (the first with `grads`), and obj_fn(x^K).

    >>> import jax.numpy as jnp
    >>> from lopt.online_rules import momentum
    >>> rule = momentum(); w, s = rule.init(jnp.ones(1))
    >>> unrolled_meta_grad(rule, w, s, jnp.ones(1), jnp.ones(1), lambda x: 0.5 * jnp.sum(x ** 2), 2).grad.tolist()
    [2.0]
    """
    def h(w_):
        u, s = rule.apply(w_, rule_state, grads, params)
        return obj_fn(rollout(rule, w_, s, _add(params, u), obj_fn, unroll - 1)[0])

    loss, grad = jax.value_and_grad(h)(w)
    return MetaGrad(grad, loss)


def lookahead_meta_grad(rule: UpdateRule, w: PyTree, rule_state: PyTree, params: PyTree, obj_fn: ObjFn) -> MetaGrad:
    """∇_w h(w) and h(w) for the next meta-objective h(w) = obj_fn(x + φ(x, w; ∇obj_fn(x))), x = params.

    >>> import jax.numpy as jnp
    >>> from lopt.online_rules import momentum
    >>> rule = momentum(); _, s = rule.init(jnp.ones(1))
    >>> lookahead_meta_grad(rule, jnp.ones(1), s, jnp.ones(1), lambda x: 0.5 * jnp.sum(x ** 2)).grad.tolist()
    [2.0]
    """
    g = jax.grad(obj_fn)(params)
    loss, grad = jax.value_and_grad(lambda w_: obj_fn(_add(params, rule.apply(w_, rule_state, g, params)[0])))(w)
    return MetaGrad(grad, loss)


# ----------------------------------------------------------------------------- checks

def _describe(tree: PyTree) -> str:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return "{" + ", ".join(f"{path_str(p) or '<root>'}: {tuple(jnp.shape(x))}" for p, x in leaves) + "}"


def check_like(tree: PyTree, ref: PyTree, what: str, ref_name: str = "params") -> None:
    """Raise ValueError unless `tree` has `ref`'s structure and leaf shapes."""
    same = jax.tree.structure(tree) == jax.tree.structure(ref) and all(
        jnp.shape(a) == jnp.shape(b) for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(ref)))
    if not same:
        raise ValueError(f"{what} do not match {ref_name}: got {_describe(tree)}, expected {_describe(ref)}")


def _check_rule(rule: UpdateRule, w: PyTree, rule_state: PyTree, params: PyTree) -> None:
    """rule.init/apply agree with params: updates like params, rule_state keeps its structure."""
    if getattr(rule, "per_parameter", False):
        check_like(w, params, f"{type(rule).__name__}.init's meta-parameters w")
    updates, new_state = jax.eval_shape(rule.apply, w, rule_state, params, params)
    check_like(updates, params, f"{type(rule).__name__}.apply's updates")
    if jax.tree.structure(new_state) != jax.tree.structure(rule_state):
        raise ValueError(f"{type(rule).__name__}.apply changes the rule state's structure: "
                         f"{jax.tree.structure(rule_state)} -> {jax.tree.structure(new_state)}")


def _validate(rule, meta_optimizer, mode, target_steps, target_lr, unroll) -> float | None:
    """Check online_meta's arguments; returns the target step α of the optimistic mode."""
    if not all(callable(getattr(rule, m, None)) for m in ("init", "apply", "rates")):
        raise TypeError(f"rule must implement init, apply and rates (lopt.online_rules.UpdateRule), got {rule!r}")
    if not (callable(getattr(meta_optimizer, "init", None)) and callable(getattr(meta_optimizer, "update", None))):
        raise TypeError(f"meta_optimizer must be an optax GradientTransformation, got {meta_optimizer!r}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {MODES}")
    for name, v in (("target_steps", target_steps), ("unroll", unroll)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if unroll != 1 and mode != "standard":
        raise ValueError(f"unroll applies to mode='standard' only, got unroll={unroll} with mode={mode!r}")
    if mode != "optimistic":
        if target_steps != 1 or target_lr is not None:
            raise ValueError(f"target_steps and target_lr apply to mode='optimistic' only (mode={mode!r})")
        return None
    alpha = getattr(rule, "learning_rate", None) if target_lr is None else target_lr
    if alpha is None:
        raise ValueError(f"mode='optimistic' needs target_lr= ({type(rule).__name__} has no learning_rate)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"target_lr must be a positive number, got {alpha!r}")
    return float(alpha)


# ----------------------------------------------------------------------------- the transformation

def _meta_step(meta_optimizer, grad, state: OnlineMetaState, active: jax.Array | bool = True) -> OnlineMetaState:
    """w ← U(w, grad) where `active` and everything is finite; otherwise w and meta_state stay."""
    grad = _cast_like(grad, state.w)
    step, new_meta_state = meta_optimizer.update(grad, state.meta_state, state.w)
    new_w = _add(state.w, step)
    ok = jnp.logical_and(active, jnp.logical_and(common.all_finite(grad), common.all_finite(new_w)))
    skipped = jnp.logical_and(active, jnp.logical_not(ok))
    norm = jnp.where(active, optax.tree.norm(grad), state.meta_grad_norm).astype(jnp.float32)
    return state._replace(
        w=optax.tree.where(ok, new_w, state.w),
        meta_state=optax.tree.where(ok, optax.tree.cast_like(new_meta_state, state.meta_state), state.meta_state),
        meta_grad_norm=norm, skipped=state.skipped + skipped.astype(state.skipped.dtype))


def online_meta(rule: UpdateRule, meta_optimizer: optax.GradientTransformation, *, mode: str = "standard",
                target_steps: int = 1, target_lr: float | None = None, unroll: int = 1,
                init_w: PyTree | None = None) -> optax.GradientTransformationExtraArgs:
    """The learner x ← x + φ(x, w) whose meta-parameters w are meta-learned online (module docstring).

    Args:
      rule: the update rule φ (`lopt.online_rules`).
      meta_optimizer: U, an optax transformation over w (e.g. `optax.adam(1e-2)`).
      mode: "standard", "optimistic" or "lookahead".
      target_steps: L, the optimistic target's length (L − 1 bootstrapped steps, then a gradient step).
      target_lr: α, the optimistic target's final gradient step (default: the rule's learning_rate).
      unroll: K, steps backpropagated through in standard mode (K > 1 needs obj_fn).
      init_w: meta-parameters to start from instead of the rule's (checked against them).

    `update(grads, state, params, *, obj_fn=None, **extra_args)` needs params; obj_fn (params ->
    scalar loss on the current batch) is needed by "optimistic", "lookahead" and unroll > 1.

    >>> import jax, jax.numpy as jnp, numpy as np, optax
    >>> from lopt.online_rules import elementwise_sgd
    >>> opt = online_meta(elementwise_sgd(0.1), optax.adam(1e-2), mode="optimistic", target_steps=2)
    >>> f = lambda x: jnp.sum(x ** 2); x = jnp.ones(3); state = opt.init(x)
    >>> u, state = jax.jit(lambda g, s, p: opt.update(g, s, p, obj_fn=f))(jax.grad(f)(x), state, x)
    >>> np.asarray(u, float).round(3).tolist(), int(state.skipped)
    ([-0.2, -0.2, -0.2], 0)
    """
    alpha = _validate(rule, meta_optimizer, mode, target_steps, target_lr, unroll)
    keeps_prev = mode == "standard" and unroll == 1

    def init_fn(params):
        w, rule_state = rule.init(params)
        _check_rule(rule, w, rule_state, params)
        if init_w is not None:
            check_like(init_w, w, "init_w", f"{type(rule).__name__}.init's meta-parameters")
            w = _cast_like(init_w, w)
        prev = PrevStep(jax.tree.map(jnp.zeros_like, params), params, rule_state) if keeps_prev else None
        zero = jnp.zeros((), jnp.float32)
        return OnlineMetaState(jnp.zeros((), jnp.int32), w, rule_state, meta_optimizer.init(w), prev,
                               zero, zero, zero, jnp.zeros((), jnp.int32))

    def update_fn(grads, state: OnlineMetaState, params=None, *, obj_fn: ObjFn | None = None, **extra_args):
        del extra_args
        _check_inputs(grads, state, params, obj_fn)
        if keeps_prev:
            return _standard_update(grads, state, params)
        if mode == "optimistic":
            grad, match, updates, rule_state = _optimistic(
                rule, state.w, state.rule_state, grads, params, obj_fn, target_steps, alpha)
            loss = match
        else:
            updates, rule_state = rule.apply(state.w, state.rule_state, grads, params)
            match = jnp.zeros((), jnp.float32)
            if mode == "lookahead":
                zero_step, _ = meta_optimizer.update(jax.tree.map(jnp.zeros_like, state.w), state.meta_state, state.w)
                grad, loss = lookahead_meta_grad(rule, _add(state.w, zero_step), rule_state,
                                                 _add(params, updates), obj_fn)
            else:
                grad, loss = unrolled_meta_grad(rule, state.w, state.rule_state, grads, params, obj_fn, unroll)
        state = _meta_step(meta_optimizer, grad, state)
        return updates, state._replace(
            count=optax.safe_increment(state.count), rule_state=rule_state,
            meta_loss=jnp.asarray(loss, jnp.float32), matching_loss=jnp.asarray(match, jnp.float32))

    def _standard_update(grads, state, params):
        prev = state.prev
        grad = standard_meta_grad(rule, state.w, prev.rule_state, prev.grads, prev.params, grads)
        state = _meta_step(meta_optimizer, grad, state, active=state.count > 0)
        updates, rule_state = rule.apply(state.w, state.rule_state, grads, params)
        prev = PrevStep(_cast_like(grads, params), params, state.rule_state)
        return updates, state._replace(count=optax.safe_increment(state.count), rule_state=rule_state, prev=prev)

    def _check_inputs(grads, state, params, obj_fn):
        if params is None:
            raise ValueError("online_meta's update needs params: call update(grads, state, params)")
        check_like(grads, params, "grads")
        check_like(state.w, jax.eval_shape(lambda p: rule.init(p)[0], params), "state.w (meta-parameters)",
                   f"{type(rule).__name__}.init(params)'s")
        if (mode != "standard" or unroll > 1) and obj_fn is None:
            raise ValueError(f"mode={mode!r} with unroll={unroll} needs the batch objective: "
                             "call update(grads, state, params, obj_fn=lambda params: loss)")
        if obj_fn is not None and not callable(obj_fn):
            raise TypeError(f"obj_fn must be a callable params -> scalar loss, got {type(obj_fn).__name__}")

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
