"""Inferring μP roles from flax param trees: the positional rule, base shapes and overrides."""

import flax.linen as nn
import jax
import jax.numpy as jnp
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
