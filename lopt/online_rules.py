"""Update rules φ(x, w) for online meta-learning (`lopt.online`).

A rule maps the learner's gradient g and parameters x to an update, x ← x + φ(x, w), with
meta-parameters w that `lopt.online.online_meta` adapts while the learner trains. It is a frozen
dataclass with three methods (the `UpdateRule` protocol):

    init(params) -> (w, rule_state)                                  # w: meta-parameters; rule_state: other state
    apply(w, rule_state, grads, params) -> (updates, rule_state)     # φ, differentiable in w
    rates(w) -> pytree | None                                        # per-element learning rates, for logging

Rules whose w has exactly the params' structure set the class attribute `per_parameter = True`
(then `online_meta` also checks w against params). Shipped rules:

- `elementwise_sgd(lr)`: w = log lr per element, φ = −exp(w) ⊙ g;
- `elementwise_adam(lr, b1, b2, eps)`: φ = −exp(w) ⊙ adam_direction(g), Adam's moments in rule_state
  (they do not depend on w);
- `momentum()`: w has the params' structure, starts at zero, φ = w (heavy ball in standard mode,
  Nesterov in look-ahead mode);
- `learned(arch, theta, num_steps)`: w = theta of a `lopt` architecture, φ = that optimizer's update.

>>> import jax.numpy as jnp, numpy as np
>>> rule = elementwise_sgd(0.1)
>>> w, s = rule.init({"x": jnp.ones(2)})
>>> updates, s = rule.apply(w, s, {"x": jnp.array([1.0, -2.0])}, {"x": jnp.ones(2)})
>>> np.asarray(updates["x"], float).round(6).tolist(), np.asarray(rule.rates(w)["x"], float).round(6).tolist()
([-0.1, 0.2], [0.1, 0.1])
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Protocol

import jax
import jax.numpy as jnp
import optax

PyTree = Any


class UpdateRule(Protocol):
    """φ(x, w): the learner's update as a function of meta-parameters w (see the module docstring)."""

    def init(self, params: PyTree) -> tuple[PyTree, PyTree]: ...

    def apply(self, w: PyTree, rule_state: PyTree, grads: PyTree, params: PyTree) -> tuple[PyTree, PyTree]: ...

    def rates(self, w: PyTree) -> PyTree | None: ...


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _log_rates(params: PyTree, learning_rate: float) -> PyTree:
    """log(learning_rate) in every element, in each parameter's own dtype."""
    return jax.tree.map(lambda p: jnp.full(jnp.shape(p), math.log(learning_rate), jnp.result_type(p)), params)


def _scaled(w: PyTree, direction: PyTree, params: PyTree) -> PyTree:
    """−exp(w) ⊙ direction, in the params' dtypes."""
    return jax.tree.map(lambda wi, d, p: (-jnp.exp(wi) * d).astype(jnp.result_type(p)), w, direction, params)


@dataclasses.dataclass(frozen=True)
class ElementwiseSGD:
    """φ = −exp(w) ⊙ g with one log learning rate per element (init log(learning_rate))."""

    learning_rate: float
    per_parameter: ClassVar[bool] = True

    def __post_init__(self):
        _positive(self.learning_rate, "learning_rate")

    def init(self, params: PyTree) -> tuple[PyTree, optax.EmptyState]:
        return _log_rates(params, self.learning_rate), optax.EmptyState()

    def apply(self, w, rule_state, grads, params):
        return _scaled(w, grads, params), rule_state

    def rates(self, w: PyTree) -> PyTree:
        return jax.tree.map(jnp.exp, w)


@dataclasses.dataclass(frozen=True)
class ElementwiseAdam:
    """φ = −exp(w) ⊙ d with d optax's Adam direction (`scale_by_adam`, moments in rule_state)."""

    learning_rate: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    per_parameter: ClassVar[bool] = True

    def __post_init__(self):
        _positive(self.learning_rate, "learning_rate")
        _positive(self.eps, "eps")
        if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1):
            raise ValueError(f"b1 and b2 must lie in [0, 1), got {self.b1}, {self.b2}")

    def _adam(self) -> optax.GradientTransformation:
        return optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps)

    def init(self, params: PyTree) -> tuple[PyTree, optax.ScaleByAdamState]:
        return _log_rates(params, self.learning_rate), self._adam().init(params)

    def apply(self, w, rule_state, grads, params):
        direction, rule_state = self._adam().update(grads, rule_state, params)
        return _scaled(w, direction, params), rule_state

    def rates(self, w: PyTree) -> PyTree:
        return jax.tree.map(jnp.exp, w)


