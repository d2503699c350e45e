"""The outer loop: meta-steps over task groups, logging, evaluation, checkpoints and export.

Each meta-step draws a meta-gradient from every task group (`outer.groups`), averages them and
applies the outer optimizer (`outer.optimizer`). A run resumes from the newest checkpoint in its
workdir, bit for bit; SIGINT or SIGTERM checkpoints and returns (`outer.resume`). At the end the
learned optimizer is written to WORKDIR/lopt.safetensors, which `lopt.load` turns into an optax
optimizer. Each estimator's particle axis is sharded over a mesh of `setup.mesh_size` devices
(see estimators/sharding.py); only the first host evaluates, writes events, checkpoints and exports.
`perf/*` events measure the run: throughput, compile time, persistent-cache hits (`lopt.compile_cache`).
"""

from __future__ import annotations

import functools
import json
import pathlib
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from absl import logging

import estimators
import lopt
from lopt import compile_cache
from lopt.common import all_finite
import monitoring
from estimators import sharding
from evaluation import Evaluator
from outer import resume
from outer.groups import Groups, memory_maps
from outer.setup import Setup

EXPORT_NAME = "lopt.safetensors"


@functools.partial(jax.jit, static_argnames=("outer",), donate_argnums=(1, 2))
def outer_step(outer: optax.GradientTransformation, theta, opt_state, grads: list, dropped: list):
    """Averages the meta-gradients of the groups that produced one (not `dropped`, every entry
    finite) and applies one outer-optimizer step; with none, the step is skipped whole: θ and
    the optimizer state (moments, step count, weight decay) stay as they were."""
    used = [~jnp.asarray(d, bool) & all_finite(g) for g, d in zip(grads, dropped)]
    n_used = sum(u.astype(jnp.int32) for u in used)
    denom = jnp.maximum(n_used, 1)
    grad = jax.tree.map(lambda *g: sum(jnp.where(u, x, jnp.zeros_like(x)) for u, x in zip(used, g)) / denom, *grads)
    updates, new_state = outer.update(grad, opt_state, theta)
    skip = n_used == 0
    theta, opt_state = jax.tree.map(lambda old, new: jnp.where(skip, old, new), (theta, opt_state),
                                    (optax.apply_updates(theta, updates), new_state))
    return theta, opt_state, {"outer/grad_norm": optax.tree.norm(grad), "outer/groups_used": n_used,
                              "outer/skipped": skip.astype(jnp.int32)}


def export(workdir: str, setup: Setup, theta, step: int) -> pathlib.Path:
    """Writes WORKDIR/lopt.safetensors (lopt.save), with the run's provenance."""
    meta = {"meta_training_steps": step, "config": setup.config, "source": "meta_train.py"}
    if setup.init_header is not None:  # a continuation: the chain of files it continues, newest first
        prev = setup.init_header.get("provenance", {})
        meta["continues"] = {"init_from": setup.config.get("init_from"), "sha256": setup.init_header.get("sha256"),
                             "provenance": prev}
        meta["total_meta_training_steps"] = step + prev.get("total_meta_training_steps",
                                                            prev.get("meta_training_steps", 0))
    return lopt.save(pathlib.Path(workdir) / EXPORT_NAME, setup.arch, sharding.to_host(theta), meta)


