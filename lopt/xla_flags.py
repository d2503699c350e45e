"""The one place that edits XLA_FLAGS: flags a process sets for itself before JAX's backend starts;
also `unrolled_threefry` (how JAX lowers its random-number hash on CPU) and `start_one_thread`
(the CPU backend's thread pool).

XLA reads XLA_FLAGS once, when the backend initializes (the first computation or device query;
importing jax, lopt or any of our packages does not), so `add_xla_flags` must run before that, and
refuses to run after it rather than be silently ignored. A flag already in XLA_FLAGS is left as it
is, so a setting the user exports always wins.

It lives in `lopt`, the lowest layer (it imports nothing of ours), so that every caller above it
can use it without breaking the layer order: the evaluation commands, the benchmarks,
`meta_train.py` and `tests/conftest.py`.

The flags we set, and why:
- `SINGLE_THREADED_EIGEN`: XLA:CPU's multi-threaded Eigen kernels (jaxlib 0.10.2) sporadically
  return NaN on an oversubscribed CPU (reproduced at about 1 run in 30 of the vmapped transformer
  loss with two processes on two cores, never single-threaded). Tests and evaluations check our
  numerics and must not count such a glitch as a divergence.
- `host_device_count(n)`: n CPU devices in one process, to exercise sharding on one host.
- `LLVM_O0`: LLVM optimization level 0 halves XLA:CPU's compile times (the HLO passes, fusion and
  sharding are unchanged; the machine code is slower); the compile-bound test suite uses it.
- `VECTORIZE_SHORT_LOOPS`: XLA:CPU (jaxlib 0.10.2) lets LLVM unroll loops before vectorizing them,
  and a loop of at most 32 iterations is unrolled whole and left scalar: every elementwise fusion
  whose minor axis has at most 32 entries (a 32-wide layer's weights and biases, an (8, 32)
  matrix) ran scalar, 48 and more ran in 8-wide vectors. Without LLVM's unrolling those loops are
  vectorized: μLO's update on the throughput benchmark's population went from 9.0–10.8 to
  5.2–5.8 ms of CPU per 20 steps (benchmarks/RESULTS.md). XLA then emits other code, whose
  results can differ in the last bits, so meta-training leaves it off (the benchmarks set it).

>>> merge_flags("--xla_cpu_multi_thread_eigen=true", SINGLE_THREADED_EIGEN, host_device_count(4))
'--xla_cpu_multi_thread_eigen=true --xla_force_host_platform_device_count=4'
"""

from __future__ import annotations

import os

SINGLE_THREADED_EIGEN = "--xla_cpu_multi_thread_eigen=false"
LLVM_O0 = "--xla_backend_optimization_level=0"
VECTORIZE_SHORT_LOOPS = "--xla_backend_extra_options=xla_cpu_disable_loop_unrolling"


def host_device_count(n: int) -> str:
    """The flag that makes XLA:CPU expose `n` host devices."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"host device count must be an int >= 1, got {n!r}")
    return f"--xla_force_host_platform_device_count={n}"


def _name(flag: str) -> str:
    """A flag's name: "--name=value" -> "name"."""
    return flag.lstrip("-").split("=", 1)[0]


def merge_flags(current: str, *flags: str) -> str:
    """`current` (an XLA_FLAGS value) with each of `flags` ("--name=value") appended unless
    `current` or an earlier flag already names it."""
    out = current.split()
    for flag in flags:
        if not flag.startswith("--"):
            raise ValueError(f"an XLA flag looks like --name=value, got {flag!r}")
        if _name(flag) not in {_name(f) for f in out}:
            out.append(flag)
    return " ".join(out)


def add_xla_flags(*flags: str) -> None:
    """Adds `flags` to this process's XLA_FLAGS (see `merge_flags`); call it before JAX's backend
    starts. Raises RuntimeError once the backend has started, when the flags could no longer apply."""
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel  (jax has no public query)

    if xla_bridge.backends_are_initialized():
        raise RuntimeError(f"XLA's backend has already started, so {' '.join(flags)} would be ignored: "
                           "set the flags before the first JAX computation")
    os.environ["XLA_FLAGS"] = merge_flags(os.environ.get("XLA_FLAGS", ""), *flags)


def unrolled_threefry(unrolled: bool = True) -> bool:
    """Makes JAX lower its threefry2x32 hash on CPU as straight-line code, as it does on GPU and TPU
    (`unrolled=False` restores the CPU default), and says whether it could.

    On CPU, JAX (0.10.2) lowers every `jax.random` split, fold-in and draw to an XLA while loop of
    5 iterations, which keeps compile times short but costs a loop of small kernels per call; an
    inner step of the truncated estimators makes several such calls. Unrolled, each call is one
    fused kernel computing the same uint32 arithmetic, so every key and every random number is the
    same bits. It applies to programs compiled afterwards. The hook is private to JAX: if a JAX
    version lacks it, nothing changes and this returns False."""
    try:
        from jax._src.interpreters import mlir  # pylint: disable=import-outside-toplevel
        from jax._src.random import threefry2x32 as tf  # pylint: disable=import-outside-toplevel

        rule = tf._threefry2x32_lowering_rule if unrolled else tf._threefry2x32_cpu_lowering_rule
        mlir.register_lowering(tf.threefry2x32_p, rule, platform="cpu")
    except (ImportError, AttributeError):
        return False
    return True


def start_one_thread() -> None:
    """Starts JAX's CPU backend with one thread in its intra-op pool, the threads of the process
    still free to run on every CPU (Linux; elsewhere the backend starts as usual).

    The pool is sized by the CPUs the starting thread may run on, so this narrows that set to one
    CPU while the backend starts, then restores it for every thread. On this 2-core machine shared
    with other jobs, XLA:CPU's two threads spent 1.5× the CPU time of one on the same estimates,
    and one thread ran the throughput benchmark 1.25–2.1× faster under load (benchmarks/RESULTS.md);
    on an idle machine two threads can be faster. Raises RuntimeError once the backend has started."""
    import jax  # pylint: disable=import-outside-toplevel
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel

    if xla_bridge.backends_are_initialized():
        raise RuntimeError("XLA's backend has already started: its thread pool is sized")
    if not hasattr(os, "sched_setaffinity"):
        jax.devices()
        return
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        jax.devices()
    finally:
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:  # a thread that has ended since
                pass
