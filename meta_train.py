"""Meta-train a learned optimizer: the command line and the outer loop.

    python meta_train.py --config configs/quick.py --workdir runs/quick
    python meta_train.py --config configs/mulo_fmnist.py --workdir runs/m --config.estimator.name=es_single
    python meta_train.py --config configs/quick.py --workdir runs/quick --export   # export only
    tensorboard --logdir runs/quick
    python meta_train.py ... --coordinator_address=host0:8476 --num_processes=2 --process_id=0  # host 0 of 2

Each meta-step draws a gradient from every task group (a sampled task spec with its own
estimator population; groups are redrawn from the family in turn), averages them and applies
AdamW. The run resumes from the newest checkpoint in the workdir, bit for bit; SIGINT or SIGTERM
checkpoints and exits. At the end the learned optimizer is written to WORKDIR/lopt.safetensors,
which `lopt.load` turns into an optax optimizer.

Each estimator's particle axis is sharded over a mesh of `config.mesh.particles` devices (0: all
of them; see estimators/sharding.py); several hosts join one run through `jax.distributed`, and
the first host writes the checkpoints, events and export (to a workdir every host can read).
"""

from __future__ import annotations

import functools
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import app, flags, logging
from ml_collections import config_flags

import checkpoints
import estimators
import lopt
import monitoring
from configs.build import Setup, build, fingerprint
from estimators import sharding

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/<name>.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and the export.")
_EXPORT = flags.DEFINE_bool("export", False, "Write the learned-optimizer file from the newest checkpoint and exit.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 for a multi-host run (jax.distributed.initialize).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes (hosts) in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index in a multi-host run, 0..num_processes-1.")

EXPORT_NAME = "lopt.safetensors"


# ----------------------------------------------------------------------------- jitted pieces
@functools.partial(jax.jit, static_argnames=("outer",), donate_argnums=(1, 2))
def outer_step(outer: optax.GradientTransformation, theta, opt_state, grads: list):
    """Averages the groups' meta-gradients and applies one outer-optimizer step."""
    grad = jax.tree.map(lambda *g: sum(g) / len(g), *grads)
    updates, opt_state = outer.update(grad, opt_state, theta)
    return optax.apply_updates(theta, updates), opt_state, {"meta/grad_norm": optax.tree.norm(grad)}


@jax.jit
def _init_state(est, theta, key):
    return est.init(theta, key)


