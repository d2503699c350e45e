"""meta_train.py end to end: the CLI, TensorBoard events, resume, export, bad input, and the README's
two commands staying in step with CI."""

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import checkpoints
import inner_tasks
import lopt
import meta_train
import outer
from configs import tiny

ROOT = pathlib.Path(__file__).resolve().parents[1]
# One xdist worker runs this module (pyproject's `--dist loadgroup`): the module-scoped meta-training
# run below is then made once, and the CLI subprocesses find its programs in the compilation cache.
pytestmark = pytest.mark.xdist_group("cli")


def _bitwise_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    return workdir, meta_train.run(tiny.get_config(), str(workdir))


def test_cli_end_to_end_writes_tensorboard_events_and_exports(uninterrupted, tmp_path):
    # The in-process run's config, so that the subprocess finds its compiled programs in the cache;
    # the override changes only the host-side logging cadence, whose last step (6) is off it.
    cmd = [sys.executable, str(ROOT / "meta_train.py"), f"--config={ROOT / 'configs/tiny.py'}",
           f"--workdir={tmp_path}", "--config.log.every=4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "export:" in proc.stdout and "meta-train" in proc.stderr  # summary, and the tqdm bar
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0, "histograms": 0}).Reload()
    tags = acc.Tags()
    for tag in ("meta/loss", "meta/grad_norm", "inner/resets", "inner/diverged", "outer/learning_rate",
                "perf/inner_steps_per_s", "perf/compile_s", "perf/compile_s_total", "perf/cache_hits",
                "perf/cache_misses", "perf/memory_maps", "perf/cache_flushes", "probe/total_variance", "eval/heldout_meta_loss",
                "eval/task0/lopt_valid", "eval/task0/adam_valid", "family/mlp/0/loss"):
        assert tag in tags["scalars"], (tag, tags["scalars"])
    assert [e.step for e in acc.Scalars("meta/loss")] == [4, 6]
    assert [e.step for e in acc.Scalars("eval/heldout_meta_loss")] == [0, 3, 6]
    assert all(np.isfinite(e.value) and e.value > 0 for e in acc.Scalars("perf/inner_steps_per_s"))
    perf = {t: [e.value for e in acc.Scalars(t)] for t in tags["scalars"] if t.startswith("perf/")}
    assert all(np.isfinite(v) and v >= 0 for vals in perf.values() for v in vals), perf
    assert perf["perf/compile_s"][0] > 0  # a fresh process traces and compiles (or loads) its programs
    assert perf["perf/compile_s_total"][-1] == pytest.approx(sum(perf["perf/compile_s"]))
    # Counts since the run started, so they never fall; the in-process run above wrote the programs
    # this process loads (the same XLA flags and the same cache directory, $JAX_COMPILATION_CACHE_DIR).
    assert perf["perf/cache_hits"] == sorted(perf["perf/cache_hits"]) and perf["perf/cache_hits"][-1] >= 1
    assert perf["perf/memory_maps"][0] >= 1 and perf["perf/cache_flushes"] == [0, 0]  # far below the map limit
    assert {"lopt/direction", "lopt/magnitude", "lopt/update"} <= set(tags["histograms"])
    assert "eval/learning_curves" in tags["images"]
    assert any("config" in t for t in tags["tensors"])  # add_text lands in the text plugin's tensors
    assert (tmp_path / "hparams").is_dir()
    # The export loads as an optax optimizer; --export alone rewrites it from the newest checkpoint.
    path = tmp_path / outer.EXPORT_NAME
    assert lopt.load(path) is not None
    # The CLI run is the in-process run: same seed, same programs, the same bits.
    assert _bitwise_equal(lopt.load_theta(path)[1], uninterrupted[1]["theta"])
    path.unlink()
    proc = subprocess.run(cmd + ["--export"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and path.is_file(), proc.stderr[-2000:]


def test_cli_rejects_unknown_keys_and_bad_values_before_compiling(tmp_path):
    base = [sys.executable, str(ROOT / "meta_train.py"), f"--config={ROOT / 'configs/tiny.py'}", f"--workdir={tmp_path}"]
    for flag, message in [("--config.estimator.sigmaa=1", "sigmaa"), ("--config.estimator.name=nope", "unknown estimator")]:
        proc = subprocess.run(base + [flag], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
        assert "Compiling" not in proc.stderr and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "path, value, match",
    [
        ("estimator.name", "nope", "unknown estimator 'nope'"),
        ("lopt.name", "rnn", "unknown architecture 'rnn'"),
        ("family.name", "resnet", "unknown family 'resnet'"),
        ("family.activations", ("relu", "swish9"), "valid: .*gelu"),
        ("outer.peak_lr", -1.0, "must be a positive number"),
        ("outer.warmup_steps", 6, "must be below num_steps"),
        ("eval.num_steps", 25, "multiple of"),
        ("checkpoint.keep", 0, "must be a positive number"),
        ("estimator.objective", "median", "unknown objective"),
    ],
)
def test_bad_config_values_fail_clearly(tmp_path, path, value, match):
    c = tiny.get_config()
    section, field = path.split(".")
    c[section][field] = value
    with pytest.raises(ValueError, match=match):
        meta_train.run(c, str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_interrupted_run_resumes_bit_for_bit(uninterrupted, tmp_path, same_trajectory):
    full_dir, full = uninterrupted

    def interrupt(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the real signal path: checkpoint, then return

    first = meta_train.run(tiny.get_config(), str(tmp_path / "run"), on_step=interrupt)
    assert first["step"] == 3 and 3 in checkpoints.steps(tmp_path / "run") and "export" not in first
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    resumed = meta_train.run(tiny.get_config(), str(tmp_path / "run"))
    assert resumed["step"] == 6
    assert _bitwise_equal(resumed["theta"], full["theta"])
    assert _bitwise_equal(resumed["opt_state"], full["opt_state"])
    # The newest checkpoint corrupted: the previous one is used, and the replay is still exact.
    newest = tmp_path / "run" / "checkpoints" / f"ckpt_{6:08d}.safetensors"
    assert newest.is_file()
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF
    newest.write_bytes(bytes(data))
    replay = meta_train.run(tiny.get_config(), str(tmp_path / "run"))
    assert replay["step"] == 6 and _bitwise_equal(replay["theta"], full["theta"])
    # Both runs sharded their 2 particles over 2 devices (the default mesh); the step-3 checkpoint
    # written that way also resumes on one device, whose steps 4-6 match to float tolerance.
    assert full["theta"]["mlp"]["w0"].sharding.num_devices == 2
    c = tiny.get_config()
    c.mesh.particles = 1
    c.probe.every, c.log.histograms_every = 0, 0  # cadences may change on resume; spares two compiles
    one = meta_train.run(c, str(tmp_path / "copy"))
    assert one["step"] == 6 and one["theta"]["mlp"]["w0"].sharding.num_devices == 1
    same_trajectory(one["theta"], full["theta"], lopt.MuLO(hidden_size=4).init(jax.random.split(jax.random.key(0), 4)[0]))


def test_incompatible_workdir_is_refused(uninterrupted, tmp_path):
    full_dir, _ = uninterrupted
    workdir = tmp_path / "copy"
    shutil.copytree(full_dir, workdir)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    c = tiny.get_config()
    c.estimator.sigma = 0.05
    with pytest.raises(checkpoints.CheckpointError, match=r"incompatible run .*estimator"):
        meta_train.run(c, str(workdir))
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_a_checkpoint_of_another_architecture_version_is_refused(uninterrupted, tmp_path, monkeypatch):
    """A checkpoint records its architecture's version: after a bump (the same theta would step
    differently) the workdir is refused with the reason, and nothing in it changes."""
    full_dir, _ = uninterrupted
    workdir = tmp_path / "copy"
    shutil.copytree(full_dir, workdir)
    before = {p.name: p.read_bytes() for p in (workdir / "checkpoints").iterdir()}
    monkeypatch.setattr(lopt.MuLO, "version", lopt.MuLO.version + 1)
    with pytest.raises(checkpoints.CheckpointError, match=r"mulo version \d+, this code's mulo is version \d+"):
        meta_train.run(tiny.get_config(), str(workdir))
    assert {p.name: p.read_bytes() for p in (workdir / "checkpoints").iterdir()} == before


def test_exported_file_loads_and_trains_a_task(uninterrupted):
    full_dir, full = uninterrupted
    path = full_dir / outer.EXPORT_NAME
    arch, theta, meta = lopt.load_theta(path)
    assert _bitwise_equal(theta, full["theta"]) and meta["provenance"]["meta_training_steps"] == 6
    task = inner_tasks.get_task("mlp", dataset="digits", width=8, depth=1, batch_size=32)
    curves = [
        inner_tasks.train(task, opt, 40, jax.random.key(0), eval_every=20)
        for opt in (lopt.load(path, roles=task.roles, fan_in=task.fan_in),
                    arch.optimizer(full["theta"], roles=task.roles, fan_in=task.fan_in))
    ]
    # Six meta-steps do not make a good optimizer; the file must reproduce the in-memory one exactly.
    assert np.all(np.isfinite(curves[0].train_loss))
    assert _bitwise_equal(curves[0].params, curves[1].params)
    assert not _bitwise_equal(curves[0].params, task.init(jax.random.split(jax.random.key(0), 3)[0]))


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(apt-get[^\n]*)\n```", text)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    main_cmd, test_cmd = commands
    assert "meta_train.py --config configs/" in main_cmd and "pytest" in test_cmd
    assert test_cmd in (ROOT / ".ci/run").read_text()
    config = re.search(r"--config (configs/\S+\.py)", main_cmd).group(1)
    assert (ROOT / config).is_file()
