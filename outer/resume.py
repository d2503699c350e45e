"""Stopping and resuming a run: SIGINT/SIGTERM handling agreed across hosts, checkpoints of the
whole run state (gathered to the first host), and restoring them onto the current mesh."""

from __future__ import annotations

import signal
from typing import Callable

import jax
import numpy as np
from absl import logging

import checkpoints
from estimators import sharding
from outer.groups import Groups
from outer.setup import Setup


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


def save(workdir: str, step: int, theta, opt_state, states: list, key: jax.Array, groups: Groups,
         setup: Setup) -> None:
    """Gathers the sharded state (from every host) and writes it whole from the first host."""
    tree = sharding.to_host({"theta": theta, "opt_state": opt_state, "groups": states, "key": key})
    meta = {"fingerprint": setup.fingerprint, "epochs": list(groups.epochs), "config": setup.config_json,
            "arch": setup.arch.name, "arch_version": setup.arch.version}
    if jax.process_index() == 0:
        checkpoints.save(workdir, step, tree, meta, keep=setup.keep)


def _compatible(setup: Setup) -> Callable[[dict], None]:
    want = setup.fingerprint

    def check(meta: dict) -> None:
        have = meta.get("fingerprint")
        if have != want:
            diff = sorted(k for k in set(want) | set(have or {}) if (have or {}).get(k) != want.get(k))
            raise checkpoints.CheckpointError(
                f"the workdir holds an incompatible run (differs in {diff}); use a new --workdir"
            )
        version = meta.get("arch_version")  # (checkpoints written before it was recorded carry none)
        if version is not None and version != setup.arch.version:
            raise checkpoints.CheckpointError(
                f"the workdir's checkpoint is of {meta.get('arch')} version {version}, this code's {setup.arch.name} "
                f"is version {setup.arch.version} (the same theta would step differently); export it with the "
                "code that wrote it, or start a new --workdir from an export via --config.init_from")

    return check


def resume(workdir: str, setup: Setup, groups: Groups, theta, opt_state) -> tuple[int, dict] | None:
    """(step, {theta, opt_state, groups, key}) from the newest readable checkpoint, placed on the
    groups' mesh; None in a fresh workdir. An incompatible run raises `CheckpointError`."""
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