def run(setup: Setup, workdir: str, *, export_only: bool = False,
        on_step: Callable[[int], None] | None = None) -> dict:
    """Meta-trains (resuming from `workdir`), exports, and returns the final summary.

    `on_step(step)` is called after every completed step (tests use it to send signals)."""
    compiled_at_start = compile_cache.stats()
    k_theta, k_groups, k_run, k_eval = jax.random.split(jax.random.key(setup.seed), 4)
    mesh = sharding.make_mesh(setup.mesh_size)
    primary = jax.process_index() == 0
    theta = setup.arch.init(k_theta) if setup.init_theta is None else setup.init_theta
    theta = sharding.replicate(theta, mesh)
    opt_state = sharding.replicate(setup.outer.init(theta), mesh)
    groups = Groups(setup, k_groups, mesh)
    states: list = [None] * setup.num_groups
    start = 0
    resumed = resume.resume(workdir, setup, groups, theta, opt_state)
    if resumed is not None:
        start, tree = resumed
        theta, opt_state, states, k_run = tree["theta"], tree["opt_state"], list(tree["groups"]), tree["key"]
        logging.info("resumed from step %d in %s", start, workdir)
    if export_only:
        if resumed is None:
            raise FileNotFoundError(f"--export: no checkpoint in {workdir}")
        return {"export": str(export(workdir, setup, theta, start))} if primary else {}

    logging.info("particles sharded over %d of %d device(s), %d process(es)", setup.mesh_size, jax.device_count(),
                 jax.process_count())
    writer = monitoring.Writer(workdir, purge_step=start if start else None, enabled=primary)
    if start == 0:
        writer.text("config", "```\n" + json.dumps(setup.config, indent=2) + "\n```")
    evaluator = Evaluator(setup.arch, setup.eval_family, setup.eval_tasks, setup.eval_steps, setup.eval_curve_every,
                          setup.eval_adam_lr, k_eval)
    summary: dict = {}
    if start == 0 and primary:
        summary.update(evaluator.run(writer, 0, sharding.to_host(theta)))
    pending: list[dict] = []
    last_t, last_step = time.perf_counter(), start
    last_compiled = compiled_at_start
    with resume.Stop() as stop, tqdm.tqdm(total=setup.num_steps, initial=start, desc="meta-train", unit="step") as bar:
        step, stopping = start, False
        while step < setup.num_steps and not stopping:
            k_step = jax.random.fold_in(k_run, step)
            theta, opt_state, metrics = _meta_step(setup, mesh, groups, theta, opt_state, states, k_step, step)
            pending.append(metrics)
            step += 1
            bar.update(1)
            if on_step is not None:
                on_step(step)
            stopping = stop.agreed()
            if step % setup.log_every == 0 or step == setup.num_steps or stopping:
                now = time.perf_counter()
                rate = (step - last_step) * setup.inner_steps_per_meta_step(groups.ests) / (now - last_t)
                compiled = compile_cache.stats()
                logged = _log(writer, step, pending, setup,
                              _perf(rate, compiled - compiled_at_start, compiled - last_compiled, groups.flushes))
                bar.set_postfix({"meta_loss": f"{logged['meta/loss']:.4f}", "inner_steps/s": f"{rate:,.0f}"})
                pending, last_t, last_step, last_compiled = [], now, step, compiled
            _side_work(setup, mesh, writer, evaluator, groups, theta, states, k_step, step, primary, summary)
            if step % setup.checkpoint_every == 0 or step == setup.num_steps or stopping:
                resume.save(workdir, step, theta, opt_state, states, k_run, groups, setup)
    summary["step"] = step
    if step >= setup.num_steps and primary:
        summary["export"] = str(export(workdir, setup, theta, step))
        writer.hparams(monitoring.flat_hparams(setup.config),
                       {k: v for k, v in summary.items() if k.startswith("eval/")})
    writer.close()
    summary["theta"], summary["opt_state"] = theta, opt_state
    return summary


def _meta_step(setup: Setup, mesh, groups: Groups, theta, opt_state, states: list, k_step: jax.Array, step: int):
    """One meta-step: every group's estimate (states updated in place), then the outer update."""
    with jax.set_mesh(mesh):  # only the estimators' programs span the mesh
        groups.advance(step, theta, states, jax.random.fold_in(k_step, 1))
        grads, dropped, metrics = [], [], {}
        for g in range(setup.num_groups):
            estimate = estimators.compile_estimate(groups.ests[g])
            grad, states[g], m = estimate(theta, states[g], jax.random.fold_in(k_step, 2 + g))
            grads.append(grad)
            dropped.append(m["meta/dropped"])
            metrics.update({f"group{g}/{k}": v for k, v in m.items()})
            metrics[f"family/{groups.specs[g].name}/{g}/loss"] = m["meta/loss"]
        theta, opt_state, om = outer_step(setup.outer, theta, opt_state, grads, dropped)
    return theta, opt_state, metrics | om


