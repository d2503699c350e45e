"""The particle axis sharded over 4 CPU devices (conftest forces them): the numbers of one device.

ES gradients divide loss differences by σ², which amplifies float32 rounding of the losses
(~1e-7) to ~1e-3 of the gradient; the tight checks therefore run the linear-quadratic problem in
float64, where every estimator must agree with its single-device run to 1e-9. A particle paired
with the wrong noise, key or task would be off by O(1).
"""

import os
import re
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import estimators
import inner_tasks
import lopt
import meta_train
import outer
from configs import tiny
from estimators import ESSingle, FullES, PES, TBPTT, Truncation, sharding
from estimators.toy import LinearQuadratic
from lopt import xla_flags


def test_conftest_gives_four_cpu_devices():
    assert jax.device_count() == 4, "tests/conftest.py must force 4 host devices before JAX starts"


def _estimates(est, theta, size: int, repeats: int = 2):
    """`repeats` successive estimates on a mesh of `size` devices, compiled once (as
    `estimators.compile_estimate` does, state donated): host grads, the last state and metrics,
    and the compiled program's text."""
    mesh = sharding.make_mesh(size)
    with jax.set_mesh(mesh):
        theta, est_m = sharding.replicate(theta, mesh), sharding.replicate(est, mesh)
        state = sharding.place(est, jax.jit(lambda e, t, k: e.init(t, k))(est_m, theta, jax.random.key(1)), mesh)
        step = jax.jit(type(est).estimate, donate_argnums=(2,)).lower(est_m, theta, state, jax.random.key(2)).compile()
        grads = []
        for i in range(repeats):
            grad, state, metrics = step(est_m, theta, state, jax.random.key(2 + i))
            grads.append(sharding.to_host(grad))
    return grads, state, sharding.to_host(metrics), step.as_text()


@pytest.mark.parametrize("make", [
    lambda p, t: PES(problem=p, trunc=t, num_tasks=8, sigma=0.1),
    lambda p, t: ESSingle(problem=p, trunc=t, num_tasks=8, sigma=0.1),
    lambda p, t: TBPTT(problem=p, trunc=t, num_tasks=8),
    lambda p, t: FullES(problem=p, population_size=8, horizon=12, num_tasks=2, sigma=0.1),
], ids=["pes", "es_single", "tbptt", "full_es"])
def test_meta_gradients_match_one_device_in_float64(x64, make):
    problem = LinearQuadratic.create(jax.random.key(0), n=8, p=4, dtype=jnp.float64)
    est = make(problem, Truncation(trunc_length=4, min_horizon=6, max_horizon=20))
    theta = {"theta": jnp.asarray([0.3, -0.2, 0.5, 0.1], jnp.float64)}
    one, _, _, _ = _estimates(est, theta, 1)
    four, state, _, hlo = _estimates(est, theta, 4)
    for a, b in zip(one, four):
        assert np.abs(a["theta"]).max() > 1e-3  # a real gradient, not a trivially equal zero
        np.testing.assert_allclose(b["theta"], a["theta"], rtol=1e-9, atol=1e-12)
    if est.state_particle_axis == 0:  # (full ES gathers its members' fitness to rank them, by design)
        shards = state.slots.step.addressable_shards  # the population really is split: 2 slots per device
        assert len(shards) == 4 and {s.data.shape for s in shards} == {(2,)}
        assert "all-reduce" in hlo  # the mean over particles is a collective ...
        assert not re.search(r"all-gather|all-to-all", hlo)  # ... and no particle's state ever moves


def test_variance_probe_on_a_mesh_matches_one_device_in_float64(x64):
    """As the outer loop calls it (`jax.set_mesh`, the state placed on the mesh): ES-Single's
    probe, which redraws the sharded slots' perturbations, gives the numbers of one device and
    leaves the sharded state in place."""
    problem = LinearQuadratic.create(jax.random.key(0), n=8, p=4, dtype=jnp.float64)
    est = ESSingle(problem=problem, trunc=Truncation(trunc_length=4, min_horizon=6, max_horizon=20), num_tasks=8,
                   sigma=0.1)
    theta = {"theta": jnp.asarray([0.3, -0.2, 0.5, 0.1], jnp.float64)}
    state = jax.jit(est.init)(theta, jax.random.key(1))
    one = sharding.to_host(estimators.variance_probe(est, theta, state, jax.random.key(2), 4))
    mesh = sharding.make_mesh(4)
    with jax.set_mesh(mesh):
        state = sharding.place(est, state, mesh)
        theta_m, est_m = sharding.replicate(theta, mesh), sharding.replicate(est, mesh)
        four = sharding.to_host(estimators.variance_probe(est_m, theta_m, state, jax.random.key(2), 4))
    assert one["probe/total_variance"] > 1e-2 * one["probe/mean_norm"] ** 2  # the repeats really differ
    for name in one:
        np.testing.assert_allclose(four[name], one[name], rtol=1e-9)
    assert {s.data.shape for s in state.eps["theta"].addressable_shards} == {(2, 4)}


