"""Meta-train a learned optimizer from the command line (the loop itself lives in `outer/`).

    python meta_train.py --config configs/quick.py --workdir runs/quick
    python meta_train.py --config configs/mulo_fmnist.py --workdir runs/m --config.estimator.name=es_single
    python meta_train.py --config configs/quick.py --workdir runs/quick --export   # export only
    tensorboard --logdir runs/quick
    python meta_train.py ... --coordinator_address=host0:8476 --num_processes=2 --process_id=0  # host 0 of 2
    python meta_train.py ... --compile_cache=none   # no persistent compilation cache

The run resumes from the newest checkpoint in the workdir; SIGINT or SIGTERM checkpoints and
exits; the learned optimizer ends up in WORKDIR/lopt.safetensors (`lopt.load` reads it).
Compiled programs are kept in a persistent cache that later runs load them from: by default
$LOPT_COMPILE_CACHE, else ~/.cache/lopt/jax (`lopt.compile_cache` has the full rule).
"""

from __future__ import annotations

from typing import Callable

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

import outer
from configs.build import build
from lopt import compile_cache

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/<name>.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and the export.")
_EXPORT = flags.DEFINE_bool("export", False, "Write the learned-optimizer file from the newest checkpoint and exit.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 for a multi-host run (jax.distributed.initialize).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes (hosts) in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index in a multi-host run, 0..num_processes-1.")
_COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache", None, f"Directory of JAX's persistent compilation cache; 'none' turns it off "
    f"(default: ${compile_cache.ENV}, else ~/.cache/lopt/jax).")


def run(config: ml_collections.ConfigDict, workdir: str, *, export_only: bool = False,
        on_step: Callable[[int], None] | None = None) -> dict:
    """Checks the config (every config error surfaces here, before any compilation) and runs it."""
    return outer.run(build(config), workdir, export_only=export_only, on_step=on_step)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise app.UsageError("--config and --workdir are required, e.g. --config configs/quick.py --workdir runs/q")
    try:
        compile_cache.enable(compile_cache.resolve(_COMPILE_CACHE.value))
    except compile_cache.CompileCacheError as e:
        raise app.UsageError(str(e)) from None
    if _NUM_PROCESSES.value > 1 or _COORDINATOR.value:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    try:
        summary = run(_CONFIG.value, _WORKDIR.value, export_only=_EXPORT.value)
    except (ValueError, FileNotFoundError) as e:  # config errors, incompatible workdirs, bad files
        raise app.UsageError(str(e)) from None
    for k, v in summary.items():
        if isinstance(v, (int, float, str)):
            print(f"{k}: {v}")


def cli():
    """Entry point of the installed `meta-train` command."""
    app.run(main)


if __name__ == "__main__":
    cli()