@dataclasses.dataclass(frozen=True)
class Momentum:
    """φ(x, w) = w: the meta-parameters are the learner's step (a velocity), initially zero."""

    per_parameter: ClassVar[bool] = True

    def init(self, params: PyTree) -> tuple[PyTree, optax.EmptyState]:
        return jax.tree.map(jnp.zeros_like, params), optax.EmptyState()

    def apply(self, w, rule_state, grads, params):
        del grads
        return jax.tree.map(lambda wi, p: wi.astype(jnp.result_type(p)), w, params), rule_state

    def rates(self, w: PyTree) -> None:
        del w


@dataclasses.dataclass(frozen=True, eq=False)
class Learned:
    """φ = the update of `arch.optimizer(w, num_steps=num_steps)`, w = theta (initially `theta`)."""

    arch: Any
    theta: PyTree
    num_steps: int
    per_parameter: ClassVar[bool] = False

    def __post_init__(self):
        if not (hasattr(self.arch, "optimizer") and hasattr(self.arch, "init")):
            raise TypeError(f"arch must be a lopt architecture (init, optimizer), got {type(self.arch).__name__}")
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {self.num_steps!r}")

    def _opt(self, w: PyTree) -> optax.GradientTransformationExtraArgs:
        return self.arch.optimizer(w, num_steps=self.num_steps)

    def init(self, params: PyTree) -> tuple[PyTree, PyTree]:
        return self.theta, self._opt(self.theta).init(params)

    def apply(self, w, rule_state, grads, params):
        return self._opt(w).update(grads, rule_state, params)

    def rates(self, w: PyTree) -> None:
        del w


def elementwise_sgd(learning_rate: float) -> ElementwiseSGD:
    """Element-wise SGD, φ = −exp(w) ⊙ g, w = log learning rate per element (init log(learning_rate)).

    >>> import jax.numpy as jnp, numpy as np
    >>> w, _ = elementwise_sgd(1e-2).init(jnp.zeros(3))
    >>> np.asarray(w, float).round(3).tolist()
    [-4.605, -4.605, -4.605]
    """
    return ElementwiseSGD(learning_rate)


def elementwise_adam(
    learning_rate: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> ElementwiseAdam:
    """Element-wise Adam, φ = −exp(w) ⊙ adam_direction(g), w = log learning rate per element.

    >>> import jax.numpy as jnp, numpy as np
    >>> rule = elementwise_adam(1e-2)
    >>> w, s = rule.init(jnp.zeros(2))
    >>> u, _ = rule.apply(w, s, jnp.array([3.0, -0.5]), jnp.zeros(2))  # Adam's first step: −lr·sign(g)
    >>> np.asarray(u, float).round(6).tolist()
    [-0.01, 0.01]
    """
    return ElementwiseAdam(learning_rate, b1, b2, eps)


def momentum() -> Momentum:
    """φ(x, w) = w, w initially zero: with `online_meta` and a decayed-SGD meta-optimizer this is
    heavy ball (mode "standard") or Nesterov (mode "lookahead").

    >>> import jax.numpy as jnp
    >>> rule = momentum()
    >>> w, s = rule.init(jnp.ones(2))
    >>> rule.apply(w + 0.5, s, jnp.ones(2), jnp.ones(2))[0].tolist()
    [0.5, 0.5]
    """
    return Momentum()


def learned(arch: Any, theta: PyTree, num_steps: int) -> Learned:
    """A `lopt` architecture's optimizer as the rule: w = theta, φ = its update, rule_state its state.

    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from lopt.adam import LearnableAdam
    >>> arch = LearnableAdam(learning_rate=1e-2)
    >>> rule = learned(arch, arch.init(jax.random.key(0)), num_steps=100)
    >>> w, s = rule.init(jnp.zeros(2))
    >>> np.asarray(rule.apply(w, s, jnp.array([1.0, -1.0]), jnp.zeros(2))[0], float).round(6).tolist()
    [-0.01, 0.01]
    """
    return Learned(arch, theta, num_steps)


def elementwise_sgd_bmg_closed_form(w: PyTree, grads: PyTree, target: PyTree, next_params: PyTree) -> PyTree:
    """The optimistic (BMG, Euclidean matching) meta-gradient of `elementwise_sgd`, in closed form:

        G = ∇_w ½‖x̃ − (x_t − exp(w) ⊙ g_t)‖² = exp(w) ⊙ g_t ⊙ (x̃ − x_{t+1})

    with `grads` = g_t, `target` = x̃ and `next_params` = x_{t+1} = x_t − exp(w) ⊙ g_t (the chain rule
    through one step of the rule).

    >>> import jax.numpy as jnp
    >>> elementwise_sgd_bmg_closed_form(jnp.zeros(2), jnp.ones(2), jnp.array([1.0, 2.0]), jnp.ones(2)).tolist()
    [0.0, 1.0]
    """
    return jax.tree.map(lambda wi, g, xt, xn: jnp.exp(wi) * g * (xt - xn), w, grads, target, next_params)
