"""`Setup`: everything a meta-training run needs, as typed values (`configs.build` makes one
from a config file; nothing under `outer/` reads the config dict itself)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import optax

import estimators
import inner_tasks


@dataclasses.dataclass(frozen=True)
class Setup:
    """A checked meta-training run: what to train, how, and the cadences of its side work."""

    seed: int
    num_steps: int  # outer (meta) steps
    family: inner_tasks.TaskFamily
    eval_family: inner_tasks.TaskFamily
    arch: Any  # a lopt architecture
    make_estimator: Callable[..., estimators.Estimator]  # (task, horizon=None) -> its estimator
    num_groups: int  # task groups averaged in each meta-step
    resample_every: int  # meta-steps between redraws of a group's task spec
    outer: optax.GradientTransformation
    schedule: optax.Schedule  # the outer learning rate (logged)
    log_every: int
    histograms_every: int  # 0: off
    probe_every: int  # 0: off
    probe_repeats: int
    eval_every: int
    eval_tasks: int
    eval_steps: int
    eval_curve_every: int
    eval_adam_lr: float
    checkpoint_every: int
    keep: int  # checkpoints kept
    mesh_size: int  # devices along the particle axis
    init_theta: Any  # theta from config.init_from, or None: the architecture's init
    init_header: dict | None  # that file's header (its provenance goes into the export's)
    fingerprint: dict[str, str]  # what a resumed run must share with its checkpoint
    config: dict  # the config as given, for provenance (export, events, checkpoints)
    config_json: str
    horizons: tuple[int, ...] = ()  # each group's lockstep horizon is drawn from these; (): the estimator's
    horizon_weights: tuple[float, ...] = ()
    buckets: int = 0  # task shapes drawn once per run that every redraw reuses (outer.groups); 0: off

    def group_horizon(self, key: jax.Array) -> int | None:
        """A group's inner horizon for one epoch (None: the estimator's own)."""
        if not self.horizons:
            return None
        p = jax.numpy.asarray(self.horizon_weights) / sum(self.horizon_weights)
        return self.horizons[int(jax.random.choice(key, len(self.horizons), p=p))]

    def inner_steps_per_meta_step(self, ests: list[estimators.Estimator]) -> int:
        """Inner steps (all members of all particles) behind one meta-step."""
        return sum(est.inner_steps_per_estimate for est in ests)
