"""`config.init_from`: meta-training starts from a learned-optimizer file, and its export records
the chain of files it continues."""

import jax
import numpy as np
import pytest

import lopt
from configs import tiny
from configs.build import build
from outer import loop


def _file(tmp_path, arch, shift: float, metadata: dict):
    theta = jax.tree.map(lambda x: x + shift, arch.init(jax.random.key(5)))
    return lopt.save(tmp_path / f"start{shift}.safetensors", arch, theta, metadata), theta


def test_init_from_starts_from_the_file_and_the_export_records_the_chain(tmp_path):
    c = tiny.get_config()
    arch = build(c).arch
    path, theta = _file(tmp_path, arch, 0.25, {"meta_training_steps": 40, "total_meta_training_steps": 90})
    c.init_from = str(path)
    setup = build(c)
    for a, b in zip(jax.tree.leaves(setup.init_theta), jax.tree.leaves(theta)):
        np.testing.assert_array_equal(a, b)
    out = loop.export(str(tmp_path / "run"), setup, setup.init_theta, step=7)
    _, _, header = lopt.load_theta(out)
    prov = header["provenance"]
    assert prov["continues"]["init_from"] == str(path)
    assert prov["continues"]["sha256"] == lopt.load_theta(path)[2]["sha256"]
    assert prov["continues"]["provenance"]["meta_training_steps"] == 40
    assert prov["total_meta_training_steps"] == 97  # 90 before, 7 here
    # A second continuation nests the first.
    c2 = tiny.get_config()
    c2.init_from = str(out)
    out2 = loop.export(str(tmp_path / "run2"), build(c2), setup.init_theta, step=3)
    prov2 = lopt.load_theta(out2)[2]["provenance"]
    assert prov2["total_meta_training_steps"] == 100
    assert prov2["continues"]["provenance"]["continues"]["init_from"] == str(path)


def test_init_from_a_shipped_name_and_bad_input(tmp_path):
    c = tiny.get_config()
    c.init_from = "no_such_optimizer"
    with pytest.raises(ValueError, match="config.init_from: no learned-optimizer file"):
        build(c)
    c.init_from = "mulo_sp"  # hidden 32, the tiny recipe builds hidden 4
    with pytest.raises(ValueError, match="config.lopt.hidden_size=32"):
        build(c)
    c.lopt.hidden_size = 32
    setup = build(c)
    np.testing.assert_array_equal(setup.init_theta["mlp"]["w0"], lopt.load_theta("mulo_sp")[1]["mlp"]["w0"])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a file")
    c.init_from = str(bad)
    with pytest.raises(ValueError, match="config.init_from: .*not a readable"):
        build(c)


def test_init_from_a_celo_file_into_celo_with_model_features(tmp_path):
    """A run can turn Celo's model feature on and start from a file without it (the step weight
    of the new feature starts at zero, every other meta-parameter is the file's)."""
    c = tiny.get_config()
    c.lopt = {"name": "celo", "hidden_size": 8}
    path, theta = _file(tmp_path, lopt.Celo(), 0.25, {})
    c.init_from = str(path)
    c.lopt.model_features = True
    got = build(c).init_theta
    assert got["step"].shape == (theta["step"].shape[0] + 1,) and float(got["step"][-1]) == 0.0
    np.testing.assert_array_equal(got["step"][:-1], theta["step"])
    np.testing.assert_array_equal(got["mlp"]["w0"], theta["mlp"]["w0"])
