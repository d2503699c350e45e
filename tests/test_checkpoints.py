"""Checkpoints: bit-exact round trips, retention, atomic writes and skipping corrupted files."""

import json
import logging
import struct
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors

import checkpoints
from checkpoints import CheckpointError, store


class Point(NamedTuple):
    x: jax.Array
    count: jax.Array


@flax.struct.dataclass
class Opt:
    w: jax.Array
    lr: float
    name: str = flax.struct.field(pytree_node=False, default="adam")


def make_state(seed: int = 0, width: int = 3):
    rng = np.random.default_rng(seed)
    return {
        "f32": jnp.asarray(np.r_[rng.standard_normal(width), np.nan, -0.0, np.inf].astype(np.float32)),
        "f64": rng.standard_normal((2, 2)),  # numpy float64: jax (x64 off) would truncate it
        "i32": jnp.array([-(2**31), -1, 0, 2**31 - 1], jnp.int32),
        "u32": jnp.array([0, 1, 2**32 - 1], jnp.uint32),
        "mask": jnp.array([[True, False], [False, True]]),
        "key": jax.random.key(seed),
        "keys": jax.random.split(jax.random.key(seed + 1), 4),
        "point": Point(x=jnp.ones((2, 3), jnp.float32) * seed, count=jnp.int32(seed)),
        "opt": Opt(w=jnp.full((width,), 0.5, jnp.float32), lr=0.25),
        "nested": [jnp.zeros((0, 2), jnp.float32), (np.uint8(7), None, np.float64(1 / 3 + seed))],
        "nothing": None,
    }


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x = jnp.asarray(x) if type(x) is float else x  # Python scalars are stored as JAX would hold them
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert y.dtype == x.dtype and y.shape == x.shape
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def warnings_about(caplog, path):
    return [r for r in caplog.records if r.levelno == logging.WARNING and str(path) in r.getMessage()]


