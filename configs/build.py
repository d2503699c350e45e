"""From a config to typed values: every check runs here, before anything compiles.

`build(config)` returns an `outer.Setup` holding the task family, the learned-optimizer
architecture, an estimator factory, the outer optimizer and the cadences; library code only ever
sees these typed values. `fingerprint(config)` is what a resumed run must share with the
checkpoint it resumes.

>>> from configs import tiny
>>> setup = build(tiny.get_config())
>>> setup.num_steps, setup.arch.name
(6, 'mulo')
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import ml_collections

import estimators
import inner_tasks
import lopt
from outer import OuterOptimizer, Setup

# Config paths that may change when a run is resumed (cadences, length, evaluation).
RESUMABLE_CHANGES = ("num_steps", "eval", "log", "probe", "checkpoint", "mesh")
ADDED_OFF = {"groups": {"horizons": (), "horizon_weights": (), "buckets": 0},
             "lopt": {"horizon_exponent": 0.0}}  # settings added later: at these values a
# run's fingerprint is that of a run from before they existed, so its workdir still resumes


def _family(c: ml_collections.ConfigDict, what: str) -> inner_tasks.TaskFamily:
    """The family of config section `what` (its checks and messages: `inner_tasks.family_from_settings`)."""
    settings = c.to_dict() if isinstance(c, ml_collections.ConfigDict) else c
    return inner_tasks.family_from_settings(settings, f"config.{what}")


def _arch(c: ml_collections.ConfigDict):
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in c.items() if k != "name"}
    try:
        return lopt.get_arch(c.name, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad settings for config.lopt ({c.name!r}): {e}") from None


def _init_from(path_or_name: str, arch) -> tuple[object, dict | None]:
    """(theta, file header) of `config.init_from`, or (None, None) when it is empty. The file's
    architecture and settings must be config.lopt's: a mismatch names the settings to use."""
    if not path_or_name:
        return None, None
    try:
        file_arch, theta, header = lopt.load_theta(path_or_name)
    except lopt.LoptFileError as e:
        raise ValueError(f"config.init_from: {e}") from None
    if file_arch != arch:
        try:  # an architecture may take over a theta of a narrower config of itself (`adopt`)
            return arch.adopt(theta, file_arch), header
        except (AttributeError, ValueError):
            pass
        settings = " ".join(f"--config.lopt.{k}={v!r}" for k, v in header.get("arch_config", {}).items())
        raise ValueError(f"config.init_from {path_or_name!r} holds {file_arch!r}, but config.lopt builds {arch!r}; "
                         f"use --config.lopt.name={file_arch.name} {settings}")
    return theta, header


def _positive(**values) -> None:
    for name, v in values.items():
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ValueError(f"config.{name} must be a positive number, got {v!r}")


def _nonnegative_int(**values) -> None:
    for name, v in values.items():
        if not (isinstance(v, int) and v >= 0):
            raise ValueError(f"config.{name} must be an integer >= 0 (0 turns it off), got {v!r}")


def _mesh_size(c: ml_collections.ConfigDict, est: estimators.Estimator) -> int:
    """Devices along the particle axis; a multi-host run spans every device of every host."""
    _nonnegative_int(**{"mesh.particles": c.particles})
    n, devices = est.num_particles, jax.device_count()
    try:
        size = estimators.sharding.particles_per_mesh(est, devices, c.particles)
    except ValueError as e:
        raise ValueError(f"config.{e}") from None
    if jax.process_count() > 1 and size != devices:
        raise ValueError(f"config.mesh.particles: a run over {jax.process_count()} hosts shards the particles over all "
                         f"{devices} devices, so the estimator's {n} particles must be a multiple of {devices}")
    return size


def _estimator_factory(c: ml_collections.ConfigDict, arch) -> Callable[..., estimators.Estimator]:
    if c.name not in estimators.ESTIMATORS:
        raise ValueError(f"unknown estimator {c.name!r}; valid: {sorted(estimators.ESTIMATORS)}")
    kwargs = {k: c[k] for k in estimators.settings(c.name)}
    truncated = estimators.takes_truncation(c.name)
    if truncated:
        kwargs["trunc"] = estimators.Truncation(
            trunc_length=c.trunc_length, min_horizon=c.min_horizon, max_horizon=c.max_horizon,
            lockstep=c.lockstep, objective=c.objective, max_loss=c.max_loss,
        )
    default = c.max_horizon if truncated else c.horizon

    def make(task: inner_tasks.Task, horizon: int | None = None) -> estimators.Estimator:
        """The estimator on `task`; `horizon`: a group's own lockstep horizon (groups.horizons)."""
        kw = dict(kwargs)
        if horizon is not None:
            kw["trunc"] = dataclasses.replace(kw["trunc"], min_horizon=horizon, max_horizon=horizon)
        problem = estimators.LOProblem(task=task, arch=arch, split=c.split, normalize=c.normalize,
                                       num_steps=default if horizon is None else horizon)
        return estimators.get_estimator(c.name, problem=problem, **kw)

    return make


