"""The particle axis over a device mesh: SPMD sharding of the estimators' populations.

Every estimator's population has one particle axis (`estimators.protocol.Estimator`: `num_particles` long, at
`state_particle_axis` of its state): the slots of the truncated estimators (PES, ES-Single,
TBPTT, BMG; axis 0 of every state leaf) and the population members of full-horizon ES (its
state is shared; axis 1 of the inner states it builds). `make_mesh(d)` lays d devices along
the mesh axis "particles"; `place(est, state, mesh)` shards a state along it; inside the
estimators, `constrain` pins the unroll's carry to the same layout whenever a mesh is active
(`jax.set_mesh`), so that XLA's SPMD partitioner splits the inner training across devices and
turns the estimators' means over particles into all-reduces. The arithmetic is the one of a
single device (the random bits are partitionable), so results agree to float tolerance.

Without an active mesh, `constrain` does nothing and the estimators run as before.

>>> import jax, inner_tasks, lopt
>>> from estimators import LOProblem, PES, Truncation, compile_estimate
>>> problem = LOProblem(task=inner_tasks.get_task("quadratic", dim=4), arch=lopt.LearnableAdam())
>>> est = PES(problem=problem, trunc=Truncation(trunc_length=5, min_horizon=10, max_horizon=50), num_tasks=4)
>>> mesh = make_mesh(particles_per_mesh(est, jax.device_count()))
>>> theta = replicate(problem.arch.init(jax.random.key(0)), mesh)
>>> with jax.set_mesh(mesh):  # then: grad, state, metrics = compile_estimate(est)(theta, state, key)
...     state = place(est, est.init(theta, jax.random.key(1)), mesh)
>>> len(state.slots.step.addressable_shards) == mesh.size  # each device holds its share of the slots
True
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from estimators.protocol import Estimator

PyTree = Any
AXIS = "particles"


def particles_per_mesh(est: Estimator, devices: int, requested: int = 0) -> int:
    """The mesh size for `est` on `devices` devices: `requested` if given (checked), else the
    largest count up to `devices` that divides the particle axis (every device, when it divides)."""
    n = est.num_particles
    if requested:
        if not 1 <= requested <= devices:
            raise ValueError(f"mesh.particles={requested} but JAX sees {devices} device(s); use 1..{devices} "
                             "or 0 for all of them")
        if n % requested:
            raise ValueError(f"mesh.particles={requested} must divide the {n} particles "
                             f"(estimator.{est.particle_setting})")
        return requested
    return max(d for d in range(1, min(devices, n) + 1) if n % d == 0)


def make_mesh(size: int, devices: list | None = None) -> Mesh:
    """A 1-D mesh of `size` devices (the first ones of `devices`, default `jax.devices()`)."""
    devices = jax.devices() if devices is None else devices
    if not 1 <= size <= len(devices):
        raise ValueError(f"a mesh of {size} devices, but only {len(devices)} are available")
    return Mesh(np.asarray(devices[:size]), (AXIS,), axis_types=(AxisType.Auto,))


def _active_size() -> int:
    mesh = jax.sharding.get_abstract_mesh()
    return 0 if mesh.empty or AXIS not in mesh.axis_names else mesh.shape[AXIS]


def constrain(tree: PyTree, axis: int = 0) -> PyTree:
    """Pins `axis` of every leaf to the active mesh's particle axis (a no-op without a mesh)."""
    if _active_size() <= 1:
        return tree

    def one(x):
        spec = P(*([None] * axis + [AXIS]))
        return jax.lax.with_sharding_constraint(x, spec) if np.ndim(x) > axis else x

    return jax.tree.map(one, tree)


def state_shardings(est: Estimator, state: PyTree, mesh: Mesh) -> PyTree:
    """NamedShardings for an estimator state: its `state_particle_axis` of every leaf split over
    the mesh (axis 0 for the truncated estimators, whose every leaf is per slot), or the whole
    state replicated when it has none (full-horizon ES: the search distribution)."""
    axis = est.state_particle_axis
    split = axis is not None and mesh.shape[AXIS] > 1
    spec = lambda x: P(*([None] * axis + [AXIS])) if split and np.ndim(x) > axis else P()
    return jax.tree.map(lambda x: NamedSharding(mesh, spec(x)), state)


def _put(x, sharding: NamedSharding):
    """`x` laid out as `sharding`; works across processes (each host supplies its own shards)."""
    if jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def place(est: Estimator, state: PyTree, mesh: Mesh) -> PyTree:
    """The estimator state sharded over `mesh` (see `state_shardings`)."""
    return jax.tree.map(_put, state, state_shardings(est, state, mesh))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf copied to every device of `mesh` (θ, optimizer state, task data, keys)."""
    return jax.tree.map(lambda x: _put(x, NamedSharding(mesh, P())), tree)


def to_host(tree: PyTree) -> PyTree:
    """Global NumPy values of (possibly sharded, possibly multi-host) arrays, on every process."""
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    def one(x):
        if not isinstance(x, jax.Array):
            return x
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)
