"""Where a PES estimate's time goes, on `benchmarks.estimator_throughput`'s reference configuration.

    python -m benchmarks.estimate_profile [--tasks 32] [--repeats 7] [--as-shipped] [--threads all]

Ablations timed side by side in one process: each case is one estimator program with a part
taken out or swapped, compiled once, then every case runs in turn `repeats` times (10 estimates
chained in one jitted `lax.scan`, state donated), so that the machine's load hits them alike.
Each row gives the median wall time and the median CPU time of the process per estimate; on this
shared 2-core machine the CPU time (XLA:CPU on one thread unless `--threads all`) is the steadier
figure, and the fractions use it. The cases:

- full: the estimate as the throughput benchmark times it;
- learnable Adam: the same estimator with Adam as the inner optimizer (what μLO's work costs);
- fixed batch: every inner step on one fixed batch (what drawing the task's data costs);
- no bookkeeping: PES without restarts, the divergence rule or horizons (one `lax.scan` of the
  vmapped inner step, the same perturbations and gradient formula);
- no bookkeeping, fixed batch, no step keys: the inner step's compute alone, with μLO and Adam;
- μLO's update alone: the learned optimizer on the slots' parameters, gradient = parameters;
- random draws alone: the keys, horizons and batches an estimate draws, nothing else;
- with the default divergence select, and with JAX's rolled threefry loop: each setting of the
  throughput benchmark turned back off in the same process (`VECTORIZE_SHORT_LOOPS` can only be
  compared across processes: run once with `--as-shipped`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import estimator_throughput as bench
from estimators.unroll import antithetic, perturbations
from lopt import xla_flags

CHAIN = 10


@dataclasses.dataclass(frozen=True)
class FixedBatchSpec(bench.RegressionMLPSpec):
    """The benchmark's task on one fixed batch (a constant of the program)."""

    def sample_batch(self, data, inst, key, split):
        del data, key, split
        x = jnp.asarray(np.random.RandomState(0).randn(self.batch_size, self.dims[0]).astype(np.float32))
        return {"x": x, "y": jnp.sin(x @ inst["teacher"])}


def full(est, theta, state, key):
    grad, state, _ = est.estimate(theta, state, key)
    return grad, state


def no_bookkeeping(est, theta, state, key, step_keys: bool = True):
    """PES's perturbations and gradient around a plain scan of the vmapped inner step."""
    n = est.num_tasks
    k_eps, k_run = jax.random.split(key)
    eps = perturbations(k_eps, theta, n, est.sigma)
    thetas = antithetic(theta, eps)
    per_slot = jax.vmap(jax.vmap(est.problem.step, in_axes=(0, 0, None)), in_axes=(0, 0, 0))
    fixed = jax.random.split(k_run, n)

    def body(inner, k):
        return per_slot(thetas, inner, jax.random.split(k, n) if step_keys else fixed)

    inner, loss_KxNxM = jax.lax.scan(body, state.slots.inner, jax.random.split(k_run, est.trunc.trunc_length))
    mean = jnp.mean(loss_KxNxM, axis=0)
    grad = jax.tree.map(lambda e: jnp.tensordot(mean[:, 0] - mean[:, 1], e, axes=(0, 0)) / n, eps)
    return grad, state.replace(slots=state.slots.replace(inner=inner))


def update_only(est, theta, state, key):
    """The inner optimizer's update on every member's parameters (gradient = parameters)."""
    thetas = antithetic(theta, perturbations(key, theta, est.num_tasks, est.sigma))

    def update(th, s):
        u, o = est.problem.optimizer(th).update(s["params"], s["opt_state"], s["params"])
        return {**s, "params": jax.tree.map(jnp.add, s["params"], u), "opt_state": o}

    per_member = jax.vmap(jax.vmap(update))
    inner, _ = jax.lax.scan(lambda inner, _: (per_member(thetas, inner), None), state.slots.inner, None,
                            length=est.trunc.trunc_length)
    return jax.tree.map(lambda t: t[0], thetas), state.replace(slots=state.slots.replace(inner=inner))


