"""XLA flags an evaluation process sets before the backend starts.

XLA:CPU's multi-threaded Eigen kernels sporadically return NaN on an oversubscribed CPU (see
tests/conftest.py); an evaluation must not count such a glitch as a divergence.
"""

from __future__ import annotations

import os


def single_threaded_eigen() -> None:
    """Adds `--xla_cpu_multi_thread_eigen=false` to XLA_FLAGS (call before jax starts its backend)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