def _side_work(setup: Setup, mesh, writer: monitoring.Writer, evaluator: Evaluator, groups: Groups, theta,
               states: list, k_step: jax.Array, step: int, primary: bool, summary: dict) -> None:
    """Histograms, the variance probe and the held-out evaluation, each on its own cadence."""
    if setup.histograms_every and step % setup.histograms_every == 0 and primary:
        evaluator.histograms(writer, step, sharding.to_host(theta))
    if setup.probe_every and step % setup.probe_every == 0:
        with jax.set_mesh(mesh):
            probe = estimators.variance_probe(groups.ests[0], theta, states[0], jax.random.fold_in(k_step, 0),
                                              setup.probe_repeats)
        writer.scalars(step, sharding.to_host(probe))
    if (step % setup.eval_every == 0 or step == setup.num_steps) and primary:
        summary.update(evaluator.run(writer, step, sharding.to_host(theta)))


# Per-group metrics that are counts: summed over the groups; every other one is averaged.
COUNTS = ("inner/resets", "inner/diverged", "inner/dead", "meta/masked", "meta/dropped", "bmg/bad_targets")
# Metrics that count events per step: summed over the steps between two logs, not averaged.
TOTALS = ("outer/skipped",)


def _perf(rate: float, total: compile_cache.CompileStats, recent: compile_cache.CompileStats,
          flushes: int = 0) -> dict[str, float]:
    """The `perf/` scalars. `inner_steps_per_s`: the inner steps of all particles and groups per
    second since the previous log. `compile_s`: seconds spent tracing, lowering and compiling
    since the previous log (a persistent-cache load counts as compiling); `compile_s_total`: since
    the run started. `cache_hits`, `cache_misses`: persistent-cache hits and misses since the run
    started (`lopt.compile_cache.CompileStats`). `memory_maps`: the memory maps the process holds now
    (`outer.groups.memory_maps`; absent off Linux). `cache_flushes`: the times this process emptied
    JAX's in-memory caches to stay under the memory-map limit (`outer.groups.release_compiled_code`)."""
    out = {"perf/inner_steps_per_s": rate, "perf/compile_s": recent.compile_s, "perf/compile_s_total": total.compile_s,
           "perf/cache_hits": total.cache_hits, "perf/cache_misses": total.cache_misses, "perf/cache_flushes": flushes}
    maps = memory_maps()
    if maps is not None:
        out["perf/memory_maps"] = maps[0]
    return out


def _log(writer: monitoring.Writer, step: int, pending: list[dict], setup: Setup, perf: dict[str, float]) -> dict:
    """Averages the steps since the last log on the host (`TOTALS` summed), combines the groups'
    metrics (every estimator's own metrics included: `COUNTS` summed over groups, the rest
    averaged) and writes them with `perf` (`_perf`). `meta/grad_norm` is the groups' own
    estimates' mean norm, `outer/grad_norm` the norm of the averaged gradient the outer optimizer
    received."""
    host = sharding.to_host(pending)
    keys = host[-1].keys()
    reduce = lambda k: np.sum if k in TOTALS else np.mean
    avg = {k: float(reduce(k)([np.asarray(h[k], np.float64) for h in host if k in h])) for k in keys}
    per_group = [k for k in avg if k.startswith("group")]
    for name in sorted({k.split("/", 1)[1] for k in per_group}):
        vals = [avg[k] for k in per_group if k.split("/", 1)[1] == name]
        avg[name] = float(np.sum(vals) if name in COUNTS else np.mean(vals))
    out = {k: v for k, v in avg.items() if not k.startswith("group")}
    out["outer/learning_rate"] = float(setup.schedule(step - 1))
    out.update(perf)
    writer.scalars(step, out)
    return out
