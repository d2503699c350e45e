"""Meta-training throughput in one run: where a meta-step's time goes, per member kind; parameter-steps
per second of convnets and LMs against MLPs; the mixture with convnets and LMs against the MLP-only
mixture; and the reference configuration against learned_optimization.

    python -m benchmarks.meta_throughput                      # every part; the mixtures 30 min each
    python -m benchmarks.meta_throughput --parts profile,params,reference
    python -m benchmarks.meta_throughput --parts mixture --mixture_minutes 120 --baseline_minutes 30 \\
        --out runs/throughput

Parts (figures are inner steps: every member of every particle, as `perf/inner_steps_per_s` counts them):
- `profile`: every task-shape bucket of `configs/mixture.py`, as meta-training builds it (PES, 8
  antithetic pairs, truncation 25, the recipe's learned optimizer). Per bucket: compile time split into
  tracing + lowering and XLA's backend compile; device time of one estimate (median of `--repeats`);
  host time, split into the call's dispatch and a redraw's work on the host (drawing the spec, building
  its data and estimator, initializing its state, with programs already compiled). Averaged per kind.
- `params`: parameter-steps/s (inner parameters × inner steps / s) of convnets and transformer LMs
  against depth-2 MLPs of about the same parameter count, 8 pairs, batch 64 (LMs: 8 sequences).
- `mixture`: `configs/mixture.py` and `configs/mixture.py:mlp_only` meta-trained side by side (two
  processes on the same cores, so both see the same load) for `--baseline_minutes`; the mixture
  goes on to `--mixture_minutes`. Averages are total inner steps over wall time, compile included,
  from each run's `perf/inner_steps_per_s`; with compile seconds, persistent-cache hits, memory maps
  and cache flushes from its TensorBoard events.
- `recipes`: every recipe in configs/, its estimator on its first group's first task, after compilation
  (the figure each recipe's docstring gives).
- `reference`: `benchmarks.estimator_throughput`'s configuration at 32 tasks, against the range of
  learned_optimization's PES measured side by side (`estimator_throughput.REFERENCE`; measure it anew
  with ../shared/tools/lo_side_by_side/).
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

import estimators
from configs import build, mixture
from estimators import sharding
from inner_tasks import ConvSpec, LMSpec, MLPSpec
from outer.groups import Groups, _init_state

PARTS = ("profile", "params", "mixture", "reference", "recipes")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _setup(members: str = "all"):
    return build.build(mixture.get_config(members))


def _n_params(task) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(jax.eval_shape(task.init, jax.random.key(0))))


def _time_estimate(est, theta, repeats: int) -> dict:
    """Compile (trace + lower, backend) and run times of one estimator's estimate program."""
    program = estimators.estimate_program(est)
    state = _init_state(est, theta, jax.random.key(1))
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    lowered = program.lower(est, theta, state, jax.random.key(2))
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    state = compiled(est, theta, state, jax.random.key(2))[1]  # warm
    jax.block_until_ready(state)
    dispatch, total = [], []
    for r in range(repeats):
        t = time.perf_counter()
        out = compiled(est, theta, state, jax.random.key(3 + r))
        d = time.perf_counter()
        jax.block_until_ready(out)
        e = time.perf_counter()
        state = out[1]
        dispatch.append(d - t)
        total.append(e - t)
    return dict(trace_lower_s=t1 - t0, backend_s=t2 - t1, dispatch_s=statistics.median(dispatch),
                device_s=statistics.median(total) - statistics.median(dispatch))


