"""lopt.compile_cache: the directory rule, one clear error for an unusable directory, a real
cross-process cache hit, and the compile-time counters. Whatever enables a cache runs in a
subprocess, so that this process's JAX config stays as conftest.py set it."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax._src import monitoring as jax_monitoring

from evaluation import evaluate
from lopt import compile_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Compiles one small program with the cache in argv[1] (every program is written: the threshold is
# 0 s), and prints its result and this process's counters.
_ROUND_TRIP = """
import json, sys
import jax, jax.numpy as jnp
from lopt import compile_cache
compile_cache.enable(sys.argv[1])
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(axis=0) * 3.0)
y = f(jnp.arange(12.0).reshape(3, 4))
s = compile_cache.stats()
print(json.dumps({"y": y.tolist(), "hits": s.cache_hits, "misses": s.cache_misses, "compile_s": s.compile_s}))
"""


def _run_round_trip(cache: pathlib.Path) -> dict:
    env = dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _ROUND_TRIP, str(cache)], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_program_compiled_in_one_process_is_a_cache_hit_in_the_next(tmp_path):
    first = _run_round_trip(tmp_path / "cache")
    assert first["hits"] == 0 and first["misses"] >= 1 and first["compile_s"] > 0
    assert any((tmp_path / "cache").iterdir())
    second = _run_round_trip(tmp_path / "cache")
    assert second["hits"] >= 1 and second["misses"] == 0
    assert second["y"] == first["y"]  # the loaded program computes the same bits


def test_a_second_directory_replaces_the_first_and_none_turns_the_cache_off(tmp_path):
    script = """
import sys, jax
from lopt import compile_cache
for i, path in enumerate(sys.argv[1:]):
    compile_cache.enable(None if path == "none" else path)
    jax.jit(lambda x: x * (5.0 + i) + 2.0)(1.0)
"""
    env = dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a"), str(tmp_path / "b"), "none"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [len(list((tmp_path / d).iterdir())) for d in "ab"] == [1, 1]  # the third program went nowhere


def test_counters_grow_when_a_fresh_program_compiles():
    compile_cache.track()
    compile_cache.track()  # idempotent: one listener, so one compile counts once
    assert jax_monitoring.get_event_duration_listeners().count(compile_cache._on_duration) == 1
    before = compile_cache.stats()
    jax.jit(lambda x: jnp.cos(x) * 7.0 - x)(jnp.arange(5.0)).block_until_ready()
    grown = compile_cache.stats() - before
    assert grown.compile_s > 0 and grown.cache_hits >= 0 and grown.cache_misses >= 0


@pytest.mark.parametrize("below", ["", "cache"])  # the path is a regular file, or under one
def test_an_unusable_directory_is_one_clear_error(tmp_path, below):
    (tmp_path / "a_file").write_text("x")
    path = tmp_path / "a_file" / below if below else tmp_path / "a_file"
    with pytest.raises(compile_cache.CompileCacheError) as e:
        compile_cache.enable(path)
    message = str(e.value)
    assert str(path) in message and "--compile_cache" in message and "$LOPT_COMPILE_CACHE" in message


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(compile_cache.CompileCacheError, match="compilation cache directory"):
            compile_cache.enable(tmp_path / "cache")
    finally:
        tmp_path.chmod(0o700)


def test_both_commands_report_an_unusable_directory_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "a_file"
    bad.write_text("x")
    assert evaluate.main(["--suite", "dev", "--lopt", "", "--out", str(tmp_path / "out"),
                          "--compile_cache", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and str(bad) in err[0]
    assert not (tmp_path / "out").exists()
    proc = subprocess.run([sys.executable, str(ROOT / "meta_train.py"), f"--config={ROOT / 'configs/tiny.py'}",
                           f"--workdir={tmp_path / 'run'}", f"--compile_cache={bad}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0 and str(bad) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_the_directory_rule(monkeypatch, tmp_path):
    for env in (compile_cache.ENV, compile_cache.JAX_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compile_cache.default_dir() == str(tmp_path / ".cache" / "lopt" / "jax")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert compile_cache.default_dir() == "/xdg/lopt/jax"
    monkeypatch.setenv(compile_cache.JAX_ENV, "/jax_dir")
    assert compile_cache.default_dir() == "/jax_dir"
    monkeypatch.setenv(compile_cache.ENV, "/ours")
    assert compile_cache.resolve(None) == "/ours" and compile_cache.resolve("/flag") == "/flag"
    assert compile_cache.resolve("none") is None and compile_cache.resolve("") is None
    monkeypatch.setenv(compile_cache.ENV, "none")
    assert compile_cache.resolve(None) is None