# ----------------------------------------------------------------------------- run state
class Groups:
    """The task groups: group g's spec is redrawn every `resample_every` steps, offset by
    g·resample_every/G so that groups restart in turn; a spec depends only on (seed, g, epoch)."""

    def __init__(self, setup: Setup, key: jax.Array, mesh: jax.sharding.Mesh):
        self.setup, self.key, self.mesh = setup, key, mesh
        self.epochs = [-1] * setup.num_groups
        self.ests: list[Any] = [None] * setup.num_groups
        self.specs: list[Any] = [None] * setup.num_groups

    def epoch(self, g: int, step: int) -> int:
        s = self.setup
        return (step + g * s.resample_every // s.num_groups) // s.resample_every

    def estimator(self, g: int, epoch: int):
        spec = self.setup.family.sample(jax.random.fold_in(jax.random.fold_in(self.key, g), epoch))
        return spec, sharding.replicate(self.setup.make_estimator(self.setup.family.task(spec)), self.mesh)

    def advance(self, step: int, theta, states: list, key: jax.Array) -> list[bool]:
        """Moves every group to `step`'s epoch, initializing the states of redrawn groups."""
        changed = []
        for g in range(self.setup.num_groups):
            e = self.epoch(g, step)
            changed.append(e != self.epochs[g])
            if changed[-1]:
                self.specs[g], self.ests[g] = self.estimator(g, e)
                self.epochs[g] = e
                states[g] = sharding.place(self.ests[g], _init_state(self.ests[g], theta, jax.random.fold_in(key, g)),
                                           self.mesh)
        return changed

    def restore_templates(self, epochs: list[int], theta) -> list:
        """Abstract estimator states for the given epochs (for checkpoint restore)."""
        out = []
        for g, e in enumerate(epochs):
            self.specs[g], self.ests[g] = self.estimator(g, e)
            self.epochs[g] = e
            out.append(jax.eval_shape(self.ests[g].init, theta, jax.random.key(0)))
        return out


class Stop:
    """Set by SIGINT/SIGTERM; the loop checkpoints after the current step and returns."""

    def __init__(self):
        self.requested, self._old = False, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        logging.warning("received signal %d: checkpointing after this step", signum)
        self.requested = True
        signal.signal(signum, self._old[signum])  # a second signal acts at once

    def agreed(self) -> bool:
        """Whether any host was signalled (hosts stop at the same step, so that they checkpoint together)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

        return bool(np.any(multihost_utils.process_allgather(np.asarray(self.requested))))

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _save(workdir, step, theta, opt_state, states, key, groups: Groups, setup: Setup, keep: int):
    """Gathers the sharded state (from every host) and writes it whole from the first host."""
    tree = sharding.to_host({"theta": theta, "opt_state": opt_state, "groups": states, "key": key})
    meta = {"fingerprint": fingerprint(setup.config), "epochs": list(groups.epochs),
            "config": setup.config.to_json()}
    if jax.process_index() == 0:
        checkpoints.save(workdir, step, tree, meta, keep=keep)


def _compatible(setup: Setup) -> Callable[[dict], None]:
    want = fingerprint(setup.config)

    def check(meta: dict) -> None:
        have = meta.get("fingerprint")
        if have != want:
            diff = sorted(k for k in set(want) | set(have or {}) if (have or {}).get(k) != want.get(k))
            raise checkpoints.CheckpointError(
                f"the workdir holds an incompatible run (differs in {diff}); use a new --workdir"
            )

    return check


def _resume(workdir, setup: Setup, groups: Groups, theta, opt_state):
    found = checkpoints.read_meta(workdir)
    if found is None:
        return None
    _compatible(setup)(found[1])
    templates = groups.restore_templates(found[1]["epochs"], theta)
    template = {"theta": theta, "opt_state": opt_state, "groups": templates, "key": jax.random.key(0)}
    step, tree, meta = checkpoints.restore(workdir, template, check=_compatible(setup))
    if meta["epochs"] != found[1]["epochs"]:  # an older checkpoint was taken: rebuild its groups
        groups.restore_templates(meta["epochs"], theta)
    states = [sharding.place(est, st, groups.mesh) for est, st in zip(groups.ests, tree["groups"])]
    tree = sharding.replicate({k: v for k, v in tree.items() if k != "groups"}, groups.mesh) | {"groups": states}
    return step, tree


# ----------------------------------------------------------------------------- the loop
def run(config: ml_collections.ConfigDict, workdir: str, *, export_only: bool = False,
        on_step: Callable[[int], None] | None = None) -> dict:
    """Meta-trains (resuming from `workdir`), exports, and returns the final summary.

    `on_step(step)` is called after every completed step (tests use it to send signals)."""
    setup = build(config)  # every config error surfaces here, before any compilation
    key = jax.random.key(setup.seed)
    k_theta, k_groups, k_run, k_eval = jax.random.split(key, 4)
    mesh = sharding.make_mesh(setup.mesh_size)
    primary = jax.process_index() == 0
    theta = sharding.replicate(setup.arch.init(k_theta), mesh)
    opt_state = sharding.replicate(setup.outer.init(theta), mesh)
    groups = Groups(setup, k_groups, mesh)
    states: list = [None] * setup.num_groups
    start = 0
    resumed = _resume(workdir, setup, groups, theta, opt_state)
    if resumed is not None:
        start, tree = resumed
        theta, opt_state, states, k_run = tree["theta"], tree["opt_state"], list(tree["groups"]), tree["key"]
        logging.info("resumed from step %d in %s", start, workdir)
    if export_only:
        if resumed is None:
            raise FileNotFoundError(f"--export: no checkpoint in {workdir}")
        return {"export": str(export(workdir, setup, theta, start))} if primary else {}

    logging.info("particles sharded over %d of %d device(s), %d process(es)", setup.mesh_size, jax.device_count(),
                 jax.process_count())
    writer = monitoring.Writer(workdir, purge_step=start if start else None, enabled=primary)
    if start == 0:
        writer.text("config", "```\n" + setup.config.to_json(indent=2) + "\n```")
    evaluator = monitoring.Evaluator(setup, k_eval)
    summary: dict = {}
    if start == 0 and primary:
        summary.update(evaluator.run(writer, 0, sharding.to_host(theta)))
    pending: list[dict] = []
    last_t, last_step = time.perf_counter(), start
    with Stop() as stop, tqdm.tqdm(total=setup.num_steps, initial=start, desc="meta-train", unit="step") as bar:
        step = start
        stopping = False
        while step < setup.num_steps and not stopping:
            k_step = jax.random.fold_in(k_run, step)
            with jax.set_mesh(mesh):  # only the estimators' programs span the mesh
                groups.advance(step, theta, states, jax.random.fold_in(k_step, 1))
                grads, metrics = [], {}
                for g in range(setup.num_groups):
                    estimate = estimators.compile_estimate(groups.ests[g])
                    grad, states[g], m = estimate(theta, states[g], jax.random.fold_in(k_step, 2 + g))
                    grads.append(grad)
                    metrics.update({f"group{g}/{k}": v for k, v in m.items()})
                    metrics[f"family/{groups.specs[g].name}/{g}/loss"] = m["meta/loss"]
                theta, opt_state, om = outer_step(setup.outer, theta, opt_state, grads)
            metrics.update(om)
            pending.append(metrics)
            step += 1
            bar.update(1)
            if on_step is not None:
                on_step(step)
            stopping = stop.agreed()
            if step % setup.log_every == 0 or step == setup.num_steps or stopping:
                now = time.perf_counter()
                rate = (step - last_step) * setup.inner_steps_per_meta_step(groups.ests) / (now - last_t)
                logged = _log(writer, step, pending, setup, rate)
                bar.set_postfix({"meta_loss": f"{logged['meta/loss']:.4f}", "inner_steps/s": f"{rate:,.0f}"})
                pending, last_t, last_step = [], now, step
            if setup.histograms_every and step % setup.histograms_every == 0 and primary:
                evaluator.histograms(writer, step, sharding.to_host(theta))
            if setup.probe_every and step % setup.probe_every == 0:
                with jax.set_mesh(mesh):
                    probe = estimators.variance_probe(groups.ests[0], theta, states[0], jax.random.fold_in(k_step, 0),
                                                      setup.probe_repeats)
                writer.scalars(step, sharding.to_host(probe))
            if (step % setup.eval_every == 0 or step == setup.num_steps) and primary:
                summary.update(evaluator.run(writer, step, sharding.to_host(theta)))
            if step % setup.checkpoint_every == 0 or step == setup.num_steps or stopping:
                _save(workdir, step, theta, opt_state, states, k_run, groups, setup, setup.keep)
    summary["step"] = step
    if step >= setup.num_steps and primary:
        summary["export"] = str(export(workdir, setup, theta, step))
        writer.hparams(monitoring.flat_hparams(setup.config.to_dict()),
                       {k: v for k, v in summary.items() if k.startswith("eval/")})
    writer.close()
    summary["theta"], summary["opt_state"] = theta, opt_state
    return summary


def _log(writer: monitoring.Writer, step: int, pending: list[dict], setup: Setup, rate: float) -> dict:
    """Averages the steps since the last log on the host and writes them."""
    host = sharding.to_host(pending)
    keys = host[-1].keys()
    avg = {k: float(np.mean([np.asarray(h[k], np.float64) for h in host if k in h])) for k in keys}
    groups = sorted({k.split("/")[0] for k in avg if k.startswith("group")})
    for name in ("meta/loss", "inner/resets", "inner/diverged", "inner/mean_step", "meta/grad_norm"):
        vals = [avg[f"{g}/{name}"] for g in groups if f"{g}/{name}" in avg]
        if vals:
            avg[name] = float(np.sum(vals) if name.startswith("inner/r") or name.startswith("inner/d")
                              else np.mean(vals))
    avg["meta/grad_norm"] = avg.get("meta/grad_norm", float("nan"))
    out = {k: v for k, v in avg.items() if not k.startswith("group")}
    out["outer/learning_rate"] = float(setup.schedule(step - 1))
    out["perf/inner_steps_per_s"] = rate
    writer.scalars(step, out)
    return out


def export(workdir: str, setup: Setup, theta, step: int):
    """Writes WORKDIR/lopt.safetensors (lopt.save), with the run's provenance."""
    import pathlib  # pylint: disable=import-outside-toplevel

    meta = {"meta_training_steps": step, "config": setup.config.to_dict(), "source": "meta_train.py"}
    return lopt.save(pathlib.Path(workdir) / EXPORT_NAME, setup.arch, sharding.to_host(theta), meta)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise app.UsageError("--config and --workdir are required, e.g. --config configs/quick.py --workdir runs/q")
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