def profile(repeats: int, max_buckets: int | None) -> None:
    setup = _setup()
    mesh = sharding.make_mesh(1)
    groups = Groups(setup, jax.random.split(jax.random.key(setup.seed), 4)[1], mesh)  # the run's buckets (outer.loop)
    theta = setup.init_theta
    rows = collections.defaultdict(list)
    print(f"jax {jax.__version__}; configs/mixture.py: {len(groups.buckets)} buckets, PES 8 pairs, truncation 25")
    print("| bucket | kind | params | inner steps/estimate | trace+lower s | backend compile s | device ms | "
          "dispatch ms | redraw host ms | inner steps/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b, (shape, horizon) in enumerate(groups.buckets[:max_buckets]):
        task = setup.family.task(shape)
        est = setup.make_estimator(task, horizon)
        t = _time_estimate(est, theta, repeats)
        t0 = time.perf_counter()  # a redraw of this bucket, its programs compiled: host work only
        spec = setup.family.sample_like(jax.random.key(100 + b), shape)
        est2 = setup.make_estimator(setup.family.task(spec), horizon)
        jax.block_until_ready(_init_state(est2, theta, jax.random.key(5)))
        t["redraw_s"] = time.perf_counter() - t0
        t["params"], t["steps"] = _n_params(task), est.inner_steps_per_estimate
        t["rate"] = t["steps"] / (t["device_s"] + t["dispatch_s"])
        rows[shape.name].append(t)
        print(f"| {b} | {shape.name} | {t['params']:,} | {t['steps']} | {t['trace_lower_s']:.1f} | {t['backend_s']:.1f} "
              f"| {t['device_s'] * 1e3:.1f} | {t['dispatch_s'] * 1e3:.2f} | {t['redraw_s'] * 1e3:.0f} "
              f"| {t['rate']:,.0f} |", flush=True)
    print("\nPer kind (means over its buckets):")
    print("| kind | buckets | params | trace+lower s | backend compile s | device ms / estimate | host ms / estimate "
          "(dispatch) | host ms / redraw | inner steps/s | M param-steps/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, ts in sorted(rows.items()):
        m = {k: statistics.mean(t[k] for t in ts) for k in ts[0]}
        mps = statistics.mean(t["params"] * t["rate"] for t in ts) / 1e6
        print(f"| {kind} | {len(ts)} | {m['params']:,.0f} | {m['trace_lower_s']:.1f} | {m['backend_s']:.1f} "
              f"| {m['device_s'] * 1e3:.1f} | {m['dispatch_s'] * 1e3:.2f} | {m['redraw_s'] * 1e3:.0f} "
              f"| {m['rate']:,.0f} | {mps:.1f} |", flush=True)


def _mlp_width(params: int) -> int:
    """Width of a depth-2 MLP on 8×8 images with about `params` parameters (w² + 76w + 10)."""
    return max(1, round((-76 + math.sqrt(76**2 + 4 * (params - 10))) / 2))


def _step_flops(task) -> float:
    """XLA's count of the floating-point operations of one member's loss and gradient on one batch."""
    params = task.init(jax.random.key(0))
    batch = task.sample_batch(jax.random.key(1), "train")
    cost = jax.jit(jax.value_and_grad(task.loss)).lower(params, batch).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def params_rate(repeats: int) -> None:
    setup = _setup()
    theta = setup.init_theta
    common = dict(dataset="fashion_mnist", resolution=8, batch_size=64, parametrization="sp")
    cases = [("conv", ConvSpec(channels=16, depth=2, **common)), ("conv", ConvSpec(channels=32, depth=3, **common)),
             ("conv", ConvSpec(channels=32, depth=2, **dict(common, resolution=16))),
             ("lm", LMSpec(width=32, depth=1, num_heads=2, context=32, batch_size=8, parametrization="sp")),
             ("lm", LMSpec(width=64, depth=2, num_heads=4, context=32, batch_size=8, parametrization="sp"))]
    print("\n| model | params | inner steps/s | M param-steps/s | MLP of as many params: width, params, "
          "M param-steps/s | param-steps/s ratio | model FLOPs per step, ratio to the MLP's | model GFLOP/s ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, spec in cases:
        task = spec.make()
        n = _n_params(task)
        t = _time_estimate(setup.make_estimator(task, 300), theta, repeats)
        rate = 400 / (t["device_s"] + t["dispatch_s"])
        mlp = MLPSpec(width=_mlp_width(n), depth=2, **common).make()
        n_mlp = _n_params(mlp)
        tm = _time_estimate(setup.make_estimator(mlp, 300), theta, repeats)
        rate_mlp = 400 / (tm["device_s"] + tm["dispatch_s"])
        ratio = n * rate / (n_mlp * rate_mlp)
        flops = _step_flops(task) / _step_flops(mlp)
        desc = (f"conv {spec.channels}ch × {spec.depth}, {spec.resolution}px" if kind == "conv" else
                f"LM d{spec.width} × {spec.depth}, ctx {spec.context}")
        print(f"| {desc} | {n:,} | {rate:,.0f} | {n * rate / 1e6:.1f} | {mlp.spec.width}, {n_mlp:,}, "
              f"{n_mlp * rate_mlp / 1e6:.1f} | **{ratio:.2f}** | {flops:.1f}× | {flops * rate / rate_mlp:.2f} |", flush=True)


def _scalars(workdir: pathlib.Path) -> dict[str, list]:
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(workdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"] if tag.startswith("perf/")}


def _average(workdir: pathlib.Path, start: float, until: float | None = None) -> dict:
    """Inner steps / wall time from `start` (the process's) to the last log before `until`."""
    s = _scalars(workdir)
    rates = [e for e in s.get("perf/inner_steps_per_s", []) if until is None or e.wall_time <= until]
    if not rates:
        return {}
    steps, prev = 0.0, start
    for e in rates:
        steps += e.value * (e.wall_time - prev)
        prev = e.wall_time
    last = lambda tag: next((e.value for e in reversed(s.get(tag, [])) if until is None or e.wall_time <= until),
                            float("nan"))
    return dict(minutes=(prev - start) / 60, inner_steps=steps, rate=steps / (prev - start),
                meta_steps=rates[-1].step, compile_s=last("perf/compile_s_total"), cache_hits=last("perf/cache_hits"),
                memory_maps=last("perf/memory_maps"), flushes=last("perf/cache_flushes"))


def mixture_runs(out: pathlib.Path, mixture_minutes: float, baseline_minutes: float) -> None:
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"--out {out} is not empty: the runs would resume, and their compile cache be warm")
    out.mkdir(parents=True, exist_ok=True)
    runs = {"mixture": ("configs/mixture.py", mixture_minutes), "mlp_only": ("configs/mixture.py:mlp_only",
                                                                             baseline_minutes)}
    procs, starts = {}, {}
    for name, (config, _) in runs.items():
        log = open(out / f"{name}.log", "w")
        starts[name] = time.time()
        procs[name] = subprocess.Popen([sys.executable, "meta_train.py", "--config", config, "--workdir",
                                        str(out / name), "--config.num_steps=100000",
                                        f"--compile_cache={out / 'compile_cache'}"],  # empty: compile included
                                       cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    for name, (_, minutes) in sorted(runs.items(), key=lambda kv: kv[1][1]):
        remaining = starts[name] + 60 * minutes - time.time()
        try:
            procs[name].wait(timeout=max(remaining, 0))
        except subprocess.TimeoutExpired:
            procs[name].send_signal(signal.SIGTERM)  # the loop checkpoints and exits
            procs[name].wait()
    base = _average(out / "mlp_only", starts["mlp_only"])
    mix = _average(out / "mixture", starts["mixture"], until=starts["mixture"] + 60 * baseline_minutes)
    whole = _average(out / "mixture", starts["mixture"])
    print("\n| run | minutes | meta-steps | inner steps/s (compile included) | compile s | persistent-cache hits "
          "| memory maps at end | cache flushes |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in (("MLP-only mixture", base), ("mixture with convnets and LMs, same window", mix),
                     ("mixture with convnets and LMs, whole run", whole)):
        if r:
            print(f"| {label} | {r['minutes']:.0f} | {r['meta_steps']} | {r['rate']:,.0f} | {r['compile_s']:.0f} "
                  f"| {r['cache_hits']:.0f} | {r['memory_maps']:.0f} | {r['flushes']:.0f} |")
    if base and mix:
        print(f"\nmixture / MLP-only over the same {baseline_minutes:.0f} minutes: **{mix['rate'] / base['rate']:.1%}**")


def recipes(repeats: int) -> None:
    """Each recipe's estimator on its first group's first task draw, timed after compilation."""
    import importlib

    root = ROOT / "configs"
    names = sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.py")
                   if p.stem != "__init__" and p.name not in ("base.py", "build.py"))
    print("\n| recipe | first task | inner steps / meta-step | inner steps/s (estimates after compilation) |")
    print("|---|---|---|---|")
    for name in names:
        setup = build.build(importlib.import_module(f"configs.{name.replace('/', '.')}").get_config())
        groups = Groups(setup, jax.random.split(jax.random.key(setup.seed), 4)[1], sharding.make_mesh(1))
        groups._build(0, groups.epoch(0, 0))
        est = groups.ests[0]
        theta = setup.arch.init(jax.random.key(0)) if setup.init_theta is None else setup.init_theta
        t = _time_estimate(est, theta, repeats)
        rate = est.inner_steps_per_estimate / (t["device_s"] + t["dispatch_s"])
        per_step = est.inner_steps_per_estimate * setup.num_groups
        print(f"| {name} | {groups.specs[0].name} | {per_step:,} | {rate:,.0f} |", flush=True)


def reference(repeats: int) -> None:
    from benchmarks import estimator_throughput as et

    rate, compile_s = et.measure("pes", 32, repeats)
    lo, hi = et.REFERENCE[32]
    print(f"\nreference configuration, PES at 32 tasks: {rate:,.0f} inner steps/s (compile {compile_s:.0f} s); "
          f"learned_optimization {lo:,.0f}–{hi:,.0f}: {rate / hi:.1f}–{rate / lo:.1f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max_buckets", type=int, default=None, help="profile only the first N buckets")
    ap.add_argument("--mixture_minutes", type=float, default=30)
    ap.add_argument("--baseline_minutes", type=float, default=30)
    ap.add_argument("--out", default=None, help="workdirs of the mixture runs (default: a temporary folder)")
    args = ap.parse_args()
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown parts {unknown}; valid: {PARTS}")
    if args.baseline_minutes > args.mixture_minutes:
        ap.error("--baseline_minutes must not exceed --mixture_minutes (the mixture's average is taken over the "
                 "baseline's window)")
    if "profile" in parts:
        profile(args.repeats, args.max_buckets)
    if "params" in parts:
        params_rate(args.repeats)
    if "reference" in parts:
        reference(args.repeats)
    if "recipes" in parts:
        recipes(args.repeats)
    if "mixture" in parts:
        out = pathlib.Path(args.out) if args.out else pathlib.Path(tempfile.mkdtemp(prefix="meta_throughput_"))
        mixture_runs(out, args.mixture_minutes, args.baseline_minutes)


if __name__ == "__main__":
    main()
