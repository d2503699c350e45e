"""Shared test settings: strict JAX flags and data fixtures."""

import os

# Compiled programs are shared through JAX's persistent cache between the pytest workers and the
# CLI subprocesses, which compile the same meta-training step (compilation dominates those tests).
# (Set before jax is imported: it reads these variables at import.)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

from lopt import xla_flags  # noqa: E402

# The suite is compile-bound: LLVM's optimization level 0 takes it from ~12 to ~8 minutes on 2 cores.
# Single-threaded Eigen: the tests check our numerics, not XLA:CPU's threading glitches (see
# lopt.xla_flags). Four host devices, so that the sharding tests split the particle axis (a plain
# jit still runs on one device; the CLI's default mesh takes as many as divide the particles). A
# flag already in XLA_FLAGS wins: set --xla_backend_optimization_level there to test at another level.
xla_flags.add_xla_flags(xla_flags.LLVM_O0, xla_flags.SINGLE_THREADED_EIGEN, xla_flags.host_device_count(4))

import jax  # noqa: E402
import numpy as np
import pytest

from inner_tasks import datasets

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def fashion_mnist_dir():
    """Fashion-MNIST's directory. Missing data fails under CI (which installs it) and skips elsewhere."""
    try:
        return str(datasets.fashion_mnist_dir())
    except datasets.DatasetNotFoundError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))


@pytest.fixture
def x64():
    """Float64 for the test (exact-gradient checks), restored afterwards."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.fixture
def same_trajectory():
    """Checks that θ − θ₀ of a run agrees with a reference run's to 1% (runs that differ only in
    float rounding, e.g. on another device count: AdamW's first steps normalize each coordinate,
    so a gradient entry near zero makes rounding visible in that coordinate, though small)."""

    def check(theta, reference, init):
        moved = lambda t: np.concatenate([np.ravel(np.asarray(a) - np.asarray(b))
                                          for a, b in zip(jax.tree.leaves(t), jax.tree.leaves(init))])
        ref = moved(reference)
        assert np.abs(ref).max() > 1e-3  # the run moved θ
        assert np.linalg.norm(moved(theta) - ref) <= 1e-2 * np.linalg.norm(ref)

    return check
