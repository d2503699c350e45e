"""Task augmentation: random per-tensor parameter scales and a random loss scale (as in Celo/Celo2).

`ReparamSpec(inner=spec)` wraps any `TaskSpec`. Each instance draws, per parameter tensor, a
log-scale log s ~ U(log lo, log hi) (`param_scales`, default Celo2's [1e-3, 1e3]) and one loss
scale c, log-uniform in `loss_scales` (default (1, 1): off). The optimizer sees params p′; the
model runs at p = s·p′ and the loss is c·L(p):

- `init` returns p₀/s, so the function at init, and its loss up to c and rounding, is unchanged;
- ∇_{p′}(c·L(s·p′)) = c·s·∇_p L(p): gradients are rescaled by c·s, and a step δ in p′ moves p by
  s·δ, so an optimizer that ignores the scale of params and gradients sees a different problem;
- meta-objectives that divide by the initial loss (the estimators' `normalize=True`) are unchanged
  by c, which cancels; it only changes the raw losses and gradients the optimizer sees.

Data, batches, logits (at p, not scaled by c), Meta tree and parametrization are the inner
task's. `name` is the inner task's too, so logs group augmented tasks with their model kind.
`families.ReparamFamily` wraps any family's specs; the tabular and flax_mlp families take
`param_scales=` / `loss_scales=` options (configs can set those).

>>> import jax
>>> from inner_tasks import get_spec
>>> spec = ReparamSpec(inner=get_spec("quadratic", dim=4), loss_scales=(0.1, 10.0))
>>> task = spec.make(jax.random.key(0))
>>> sorted(task.inst), task.name, task.parametrization
(['inner', 'log_loss_scale', 'log_scale'], 'quadratic', 'sp')
>>> params = task.init(jax.random.key(1))
>>> batch = task.sample_batch(jax.random.key(2))
>>> inner = task.replace(spec=spec.inner, inst=task.inst["inner"])
>>> c = float(jax.numpy.exp(task.inst["log_loss_scale"]))
>>> bool(abs(task.loss(params, batch) - c * inner.loss(inner.init(jax.random.key(1)), batch)) < 1e-5)
True
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from inner_tasks.base import PyTree, TaskSpec

CELO2_PARAM_SCALES = (1e-3, 1e3)


def check_range(name: str, lo_hi: tuple[float, float]) -> None:
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] or not math.isfinite(lo_hi[1]):
        raise ValueError(f"{name} must be a (low, high) pair with 0 < low <= high, got {lo_hi!r}")


def _log_uniform(key: jax.Array, shape: tuple[int, ...], lo_hi: tuple[float, float]) -> jax.Array:
    return jax.random.uniform(key, shape, minval=math.log(lo_hi[0]), maxval=math.log(lo_hi[1]))


@dataclasses.dataclass(frozen=True)
class ReparamSpec(TaskSpec):
    """Any spec with per-instance parameter scales s (per tensor) and a loss scale c (module doc)."""

    inner: TaskSpec | None = None
    param_scales: tuple[float, float] = CELO2_PARAM_SCALES
    loss_scales: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        if not isinstance(self.inner, TaskSpec):
            raise ValueError(f"ReparamSpec needs inner=<a TaskSpec>, got {self.inner!r}")
        check_range("param_scales", self.param_scales)
        check_range("loss_scales", self.loss_scales)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def parametrization(self) -> str:
        return getattr(self.inner, "parametrization", "sp")

    def load_data(self) -> PyTree:
        return self.inner.load_data()

    def sample_inst(self, key: jax.Array) -> PyTree:
        k_inner, k_s, k_c = jax.random.split(key, 3)
        leaves, treedef = jax.tree.flatten(self.inner.meta())
        log_s = _log_uniform(k_s, (len(leaves),), self.param_scales)
        return {
            "inner": self.inner.sample_inst(k_inner),
            "log_scale": jax.tree.unflatten(treedef, list(log_s)),
            "log_loss_scale": _log_uniform(k_c, (), self.loss_scales),
        }

    def model_params(self, inst: PyTree, params: PyTree) -> PyTree:
        """The params the inner model runs at: p = s·p′."""
        return jax.tree.map(lambda p, ls: p * jnp.exp(ls).astype(p.dtype), params, inst["log_scale"])

    def init(self, inst: PyTree, key: jax.Array) -> PyTree:
        p0 = self.inner.init(inst["inner"], key)
        return jax.tree.map(lambda p, ls: p / jnp.exp(ls).astype(p.dtype), p0, inst["log_scale"])

    def loss(self, inst: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        loss = self.inner.loss(inst["inner"], self.model_params(inst, params), batch)
        return jnp.exp(inst["log_loss_scale"]).astype(loss.dtype) * loss

    def logits(self, inst: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        return self.inner.logits(inst["inner"], self.model_params(inst, params), batch)

    def sample_batch(self, data: PyTree, inst: PyTree, key: jax.Array, split: str) -> PyTree:
        return self.inner.sample_batch(data, inst["inner"], key, split)

    def meta(self) -> PyTree:
        return self.inner.meta()


def maybe_reparam(spec: TaskSpec, param_scales: tuple[float, float] | None,
                  loss_scales: tuple[float, float] | None) -> TaskSpec:
    """`spec` wrapped in a ReparamSpec if either range is given (None: that scale stays 1)."""
    if param_scales is None and loss_scales is None:
        return spec
    return ReparamSpec(inner=spec, param_scales=tuple(param_scales or (1.0, 1.0)),
                       loss_scales=tuple(loss_scales or (1.0, 1.0)))