def draws_only(est, theta, state, key):
    """The random draws of one estimate as the unroll makes them (keys, horizons, batches)."""
    n, spec = est.num_tasks, est.problem.task.spec
    k_eps, k_run = jax.random.split(key)
    eps = perturbations(k_eps, theta, n, est.sigma)

    def body(acc, k):
        _, k_h, k_step = jax.random.split(k, 3)

        def one(k):
            k_batch, _ = jax.random.split(k)
            return jnp.sum(jax.random.normal(k_batch, (spec.batch_size, spec.dims[0])))

        h = est.trunc.sample_horizon(k_h, (n,))
        return acc + jnp.sum(jax.vmap(one)(jax.random.split(k_step, n))) + jnp.sum(h), None

    acc, _ = jax.lax.scan(body, 0.0, jax.random.split(k_run, est.trunc.trunc_length))
    return jax.tree.map(lambda e: e[0] + acc, eps), state


def chained(fn: Callable):
    def run(est, theta, state, key):
        def body(state, k):
            grad, state = fn(est, theta, state, k)
            return state, jax.tree.leaves(grad)[0].sum()

        return jax.lax.scan(body, state, jax.random.split(key, CHAIN))

    return jax.jit(run, donate_argnums=(2,))


class Case:
    """One ablation, compiled (under the threefry lowering in force when it is built) and warmed up."""

    def __init__(self, name: str, fn: Callable, est):
        self.name, self.est, self.program = name, est, chained(fn)
        self.theta = est.problem.arch.init(jax.random.key(0))
        self.state = est.init(self.theta, jax.random.key(1))
        t = time.perf_counter()
        self.state, _ = jax.block_until_ready(self.program(est, self.theta, self.state, jax.random.key(2)))
        self.compile_s, self.wall, self.cpu = time.perf_counter() - t, [], []

    def once(self, r: int) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.state, _ = jax.block_until_ready(self.program(self.est, self.theta, self.state, jax.random.key(3 + r)))
        self.wall.append((time.perf_counter() - t) / CHAIN)
        self.cpu.append((time.process_time() - c) / CHAIN)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--as-shipped", action="store_true", help="without the throughput benchmark's settings")
    ap.add_argument("--threads", choices=["all", "1"], default="1", help="XLA:CPU's intra-op threads")
    args = ap.parse_args()
    lazy = not args.as_shipped
    if lazy:
        bench.fast_cpu_settings()
    if args.threads == "1":
        xla_flags.start_one_thread()
    make = lambda arch="mulo", spec=None, lazy_freeze=lazy: bench.make("pes", args.tasks, arch, lazy_freeze, spec)
    fixed = FixedBatchSpec()
    specs = [
        ("full", full, make()),
        ("learnable Adam", full, make("adam")),
        ("fixed batch", full, make(spec=fixed)),
        ("no bookkeeping", no_bookkeeping, make()),
        ("no bookkeeping, fixed batch, no step keys", lambda *a: no_bookkeeping(*a, step_keys=False), make(spec=fixed)),
        ("same, learnable Adam", lambda *a: no_bookkeeping(*a, step_keys=False), make("adam", spec=fixed)),
        ("μLO's update alone", update_only, make()),
        ("random draws alone", draws_only, make()),
    ]
    if lazy:
        specs.append(("with the divergence select on every step", full, make(lazy_freeze=False)))
    cases = [Case(*s) for s in specs]
    if lazy:
        xla_flags.unrolled_threefry(False)
        cases.append(Case("with JAX's rolled threefry loop", full, make()))
        xla_flags.unrolled_threefry(True)
    for r in range(args.repeats):
        for case in cases if r % 2 == 0 else cases[::-1]:
            case.once(r)
    base_cpu = statistics.median(cases[0].cpu)
    steps = 2 * args.tasks * cases[0].est.trunc.trunc_length
    settings = "as meta_train.py runs" if args.as_shipped else "the throughput benchmark's settings"
    print(f"PES, {args.tasks} tasks, μLO hidden 4, truncation 20, {settings}, {args.threads} threads; "
          f"medians of {args.repeats} rounds; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| case | wall ms / estimate | CPU ms / estimate | CPU vs full | inner steps/s (wall) | compile s |")
    print("|---|---|---|---|---|---|")
    for c in cases:
        wall, cpu = statistics.median(c.wall), statistics.median(c.cpu)
        print(f"| {c.name} | {wall * 1e3:.2f} | {cpu * 1e3:.2f} | {cpu / base_cpu:.2f} | {steps / wall / 1e3:.1f}k "
              f"| {c.compile_s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
