"""Meta-gradient throughput: inner steps per second across the population.

    python -m benchmarks.estimator_throughput [--tasks 8 32] [--repeats 5] [--estimators pes es_single]
        [--as-shipped] [--threads all]

The configuration mirrors the reference measurement of learned_optimization's truncated PES on
this machine (learned_optimization's own PES benchmark setting): a synthetic 8→32→1 ReLU MLP
regression (MSE, batch 32), a per-parameter learned optimizer with hidden size 4 (here μLO,
whose features include Adafactor's factored statistics like AdafacMLP's), truncation 20,
horizons up to 200, σ = 0.01, each task an antithetic pair. Inner steps/s counts both members
of each pair: 2 × tasks × 20 / seconds per estimate, after compilation. Each timing is the
median of `repeats` runs of 10 estimates chained inside one jitted `lax.scan`. The same
estimator with learnable Adam as the inner optimizer is measured in the same process: the ratio
shows what the learned optimizer's per-parameter work costs, and is steadier than the absolute
rate on a noisy machine. The reference column is learned_optimization's range measured side by
side on this machine (`REFERENCE`); its harness includes host-side data and per-step dispatch.

The benchmark runs with three settings that meta-training leaves off, because each makes XLA
compile a different program and so moves the last bits of the numbers: `lopt.xla_flags`'s
`VECTORIZE_SHORT_LOOPS` (XLA:CPU left every loop of at most 32 iterations scalar) and
`unrolled_threefry` (JAX's random-number hash without its 5-iteration XLA loop), and
`Truncation(lazy_freeze=True)` (dead members frozen only on steps that have one). `--as-shipped`
measures without them, as `meta_train.py` runs. XLA:CPU starts with one intra-op thread
(`lopt.xla_flags.start_one_thread`), which ran faster than two in every round measured on this
machine, shared with other jobs; `--threads all` leaves XLA its own pool (one thread per core).
`benchmarks.estimate_profile` splits an estimate's time into its parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import ClassVar

import jax
import jax.numpy as jnp

import estimators
import lopt
from inner_tasks.base import Task, TaskSpec
from lopt import xla_flags

# learned_optimization's own truncated PES on this configuration, inner steps/s, measured side by
# side with this project's estimators in one window on this 2-core machine (issue 15's audit). Its
# harness also times host-side data and per-step dispatch, which this one (jitted chains) does not.
REFERENCE = {8: (13e3, 21e3), 32: (34e3, 40e3)}
CHAIN = 10


@dataclasses.dataclass(frozen=True)
class RegressionMLPSpec(TaskSpec):
    """8→32→1 ReLU MLP fitting a fixed random teacher y = sin(x·w); fresh inputs every batch."""

    name: ClassVar[str] = "regression_mlp"
    dims: tuple[int, ...] = (8, 32, 1)
    batch_size: int = 32

    def sample_inst(self, key):
        return {"teacher": jax.random.normal(key, (self.dims[0],))}

    def init(self, inst, key):
        del inst
        keys = jax.random.split(key, len(self.dims) - 1)
        return {f"layer_{i}": {"w": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros((b,))}
                for i, (k, a, b) in enumerate(zip(keys, self.dims[:-1], self.dims[1:]))}

    def loss(self, inst, params, batch):
        del inst
        h = batch["x"]
        for i in range(len(self.dims) - 1):
            h = h @ params[f"layer_{i}"]["w"] + params[f"layer_{i}"]["b"][None]
            h = jax.nn.relu(h) if i < len(self.dims) - 2 else h
        return jnp.mean(jnp.square(h[:, 0] - batch["y"]))

    def sample_batch(self, data, inst, key, split):
        del data, split
        x = jax.random.normal(key, (self.batch_size, self.dims[0]))
        return {"x": x, "y": jnp.sin(x @ inst["teacher"])}

    def meta(self):
        from inner_tasks.base import Meta

        return {f"layer_{i}": {"w": Meta("input" if i == 0 else ("output" if i == len(self.dims) - 2 else "hidden"), a),
                               "b": Meta("vector", 1)}
                for i, a in enumerate(self.dims[:-1])}


def make(name: str, num_tasks: int, arch: str = "mulo", lazy_freeze: bool = True, spec: TaskSpec | None = None):
    task = Task(spec=spec or RegressionMLPSpec(), data={}, inst={})
    lo = lopt.get_arch("mulo", hidden_size=4) if arch == "mulo" else lopt.get_arch(arch)
    problem = estimators.LOProblem(task=task, arch=lo, mup=False)
    trunc = estimators.Truncation(trunc_length=20, min_horizon=20, max_horizon=200, lazy_freeze=lazy_freeze)
    return estimators.get_estimator(name, problem=problem, trunc=trunc, num_tasks=num_tasks, sigma=0.01)


def fast_cpu_settings() -> None:
    """The process-wide settings this benchmark runs with (module docstring); call it before JAX's
    backend starts."""
    xla_flags.add_xla_flags(xla_flags.VECTORIZE_SHORT_LOOPS)
    xla_flags.unrolled_threefry()


def _chained(est, theta, state, key):
    def body(state, k):
        grad, state, _ = est.estimate(theta, state, k)
        return state, jax.tree.leaves(grad)[0].sum()

    return jax.lax.scan(body, state, jax.random.split(key, CHAIN))


# One program per estimator class: PES and ES-Single share a layout, and one jitted function
# for both once ran ES-Single on PES's program (estimators/NOTES.md).
chained = estimators.PerClassJit(_chained, donate_argnums=(2,))


def measure(name: str, num_tasks: int, repeats: int, arch: str = "mulo", lazy_freeze: bool = True) -> tuple[float, float]:
    est = make(name, num_tasks, arch, lazy_freeze)
    theta = est.problem.arch.init(jax.random.key(0))
    state = est.init(theta, jax.random.key(1))
    t0 = time.perf_counter()
    state, _ = jax.block_until_ready(chained(est, theta, state, jax.random.key(2)))
    compile_s = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        t = time.perf_counter()
        state, _ = jax.block_until_ready(chained(est, theta, state, jax.random.key(3 + r)))
        times.append((time.perf_counter() - t) / CHAIN)
    per_estimate = statistics.median(times)
    return 2 * num_tasks * est.trunc.trunc_length / per_estimate, compile_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--estimators", nargs="+", default=["pes", "es_single"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--as-shipped", action="store_true", help="without the settings meta-training leaves off")
    ap.add_argument("--threads", choices=["all", "1"], default="1", help="XLA:CPU's intra-op threads")
    args = ap.parse_args()
    if not args.as_shipped:
        fast_cpu_settings()
    if args.threads == "1":
        xla_flags.start_one_thread()
    settings = "as meta_train.py runs" if args.as_shipped else "short loops vectorized, unrolled threefry, lazy freeze"
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; truncation 20, μLO hidden 4, 8→32→1 MLP; {settings}; "
          f"{'one thread' if args.threads == '1' else 'all threads'}")
    print("| estimator | tasks (pairs) | inner steps/s | reference | ratio | learnable Adam | μLO / Adam | compile s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.estimators:
        for n in args.tasks:
            rate, comp = measure(name, n, args.repeats, lazy_freeze=not args.as_shipped)
            adam, _ = measure(name, n, args.repeats, arch="adam", lazy_freeze=not args.as_shipped)
            lo, hi = REFERENCE.get(n, (None, None))
            ratio = f"{rate / hi:.1f}–{rate / lo:.1f}×" if lo else "—"
            ref = f"{lo / 1e3:.0f}–{hi / 1e3:.0f}k" if lo else "—"
            print(f"| {name} | {n} | {rate / 1e3:.1f}k | {ref} | {ratio} "
                  f"| {adam / 1e3:.1f}k | {rate / adam:.2f} | {comp:.1f} |", flush=True)


if __name__ == "__main__":
    main()
