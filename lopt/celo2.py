"""Celo2: a learned direction, a magnitude from `num_steps` (Celo2-base; Celo2 with `newton_schulz`).

Every tensor the learned rule steps (by default those of rank >= 2 that are not embeddings) gets,
per element, the 6 features of `celo2_features.FEATURE_NAMES` (m/√v, g/√v, g, m, p, 1/√v from one
momentum m and one second moment v), each divided by its RMS over the whole tensor. A small MLP
(6 → 4 → 1, ReLU; `hidden_layers` of `hidden_size`) plus a linear skip over the same features gives
the direction d, zeroed where v = 0 (elements that never had a nonzero gradient do not move),
optionally orthogonalized (`newton_schulz`), and rescaled to RMS exactly 1 over the tensor: the MLP
chooses only the direction. The magnitude comes from outside, as in Celo2's release:

    learned tensors:              update = −lr(t) · (d̂ + weight_decay · p)
    biases, norms, embeddings:    update = −lr(t) · adam_lr_mult · m̂ / (√v̂ + ε)   (Adam, β 0.9 / 0.95)

with lr(t) `default_schedule(num_steps, peak)`: linear warmup over 5% of the steps (at most
`WARMUP_MAX_STEPS`), then a cosine to 10% of the peak. The peak is `PEAK_LEARNING_RATE` (1e-3) at
1000 steps and falls as 1/√num_steps (`Celo2.peak`, `horizon_exponent` 0.5, the factor clipped
to [0.1, 10]): a unit-RMS direction keeps its size when gradients turn to noise, so long runs need
the smaller step (chosen on `dev`, evaluation/RESULTS.md "Celo2's defaults"). The schedule's
peak is the RMS of each learned tensor's step. `optimizer` composes it from optax parts:

    skip_nonfinite(chain(scale_by_celo2, [scale_by_param_rms(r),] add_decayed_weights(wd, mask),
                         scale_by_learning_rate(lr), scale_by_mup(roles, fan_in)))

With `relative_step` r > 0 each learned tensor's step is also multiplied by max(RMS(p), 1e-3)/r
(Adafactor's parameter scaling, `scale_by_param_rms`, in the chain only when r > 0), with p the
current parameters (`relative_to="current"`) or those `init` saw (`"init"`: a fixed per-tensor
step, without the feedback of weights that grow taking larger steps). Off by default;
`celo2_generalist` ships r = 0.1 relative to init and `newton_schulz`, `celo2_base` the same
without `newton_schulz`, all chosen on `dev` and on fresh draws of the meta-training family
(evaluation/RESULTS.md, "Celo2's defaults").

Gradients are clipped elementwise at ±1000; a tensor whose gradient has a non-finite entry gets a
zero update (decay included) and keeps its accumulators. With `magnitude_correction`, each learned
tensor's step is multiplied by exp(MAGNITUDE_BOUND · tanh(ψ · w)) (ψ: 1, t/num_steps, log fan-in;
w learned, zero at init): bounded to [1/2, 2], off by default. Weight decay is decoupled, multiplied
by lr(t), a user option, not learned, and applies to the learned tensors only.

Input normalization is per whole tensor (Celo2 normalizes each 2-D slice of a conv kernel): the
output is normalized per whole tensor too, and it is the cheaper reduction. Celo2's other features
(more momenta, the clipped gradient, the Adafactor factors) and its wider MLP (2 hidden layers of 8)
are left out for cost: the train step must stay within 1.5× Adam's on `benchmarks/lopt_step`, and
hidden 8 measured at its edge (see benchmarks/RESULTS.md, "Celo2").

At `init` the MLP's last layer is zero and the skip is the feature m/√v: the untrained optimizer is
per-tensor-normalized Adam (β1 0.9, β2 0.95; bias correction cancels) with the built-in schedule.

>>> import jax
>>> arch = Celo2()
>>> opt = arch.optimizer(arch.init(jax.random.key(0)), num_steps=100)
>>> params = {"w": jax.numpy.ones((3, 2)), "b": jax.numpy.zeros((2,))}
>>> updates, state = opt.update(params, opt.init(params), params)
>>> jax.tree.map(jax.numpy.shape, updates)
{'b': (2,), 'w': (3, 2)}
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt import common, mup
from lopt.celo2_features import (
    ADAM_FEATURE, NUM_FEATURES, adam_direction, clip_gradient, direction, init_acc, is_finite, newton_schulz,
    raw_features, unit_rms, update_acc)

PyTree = Any
PEAK_LEARNING_RATE = 1e-3
"""The default schedule's peak: the per-element step RMS of every learned tensor. A starting value
(unit-RMS directions, as Celo2's released default); it is to be chosen on the `dev` suite."""
WARMUP_FRACTION = 0.05  # of num_steps, linear from peak/(warmup+1)
WARMUP_MAX_STEPS = 1000  # a long run needs no longer warmup: β2 = 0.95 settles in tens of steps
END_FRACTION = 0.1  # the cosine ends at 10% of the peak (5% warmup, cosine to 10%: ELO's GPT-2 evaluation)
WEIGHT_DECAY = 0.0
"""The default decoupled weight decay (× lr(t)): 0, chosen on `dev` (0.1 changed nothing consistently)."""
HORIZON_EXPONENT = 0.5  # chosen on dev (evaluation/RESULTS.md, "Celo2's defaults"): SGD's 1/√T
HORIZON_REFERENCE = 1000  # the horizon at which the peak is PEAK_LEARNING_RATE
HORIZON_CLIP = (0.1, 10.0)  # the range of the peak's horizon factor (HORIZON_REFERENCE / num_steps) ** e
RELATIVE_FLOOR = 1e-3  # the parameter RMS below which a relative step stops shrinking (Adafactor's eps2)
RELATIVE_TO = ("current", "init")  # the parameters a relative step is relative to
ADAM_LR_MULT = 20.0  # the Adam branch's learning rate over the schedule's, as Celo2
ADAM_BETAS = (0.9, 0.95)  # the Adam branch's, as Celo2
MAGNITUDE_BOUND = math.log(2.0)  # the magnitude correction lies in [1/2, 2]
NUM_MAGNITUDE_FEATURES = 3  # ψ = (1, t/num_steps, log(fan-in)/log(1024))


class Celo2State(NamedTuple):
    count: jax.Array  # the number of updates (the training fraction of the magnitude correction)
    acc: PyTree  # a Celo2Acc per parameter tensor


def default_adam_mask(params: PyTree) -> PyTree:
    """True for the tensors of the Adam branch: rank <= 1, or a path containing 'embed' (any case)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, p: bool(np.ndim(p) <= 1 or "embed" in jax.tree_util.keystr(path).lower()), params)


def default_schedule(num_steps: int, peak: float = PEAK_LEARNING_RATE) -> optax.Schedule:
    """Linear warmup from peak/(w+1) over w = min(WARMUP_MAX_STEPS, ⌊WARMUP_FRACTION·num_steps⌋)
    steps (step t < w gets peak·(t+1)/(w+1)), then a cosine from the peak at step w to
    END_FRACTION·peak at num_steps, held there after.

    >>> [round(float(default_schedule(100)(t)) * 1e3, 3) for t in (0, 4, 5, 100)]
    [0.167, 0.833, 1.0, 0.1]
    """
    warmup = min(WARMUP_MAX_STEPS, int(WARMUP_FRACTION * num_steps))
    if warmup == 0:
        return optax.cosine_decay_schedule(peak, num_steps, alpha=END_FRACTION)
    return optax.warmup_cosine_decay_schedule(peak / (warmup + 1), peak, warmup, num_steps, END_FRACTION * peak)


def _fan_in(shape: tuple[int, ...]) -> int:
    return math.prod(shape[:-1]) if len(shape) >= 2 else 1


@dataclasses.dataclass(frozen=True)
class Celo2:
    """Architecture config (static). `init(key) -> theta`, `optimizer(theta, num_steps=T) -> optax`."""

    name: ClassVar[str] = "celo2"
    version: ClassVar[int] = 2  # bumped whenever the same theta would step differently
    hidden_size: int = 4
    hidden_layers: int = 1
    mom_decay: float = 0.9
    rms_decay: float = 0.95
    adam_lr_mult: float = ADAM_LR_MULT
    newton_schulz: bool = False
    magnitude_correction: bool = False
    horizon_exponent: float = HORIZON_EXPONENT  # the default peak: PEAK_LEARNING_RATE · (HORIZON_REFERENCE / T) ** e
    relative_step: float = 0.0  # r > 0: each learned tensor's step × max(RMS(p), RELATIVE_FLOOR) / r; 0: off
    relative_to: str = "current"  # the p of relative_step: "current" parameters, or those at "init"

    @classmethod
    def older_file(cls, version: object, config: dict) -> dict | str:
        """A version-1 file (its default peak did not depend on num_steps) steps as it did with
        `horizon_exponent` 0 unless its config names one; other versions are refused."""
        if version != 1:
            return f"this lopt reads Celo2 file versions 1 and {cls.version}, not {version!r}"
        return {"horizon_exponent": 0.0, **config}

    def __post_init__(self):
        for name in ("hidden_size", "hidden_layers"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("mom_decay", "rms_decay"):
            value = getattr(self, name)
            if not (_is_real(value) and 0.0 <= value < 1.0):
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        if not (_is_real(self.adam_lr_mult) and self.adam_lr_mult > 0 and math.isfinite(self.adam_lr_mult)):
            raise ValueError(f"adam_lr_mult must be a positive number, got {self.adam_lr_mult!r}")
        for name in ("newton_schulz", "magnitude_correction"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not (_is_real(self.relative_step) and 0.0 <= self.relative_step < math.inf):
            raise ValueError(f"relative_step must be a number >= 0 (0: off), got {self.relative_step!r}")
        if self.relative_to not in RELATIVE_TO:
            raise ValueError(f"relative_to must be one of {RELATIVE_TO}, got {self.relative_to!r}")
        if not (_is_real(self.horizon_exponent) and 0.0 <= self.horizon_exponent <= 1.0):
            raise ValueError(f"horizon_exponent must be a number in [0, 1], got {self.horizon_exponent!r}")

    def peak(self, num_steps: int) -> float:
        """The default schedule's peak for a run of `num_steps`: PEAK_LEARNING_RATE times
        (HORIZON_REFERENCE / num_steps) ** horizon_exponent, the factor clipped to HORIZON_CLIP
        (longer runs of noisy gradients take smaller steps, as SGD's 1/√T).

        >>> [Celo2(horizon_exponent=0.5).peak(t) for t in (250, 1000, 4000)]
        [0.002, 0.001, 0.0005]
        """
        factor = (HORIZON_REFERENCE / num_steps) ** self.horizon_exponent
        return PEAK_LEARNING_RATE * float(min(max(factor, HORIZON_CLIP[0]), HORIZON_CLIP[1]))

    def init(self, key: jax.Array) -> dict:
        sizes = (NUM_FEATURES,) + (self.hidden_size,) * self.hidden_layers + (1,)
        mlp = common.init_mlp(key, sizes)
        mlp[f"w{self.hidden_layers}"] = jnp.zeros_like(mlp[f"w{self.hidden_layers}"])
        theta = {"mlp": mlp, "skip": jnp.zeros((NUM_FEATURES,), jnp.float32).at[ADAM_FEATURE].set(1.0)}
        if self.magnitude_correction:
            theta["magnitude"] = jnp.zeros((NUM_MAGNITUDE_FEATURES,), jnp.float32)
        return theta

    def magnitude(self, theta: dict, frac: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """exp(MAGNITUDE_BOUND · tanh(ψ · w)), ψ = (1, training fraction, log(fan-in)/log(1024))."""
        psi = jnp.stack([jnp.ones_like(frac), frac, jnp.full_like(frac, math.log(_fan_in(shape)) / math.log(1024.0))])
        return jnp.exp(MAGNITUDE_BOUND * jnp.tanh(psi @ theta["magnitude"]))

    def adopt(self, theta: dict, other: Celo2) -> dict:
        """`theta` of architecture `other` as a theta of this one: `newton_schulz`,
        `horizon_exponent`, `relative_step` and `relative_to` may differ, and `magnitude_correction`
        may be turned on (its weights start at zero, a factor of 1)."""
        toggles = {"newton_schulz": self.newton_schulz, "magnitude_correction": self.magnitude_correction,
                   "horizon_exponent": self.horizon_exponent, "relative_step": self.relative_step,
                   "relative_to": self.relative_to}
        if not isinstance(other, Celo2) or dataclasses.replace(other, **toggles) != self \
                or (other.magnitude_correction and not self.magnitude_correction):
            raise ValueError(f"cannot adopt a theta of {other!r} as one of {self!r}: only changing newton_schulz, "
                             "horizon_exponent, relative_step or relative_to, and turning magnitude_correction on, are "
                             "supported")
        out = {"mlp": theta["mlp"], "skip": theta["skip"]}
        if self.magnitude_correction:
            out["magnitude"] = theta.get("magnitude", jnp.zeros((NUM_MAGNITUDE_FEATURES,), jnp.float32))
        return out

    def schedule(self, num_steps: int | None, learning_rate: float | Callable | None = None) -> optax.Schedule:
        """lr(t): `default_schedule(num_steps)` times a float `learning_rate`, or the optax schedule
        `learning_rate` itself. Raises one ValueError for a bad combination."""
        _check_num_steps(num_steps)
        if callable(learning_rate):
            return learning_rate
        mult = 1.0 if learning_rate is None else _positive_number("learning_rate", learning_rate,
                                                                   "a positive float multiplier or an optax schedule")
        if num_steps is None:
            raise ValueError("Celo2 needs num_steps= (its default schedule's length) unless learning_rate= is an "
                             "optax schedule")
        return default_schedule(num_steps, self.peak(num_steps) * mult)

    def optimizer(
        self, theta: dict, *, num_steps: int | None = None, learning_rate: float | Callable | None = None,
        weight_decay: float = WEIGHT_DECAY, adam_mask: PyTree | Callable | None = None,
        roles: PyTree | None = None, fan_in: PyTree | None = None,
    ) -> optax.GradientTransformationExtraArgs:
        """The optimizer as an optax transformation; `update` requires params.

        Args:
          num_steps: the run's length, for the default schedule (and the magnitude correction).
          learning_rate: a positive float multiplying the default schedule (default 1), or an optax
            schedule replacing it (then num_steps may be left out).
          weight_decay: decoupled, × lr(t), on the learned tensors (default WEIGHT_DECAY).
          adam_mask: which tensors go to the Adam branch: a pytree of bools shaped like the params,
            or a callable params -> such a pytree; default `default_adam_mask`.
          roles, fan_in: μP metadata (`lopt.scale_by_mup`, chained last; identity without them).
        """
        schedule = self.schedule(num_steps, learning_rate)
        weight_decay = _positive_number("weight_decay", weight_decay, "a number >= 0", allow_zero=True)
        to_adam = _mask_fn(adam_mask)
        relative = ([scale_by_param_rms(self.relative_step, to_adam, at_init=self.relative_to == "init")]
                    if self.relative_step > 0 else [])
        return skip_nonfinite(optax.chain(
            scale_by_celo2(self, theta, num_steps=num_steps, adam_mask=to_adam),
            *relative,
            optax.add_decayed_weights(weight_decay, mask=lambda p: jax.tree.map(lambda a: not a, to_adam(p))),
            optax.scale_by_learning_rate(schedule),
            mup.scale_by_mup(roles, fan_in),
        ))


def scale_by_celo2(arch: Celo2, theta: dict, *, num_steps: int | None = None,
                   adam_mask: PyTree | Callable | None = None) -> optax.GradientTransformationExtraArgs:
    """Celo2's directions as an optax transformation: the unit-RMS learned direction of every
    learned tensor (× the magnitude correction if on), adam_lr_mult × Adam's direction for the
    Adam branch, zero for a tensor with a non-finite gradient (whose accumulators stay)."""
    _check_num_steps(num_steps)
    to_adam = _mask_fn(adam_mask)
    b_learned, b_adam = (arch.mom_decay, arch.rms_decay), ADAM_BETAS

    def init_fn(params):
        if jax.tree.leaves(params):  # (optax.tree.map_params initializes with a leafless placeholder)
            _routing(jax.tree.structure(params), to_adam(params))
        return Celo2State(jnp.zeros((), jnp.int32), jax.tree.map(init_acc, params))

    def step(g_in, p, acc, adam, frac):
        g, ok = clip_gradient(g_in)
        acc = update_acc(acc, g, ok, *(b_adam if adam else b_learned))
        if adam:
            d = arch.adam_lr_mult * adam_direction(acc, *b_adam)
        else:
            d = jnp.where(acc.v > 0, direction(theta["mlp"], theta["skip"], raw_features(p, g, acc)), 0.0)
            if arch.newton_schulz and d.ndim >= 2:
                d = newton_schulz(d)
            d = unit_rms(d)
            if arch.magnitude_correction:
                d = d * arch.magnitude(theta, frac, p.shape).astype(d.dtype)
        return jnp.where(ok, d, 0.0).astype(g_in.dtype), acc

    def update_fn(updates, state, params=None, **extra):
        del extra
        common.require_params(params, "Celo2")
        leaves, treedef = jax.tree.flatten(updates)
        masks = _routing(treedef, to_adam(updates))
        frac = (jnp.zeros((), jnp.float32) if num_steps is None
                else jnp.minimum(state.count.astype(jnp.float32) / num_steps, 1.0))
        out = [step(g, p, a, m, frac) for g, p, a, m in zip(
            leaves, _flatten_like(treedef, params, "params"), treedef.flatten_up_to(state.acc), masks)]
        new = treedef.unflatten([u for u, _ in out])
        return new, Celo2State(optax.safe_increment(state.count), treedef.unflatten([a for _, a in out]))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class ParamScaleState(NamedTuple):
    scale: jax.Array  # (tensors,) in tree order: max(RMS(p at init), RELATIVE_FLOOR) / r (1 for the Adam branch)


def scale_by_param_rms(relative_step: float, adam_mask: PyTree | Callable | None = None, *,
                       at_init: bool = False) -> optax.GradientTransformationExtraArgs:
    """Each learned tensor's update × max(RMS(p), RELATIVE_FLOOR) / relative_step (Adafactor's
    parameter scaling); the Adam branch's (`adam_mask`) pass unchanged. p is the current
    parameters, or with `at_init` those `init` saw (a fixed factor per tensor, kept in the state
    as one vector, so that the state's structure does not depend on the parameters').

    >>> import jax.numpy as jnp
    >>> t = scale_by_param_rms(0.1, at_init=True)
    >>> params = {"b": jnp.zeros(2), "w": jnp.full((2, 2), 0.5)}
    >>> u, _ = t.update({"b": jnp.ones(2), "w": jnp.ones((2, 2))}, t.init(params), params)
    >>> u["b"][0].item(), u["w"][0, 0].item()
    (1.0, 5.0)
    """
    relative_step = _positive_number("relative_step", relative_step, "a positive number")
    to_adam = _mask_fn(adam_mask)

    def factors(params: list, adam: list[bool]) -> list:
        """Per tensor: the factor of a learned one's p, None for the Adam branch's."""
        return [None if a else jnp.maximum(jnp.sqrt(jnp.mean(jnp.square(p.astype(jnp.float32)))), RELATIVE_FLOOR)
                / relative_step for p, a in zip(params, adam)]

    def init_fn(params):
        if not at_init:
            return optax.EmptyState()
        leaves, treedef = jax.tree.flatten(params)
        if not leaves:  # (optax.tree.map_params initializes with a leafless placeholder)
            return ParamScaleState(jnp.ones((0,), jnp.float32))
        adam = _routing(treedef, to_adam(params))
        return ParamScaleState(jnp.stack([jnp.float32(1.0) if f is None else f for f in factors(leaves, adam)]))

    def update_fn(updates, state, params=None, **extra):
        del extra
        leaves, treedef = jax.tree.flatten(updates)
        adam = _routing(treedef, to_adam(updates))
        if at_init:
            scales = [None if a else state.scale[i] for i, a in enumerate(adam)]
        else:
            common.require_params(params, "scale_by_param_rms")
            scales = factors(_flatten_like(treedef, params, "params"), adam)
        new = [u if s is None else u * s.astype(u.dtype) for u, s in zip(leaves, scales)]
        return treedef.unflatten(new), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """`inner` with a zero update for every tensor whose gradient has a non-finite entry."""

    def update_fn(updates, state, params=None, **extra):
        ok = jax.tree.map(is_finite, updates)
        new, state = inner.update(updates, state, params, **extra)
        return jax.tree.map(lambda u, o: jnp.where(o, u, jnp.zeros_like(u)), new, ok), state

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


def _flatten_like(treedef, tree: PyTree, what: str) -> list:
    try:
        return treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what} does not match the gradients' tree structure: {e}") from None


def _routing(treedef, mask: PyTree) -> list[bool]:
    """The Adam-branch flags of the tensors of `treedef`, from a mask that must match it."""
    flags = _flatten_like(treedef, mask, "adam_mask")
    if not all(isinstance(m, (bool, np.bool_)) for m in flags):
        raise ValueError("adam_mask must give a Python bool per tensor, got " + repr(flags))
    return [bool(m) for m in flags]


def _mask_fn(adam_mask: PyTree | Callable | None) -> Callable[[PyTree], PyTree]:
    if adam_mask is None:
        return default_adam_mask
    if callable(adam_mask):
        return adam_mask
    leaves = jax.tree.leaves(adam_mask)
    if not leaves or not all(isinstance(m, (bool, np.bool_)) for m in leaves):
        raise ValueError("adam_mask must be a pytree of bools shaped like the params, or a callable returning one")
    return lambda params: adam_mask


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _positive_number(name: str, x: object, what: str, allow_zero: bool = False) -> float:
    if isinstance(x, (np.ndarray, jax.Array)) and np.ndim(x) == 0 and not isinstance(x, jax.core.Tracer) \
            and jnp.issubdtype(x.dtype, jnp.floating):
        x = float(x)
    if not (_is_real(x) and math.isfinite(x) and (x >= 0 if allow_zero else x > 0)):
        raise ValueError(f"{name} must be {what}, got {x!r}")
    return float(x)


def _check_num_steps(num_steps: object) -> None:
    if num_steps is not None and not (isinstance(num_steps, numbers.Integral) and not isinstance(num_steps, bool)
                                      and num_steps >= 1):
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
