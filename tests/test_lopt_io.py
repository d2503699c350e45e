"""The learned-optimizer file: bit-exact round trips, pretrained lookup and one clear error per bad file."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

import lopt
from lopt import io


@pytest.fixture(params=sorted(lopt.ARCHITECTURES))
def saved(request, tmp_path):
    arch = lopt.get_arch(request.param)
    theta = jax.tree.map(lambda x: x + 0.123, arch.init(jax.random.key(7)))
    path = lopt.save(tmp_path / "opt.safetensors", arch, theta, {"meta_steps": 12, "tasks": ["mlp"]})
    return arch, theta, path


def test_round_trip_is_bit_exact(saved):
    arch, theta, path = saved
    arch2, theta2, header = lopt.load_theta(path)
    assert arch2 == arch and jax.tree.structure(theta2) == jax.tree.structure(theta)
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta2)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32))
    prov = header["provenance"]
    assert prov["meta_steps"] == 12 and prov["tasks"] == ["mlp"] and "date" in prov
    assert header["arch"] == arch.name and header["arch_version"] == arch.version
    assert not list(path.parent.glob(".*tmp"))  # the atomic write left nothing behind


@pytest.mark.parametrize("saved", [pytest.param("velo", marks=pytest.mark.slow) if n == "velo" else n
                                   for n in sorted(lopt.ARCHITECTURES)], indirect=True)
def test_load_returns_a_working_optax_optimizer(saved):
    arch, theta, path = saved
    opt = lopt.load(path, num_steps=10)
    params = {"w": jnp.ones((3, 2))}
    updates, _ = opt.update(params, opt.init(params), params, value=jnp.float32(1.0))
    want, _ = arch.optimizer(theta, num_steps=10).update(params, opt.init(params), params, value=jnp.float32(1.0))
    np.testing.assert_array_equal(updates["w"], want["w"])


def test_other_architecture_is_refused(saved):
    arch, _, path = saved
    other = "velo" if arch.name != "velo" else "mulo"
    with pytest.raises(lopt.LoptFileError, match=f"holds architecture '{arch.name}', expected '{other}'"):
        lopt.load_theta(path, arch=other)


def _rewrite_header(path, **changes):
    tensors = safetensors.numpy.load_file(str(path))
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(json.loads(f.read(n))["__metadata__"]["lopt"])
    header.update(changes)
    path.write_bytes(safetensors.numpy.save(tensors, metadata={"lopt": json.dumps(header)}))


def test_version_and_unknown_arch_are_refused(tmp_path):
    arch = lopt.MuLO()
    path = lopt.save(tmp_path / "a.safetensors", arch, arch.init(jax.random.key(0)))
    _rewrite_header(path, arch_version=99)
    with pytest.raises(lopt.LoptFileError, match="feature-set version 99"):
        lopt.load(path)
    _rewrite_header(path, arch_version=arch.version, arch="transformer_lo")
    with pytest.raises(lopt.LoptFileError, match="unknown architecture 'transformer_lo'"):
        lopt.load(path)
    _rewrite_header(path, arch="mulo", arch_config={"hidden_size": 8})
    with pytest.raises(lopt.LoptFileError, match="do not match|expects"):
        lopt.load(path)  # weights of hidden size 32 under a config of 8


def test_truncated_corrupted_and_foreign_files(tmp_path):
    arch = lopt.MuLO()
    good = lopt.save(tmp_path / "good.safetensors", arch, arch.init(jax.random.key(0)))
    blob = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(blob[: len(blob) - 100])
    with pytest.raises(lopt.LoptFileError, match="truncated or corrupted"):
        lopt.load(truncated)
    flipped = bytearray(blob)
    flipped[-5] ^= 0xFF
    corrupted = tmp_path / "corrupted.safetensors"
    corrupted.write_bytes(bytes(flipped))
    with pytest.raises(lopt.LoptFileError, match="checksum"):
        lopt.load(corrupted)
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(safetensors.numpy.save({"w": np.zeros(3, np.float32)}))
    with pytest.raises(lopt.LoptFileError, match="without lopt metadata"):
        lopt.load(foreign)
    pickle_file = tmp_path / "model.pkl"
    pickle_file.write_bytes(b"\x80\x04\x95cos\nsystem\n")
    with pytest.raises(lopt.LoptFileError, match="not a readable"):
        lopt.load(pickle_file)


def test_unknown_name_lists_pretrained(monkeypatch, tmp_path):
    monkeypatch.setattr(io, "_pretrained_dir", lambda: tmp_path)
    arch = lopt.MuLO(hidden_size=4)
    lopt.save(tmp_path / "tiny_mulo.safetensors", arch, arch.init(jax.random.key(0)))
    assert lopt.list_pretrained() == ["tiny_mulo"]
    assert lopt.load_theta("tiny_mulo")[0] == arch
    with pytest.raises(lopt.LoptFileError, match=r"pretrained: \['tiny_mulo'\]"):
        lopt.load("no_such_optimizer")


def test_shipped_pretrained_directory_lists_only_valid_files():
    for name in lopt.list_pretrained():
        arch, theta, _ = lopt.load_theta(name)
        assert jax.tree.leaves(theta)
    assert pathlib.Path(io._pretrained_dir()).is_dir()


def _celo_file(tmp_path, name, arch, version):
    theta = jax.tree.map(lambda x: x + 0.01, arch.init(jax.random.key(3)))
    path = lopt.save(tmp_path / f"{name}.safetensors", arch, theta)
    _rewrite_header(path, arch_version=version)
    return path, theta


def test_celo_version_1_with_the_progress_feature_is_refused_with_the_reason(tmp_path):
    """Version 1 did not fix what the progress feature measures (first gradient, later its peak):
    such a file would step differently from how it was meta-trained, so it does not load."""
    assert lopt.Celo.version == 2
    path, _ = _celo_file(tmp_path, "v1_progress", lopt.Celo(progress_feature=True, progress_init=1.0), 1)
    with pytest.raises(lopt.LoptFileError, match=r"feature-set version 1: a version-1 Celo file with "
                                                 r"progress_feature=True .* against the first gradient's"):
        lopt.load_theta(path)
    path, _ = _celo_file(tmp_path, "v1_progress_gate", lopt.Celo(progress_feature=True, decay_gate=True), 1)
    with pytest.raises(lopt.LoptFileError, match="progress_feature=True"):
        lopt.load(path, num_steps=10)
    for version, reads in ((0, "reads Celo file versions 1 and 2"), (3, "reads version 2"), ("2", "reads version 2")):
        path, _ = _celo_file(tmp_path, f"v{version}", lopt.Celo(), version)
        with pytest.raises(lopt.LoptFileError, match=reads):
            lopt.load_theta(path)


@pytest.mark.parametrize("arch", [lopt.Celo(), lopt.Celo(model_features=True, width_power=1.0, depth_power=1.0,
                                                          decay_gate=True, step_gain=3.0)],
                         ids=["plain", "gated"])
def test_celo_version_1_without_the_progress_feature_loads_and_steps_as_the_current_version(tmp_path, arch):
    old, theta = _celo_file(tmp_path, "v1", arch, 1)
    new = lopt.save(tmp_path / "v2.safetensors", arch, theta)
    arch1, theta1, header1 = lopt.load_theta(old)
    arch2, _, header2 = lopt.load_theta(new)
    assert arch1 == arch2 == arch and header1["arch_version"] == 1 and header2["arch_version"] == 2
    assert header1["sha256"] == header2["sha256"]  # the digest covers the tensors, not the version
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.zeros((4,))}
    grads = jax.tree.map(lambda p: jnp.cos(3 * p + 1.0), params)
    got = [lopt.load(f, num_steps=10) for f in (old, new)]
    states = [o.init(params) for o in got]
    for _ in range(3):
        steps = [o.update(grads, s, params) for o, s in zip(got, states)]
        states = [s for _, s in steps]
        for a, b in zip(jax.tree.leaves(steps[0][0]), jax.tree.leaves(steps[1][0])):
            np.testing.assert_array_equal(a, b)


def test_celo_files_of_this_version_with_the_progress_feature_round_trip(tmp_path):
    arch = lopt.Celo(progress_feature=True, progress_init=0.5, decay_gate=True, decay_gate_init=0.2, step_gain=3.0)
    theta = arch.init(jax.random.key(0))
    arch2, theta2, header = lopt.load_theta(lopt.save(tmp_path / "c.safetensors", arch, theta))
    assert arch2 == arch and header["arch_version"] == lopt.Celo.version
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta2)):
        np.testing.assert_array_equal(a, b)
