"""Task groups: each meta-step averages the meta-gradients of `num_groups` groups, each a task
spec sampled from the family with its own estimator population. Group g's spec is redrawn every
`resample_every` steps, offset by g·resample_every/G so that groups restart in turn; a spec
depends only on (seed, g, epoch), so a resumed run rebuilds the same groups.

With `setup.buckets` = K > 0, task shapes come from K buckets drawn once per run: each bucket is a
(spec, horizon) pair, and every redraw picks a bucket and draws from the family a spec of that
bucket's shape with fresh data settings (`TaskFamily.sample_like`). A run then compiles at most K
estimator programs and reuses them on every redraw, instead of compiling one per redraw."""

from __future__ import annotations

import pathlib

import jax

from estimators import Estimator, PerClassJit, sharding
from outer.setup import Setup


def _init(est: Estimator, theta, key: jax.Array):
    return est.init(theta, key)


_init_state = PerClassJit(_init)  # one program per estimator class (see estimators.PerClassJit)
BUCKETS_STREAM = 2**31 - 1  # the key stream of the buckets (groups use 0, 1, ...)
MAPS_FRACTION = 0.8  # clear JAX's caches when the process holds this share of the kernel's memory-map limit


def memory_maps() -> tuple[int, int] | None:
    """(memory maps this process holds, the kernel's limit vm.max_map_count), or None off Linux."""
    try:
        with open("/proc/self/maps", "rb") as f:
            held = sum(1 for _ in f)
        return held, int(pathlib.Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return None


def release_compiled_code(fraction: float = MAPS_FRACTION) -> bool:
    """Empties JAX's compilation caches when compiled code holds over `fraction` of the memory-map
    limit, and says whether it did. Every new task shape compiles programs (the estimator's and
    many small eager ones), each holding its machine code in memory maps until its cache entry
    goes. Two generalist runs died at meta-step ~1900 and ~2400 with "LLVM compilation error:
    Cannot allocate memory"; a third held 9,700 maps at its start and 21,000 after 525 meta-steps
    (3 redraws of each group), against a limit of 65,530. Each estimator program holds about
    1,400 maps (XLA:CPU maps every compiled function's code and data apart). A run in task-shape
    buckets (`setup.buckets`) compiles a bounded set of programs (estimate, state init and probe
    per bucket) and stays below the threshold; a run without buckets still needs the flush, at the
    cost of recompiling (or reloading from the persistent cache) the programs it uses next."""
    maps = memory_maps()
    if maps is None or maps[0] < fraction * maps[1]:
        return False
    jax.clear_caches()
    return True


class Groups:
    """The groups' current specs and estimators; `advance` moves them to a step's epochs."""

    def __init__(self, setup: Setup, key: jax.Array, mesh: jax.sharding.Mesh):
        self.setup, self.key, self.mesh = setup, key, mesh
        self.epochs = [-1] * setup.num_groups
        self.ests: list[Estimator] = [None] * setup.num_groups
        self.specs: list = [None] * setup.num_groups
        self.horizons: list[int | None] = [None] * setup.num_groups  # None: the estimator's own
        self.buckets = self._buckets() if setup.buckets else None
        self.flushes = 0  # times release_compiled_code emptied JAX's caches in this process

    def epoch(self, g: int, step: int) -> int:
        s = self.setup
        return (step + g * s.resample_every // s.num_groups) // s.resample_every

    def _buckets(self) -> list[tuple]:
        """The run's K (spec, horizon) buckets, drawn from the seed alone."""
        key = jax.random.fold_in(self.key, BUCKETS_STREAM)
        keys = [jax.random.fold_in(key, b) for b in range(self.setup.buckets)]
        return [(self.setup.family.sample(k), self.setup.group_horizon(jax.random.fold_in(k, 1))) for k in keys]

    def _draw(self, key: jax.Array) -> tuple:
        """(spec, horizon) of one redraw: from the family, or of a bucket's shape with fresh data."""
        if self.buckets is None:
            return self.setup.family.sample(key), self.setup.group_horizon(jax.random.fold_in(key, 1))
        shape, horizon = self.buckets[int(jax.random.randint(jax.random.fold_in(key, 2), (), 0, len(self.buckets)))]
        return self.setup.family.sample_like(key, shape), horizon

    def _build(self, g: int, epoch: int) -> None:
        key = jax.random.fold_in(jax.random.fold_in(self.key, g), epoch)
        spec, self.horizons[g] = self._draw(key)
        self.specs[g] = spec
        est = self.setup.make_estimator(self.setup.family.task(spec), self.horizons[g])
        self.ests[g] = sharding.replicate(est, self.mesh)
        self.epochs[g] = epoch

    def advance(self, step: int, theta, states: list, key: jax.Array) -> list[bool]:
        """Moves every group to `step`'s epoch, initializing the states of redrawn groups."""
        changed = [self.epoch(g, step) != self.epochs[g] for g in range(self.setup.num_groups)]
        if any(changed):
            self.flushes += release_compiled_code()
        for g in range(self.setup.num_groups):
            e = self.epoch(g, step)
            if changed[g]:
                self._build(g, e)
                states[g] = sharding.place(self.ests[g], _init_state(self.ests[g], theta, jax.random.fold_in(key, g)),
                                           self.mesh)
        return changed

    def restore_templates(self, epochs: list[int], theta) -> list:
        """Abstract estimator states for the given epochs (for checkpoint restore)."""
        out = []
        for g, e in enumerate(epochs):
            self._build(g, e)
            out.append(jax.eval_shape(self.ests[g].init, theta, jax.random.key(0)))
        return out
