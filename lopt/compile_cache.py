"""JAX's persistent compilation cache for our commands, and counters of compile time and cache hits.

Every meta-training run and evaluation compiles the same large programs (the estimators' unrolls,
the evaluation's training loops), and XLA:CPU takes seconds to minutes for each. With the cache on,
a process that compiles a program an earlier process compiled (same HLO, XLA flags, jax version
and devices) loads the executable from disk instead: the same machine code, so the same results.

The directory, first match wins: the `--compile_cache DIR` flag of `meta_train.py` and
`python -m evaluation.evaluate`; `$LOPT_COMPILE_CACHE`; `$JAX_COMPILATION_CACHE_DIR` (JAX's own
variable, which the tests set); `$XDG_CACHE_HOME/lopt/jax`, by default `~/.cache/lopt/jax`. The
value `none` (or empty) turns the cache off. Programs that took `MIN_COMPILE_TIME_S` or longer to
compile are written (unless `$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` says otherwise), so the
cache holds the big programs and not the thousands of small eager ones. It is never pruned: delete
the directory to reclaim its space. Only share it with people you trust: JAX runs what it loads.

`stats()` counts, in this process, the seconds spent compiling and the cache's hits and misses
(through `jax.monitoring`). This module sits in `lopt`, the lowest layer, as `xla_flags` does, so
that every command can use it.

>>> before = stats()
>>> _ = jax.jit(lambda x: x * 3 + 1)(1.0)
>>> stats().compile_s > before.compile_s
True
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import threading

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = "LOPT_COMPILE_CACHE"
JAX_ENV = "JAX_COMPILATION_CACHE_DIR"
MIN_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
MIN_COMPILE_TIME_S = 0.5
OFF = ("", "none")

# Tracing to a jaxpr (top-level jit traces only), lowering it to MLIR, and XLA's compilation (which
# on a persistent-cache hit is the lookup and the load instead).
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
HIT_EVENT = "/jax/compilation_cache/cache_hits"
MISS_EVENT = "/jax/compilation_cache/cache_misses"


class CompileCacheError(ValueError):
    """The compilation cache's directory cannot be used."""


@dataclasses.dataclass(frozen=True)
class CompileStats:
    """Totals in this process since `track()` first ran.

    `compile_s`: seconds of tracing, lowering and XLA compilation (`COMPILE_EVENTS`).
    `cache_hits`: programs loaded from the persistent cache. `cache_misses`: programs compiled and
    written to it (JAX's count: programs faster to compile than the threshold are neither)."""

    compile_s: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0

    def __sub__(self, other: CompileStats) -> CompileStats:
        return CompileStats(self.compile_s - other.compile_s, self.cache_hits - other.cache_hits,
                            self.cache_misses - other.cache_misses)


_lock = threading.Lock()
_totals = {"compile_s": 0.0, "cache_hits": 0, "cache_misses": 0}
_tracking = False


def _on_event(event: str, **kwargs) -> None:
    del kwargs
    key = {HIT_EVENT: "cache_hits", MISS_EVENT: "cache_misses"}.get(event)
    if key is not None:
        with _lock:
            _totals[key] += 1


def _on_duration(event: str, duration_secs: float, **kwargs) -> None:
    del kwargs
    if event in COMPILE_EVENTS:
        with _lock:
            _totals["compile_s"] += duration_secs


def track() -> None:
    """Registers the `jax.monitoring` listeners behind `stats`, once per process."""
    global _tracking
    with _lock:
        if _tracking:
            return
        _tracking = True
    jax.monitoring.register_event_listener(_on_event)
    jax.monitoring.register_event_duration_secs_listener(_on_duration)


def stats() -> CompileStats:
    """This process's compile seconds and cache hits and misses so far (tracking starts here if
    it has not)."""
    track()
    with _lock:
        return CompileStats(**_totals)


def default_dir() -> str | None:
    """The directory when no flag names one: $LOPT_COMPILE_CACHE, $JAX_COMPILATION_CACHE_DIR, then
    $XDG_CACHE_HOME/lopt/jax (~/.cache/lopt/jax); None when the first one set says `none`."""
    for env in (ENV, JAX_ENV):
        if env in os.environ:
            value = os.environ[env].strip()
            return None if value.lower() in OFF else value
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lopt", "jax")


def resolve(flag: str | None) -> str | None:
    """The directory a `--compile_cache` value names: None (flag not given) is `default_dir()`,
    `none` or empty is None (off)."""
    if flag is None:
        return default_dir()
    return None if flag.strip().lower() in OFF else flag


def enable(path: str | os.PathLike | None, source: str = "--compile_cache") -> pathlib.Path | None:
    """Points JAX's persistent compilation cache at `path` (None: off) and starts `track()`.

    The directory is created and a file written in it first, so that an unusable path is one
    `CompileCacheError` now rather than a warning per program later. `source` names the flag
    that sets it, for that message. Returns the directory (absolute), or None."""
    track()
    if path is None:
        _point_jax_at(None)
        return None
    path = pathlib.Path(path).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_check"):
            pass
    except OSError as e:
        reason = "it is a file" if path.exists() and not path.is_dir() else (e.strerror or str(e)).lower()
        raise CompileCacheError(
            f"cannot use {path} as the compilation cache directory ({reason}): choose another with "
            f"{source} DIR or ${ENV}, or turn the cache off with {source}=none") from None
    _point_jax_at(str(path))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # compile time decides, not size
    if MIN_TIME_ENV not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return path


def _point_jax_at(path: str | None) -> None:
    """Sets JAX's cache directory. JAX opens its cache once, in the first directory set, so one
    that replaces another needs a reset."""
    previous = jax.config.jax_compilation_cache_dir
    if previous != path:
        jax.config.update("jax_compilation_cache_dir", path)
        if previous is not None:
            compilation_cache.reset_cache()
