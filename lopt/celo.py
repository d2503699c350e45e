"""Celo: a cheap, Celo2-style learned optimizer for ordinary (standard-parametrized) models.

Per parameter, 10 features from two momenta, one second moment and one Adafactor factored second
moment (`FEATURE_NAMES`), each divided by its RMS over the tensor, feed a small MLP
(10 → hidden → hidden → 1, ReLU) plus a learned linear skip over the same features. Their sum is
the direction d, which is normalized to unit RMS over each tensor (Celo2's output normalization)
and scaled by a per-tensor step size:

    update = −step_mult · prior · exp(ψ · w_s) · d / rms(d)

ψ holds 5 schedule features of the training fraction t/num_steps (the optimizer knows the
horizon) and 2 static shape features (is-matrix, log fan-in); options add more:

- `model_features`: log(number of matrices)/log(16), a depth proxy, so the step can shrink for
  deep models.
- `progress_feature`: each tensor's gradient progress, log10 of its recent gradient RMS over its
  peak so far (never positive), so the step can shrink as the gradients fall, as SGD's does.
- `width_power` p, `depth_power` q: a static `prior` of (ref_fan_in/fan_in)^p on matrices wider
  than the reference (μP's law for Adam-like updates at p = 1) and (ref_matrices/#matrices)^q in
  models deeper than it; both only shrink the step and are 1 at and below the reference.
- `decay_gate`: the skip weight on the parameter feature p/rms(p), a decoupled weight decay, is
  multiplied per tensor by 10^(−κ · progress) (`gate`), κ learned, so the decay grows as a
  tensor's gradients fade below their peak (a memorized small dataset) and not while a large one
  is still being learned.
- `step_gain` g stores ψ's weights (and κ) divided by g: the same steps, but an ES perturbation
  or an outer Adam step moves them g times as far, since each of these few weights scales every
  update of a tensor and their effect on the meta-loss otherwise drowns in the others' noise.

New weights start where they change nothing (zero, or `progress_init` / `decay_gate_init`), and
`adopt` turns a theta without an option into one with it, so a meta-training run can continue
from a file of a narrower config (`--config.init_from`).

At `init`, the skip is Adam's direction m/√v (β1 = 0.9, β2 = 0.999, no bias correction), the
MLP's last layer and w_s are zero: the untrained optimizer is per-tensor-normalized Adam with
learning rate `step_mult`. Elements that have never had a nonzero gradient (v = 0) do not move,
as with Adam. The accumulators and features are in `lopt.celo_features`.

File versions (`Celo.version`, checked by `lopt.io`): in version 2 the progress feature is
measured against the gradient's peak. Version 1 did not fix it: files written under it with
`progress_feature` may have been meta-trained against the first gradient's RMS and would step
differently here, so they are refused (`Celo.older_file`); every other version-1 file steps
identically and loads.

Cost: 3 floats of state per parameter (two momenta, the second moment) plus the factored rows
and columns; the MLP is written unit by unit over S-shaped arrays, so that XLA fuses it with the
feature math. `benchmarks/lopt_step` measures it against Adam.

Options of `optimizer`: `num_steps` (the horizon; without it the schedule stays at t = 0),
`learning_rate` (a float or optax schedule multiplying every step, default 1), and μP
`roles`/`fan_in` (chained `lopt.scale_by_mup`, identity without them).

>>> import jax, optax
>>> arch = Celo()
>>> opt = arch.optimizer(arch.init(jax.random.key(0)), num_steps=100)
>>> params = {"w": jax.numpy.ones((3, 2)), "b": jax.numpy.zeros((2,))}
>>> state = opt.init(params)
>>> updates, state = opt.update(params, state, params)
>>> jax.tree.map(jax.numpy.shape, updates)
{'b': (2,), 'w': (3, 2)}
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import optax

from lopt import common, mup
from lopt.celo_features import (
    ADAM_FEATURE, NORM_EPS, NUM_FEATURES, NUM_TENSOR_FEATURES, OUT_EPS, PARAM_FEATURE, SCHEDULE_POINTS, CeloAcc,
    CeloState, fan_in, init_acc, mlp_direction, model_feature, num_matrices, progress_feature, raw_features,
    schedule_features, shape_features, update_acc)

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Celo:
    """Architecture config (static). `init(key) -> theta`, `optimizer(theta, num_steps=T) -> optax`."""

    name: ClassVar[str] = "celo"
    version: ClassVar[int] = 2  # bumped whenever the same theta would step differently (see `older_file`)
    hidden_size: int = 8
    step_mult: float = 1e-3
    mom_decays: tuple[float, float] = (0.9, 0.99)
    rms_decay: float = 0.999
    model_features: bool = False
    width_power: float = 0.0
    depth_power: float = 0.0
    ref_fan_in: int = 64
    ref_matrices: int = 3
    progress_feature: bool = False
    progress_init: float = 0.0
    decay_gate: bool = False
    decay_gate_init: float = 0.0
    step_gain: float = 1.0

    @classmethod
    def older_file(cls, version: object, config: dict) -> str | None:
        """Why a file of an older `version` with this `arch_config` would step differently under
        this code (`lopt.io` refuses it with the reason), or None when it steps as it did.

        Version 1 (before the progress feature was measured against the gradient's peak instead of
        its first value) steps identically unless its config turns `progress_feature` on."""
        if version != 1:
            return f"this lopt reads Celo file versions 1 and {cls.version}"
        if config.get("progress_feature"):
            return ("a version-1 Celo file with progress_feature=True may have been meta-trained when the progress "
                    "feature measured the gradient RMS against the first gradient's (version 2 measures it against "
                    "its peak), so its theta would step differently from how it was meta-trained; re-run its recipe "
                    "with this lopt")
        return None

    @property
    def num_step_features(self) -> int:
        """Length of ψ: schedule, shape, and the model and progress features where they are on."""
        return NUM_TENSOR_FEATURES + int(self.model_features) + int(self.progress_feature)

    def __post_init__(self):
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        for name in ("step_mult", "step_gain"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0
                    and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        if len(self.mom_decays) != 2:
            raise ValueError(f"mom_decays needs exactly 2 values, got {self.mom_decays}")
        for d in (*self.mom_decays, self.rms_decay):
            if not 0.0 <= d < 1.0:
                raise ValueError(f"decays must lie in [0, 1), got {d}")
        for name in ("width_power", "depth_power"):
            if not (isinstance(getattr(self, name), (int, float)) and 0.0 <= getattr(self, name) <= 2.0):
                raise ValueError(f"{name} must be a number in [0, 2], got {getattr(self, name)!r}")
        for name in ("ref_fan_in", "ref_matrices"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")

    def init(self, key: jax.Array) -> dict:
        h = self.hidden_size
        mlp = common.init_mlp(key, (NUM_FEATURES + len(SCHEDULE_POINTS), h, h, 1))
        mlp["w2"] = jnp.zeros_like(mlp["w2"])
        return {
            "mlp": mlp,
            "skip": jnp.zeros((NUM_FEATURES,), jnp.float32).at[ADAM_FEATURE].set(1.0),
            "step": self._step_weights(jnp.zeros((NUM_TENSOR_FEATURES,), jnp.float32), None),
            "decay_logits": {"mom": jnp.zeros((2,), jnp.float32), "rms": jnp.zeros((), jnp.float32)},
        } | ({"decay_gate": jnp.full((1,), self.decay_gate_init / self.step_gain, jnp.float32)}
             if self.decay_gate else {})

    def decays(self, theta: dict) -> tuple[jax.Array, jax.Array]:
        logits = theta["decay_logits"]
        return (common.decay_from_logit(logits["mom"], jnp.asarray(self.mom_decays, jnp.float32)),
                common.decay_from_logit(logits["rms"], jnp.asarray(self.rms_decay, jnp.float32)))

    def direction(self, theta: dict, p: jax.Array, g: jax.Array, acc: CeloAcc, sched_5: jax.Array) -> jax.Array:
        """The unnormalized direction d of one tensor (`acc` already includes g): the MLP over the
        RMS-normalized features (the schedule enters the first bias) plus the linear skip."""
        mlp = theta["mlp"]
        x = raw_features(p, g, acc)
        inv_rms = jax.lax.rsqrt(jnp.stack([jnp.mean(xf * xf) for xf in x]) + NORM_EPS)
        n_layers = len([k for k in mlp if k.startswith("w")])
        layers = ((mlp["w0"][:NUM_FEATURES] * inv_rms[:, None], mlp["b0"] + sched_5 @ mlp["w0"][NUM_FEATURES:]),
                  *((mlp[f"w{i}"], mlp[f"b{i}"]) for i in range(1, n_layers)))
        skip = theta["skip"] * inv_rms
        if self.decay_gate:
            skip = skip.at[PARAM_FEATURE].multiply(self.gate(theta, acc))
        return mlp_direction(layers, skip, x)

    def gate(self, theta: dict, acc: CeloAcc) -> jax.Array:
        """10^(−κ · progress): the factor on the skip weight of the parameter feature (κ: the learned
        `decay_gate` weight; progress: `progress_feature(acc)`, in [−4, 0])."""
        kappa = theta["decay_gate"][0] * self.step_gain
        return jnp.exp(-kappa * math.log(10.0) * progress_feature(acc)[0])

    def prior(self, shape: tuple[int, ...], n_matrices: int) -> float:
        """The static step multiplier (ref_fan_in/max(fan_in, ref_fan_in))^width_power (matrices
        only) · (ref_matrices/max(num_matrices, ref_matrices))^depth_power; at most 1, and 1 with
        both powers at 0 (the default)."""
        width = max(fan_in(shape), self.ref_fan_in)
        depth = max(n_matrices, self.ref_matrices)
        return (self.ref_fan_in / width) ** self.width_power * (self.ref_matrices / depth) ** self.depth_power

    def _step_weights(self, tensor_w: jax.Array, model_w: jax.Array | None,
                      progress_w: jax.Array | None = None) -> jax.Array:
        """theta["step"] from ψ's weights: schedule and shape, the model feature's (zero if None), and
        the progress feature's (`progress_init` if None), all stored divided by `step_gain`."""
        parts = [tensor_w]
        if self.model_features:
            parts.append(jnp.zeros((1,), jnp.float32) if model_w is None else model_w)
        if self.progress_feature:
            parts.append(jnp.full((1,), self.progress_init, jnp.float32) if progress_w is None else progress_w)
        return jnp.concatenate(parts) / self.step_gain

    def step_weights(self, theta: dict) -> jax.Array:
        """ψ's weights w_s: theta["step"] · step_gain."""
        return theta["step"] * self.step_gain

    def step_size(self, theta: dict, shape: tuple[int, ...], sched_5: jax.Array,
                  model: jax.Array | None = None, n_matrices: int | None = None,
                  progress: jax.Array | None = None) -> jax.Array:
        """step_mult · prior · exp(ψ · w_s) for a tensor of this shape at this point of the
        schedule (`model`: `model_feature(params)`, used with `model_features`; `n_matrices`:
        the model's number of tensors of rank >= 2, used by the depth prior, `ref_matrices` if None;
        `progress`: `progress_feature(acc)`, used with `progress_feature`)."""
        parts = [sched_5, shape_features(shape)] + ([model] if self.model_features else [])
        parts += [progress] if self.progress_feature else []
        prior = self.prior(shape, self.ref_matrices if n_matrices is None else n_matrices)
        return self.step_mult * prior * jnp.exp(jnp.concatenate(parts) @ self.step_weights(theta))

    def adopt(self, theta: dict, other: Celo) -> dict:
        """`theta` of architecture `other` as a theta of this one: turning `model_features` on adds
        its step weight at zero (it steps identically), turning `progress_feature` (`decay_gate`) on
        adds its weight at `progress_init` (`decay_gate_init`); the static priors (`width_power`, `depth_power`, their
        references) may differ, which changes the step only away from the reference shape, and
        `step_gain` may differ (ψ's weights are kept). Nothing else may differ.

        >>> old = Celo(); new = Celo(model_features=True)
        >>> new.adopt(old.init(jax.random.key(0)), old)["step"].shape
        (8,)
        """
        priors = ("model_features", "progress_feature", "progress_init", "decay_gate", "decay_gate_init",
                  "width_power", "depth_power", "ref_fan_in", "ref_matrices", "step_gain")
        if not isinstance(other, Celo) or dataclasses.replace(other, **{k: getattr(self, k) for k in priors}) != self \
                or (other.model_features and not self.model_features) \
                or (other.progress_feature and not self.progress_feature) \
                or (other.decay_gate and not self.decay_gate):
            raise ValueError(f"cannot adopt a theta of {other!r} as one of {self!r}: only turning model_features, "
                             "progress_feature or decay_gate on and changing the step priors are supported")
        w = jnp.asarray(other.step_weights(theta), jnp.float32)
        optional, i = {}, NUM_TENSOR_FEATURES  # learned optional weights are kept, in ψ's order
        for flag, key in (("model_features", "model_w"), ("progress_feature", "progress_w")):
            if getattr(other, flag):
                optional[key], i = w[i:i + 1], i + 1
        step = self._step_weights(w[:NUM_TENSOR_FEATURES], optional.pop("model_w", None), **optional)
        out = dict(theta, step=step)
        if self.decay_gate:  # a learned gate weight is kept
            kappa = theta["decay_gate"] * other.step_gain if other.decay_gate else self.decay_gate_init
            out["decay_gate"] = jnp.asarray(kappa, jnp.float32).reshape(1) / self.step_gain
        return out

    def optimizer(
        self, theta: dict, *, num_steps: int | None = None, learning_rate: float | Callable | None = None,
        roles: PyTree | None = None, fan_in: PyTree | None = None,
    ) -> optax.GradientTransformationExtraArgs:
        """The learned optimizer as an optax transformation; `update` requires params."""
        if num_steps is not None and not (isinstance(num_steps, int) and num_steps >= 1):
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        mom_d, rms_d = self.decays(theta)

        def init_fn(params):
            return CeloState(jnp.zeros((), jnp.int32),
                             jax.tree.map(lambda p: init_acc(p, self.progress_feature or self.decay_gate), params))

        def update_fn(updates, state, params=None, **extra):
            del extra
            common.require_params(params, "Celo")
            sched_5 = schedule_features(state.count, num_steps)
            model = model_feature(params) if self.model_features else None
            n_matrices = num_matrices(params)
            acc = jax.tree.map(lambda g, a: update_acc(a, g, mom_d, rms_d), updates, state.acc)

            def step(g, p, a):
                d = jnp.where(a.v > 0, self.direction(theta, p, g, a, sched_5), 0.0)
                d = d * jax.lax.rsqrt(jnp.mean(d * d) + OUT_EPS)
                progress = progress_feature(a) if self.progress_feature else None
                return (-self.step_size(theta, p.shape, sched_5, model, n_matrices, progress) * d).astype(g.dtype)

            new = jax.tree.map(step, updates, params, acc)
            return new, CeloState(optax.safe_increment(state.count), acc)

        parts = [optax.GradientTransformationExtraArgs(init_fn, update_fn)]
        if learning_rate is not None:
            parts.append(optax.scale_by_schedule(learning_rate) if callable(learning_rate)
                         else optax.scale(learning_rate))
        parts.append(mup.scale_by_mup(roles, fan_in))
        return optax.chain(*parts)
