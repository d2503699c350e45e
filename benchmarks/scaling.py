"""How meta-training cost grows: population size, inner-task size and device count.

    python -m benchmarks.scaling [--populations 8 32 128] [--devices 1 2 4] [--repeats 5]

PES with μLO (hidden 4) on the reference configuration of `benchmarks.estimator_throughput`
(synthetic ReLU MLP regression, batch 32, truncation 20, σ 0.01; each task an antithetic pair),
with three sweeps:

- population: 8, 32, 128 pairs on one device (8→32→1 MLP);
- inner-task size: MLPs from 321 to 68k parameters at 8 pairs on one device;
- devices: the particle axis sharded over 1, 2 and 4 devices (`estimators.sharding`).

Each row reports inner steps/s (both members of every pair, after compilation; median of
`repeats` chains of estimates inside one jitted `lax.scan` with the state donated; the cases of
a sweep are timed in turn), parameter-steps/s (inner steps/s × inner parameters), XLA's peak
memory per device for that program (arguments + temporaries + outputs − donated aliases, from its
buffer assignment, so it is exact and the same on any machine), the state memory per pair, and
how much of the state XLA updates in place (donated buffers aliased to the outputs).
On a CPU host the "devices" are `--xla_force_host_platform_device_count` slices of the same cores,
which this module sets before JAX starts when it runs as a program.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

from lopt import xla_flags

if __name__ == "__main__":  # before the backend starts: host devices for the device sweep
    xla_flags.add_xla_flags(xla_flags.host_device_count(4))

import jax  # noqa: E402

import estimators  # noqa: E402
import lopt  # noqa: E402
from benchmarks.estimator_throughput import REFERENCE, RegressionMLPSpec  # noqa: E402
from estimators import sharding  # noqa: E402
from inner_tasks.base import Task  # noqa: E402

SIZES = ((8, 32, 1), (8, 128, 1), (8, 128, 128, 1), (8, 256, 256, 1))


def make(pairs: int, dims: tuple[int, ...]) -> estimators.PES:
    task = Task(spec=RegressionMLPSpec(dims=dims), data={}, inst={})
    problem = estimators.LOProblem(task=task, arch=lopt.get_arch("mulo", hidden_size=4), mup=False)
    trunc = estimators.Truncation(trunc_length=20, min_horizon=20, max_horizon=200)
    return estimators.PES(problem=problem, trunc=trunc, num_tasks=pairs, sigma=0.01)


@functools.partial(jax.jit, static_argnames=("chain",), donate_argnums=(2,))
def chained(est, theta, state, key, chain: int):
    def body(state, k):
        grad, state, _ = est.estimate(theta, state, k)
        return state, jax.tree.leaves(grad)[0].sum()

    return jax.lax.scan(body, state, jax.random.split(key, chain))


def nbytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


class Case:
    """One configuration, compiled and warmed up; `once()` times one chain of estimates."""

    def __init__(self, pairs: int, dims: tuple[int, ...], devices: int):
        est = make(pairs, dims)
        self.mesh = sharding.make_mesh(devices)
        self.chain = max(2, min(10, 400_000 // (pairs * sum(a * b for a, b in zip(dims[:-1], dims[1:])))))
        with jax.set_mesh(self.mesh):
            self.theta = sharding.replicate(est.problem.arch.init(jax.random.key(0)), self.mesh)
            self.est = sharding.replicate(est, self.mesh)
            self.state = sharding.place(est, jax.jit(type(est).init)(self.est, self.theta, jax.random.key(1)), self.mesh)
            mem = chained.lower(self.est, self.theta, self.state, jax.random.key(2), self.chain).compile().memory_analysis()
        peak = mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
        state_bytes = nbytes(self.state) / devices  # per device
        self.row = {"pairs": pairs, "params": sum(a * b + b for a, b in zip(dims[:-1], dims[1:])), "devices": devices,
                    "peak_mib": peak / 2**20, "state_kib_per_pair": state_bytes * devices / pairs / 2**10,
                    "donated": mem.alias_size_in_bytes / state_bytes}
        self.steps = 2 * pairs * est.trunc.trunc_length
        self.times: list[float] = []
        self.once()  # compile and warm up
        self.times.clear()

    def once(self) -> None:
        with jax.set_mesh(self.mesh):
            t = time.perf_counter()
            self.state, _ = jax.block_until_ready(
                chained(self.est, self.theta, self.state, jax.random.key(3 + len(self.times)), self.chain))
            self.times.append((time.perf_counter() - t) / self.chain)

    def result(self) -> dict:
        return self.row | {"rate": self.steps / statistics.median(self.times)}


def row(m: dict, base: dict | None) -> str:
    ref = REFERENCE.get(m["pairs"]) if m["params"] == 321 and m["devices"] == 1 else None
    rel = f"{m['rate'] / base['rate']:.2f}" if base else "1.00"
    versus = f"{ref / 1e3:.1f}k ({m['rate'] / ref:.1f}×)" if ref else "—"
    return (f"| {m['pairs']} | {m['params']:,} | {m['devices']} | {m['rate'] / 1e3:.1f}k | {rel} | "
            f"{m['rate'] * m['params'] / 1e6:.1f} | {versus} | {m['peak_mib']:.1f} | {m['state_kib_per_pair']:.1f} | "
            f"{m['donated']:.0%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--populations", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(range(len(SIZES))), help="indices into SIZES")
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} device(s); PES, μLO hidden 4, "
          "truncation 20; steps/s vs the sweep's first row in 'rel'")
    print("| pairs | inner params | devices | inner steps/s | rel | M param-steps/s | learned_optimization "
          "| peak MiB/device | state KiB/pair | state donated |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    sweeps = [[(p, SIZES[0], 1) for p in args.populations],
              [(8, SIZES[i], 1) for i in args.sizes],
              *[[(p, SIZES[0], d) for d in args.devices] for p in (32, 128) if p in args.populations]]
    for sweep in sweeps:  # the cases of a sweep are timed in turn, so machine noise hits them alike
        cases = [Case(*c) for c in sweep]
        for _ in range(args.repeats):
            for case in cases:
                case.once()
        results = [case.result() for case in cases]
        for m in results:
            print(row(m, results[0] if m is not results[0] else None), flush=True)


if __name__ == "__main__":
    main()
