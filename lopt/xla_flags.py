"""The one place that edits XLA_FLAGS: flags a process sets for itself before JAX's backend starts.

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

>>> merge_flags("--xla_cpu_multi_thread_eigen=true", SINGLE_THREADED_EIGEN, host_device_count(4))
'--xla_cpu_multi_thread_eigen=true --xla_force_host_platform_device_count=4'
"""

from __future__ import annotations

import os

SINGLE_THREADED_EIGEN = "--xla_cpu_multi_thread_eigen=false"
LLVM_O0 = "--xla_backend_optimization_level=0"


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