# Sharded programs of the learned optimizer on a real task take 35 s (PES) to minutes (BMG, which
# differentiates through the unroll and its target scan) to compile on CI's two cores; CI covers
# the same code through the CLI tests (tiny runs on 2 devices) and the float64 checks above.
@pytest.mark.slow
@pytest.mark.parametrize("name, rtol", [("pes", 1e-2), ("bmg", 1e-4)])
def test_mlp_population_is_split_and_reduced_with_all_reduce(name, rtol):
    task = inner_tasks.get_task("mlp", dataset="digits", resolution=8, width=8, depth=1, batch_size=32)
    problem = estimators.LOProblem(task=task, arch=lopt.MuLO(hidden_size=4))
    settings = dict(sigma=0.1) if name == "pes" else dict(target_steps=2)
    est = estimators.get_estimator(name, problem=problem, trunc=Truncation(trunc_length=3, min_horizon=4, max_horizon=8),
                                   num_tasks=4, **settings)
    theta = problem.arch.init(jax.random.key(0))
    one, _, m1, _ = _estimates(est, theta, 1)
    four, state, m4, hlo = _estimates(est, theta, 4)
    np.testing.assert_allclose(m4["meta/loss"], m1["meta/loss"], rtol=1e-6)
    for a, b in zip(one, four):  # float32; PES's rounding is amplified by 1/σ² (see the docstring)
        a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (a, b))
        assert np.linalg.norm(b - a) <= rtol * np.linalg.norm(a)
    inner = jax.tree.leaves(state.slots.inner)
    assert all(len({s.device for s in x.addressable_shards}) == 4 and x.addressable_shards[0].data.shape[0] == 1
               for x in inner)
    assert "all-reduce" in hlo and not re.search(r"all-gather|all-to-all", hlo)


def test_mesh_size_defaults_to_every_device_that_divides_and_checks_requests():
    est = PES(problem=None, num_tasks=6)
    assert sharding.particles_per_mesh(est, 4) == 3 and sharding.particles_per_mesh(PES(problem=None), 4) == 4
    assert sharding.particles_per_mesh(est, 4, requested=2) == 2
    with pytest.raises(ValueError, match="must divide the 6 particles"):
        sharding.particles_per_mesh(est, 4, requested=4)
    with pytest.raises(ValueError, match="JAX sees 4 device"):
        sharding.particles_per_mesh(est, 4, requested=8)


@pytest.mark.parametrize("value, match", [(3, "must divide the 4 particles"), (8, "JAX sees 4 device"),
                                          (-1, "integer >= 0")])
def test_bad_mesh_config_fails_clearly(tmp_path, value, match):
    c = tiny.get_config()
    c.estimator.num_tasks = 4
    c.mesh.particles = value
    with pytest.raises(ValueError, match=f"config.mesh.particles.*{match}|{match}"):
        meta_train.run(c, str(tmp_path))
    assert not any(tmp_path.iterdir())


def _config(particles: int):
    c = tiny.get_config()
    c.num_steps = 4
    c.estimator.num_tasks = 4
    c.mesh.particles = particles
    c.eval.update(every=100, num_steps=10, curve_every=10)
    c.log.histograms_every = 0
    c.probe.every = 0
    return c


@pytest.mark.slow
def test_meta_steps_on_four_devices_match_one_and_the_checkpoint_resumes_on_two(tmp_path, same_trajectory):
    single = meta_train.run(_config(1), str(tmp_path / "single"))

    def interrupt(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    first = meta_train.run(_config(4), str(tmp_path / "sharded"), on_step=interrupt)
    assert first["step"] == 2
    resumed = meta_train.run(_config(2), str(tmp_path / "sharded"))  # 4 devices wrote it, 2 read it
    assert resumed["step"] == 4
    init = lopt.MuLO(hidden_size=4).init(jax.random.split(jax.random.key(0), 4)[0])
    same_trajectory(resumed["theta"], single["theta"], init)


def _free_port() -> int:
    import socket  # pylint: disable=import-outside-toplevel

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_and_their_checkpoint_resumes_in_one(tmp_path, same_trajectory):
    """The README's two-host command, run as two local processes of 2 CPU devices each."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    overrides = ["--config.num_steps=4", "--config.estimator.num_tasks=4", "--config.eval.every=100",
                 "--config.eval.num_steps=10", "--config.eval.curve_every=10", "--config.log.histograms_every=0",
                 "--config.probe.every=0"]
    env = dict(os.environ, XLA_FLAGS=xla_flags.merge_flags("", xla_flags.host_device_count(2),
                                                           xla_flags.SINGLE_THREADED_EIGEN))
    port, workdir = _free_port(), tmp_path / "two"
    procs = [subprocess.Popen(
        [sys.executable, "meta_train.py", "--config=configs/tiny.py", f"--workdir={workdir}", *overrides,
         f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-3000:] + outs[1][1][-3000:]
    assert "sharded over 4 of 4 device(s), 2 process(es)" in outs[0][1]
    assert "export:" in outs[0][0] and "export:" not in outs[1][0]  # the first host writes
    _, theta_two, _ = lopt.load_theta(workdir / outer.EXPORT_NAME)
    one = meta_train.run(_config(4), str(tmp_path / "one"))
    init = lopt.MuLO(hidden_size=4).init(jax.random.split(jax.random.key(0), 4)[0])
    same_trajectory(theta_two, one["theta"], init)
    c = _config(1)
    c.num_steps = 5
    assert meta_train.run(c, str(workdir))["step"] == 5  # written by 2 hosts, resumed by 1 device
