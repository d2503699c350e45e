"""Learned-optimizer step cost against optax.adam, side by side in one process.

    python -m benchmarks.lopt_step [--repeats 7] [--hidden 32] [--celo_hidden 8] [--celo FILE_OR_NAME]
                                   [--celo2 [FILE_OR_NAME]] [--celo2_hidden 4] [--no_mulo]

`--celo` times a learned-optimizer file as `lopt.load` builds it (e.g. the shipped
`celo_generalist`, with whatever step features its file turns on) instead of an untrained Celo.
`--celo2` adds an untrained Celo2, without and with Newton–Schulz (or a Celo2 file, as loaded);
`--no_mulo` leaves μLO and the floor out (their compiles and steps dominate a run).

Task: Fashion-MNIST 28×28 MLP 784-128-128-10 (118,282 params), batch 128. Each timing is a jitted
`lax.scan` of 20 steps; the repeats interleave the variants and the median is reported, so
machine noise hits all of them alike. The floor is the per-parameter MLP matmuls alone
([N,39]@[39,h], [N,h]@[h,h], [N,h]@[h,2] with ReLUs), the work no implementation can skip.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import inner_tasks
import lopt

SCAN = 20


def _timer(fn, *args):
    jax.block_until_ready(fn(*args))  # compile
    def once():
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        return (time.perf_counter() - t) / SCAN
    return once


def update_only(opt, params, grads):
    """Fixed gradients; the updates are applied so that none of the work can be skipped."""
    def body(carry, _):
        p, state = carry
        updates, state = opt.update(grads, state, p, value=jnp.float32(1.0))
        return (optax.apply_updates(p, updates), state), None
    return jax.jit(lambda c: jax.lax.scan(body, c, length=SCAN)[0][0]), (params, opt.init(params))


def train_steps(opt, task, params, key):
    def body(carry, k):
        p, s = carry
        loss, g = jax.value_and_grad(task.loss)(p, task.sample_batch(k))
        u, s = opt.update(g, s, p, value=loss)
        return (optax.apply_updates(p, u), s), loss
    keys = jax.random.split(key, SCAN)
    return jax.jit(lambda c: jax.lax.scan(body, c, keys)[1]), (params, opt.init(params))


def mlp_floor(n: int, hidden: int):
    k = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(k[0], (n, 39))
    w0, w1, w2 = (jax.random.normal(kk, s) for kk, s in zip(k[1:], [(39, hidden), (hidden, hidden), (hidden, 2)]))
    def body(c, _):
        h = jax.nn.relu((x * c) @ w0)
        h = jax.nn.relu(h @ w1)
        out = h @ w2
        return c + out.mean() * 1e-9, None
    return jax.jit(lambda c: jax.lax.scan(body, c, length=SCAN)[0]), jnp.float32(1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--celo_hidden", type=int, default=8)
    ap.add_argument("--celo", default=None, help="a learned-optimizer file or pretrained name to time as 'celo'")
    ap.add_argument("--celo2", nargs="?", const="init", default=None,
                    help="also time Celo2: untrained, without and with Newton-Schulz, or a file as loaded")
    ap.add_argument("--celo2_hidden", type=int, default=lopt.Celo2.hidden_size,
                    help="the untrained Celo2's hidden size")
    ap.add_argument("--no_mulo", action="store_true", help="leave out μLO and the MLP floor")
    args = ap.parse_args()
    task = inner_tasks.get_task("mlp", resolution=28, width=128, depth=2, batch_size=128, parametrization="sp")
    params = task.init(jax.random.key(0))
    grads = jax.grad(task.loss)(params, task.sample_batch(jax.random.key(1)))
    n = sum(x.size for x in jax.tree.leaves(params))
    arch = lopt.MuLO(hidden_size=args.hidden)
    mulo = arch.optimizer(arch.init(jax.random.key(0)))
    celo2s = {}
    if args.celo2 == "init":
        for label, ns in (("celo2", False), ("celo2+ns", True)):
            arch2 = lopt.Celo2(hidden_size=args.celo2_hidden, newton_schulz=ns)
            celo2s[label] = arch2.optimizer(arch2.init(jax.random.key(0)), num_steps=1000)
    elif args.celo2:
        celo2s["celo2"] = lopt.load(args.celo2, num_steps=1000)
    if args.celo:
        celo = lopt.load(args.celo, num_steps=1000)
    else:
        celo_arch = lopt.Celo(hidden_size=args.celo_hidden)
        celo = celo_arch.optimizer(celo_arch.init(jax.random.key(0)), num_steps=1000)
    adam = optax.adam(1e-3)
    opts = {"adam": adam, "celo": celo} | ({} if args.no_mulo else {"mulo": mulo}) | celo2s
    timers = {f"{k} update": _timer(*update_only(o, params, grads)) for k, o in opts.items()}
    if not args.no_mulo:
        timers["mlp floor"] = _timer(*mlp_floor(n, args.hidden))
    timers |= {f"{k} train step": _timer(*train_steps(o, task, params, jax.random.key(2))) for k, o in opts.items()}
    samples = {k: [] for k in timers}
    for _ in range(args.repeats):
        for k, t in timers.items():
            samples[k].append(t())
    med = {k: statistics.median(v) for k, v in samples.items()}
    low = {k: min(v) for k, v in samples.items()}
    print(f"params: {n}, MuLO hidden {args.hidden}, Celo hidden {args.celo_hidden}, Celo2 hidden {args.celo2_hidden}, "
          f"median (min) of {args.repeats} × scan of {SCAN}")
    for k, v in med.items():
        print(f"  {k:20s} {v * 1e3:8.3f} ms  ({low[k] * 1e3:.3f})")
    if not args.no_mulo:
        print(f"  mulo update / adam update      {med['mulo update'] / med['adam update']:7.1f}×")
        print(f"  mulo update / mlp floor        {med['mulo update'] / med['mlp floor']:7.2f}×")
        print(f"  mulo train step / adam's       {med['mulo train step'] / med['adam train step']:7.1f}×")
    targets = {"celo": "2", "celo2": "1.5"}
    for k in ("celo", *celo2s):  # medians, the mins' ratio, and the median of the ratios within each repeat
        ratio, ratio_low = (d[f"{k} train step"] / d["adam train step"] for d in (med, low))
        paired = statistics.median(a / b for a, b in zip(samples[f"{k} train step"], samples["adam train step"]))
        print(f"  {k + ' update / adam update':30s} {med[f'{k} update'] / med['adam update']:7.1f}×")
        print(f"  {k + ' train step / adam' + chr(39) + 's':30s} {ratio:7.2f}×  (min {ratio_low:.2f}×, paired "
              f"{paired:.2f}×)" + (f"  (target ≤ {targets[k]}×)" if k in targets else ""))


if __name__ == "__main__":
    main()
