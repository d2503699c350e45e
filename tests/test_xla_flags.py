"""lopt.xla_flags: a user's XLA_FLAGS setting wins, flags are added once, and a call after the
backend has started fails instead of being silently ignored."""

import os

import jax
import pytest

from lopt import xla_flags


def test_merge_keeps_the_users_setting_and_adds_each_flag_once():
    user = "--xla_cpu_multi_thread_eigen=true --xla_dump_to=/tmp/d"
    merged = xla_flags.merge_flags(user, xla_flags.SINGLE_THREADED_EIGEN, xla_flags.LLVM_O0,
                                   xla_flags.LLVM_O0, xla_flags.host_device_count(2))
    assert merged.split() == ["--xla_cpu_multi_thread_eigen=true", "--xla_dump_to=/tmp/d",
                              "--xla_backend_optimization_level=0", "--xla_force_host_platform_device_count=2"]
    assert xla_flags.merge_flags("", xla_flags.SINGLE_THREADED_EIGEN) == "--xla_cpu_multi_thread_eigen=false"
    assert xla_flags.merge_flags(merged, xla_flags.host_device_count(8)) == merged


def test_bad_flags_are_refused():
    with pytest.raises(ValueError, match="--name=value"):
        xla_flags.merge_flags("", "xla_cpu_multi_thread_eigen=false")
    with pytest.raises(ValueError, match="int >= 1"):
        xla_flags.host_device_count(0)


def test_adding_flags_after_the_backend_started_fails(monkeypatch):
    jax.numpy.zeros(()).block_until_ready()  # the backend has started
    monkeypatch.setenv("XLA_FLAGS", "")
    with pytest.raises(RuntimeError, match="already started"):
        xla_flags.add_xla_flags(xla_flags.SINGLE_THREADED_EIGEN)
    assert os.environ["XLA_FLAGS"] == ""  # left as it was


def test_unrolled_threefry_draws_the_same_bits_without_a_loop():
    """The CPU lowering of JAX's threefry hash without XLA's while loop: the same keys and draws."""
    import numpy as np

    def draws(key):
        return (jax.random.key_data(jax.random.split(key, 5)), jax.random.normal(key, (3, 33)),
                jax.random.bits(jax.random.fold_in(key, 3), (17,)))

    def compiled():  # a fresh function each time, so that nothing lowered before is reused
        fn = jax.jit(lambda key: draws(key))
        return fn(jax.random.key(7)), fn.lower(jax.random.key(7)).as_text()

    try:
        assert xla_flags.unrolled_threefry(False)
        rolled, rolled_ir = compiled()
        assert xla_flags.unrolled_threefry(True)
        unrolled, unrolled_ir = compiled()
    finally:
        xla_flags.unrolled_threefry(False)  # the suite runs with JAX's default
    assert "while" in rolled_ir and "while" not in unrolled_ir
    for a, b in zip(rolled, unrolled):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_start_one_thread_restores_the_cpus_and_refuses_a_started_backend():
    import subprocess
    import sys

    jax.numpy.zeros(()).block_until_ready()
    with pytest.raises(RuntimeError, match="already started"):
        xla_flags.start_one_thread()
    code = ("import os; from lopt import xla_flags; cpus = os.sched_getaffinity(0); xla_flags.start_one_thread(); "
            "import jax; assert float(jax.numpy.ones(3).sum()) == 3.0; "
            "assert all(os.sched_getaffinity(int(t)) == cpus for t in os.listdir('/proc/self/task'))")
    if hasattr(os, "sched_setaffinity"):
        subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, XLA_FLAGS=""))
