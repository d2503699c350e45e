"""Learned-optimizer step cost against optax.adam, side by side in one process.

    python -m benchmarks.lopt_step [--repeats 7] [--hidden 32] [--celo_hidden 8] [--celo FILE_OR_NAME]

`--celo` times a learned-optimizer file as `lopt.load` builds it (e.g. the shipped
`celo_generalist`, with whatever step features its file turns on) instead of an untrained Celo.

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
    args = ap.parse_args()
    task = inner_tasks.get_task("mlp", resolution=28, width=128, depth=2, batch_size=128, parametrization="sp")
    params = task.init(jax.random.key(0))
    grads = jax.grad(task.loss)(params, task.sample_batch(jax.random.key(1)))
    n = sum(x.size for x in jax.tree.leaves(params))
    arch = lopt.MuLO(hidden_size=args.hidden)
    mulo = arch.optimizer(arch.init(jax.random.key(0)))
    if args.celo:
        celo = lopt.load(args.celo, num_steps=1000)
    else:
        celo_arch = lopt.Celo(hidden_size=args.celo_hidden)
        celo = celo_arch.optimizer(celo_arch.init(jax.random.key(0)), num_steps=1000)
    adam = optax.adam(1e-3)
    timers = {
        "adam update": _timer(*update_only(adam, params, grads)),
        "mulo update": _timer(*update_only(mulo, params, grads)),
        "celo update": _timer(*update_only(celo, params, grads)),
        "mlp floor": _timer(*mlp_floor(n, args.hidden)),
        "adam train step": _timer(*train_steps(adam, task, params, jax.random.key(2))),
        "mulo train step": _timer(*train_steps(mulo, task, params, jax.random.key(2))),
        "celo train step": _timer(*train_steps(celo, task, params, jax.random.key(2))),
    }
    samples = {k: [] for k in timers}
    for _ in range(args.repeats):
        for k, t in timers.items():
            samples[k].append(t())
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"params: {n}, MuLO hidden {args.hidden}, Celo hidden {args.celo_hidden}, median of {args.repeats} × scan of {SCAN}")
    for k, v in med.items():
        print(f"  {k:16s} {v * 1e3:8.3f} ms")
    print(f"  mulo update / adam update      {med['mulo update'] / med['adam update']:7.1f}×")
    print(f"  mulo update / mlp floor        {med['mulo update'] / med['mlp floor']:7.2f}×")
    print(f"  mulo train step / adam's       {med['mulo train step'] / med['adam train step']:7.1f}×")
    print(f"  celo update / adam update      {med['celo update'] / med['adam update']:7.1f}×")
    print(f"  celo train step / adam's       {med['celo train step'] / med['adam train step']:7.2f}×  (target ≤ 2×)")


if __name__ == "__main__":
    main()