def flip_data_byte(path):
    raw = bytearray(path.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    raw[8 + n] ^= 0x01  # first byte of tensor data, right after the JSON header
    path.write_bytes(bytes(raw))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def truncate_tail(path):
    path.write_bytes(path.read_bytes()[:-3])  # header intact, tensor data cut short


def test_round_trip_is_bitwise_and_keeps_structure_and_types(tmp_path):
    state = make_state(3)
    path = checkpoints.save(tmp_path, 7, state, {"config": {"lr": 1e-3, "arch": "mulo"}, "seeds": [1, 2]})
    assert path == tmp_path / "checkpoints" / "ckpt_00000007.safetensors"
    template = make_state(0)  # same structure, shapes and dtypes; values are ignored
    step, restored, meta = checkpoints.restore(tmp_path, template)
    assert step == 7 and meta == {"config": {"lr": 1e-3, "arch": "mulo"}, "seeds": [1, 2]}
    assert_bitwise_equal(state, restored)
    assert isinstance(restored["point"], Point) and isinstance(restored["opt"], Opt)
    assert restored["opt"].name == "adam" and restored["nothing"] is None and restored["nested"][1][1] is None
    assert isinstance(restored["key"], jax.Array) and restored["key"].dtype == jax.random.key(0).dtype
    assert jax.random.key_impl(restored["keys"]) == "threefry2x32"
    assert isinstance(restored["u32"], jax.Array) and isinstance(restored["point"].count, jax.Array)
    assert restored["opt"].lr.dtype == jnp.float32 and float(restored["opt"].lr) == 0.25
    assert isinstance(restored["f64"], np.ndarray) and restored["f64"].dtype == np.float64
    # the restored key draws the same numbers as the original
    np.testing.assert_array_equal(jax.random.normal(state["key"], (5,)), jax.random.normal(restored["key"], (5,)))


def test_float64_jax_arrays_round_trip_under_x64(tmp_path):
    with jax.enable_x64(True):
        state = {"a": jnp.array([0.1, 1 / 3, np.nextafter(1.0, 2.0)]), "i": jnp.array([2**40], jnp.int64),
                 "s": 0.1, "key": jax.random.key(1, impl="rbg")}
        checkpoints.save(tmp_path, 1, state, {})
        step, restored, _ = checkpoints.restore(tmp_path, state)
        assert restored["a"].dtype == jnp.float64 and isinstance(restored["a"], jax.Array)
        assert jax.random.key_impl(restored["key"]) == "rbg"
        assert_bitwise_equal(state, restored)


def test_keep_deletes_only_the_oldest(tmp_path):
    for s in range(1, 6):
        checkpoints.save(tmp_path, s * 10, {"x": jnp.float32(s)}, {"s": s}, keep=3)
    assert checkpoints.steps(tmp_path) == [30, 40, 50]
    checkpoints.save(tmp_path, 60, {"x": jnp.float32(6)}, {}, keep=2)
    assert checkpoints.steps(tmp_path) == [50, 60]
    checkpoints.save(tmp_path, 5, {"x": jnp.float32(0)}, {}, keep=2)  # the file just written is never deleted
    assert checkpoints.steps(tmp_path) == [5, 60]
    assert checkpoints.restore(tmp_path, {"x": jnp.float32(0)})[0] == 60
    with pytest.raises(ValueError, match="keep"):
        checkpoints.save(tmp_path, 70, {"x": jnp.float32(0)}, {}, keep=0)
    assert checkpoints.steps(tmp_path) == [5, 60]


def test_failed_save_deletes_nothing_and_leaves_no_temp_file(tmp_path):
    for s in (1, 2):
        checkpoints.save(tmp_path, s, {"x": jnp.ones(2)}, {}, keep=1 if s == 2 else 3)
    with pytest.raises(ValueError, match="JSON"):
        checkpoints.save(tmp_path, 3, {"x": jnp.ones(2)}, {"bad": object()}, keep=1)
    with pytest.raises(ValueError, match="same path name"):
        checkpoints.save(tmp_path, 3, {"a/b": jnp.ones(1), "a": {"b": jnp.ones(1)}}, {}, keep=1)
    with pytest.raises(ValueError, match="step"):
        checkpoints.save(tmp_path, -1, {"x": jnp.ones(2)}, {})
    assert checkpoints.steps(tmp_path) == [2]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt_00000002.safetensors"]


def test_leftover_temp_file_is_ignored(tmp_path):
    checkpoints.save(tmp_path, 4, {"x": jnp.arange(3)}, {"run": "a"})
    crashed = tmp_path / "checkpoints" / ".ckpt_00000009.safetensors.k3j_x.tmp"
    crashed.write_bytes(b"partial write")
    (tmp_path / "checkpoints" / "ckpt_9.safetensors").write_bytes(b"not a name save writes")
    assert checkpoints.steps(tmp_path) == [4]
    assert checkpoints.read_meta(tmp_path) == (4, {"run": "a"})
    assert checkpoints.restore(tmp_path, {"x": jnp.arange(3)})[0] == 4
    checkpoints.save(tmp_path, 5, {"x": jnp.arange(3)}, {}, keep=1)
    assert crashed.exists() and checkpoints.steps(tmp_path) == [5]


@pytest.mark.parametrize("damage", [truncate, truncate_tail, flip_data_byte])
def test_corrupted_newest_is_skipped_with_a_warning(tmp_path, caplog, damage):
    state = make_state(1)
    checkpoints.save(tmp_path, 1, state, {"n": 1})
    bad = checkpoints.save(tmp_path, 2, make_state(2), {"n": 2})
    damage(bad)
    with caplog.at_level(logging.WARNING):
        step, restored, meta = checkpoints.restore(tmp_path, make_state(0))
    assert (step, meta) == (1, {"n": 1})
    assert_bitwise_equal(state, restored)
    assert len(warnings_about(caplog, bad)) == 1
    assert bad.exists()  # corrupted files are kept for inspection


def test_every_checkpoint_corrupted_raises_listing_each(tmp_path, caplog):
    a = checkpoints.save(tmp_path, 1, {"x": jnp.ones(4)}, {})
    b = checkpoints.save(tmp_path, 2, {"x": jnp.ones(4)}, {})
    flip_data_byte(a)
    truncate(b)
    foreign = tmp_path / "checkpoints" / "ckpt_00000003.safetensors"
    foreign.write_bytes(safetensors.numpy.save({"x": np.ones(4, np.float32)}))
    with caplog.at_level(logging.WARNING), pytest.raises(CheckpointError) as err:
        checkpoints.restore(tmp_path, {"x": jnp.ones(4)})
    msg = str(err.value)
    assert str(a) in msg and "sha256" in msg and str(b) in msg and str(foreign) in msg and "foreign" in msg
    assert all(len(warnings_about(caplog, p)) == 1 for p in (a, b, foreign))
    assert checkpoints.steps(tmp_path) == [1, 2, 3]


def test_template_mismatch_counts_as_corrupted_for_that_candidate(tmp_path, caplog):
    checkpoints.save(tmp_path, 1, {"w": jnp.ones(3), "k": jax.random.key(0)}, {})
    wide = checkpoints.save(tmp_path, 2, {"w": jnp.ones(4), "k": jax.random.key(0)}, {})
    with caplog.at_level(logging.WARNING):
        step, restored, _ = checkpoints.restore(tmp_path, {"w": jnp.zeros(3), "k": jax.random.key(5)})
    assert step == 1 and restored["w"].shape == (3,)
    (record,) = warnings_about(caplog, wide)
    assert "'w'" in record.getMessage() and "[4]" in record.getMessage()
    bad_templates = {
        "dtype": ({"w": jnp.zeros(3, jnp.int32), "k": jax.random.key(0)}, "int32"),
        "missing": ({"w": jnp.zeros(3)}, "extra"),
        "extra": ({"w": jnp.zeros(3), "k": jax.random.key(0), "v": jnp.zeros(3)}, "missing"),
        "untyped key": ({"w": jnp.zeros(3), "k": jnp.zeros(2, jnp.uint32)}, "typed PRNG key"),
        "impl": ({"w": jnp.zeros(3), "k": jax.random.key(0, impl="rbg")}, "k"),
    }
    for name, (template, reason) in bad_templates.items():
        with pytest.raises(CheckpointError, match=reason):
            checkpoints.restore(tmp_path, template)


def test_check_refusal_propagates(tmp_path):
    checkpoints.save(tmp_path, 1, {"x": jnp.ones(2)}, {"arch": "mulo"})
    checkpoints.save(tmp_path, 2, {"x": jnp.ones(2)}, {"arch": "mulo"})
    seen = []

    def check(meta):
        seen.append(meta)
        if meta["arch"] != "velo":
            raise CheckpointError(f"workdir holds a {meta['arch']!r} run, config asks for 'velo'")

    with pytest.raises(CheckpointError, match="'mulo' run"):
        checkpoints.restore(tmp_path, {"x": jnp.ones(2)}, check=check)
    assert seen == [{"arch": "mulo"}]  # refused at the newest, not skipped to older ones
    assert checkpoints.restore(tmp_path, {"x": jnp.ones(2)}, check=seen.append)[0] == 2


def test_read_meta_needs_no_template(tmp_path):
    assert checkpoints.read_meta(tmp_path) is None and checkpoints.restore(tmp_path, {}) is None
    checkpoints.save(tmp_path, 3, make_state(), {"config": {"arch": "velo"}})
    assert checkpoints.read_meta(tmp_path) == (3, {"config": {"arch": "velo"}})
    truncate(checkpoints.save(tmp_path, 8, make_state(), {"config": {"arch": "velo"}, "late": True}))
    assert checkpoints.read_meta(tmp_path) == (3, {"config": {"arch": "velo"}})


def test_file_is_plain_safetensors_with_a_json_header(tmp_path):
    state = make_state()
    path = checkpoints.save(tmp_path, 11, state, {"lr": 0.5})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    st_header = json.loads(raw[8 : 8 + n])  # the whole safetensors header is JSON
    header = json.loads(st_header["__metadata__"]["lopt-checkpoint"])
    assert {k: header[k] for k in ("format", "format_version", "step", "meta")} == {
        "format": "lopt-checkpoint", "format_version": 1, "step": 11, "meta": {"lr": 0.5}}
    assert header["keys"] == {"key": "threefry2x32", "keys": "threefry2x32"} and len(header["sha256"]) == 64
    with safetensors.safe_open(str(path), framework="np") as f:
        names = set(f.keys())
        key_data = f.get_tensor("key")
    assert names == {"f32", "f64", "i32", "u32", "mask", "key", "keys", "point/x", "point/count", "opt/w",
                     "opt/lr", "nested/0", "nested/1/0", "nested/1/2"}
    np.testing.assert_array_equal(key_data, jax.random.key_data(state["key"]))
