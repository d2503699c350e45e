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
