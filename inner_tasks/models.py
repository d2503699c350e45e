"""Pure-JAX models in standard ('sp') and μP ('mup') parametrizations, with μP metadata.

Rules (as μLO, Thérien et al. 2024, parametrizes its tasks):
- 'mup': input and hidden weights ~ N(0, 1/fan_in); the output layer is zero-initialized and its
  pre-activations are multiplied by 1/fan_in; attention logits are divided by d_head.
- 'sp': every weight ~ N(0, 1/fan_in) (LeCun), no output multiplier, logits divided by √d_head.
- Biases and norm parameters are vector-like (input-like for μP) and start at 0 (norm scales at 1).

Every model here has `init_*(key, spec) -> params`, `apply_*(params, x, spec) -> logits` and
`meta_*(spec) -> Meta tree`, where `spec` is the task spec that owns the shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from inner_tasks.base import Meta

PARAMETRIZATIONS = ("sp", "mup")
ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh, "silu": jax.nn.silu}


def _normal(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    return jax.random.normal(key, shape, jnp.float32) / jnp.sqrt(jnp.float32(fan_in))


def _readout(key: jax.Array, shape: tuple[int, ...], fan_in: int, parametrization: str) -> jax.Array:
    if parametrization == "mup":
        return jnp.zeros(shape, jnp.float32)
    return _normal(key, shape, fan_in)


def _readout_mult(fan_in: int, parametrization: str) -> float:
    return 1.0 / fan_in if parametrization == "mup" else 1.0


# ---------------------------------------------------------------------------------------- MLP
def mlp_sizes(spec) -> list[int]:
    return [spec.in_dim] + [spec.width] * spec.depth + [spec.out_dim]


def init_mlp(key: jax.Array, spec) -> dict:
    """An MLP task model's params {"layer_i": {"w", "b"}, "out": {"w", "b"}} in the spec's
    parametrization (the learned optimizers' own MLPs are `lopt.common.init_mlp`'s)."""
    sizes = mlp_sizes(spec)
    keys = jax.random.split(key, len(sizes) - 1)
    params = {}
    for i, (k, fi, fo) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        w = _readout(k, (fi, fo), fi, spec.parametrization) if last else _normal(k, (fi, fo), fi)
        params["out" if last else f"layer_{i}"] = {"w": w, "b": jnp.zeros((fo,), jnp.float32)}
    return params


def apply_mlp(params: dict, x_BxD: jax.Array, spec) -> jax.Array:
    act = ACTIVATIONS[spec.activation]
    h = x_BxD
    for i in range(spec.depth):
        h = act(h @ params[f"layer_{i}"]["w"] + params[f"layer_{i}"]["b"][None, :])
    mult = _readout_mult(spec.width, spec.parametrization)
    return (h @ params["out"]["w"]) * mult + params["out"]["b"][None, :]


def meta_mlp(spec) -> dict:
    sizes = mlp_sizes(spec)
    meta = {}
    for i, fi in enumerate(sizes[:-1]):
        last = i == len(sizes) - 2
        role = "output" if last else ("input" if i == 0 else "hidden")
        meta["out" if last else f"layer_{i}"] = {"w": Meta(role, fi), "b": Meta("vector", 1)}
    return meta


# ------------------------------------------------------------------------------------ Convnet
def init_conv(key: jax.Array, spec) -> dict:
    keys = jax.random.split(key, spec.depth + 1)
    params, c_in = {}, 1
    for i in range(spec.depth):
        fan_in = spec.kernel * spec.kernel * c_in
        w = _normal(keys[i], (spec.kernel, spec.kernel, c_in, spec.channels), fan_in)
        params[f"conv_{i}"] = {"w": w, "b": jnp.zeros((spec.channels,), jnp.float32)}
        c_in = spec.channels
    w = _readout(keys[-1], (spec.channels, spec.out_dim), spec.channels, spec.parametrization)
    params["out"] = {"w": w, "b": jnp.zeros((spec.out_dim,), jnp.float32)}
    return params


def conv2d(x_BxHxWxC: jax.Array, w_KxKxCxO: jax.Array, stride: int = 1, padding: str = "SAME") -> jax.Array:
    """A 2-D convolution (NHWC input, HWIO kernel, no dilation) as one matmul of patches × kernels.

    The same numbers as `jax.lax.conv_general_dilated` (and flax's `nn.Conv`) up to float
    rounding. Meta-training vmaps a task over particles that each hold their own kernels; vmapped,
    `conv_general_dilated` becomes a grouped convolution (`feature_group_count` = particles), which
    XLA:CPU runs several times slower than the batched matmul this becomes: a PES estimate on an
    8 px, 16-channel convnet took 0.53 s with the convolution and 0.083 s with this
    (benchmarks/RESULTS.md). The patches are k² strided slices of the padded input, concatenated on
    the channel axis in (row, column, channel) order, which is the kernel's own flattening order.

    >>> x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    >>> conv2d(x, w, stride=2).shape
    (2, 4, 4, 4)
    """
    kh, kw, c_in, c_out = w_KxKxCxO.shape
    _, h, w, _ = x_BxHxWxC.shape
    (ph, pw) = jax.lax.padtype_to_pads((h, w), (kh, kw), (stride, stride), padding)
    x_pad = jnp.pad(x_BxHxWxC, ((0, 0), ph, pw, (0, 0)))
    h_out = (h + ph[0] + ph[1] - kh) // stride + 1
    w_out = (w + pw[0] + pw[1] - kw) // stride + 1
    cols = [x_pad[:, i:i + stride * (h_out - 1) + 1:stride, j:j + stride * (w_out - 1) + 1:stride, :]
            for i in range(kh) for j in range(kw)]
    patches_BxHxWxP = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
    return patches_BxHxWxP @ w_KxKxCxO.reshape(kh * kw * c_in, c_out)


def apply_conv(params: dict, x_BxHxWxC: jax.Array, spec) -> jax.Array:
    act = ACTIVATIONS[spec.activation]
    h = x_BxHxWxC
    for i in range(spec.depth):
        h = act(conv2d(h, params[f"conv_{i}"]["w"], stride=2) + params[f"conv_{i}"]["b"][None, None, None, :])
    h_BxC = h.mean(axis=(1, 2))
    mult = _readout_mult(spec.channels, spec.parametrization)
    return (h_BxC @ params["out"]["w"]) * mult + params["out"]["b"][None, :]


def meta_conv(spec) -> dict:
    meta = {}
    for i in range(spec.depth):
        c_in = 1 if i == 0 else spec.channels
        role = "input" if i == 0 else "hidden"
        meta[f"conv_{i}"] = {"w": Meta(role, spec.kernel * spec.kernel * c_in), "b": Meta("vector", 1)}
    meta["out"] = {"w": Meta("output", spec.channels), "b": Meta("vector", 1)}
    return meta


# -------------------------------------------------------------------------------- Transformer
def _layer_norm(p: dict, x: jax.Array) -> jax.Array:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    expand = (None,) * (x.ndim - 1)
    return (x - mu) * jax.lax.rsqrt(var + 1e-5) * p["scale"][expand] + p["bias"][expand]


def _ln_params(d: int) -> dict:
    return {"scale": jnp.ones((d,), jnp.float32), "bias": jnp.zeros((d,), jnp.float32)}


def init_transformer(key: jax.Array, spec) -> dict:
    d, v = spec.width, spec.vocab
    k_emb, k_pos, k_out, *k_blocks = jax.random.split(key, 3 + spec.depth)
    params = {
        "embed": jax.random.normal(k_emb, (v, d), jnp.float32),  # one-hot input: fan_in 1
        "pos": jax.random.normal(k_pos, (spec.context, d), jnp.float32),
        "ln_f": _ln_params(d),
        "out": {"w": _readout(k_out, (d, v), d, spec.parametrization)},
    }
    for i, kb in enumerate(k_blocks):
        k1, k2, k3, k4 = jax.random.split(kb, 4)
        params[f"block_{i}"] = {
            "ln_1": _ln_params(d),
            "qkv": {"w": _normal(k1, (d, 3 * d), d)},
            "proj": {"w": _normal(k2, (d, d), d)},
            "ln_2": _ln_params(d),
            "fc_1": {"w": _normal(k3, (d, 4 * d), d)},
            "fc_2": {"w": _normal(k4, (4 * d, d), 4 * d)},
        }
    return params


def _attention(p: dict, x_BxTxD: jax.Array, spec) -> jax.Array:
    b, t, d = x_BxTxD.shape
    h, dh = spec.num_heads, d // spec.num_heads
    qkv = (x_BxTxD @ p["qkv"]["w"]).reshape(b, t, 3, h, dh)
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    scale = 1.0 / dh if spec.parametrization == "mup" else 1.0 / jnp.sqrt(jnp.float32(dh))
    logits_BxHxTxT = jnp.einsum("bqhk,bshk->bhqs", q_BxTxHxK, k_BxTxHxK) * scale
    causal = jnp.tril(jnp.ones((t, t), bool))
    logits_BxHxTxT = jnp.where(causal[None, None], logits_BxHxTxT, jnp.finfo(jnp.float32).min)
    attn = jax.nn.softmax(logits_BxHxTxT, axis=-1)
    out = jnp.einsum("bhqs,bshk->bqhk", attn, v_BxTxHxK).reshape(b, t, d)
    return out @ p["proj"]["w"]


def apply_transformer(params: dict, tokens_BxT: jax.Array, spec) -> jax.Array:
    t = tokens_BxT.shape[1]
    x = params["embed"][tokens_BxT] + params["pos"][None, :t]
    for i in range(spec.depth):
        p = params[f"block_{i}"]
        x = x + _attention(p, _layer_norm(p["ln_1"], x), spec)
        hid = jax.nn.gelu(_layer_norm(p["ln_2"], x) @ p["fc_1"]["w"])
        x = x + hid @ p["fc_2"]["w"]
    x = _layer_norm(params["ln_f"], x)
    return (x @ params["out"]["w"]) * _readout_mult(spec.width, spec.parametrization)


def meta_transformer(spec) -> dict:
    d = spec.width
    ln = {"scale": Meta("vector", 1), "bias": Meta("vector", 1)}
    meta = {"embed": Meta("input", 1), "pos": Meta("input", 1), "ln_f": dict(ln), "out": {"w": Meta("output", d)}}
    for i in range(spec.depth):
        meta[f"block_{i}"] = {
            "ln_1": dict(ln),
            "qkv": {"w": Meta("hidden", d)},
            "proj": {"w": Meta("hidden", d)},
            "ln_2": dict(ln),
            "fc_1": {"w": Meta("hidden", d)},
            "fc_2": {"w": Meta("hidden", 4 * d)},
        }
    return meta


def cross_entropy(logits_BxC: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels (any leading shape).

    optax's, not `take_along_axis` over `log_softmax`: under jit, XLA:CPU (jaxlib 0.10.2) returned
    NaN from that gather when a task's `init` and a vmapped validation loss shared one program (a
    μP MLP of width 256 on Fashion-MNIST 8×8; tests/test_tasks.py keeps the case)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B.astype(jnp.int32)).mean()
