"""μP: inferring roles from flax param trees (the positional rule, base shapes, overrides) and
`scale_by_mup`, the update scaling every architecture chains after its step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt


class ConvNet(nn.Module):
    width: int = 16

    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = nn.relu(nn.Conv(self.width, (3, 3))(x))
        x = nn.LayerNorm()(x.mean((1, 2)))
        return nn.Dense(10)(x)


class TinyLM(nn.Module):
    width: int = 32

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(256, self.width)(tokens)
        for i in range(11):  # Dense_0 … Dense_10: natural order, not lexicographic
            x = nn.relu(nn.Dense(self.width, name=f"Dense_{i}")(x))
        return nn.Dense(256, name="head")(x)


def _init(model, x):
    return model.init(jax.random.key(0), x)


def test_positional_rule_on_a_convnet():
    params = _init(ConvNet(), jnp.zeros((1, 8, 8, 1)))
    roles, fan_in = lopt.infer_roles(params)
    p = roles["params"]
    assert p["Conv_0"]["kernel"] == "input" and p["Conv_1"]["kernel"] == "hidden"
    assert p["Conv_2"]["kernel"] == "hidden" and p["Dense_0"]["kernel"] == "output"
    assert p["Conv_1"]["bias"] == "vector" and p["LayerNorm_0"]["scale"] == "vector"
    assert fan_in["params"]["Conv_1"]["kernel"] == 3 * 3 * 16 and fan_in["params"]["Conv_1"]["bias"] == 1
    mults = lopt.multipliers(roles, fan_in)
    assert mults["params"]["Conv_1"]["kernel"] == 1 / 144 and mults["params"]["Dense_0"]["kernel"] == 1.0


def test_natural_order_embeddings_and_base_shapes_agree():
    tokens = jnp.zeros((1, 4), jnp.int32)
    params = _init(TinyLM(width=64), tokens)
    roles, fan_in = lopt.infer_roles(params)
    r = roles["params"]
    assert r["Embed_0"]["embedding"] == "input" and fan_in["params"]["Embed_0"]["embedding"] == 1
    assert r["Dense_0"]["kernel"] == "hidden" and r["Dense_10"]["kernel"] == "hidden"
    # Natural sort is case-sensitive: 'head' comes after every 'Dense_*', so it is the readout.
    assert r["head"]["kernel"] == "output"
    base_roles, _ = lopt.infer_roles(params, base=_init(TinyLM(width=32), tokens))
    assert base_roles == roles


def test_base_shapes_find_input_layers_anywhere():
    params = _init(ConvNet(width=32), jnp.zeros((1, 8, 8, 1)))
    base = _init(ConvNet(width=16), jnp.zeros((1, 8, 8, 1)))
    roles, _ = lopt.infer_roles(params, base=base)
    assert roles["params"]["Conv_0"]["kernel"] == "input"
    assert roles["params"]["Conv_2"]["kernel"] == "hidden" and roles["params"]["Dense_0"]["kernel"] == "output"
    with pytest.raises(ValueError, match="same tree structure"):
        lopt.infer_roles(params, base={"params": {}})


def test_overrides_by_path_and_their_errors():
    params = _init(ConvNet(), jnp.zeros((1, 8, 8, 1)))
    roles, _ = lopt.infer_roles(params, overrides={r"Conv_2/kernel$": "output"})
    assert roles["params"]["Conv_2"]["kernel"] == "output"
    with pytest.raises(ValueError, match="matches no parameter"):
        lopt.infer_roles(params, overrides={"Attention": "hidden"})
    with pytest.raises(ValueError, match="unknown role 'wide'"):
        lopt.infer_roles(params, overrides={"Conv_2": "wide"})


def _updates():
    rng = np.random.default_rng(0)
    return {
        "hidden6": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
        "hidden64": jnp.asarray(rng.normal(size=(64, 3)), jnp.float32),
        "hidden48_bf16": jnp.asarray(rng.normal(size=(48, 4)), jnp.bfloat16),
        "input": jnp.asarray(rng.normal(size=(3, 6)), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
    }


ROLES = {"hidden6": "hidden", "hidden64": "hidden", "hidden48_bf16": "hidden", "input": "input", "bias": "vector"}
FAN_IN = {"hidden6": 6, "hidden64": 64, "hidden48_bf16": 48, "input": 3, "bias": 1}


def _numpy_mup(updates):
    """Hidden tensors times 1/fan_in (a float32 product rounded once to the tensor's dtype); the rest as given."""
    out = {}
    for k, u in updates.items():
        u = np.asarray(u)
        if ROLES[k] == "hidden":
            out[k] = (u.astype(np.float32) * np.float32(1.0 / FAN_IN[k])).astype(u.dtype)
        else:
            out[k] = u
    return out


def _assert_bitwise(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_array_equal(np.asarray(got[k]).view(np.uint8), want[k].view(np.uint8), err_msg=k)


def test_scale_by_mup_scales_exactly_the_hidden_updates():
    updates = _updates()
    t = lopt.scale_by_mup(ROLES, FAN_IN)
    state = t.init(updates)
    assert state == optax.EmptyState()
    got, new_state = t.update(updates, state, updates, value=jnp.float32(1.0))  # extra args are ignored
    assert new_state == optax.EmptyState()
    _assert_bitwise(got, _numpy_mup(updates))
    # fan-in 64 is a power of two: the scaling is exact.
    np.testing.assert_array_equal(got["hidden64"], np.asarray(updates["hidden64"]) / 64)


def test_scale_by_mup_works_under_jit_with_static_roles():
    updates = _updates()
    t = lopt.scale_by_mup(ROLES, FAN_IN)
    got, _ = jax.jit(t.update)(updates, t.init(updates))
    _assert_bitwise(got, _numpy_mup(updates))
    built_inside = jax.jit(lambda u: lopt.scale_by_mup(ROLES, FAN_IN).update(u, optax.EmptyState())[0])
    _assert_bitwise(built_inside(updates), _numpy_mup(updates))


def test_scale_by_mup_without_metadata_is_the_identity():
    updates = _updates()
    t = lopt.scale_by_mup()
    got, state = t.update(updates, t.init(updates), None, value=1.0)
    assert state == optax.EmptyState()
    _assert_bitwise(got, jax.tree.map(np.asarray, updates))
    _assert_bitwise(jax.jit(t.update)(updates, state)[0], jax.tree.map(np.asarray, updates))


def test_scale_by_mup_errors():
    with pytest.raises(ValueError, match=r"both roles= and fan_in="):
        lopt.scale_by_mup(ROLES, None)
    with pytest.raises(ValueError, match=r"both roles= and fan_in="):
        lopt.scale_by_mup(None, FAN_IN)
    t = lopt.scale_by_mup(ROLES, FAN_IN)
    bad = {k: v for k, v in _updates().items() if k != "bias"}
    with pytest.raises(ValueError, match=r"μP roles/fan_in do not match the params' tree structure"):
        t.update(bad, optax.EmptyState())
    with pytest.raises(ValueError, match=r"tree structure"):
        t.init(bad)


def test_mulo_outputs_take_the_optimizers_chained_state():
    """outputs(theta, grads, state, params) reads the optimizer's whole state (the chain's tuple)
    and gives the d and m of the next update, whose hidden tensors scale_by_mup divides by fan-in."""
    arch = lopt.MuLO(hidden_size=4)
    theta = jax.tree.map(lambda w: w + 0.1, arch.init(jax.random.key(0)))
    params = {"w0": jnp.ones((3, 8)), "w1": jnp.full((8, 8), 0.5), "w2": jnp.ones((8, 2)), "b": jnp.zeros((8,))}
    roles = {"w0": "input", "w1": "hidden", "w2": "output", "b": "vector"}
    fan_in = {"w0": 3, "w1": 8, "w2": 8, "b": 1}
    opt = arch.optimizer(theta, roles=roles, fan_in=fan_in)
    state = opt.init(params)
    assert isinstance(state, tuple) and isinstance(state[0], lopt.mulo.MuLOState) and state[1] == optax.EmptyState()
    grads = jax.tree.map(lambda p: 0.1 * p + 0.01, params)
    _, state = opt.update(grads, state, params)
    out = arch.outputs(theta, grads, state, params)
    np.testing.assert_array_equal(out["direction"], arch.outputs(theta, grads, state[0], params)["direction"])
    updates, _ = opt.update(grads, state, params)
    leaves = jax.tree.leaves(updates)
    mults = jax.tree.leaves(lopt.multipliers(roles, fan_in))
    step = -arch.step_mult * out["direction"] * jnp.exp(arch.exp_mult * out["magnitude"])
    want = jnp.concatenate([m * s for m, s in zip(mults, jnp.split(step, np.cumsum([u.size for u in leaves])[:-1]))])
    np.testing.assert_allclose(jnp.concatenate([u.ravel() for u in leaves]), want, rtol=1e-6)