def build(config: ml_collections.ConfigDict) -> Setup:
    """Checks `config` and turns it into typed values; raises ValueError with one clear message."""
    c = config
    _positive(num_steps=c.num_steps, **{f"outer.{k}": c.outer[k] for k in ("peak_lr", "end_lr", "clip")})
    _nonnegative_int(**{"outer.warmup_steps": c.outer.warmup_steps, "log.histograms_every": c.log.histograms_every,
                        "probe.every": c.probe.every})
    if not 0 <= c.outer.weight_decay < 1:
        raise ValueError(f"config.outer.weight_decay must lie in [0, 1), got {c.outer.weight_decay}")
    for name in ("log.every", "eval.every", "checkpoint.every", "checkpoint.keep", "groups.num",
                 "groups.resample_every", "eval.num_tasks", "eval.num_steps", "eval.curve_every", "probe.repeats"):
        section, field = name.split(".")
        _positive(**{name: c[section][field]})
    if c.eval.num_steps % c.eval.curve_every:
        raise ValueError(f"config.eval.num_steps ({c.eval.num_steps}) must be a multiple of "
                         f"eval.curve_every ({c.eval.curve_every})")
    if c.outer.warmup_steps >= c.num_steps:
        raise ValueError(f"config.outer.warmup_steps ({c.outer.warmup_steps}) must be below num_steps ({c.num_steps})")
    family = _family(c.family, "family")
    eval_family = _family(c.eval.family, "eval.family") if len(c.eval.family) else family
    arch = _arch(c.lopt)
    init_theta, init_header = _init_from(c.init_from, arch)
    make_estimator = _estimator_factory(c.estimator, arch)
    task = family.task(family.sample(jax.random.key(c.seed)))
    try:
        est = make_estimator(task)  # the estimator's own checks (e.g. a strategy × shaping full ES refuses)
    except ValueError as e:
        raise ValueError(f"config.estimator: {e}") from None
    mesh_size = _mesh_size(c.mesh, est)
    horizons, horizon_weights = _group_horizons(c)
    outer, schedule = OuterOptimizer(**c.outer.to_dict()).build(c.num_steps)
    return Setup(
        seed=c.seed, num_steps=c.num_steps, family=family, eval_family=eval_family, arch=arch,
        make_estimator=make_estimator, num_groups=c.groups.num, resample_every=c.groups.resample_every,
        outer=outer, schedule=schedule, log_every=c.log.every, histograms_every=c.log.histograms_every,
        probe_every=c.probe.every, probe_repeats=c.probe.repeats, eval_every=c.eval.every,
        eval_tasks=c.eval.num_tasks, eval_steps=c.eval.num_steps, eval_curve_every=c.eval.curve_every,
        eval_adam_lr=c.eval.adam_lr, checkpoint_every=c.checkpoint.every, keep=c.checkpoint.keep,
        mesh_size=mesh_size, init_theta=init_theta, init_header=init_header, fingerprint=fingerprint(c), config=c.to_dict(), config_json=c.to_json(),
        horizons=horizons, horizon_weights=horizon_weights, buckets=_buckets(c),
    )


def _buckets(c: ml_collections.ConfigDict) -> int:
    """config.groups.buckets, checked: an int in [0, the programs an estimator function keeps]."""
    k = c.groups.get("buckets", 0)
    if not (isinstance(k, int) and 0 <= k <= estimators.MAX_PROGRAMS):
        raise ValueError(f"config.groups.buckets must be an integer in [0, {estimators.MAX_PROGRAMS}] (0: off; at most "
                         f"the programs one estimator function keeps compiled, so no redraw evicts one), got {k!r}")
    return k


def _group_horizons(c: ml_collections.ConfigDict) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(groups.horizons, their weights), checked: a lockstep truncated estimator, positive values."""
    hs, ws = tuple(c.groups.horizons), tuple(c.groups.horizon_weights)
    if not hs:
        if ws:
            raise ValueError("config.groups.horizon_weights needs groups.horizons")
        return (), ()
    if not (estimators.takes_truncation(c.estimator.name) and c.estimator.lockstep):
        raise ValueError("config.groups.horizons needs a truncated estimator with estimator.lockstep=True (each "
                         f"group's slots run its horizon together); got {c.estimator.name!r}, "
                         f"lockstep={c.estimator.lockstep}")
    if not all(isinstance(h, int) and h >= 1 for h in hs):
        raise ValueError(f"config.groups.horizons must be positive ints, got {hs}")
    ws = ws or (1.0,) * len(hs)
    if len(ws) != len(hs) or not all(isinstance(w, (int, float)) and w > 0 for w in ws):
        raise ValueError(f"config.groups.horizon_weights must be {len(hs)} positive numbers, got {ws}")
    return hs, tuple(float(w) for w in ws)


def without_added_off(d: dict) -> dict:
    """A config dict without the settings added later (ADDED_OFF) that sit at their off value: what
    a config from before they existed looks like."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    for section, off in ADDED_OFF.items():
        for k, v in off.items():
            if section in d and k in d[section]:
                value = d[section][k]
                if (tuple(value) if isinstance(value, (list, tuple)) else value) == v:
                    del d[section][k]
    return d


def fingerprint(config: ml_collections.ConfigDict) -> dict[str, str]:
    """The config sections a resumed run must share with its checkpoint (JSON text per section)."""
    d = without_added_off(config.to_dict())
    return {k: ml_collections.ConfigDict({"v": v}).to_json() if isinstance(v, dict) else repr(v)
            for k, v in sorted(d.items()) if k not in RESUMABLE_CHANGES}

