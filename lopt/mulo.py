"""μLO / small_fc_lopt: a per-parameter MLP over 28 accumulator features and 11 time features.

The MLP (39 → hidden → hidden → 2, ReLU) outputs a direction d and a magnitude m per parameter;
the step is −λ1·d·exp(λ2·m). Under μP, `optimizer` chains `lopt.scale_by_mup` after it (1/fan_in
on hidden weights), so the optimizer's state is the pair (MuLOState, optax.EmptyState()). The
three momentum, one second-moment and three Adafactor decays are meta-learned through μLO's
reparametrization.

The features are `lopt.mulo_features`'. Each feature's per-tensor RMS normalization is folded
into the first layer's weights, and the time features (the same for every parameter) into its
bias. Tensors of rank >= 2 run the MLP as plain 2-D matmuls over an (N, 28) feature matrix
(`mulo_features.feature_matrix`), which XLA:CPU fuses into one YNNPACK kernel; vectors, and MLPs
narrow enough to run hidden-first, project the 12 Adafactor row and column statistics on their
vectors and broadcast the result (`mulo_features.project_features`).

>>> import jax, optax
>>> arch = MuLO()
>>> theta = arch.init(jax.random.key(0))
>>> opt = arch.optimizer(theta)
>>> params = {"w": jax.numpy.ones((3, 2))}
>>> state = opt.init(params)
>>> updates, state = opt.update(params, state, params)
>>> jax.tree.map(jax.numpy.shape, updates)
{'w': (3, 2)}
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt import common, mulo_features, mup
from lopt.mulo_features import NUM_FEATURES, NUM_TIME_FEATURES

PyTree = Any


class MuLOState(NamedTuple):
    count: jax.Array
    acc: PyTree  # an Accumulators per parameter tensor


@dataclasses.dataclass(frozen=True)
class MuLO:
    """Architecture config (static). `init(key) -> theta`, `optimizer(theta) -> optax transform`."""

    name: ClassVar[str] = "mulo"
    version: ClassVar[int] = mulo_features.FEATURE_VERSION
    hidden_size: int = 32
    step_mult: float = 0.01  # λ1
    exp_mult: float = 0.001  # λ2
    mom_decays: tuple[float, float, float] = (0.9, 0.99, 0.999)
    rms_decay: float = 0.999
    fac_decays: tuple[float, float, float] = (0.9, 0.99, 0.999)

    def __post_init__(self):
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        for d in (*self.mom_decays, self.rms_decay, *self.fac_decays):
            if not 0.0 <= d < 1.0:
                raise ValueError(f"decays must lie in [0, 1), got {d}")
        if len(self.mom_decays) != 3 or len(self.fac_decays) != 3:
            raise ValueError("mom_decays and fac_decays need exactly 3 values")

    @property
    def num_inputs(self) -> int:
        return NUM_FEATURES + NUM_TIME_FEATURES

    def init(self, key: jax.Array) -> dict:
        h = self.hidden_size
        return {
            "mlp": common.init_mlp(key, (self.num_inputs, h, h, 2)),
            "decay_logits": {"mom": jnp.zeros((3,), jnp.float32), "rms": jnp.zeros((), jnp.float32),
                             "fac": jnp.zeros((3,), jnp.float32)},
        }

    def decays(self, theta: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
        logits = theta["decay_logits"]
        return (
            common.decay_from_logit(logits["mom"], jnp.asarray(self.mom_decays)),
            common.decay_from_logit(logits["rms"], jnp.asarray(self.rms_decay)),
            common.decay_from_logit(logits["fac"], jnp.asarray(self.fac_decays)),
        )

    def direction_magnitude(self, mlp: dict, p, g, acc, time_11) -> tuple[jax.Array, jax.Array]:
        """MLP outputs (d, m) for one tensor; `acc` already includes g."""
        hf = common.is_hidden_first(self.hidden_size)
        b0 = mlp["b0"] + time_11 @ mlp["w0"][NUM_FEATURES:]
        if p.ndim >= 2 and not hf:
            return self._matrix_direction_magnitude(mlp, p, g, acc, b0)
        h = mulo_features.project_features(p, g, acc, mlp["w0"][:NUM_FEATURES], hf)
        out = common.apply_mlp_tail(mlp, common.add_bias(h, b0, hf), hidden_first=hf)
        return (out[0], out[1]) if hf else (out[..., 0], out[..., 1])

    @staticmethod
    def _matrix_direction_magnitude(mlp: dict, p, g, acc, b0) -> tuple[jax.Array, jax.Array]:
        """(d, m) for a tensor of rank >= 2 as one 2-D MLP over `mulo_features.feature_matrix`, each
        feature's RMS folded into the first layer's weights (fused by XLA:CPU into one kernel)."""
        x, rms = mulo_features.feature_matrix(p, g, acc)
        w0 = mlp["w0"][jnp.asarray(mulo_features.MATRIX_ORDER)] / rms[:, None]
        h = jax.nn.relu(common.add_bias(x @ w0, b0))
        h = jax.nn.relu(common.add_bias(h @ mlp["w1"], mlp["b1"]))
        out = common.dense_pairs(h, mlp["w2"], mlp["b2"]).reshape(p.shape + (2,))
        return out[..., 0], out[..., 1]

    def outputs(self, theta: dict, updates: PyTree, state, params: PyTree) -> dict[str, jax.Array]:
        """The MLP's direction d and magnitude m for every parameter (flattened), as the next
        `update(updates, state, params)` computes them; for monitoring.

        `state` is the optimizer's whole state, as `optimizer(theta, ...).init` returns it (the
        chain's tuple, whose first entry is the MuLOState); a bare MuLOState is accepted too."""
        if not isinstance(state, MuLOState):
            state = state[0]
        mom_d, rms_d, fac_d = self.decays(theta)
        time_11 = mulo_features.time_features(state.count)
        g_leaves, treedef = jax.tree.flatten(updates)
        ds, ms = [], []
        for g, p, a in zip(g_leaves, treedef.flatten_up_to(params), treedef.flatten_up_to(state.acc)):
            a = mulo_features.update_accumulators(a, g, mom_d, rms_d, fac_d)
            d, m = self.direction_magnitude(theta["mlp"], p, g, a, time_11)
            ds.append(d.ravel())
            ms.append(m.ravel())
        return {"direction": jnp.concatenate(ds), "magnitude": jnp.concatenate(ms)}

    def optimizer(
        self, theta: dict, *, roles: PyTree | None = None, fan_in: PyTree | None = None, num_steps: int | None = None
    ) -> optax.GradientTransformationExtraArgs:
        """The learned optimizer as an optax transformation; `update` requires params.

        roles/fan_in (plain pytrees like params) switch on μP update scaling (`lopt.scale_by_mup`,
        chained after μLO's step); num_steps is accepted for a uniform interface and unused (μLO's
        time features are absolute)."""
        del num_steps
        mom_d, rms_d, fac_d = self.decays(theta)

        def init_fn(params):
            return MuLOState(jnp.zeros((), jnp.int32), jax.tree.map(mulo_features.init_accumulators, params))

        def update_fn(updates, state, params=None, **extra):
            del extra
            common.require_params(params, "MuLO")
            time_11 = mulo_features.time_features(state.count)
            acc = jax.tree.map(lambda g, a: mulo_features.update_accumulators(a, g, mom_d, rms_d, fac_d),
                               updates, state.acc)

            def step(g, p, a):
                d, m = self.direction_magnitude(theta["mlp"], p, g, a, time_11)
                return (-self.step_mult * d * jnp.exp(self.exp_mult * m)).astype(g.dtype)

            new = jax.tree.map(step, updates, params, acc)
            return new, MuLOState(optax.safe_increment(state.count), acc)

        core = optax.GradientTransformationExtraArgs(init_fn, update_fn)
        return optax.chain(core, mup.scale_by_mup(roles, fan_in))
