"""μLO features, accumulators and the full update against independent NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt import common, mulo_features

jax.config.update("jax_enable_x64", False)
SHAPES = [(), (5,), (4, 3), (3, 3, 2, 4)]
MOM, RMS, FAC = np.array([0.5, 0.9, 0.99]), 0.95, np.array([0.6, 0.9, 0.999])


class NumpyAcc:
    """Accumulators of one tensor, written out with explicit loops over rows and columns."""

    def __init__(self, shape):
        self.shape = shape
        self.mom = np.zeros((3,) + shape)
        self.v = np.zeros(shape)
        if len(shape) >= 2:
            self.row = np.zeros((3,) + shape[:-1])
            self.col = np.zeros((3,) + shape[:-2] + shape[-1:])
        else:
            self.row = np.zeros((3,) + shape)

    def update(self, g):
        for k in range(3):
            self.mom[k] = MOM[k] * self.mom[k] + (1 - MOM[k]) * g
        self.v = RMS * self.v + (1 - RMS) * g**2
        g2 = g**2 + 1e-30
        for k in range(3):
            if len(self.shape) >= 2:
                n_rows, n_cols = self.shape[-2], self.shape[-1]
                row_mean = np.stack([g2[..., i, :].sum(-1) / n_cols for i in range(n_rows)], -1)
                col_mean = np.stack([g2[..., :, j].sum(-1) / n_rows for j in range(n_cols)], -1)
                self.row[k] = FAC[k] * self.row[k] + (1 - FAC[k]) * row_mean
                self.col[k] = FAC[k] * self.col[k] + (1 - FAC[k]) * col_mean
            else:
                self.row[k] = FAC[k] * self.row[k] + (1 - FAC[k]) * g2

    def second_moment_factored(self, k):
        """Adafactor's v̂_ij = r_i·c_j / mean_i(r) (the full statistic for rank < 2)."""
        if len(self.shape) < 2:
            return self.row[k]
        r, c = self.row[k], self.col[k]
        return r[..., :, None] * c[..., None, :] / r.mean(-1)[..., None, None]

    def features(self, p, g):
        eps = 1e-8
        rs_v = 1 / np.sqrt(self.v + eps)
        out = {"g": g, "p": p, "v": self.v, "rsqrt_v": rs_v}
        for k in range(3):
            vhat = self.second_moment_factored(k)
            if len(self.shape) >= 2:
                row_b = np.broadcast_to(self.row[k][..., :, None], self.shape)
                col_b = np.broadcast_to(self.col[k][..., None, :], self.shape)
            else:
                row_b = col_b = self.row[k]
            out[f"m{k}"] = self.mom[k]
            out[f"m{k}_rsqrt_v"] = self.mom[k] * rs_v
            out[f"g_fac{k}"] = g / np.sqrt(vhat)
            out[f"row{k}"], out[f"col{k}"] = row_b, col_b
            out[f"rsqrt_row{k}"], out[f"rsqrt_col{k}"] = 1 / np.sqrt(row_b + eps), 1 / np.sqrt(col_b + eps)
            out[f"m{k}_fac{k}"] = self.mom[k] / np.sqrt(vhat)
        return np.stack([np.broadcast_to(out[n], self.shape) for n in mulo_features.FEATURE_NAMES])


def _run_both(shape, steps=4, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=shape)
    ref, acc = NumpyAcc(shape), mulo_features.init_accumulators(jnp.asarray(p, jnp.float32))
    for _ in range(steps):
        g = rng.normal(size=shape) * rng.uniform(0.1, 3.0, size=shape)
        ref.update(g)
        acc = mulo_features.update_accumulators(acc, jnp.asarray(g, jnp.float32), jnp.asarray(MOM), jnp.asarray(RMS),
                                           jnp.asarray(FAC))
    return p, g, ref, acc


@pytest.mark.parametrize("shape", SHAPES)
def test_each_feature_matches_numpy(shape):
    p, g, ref, acc = _run_both(shape)
    got = np.asarray(mulo_features.raw_features(jnp.asarray(p, jnp.float32), jnp.asarray(g, jnp.float32), acc))
    want = ref.features(p, g)
    assert got.shape == (mulo_features.NUM_FEATURES,) + shape == want.shape
    for i, name in enumerate(mulo_features.FEATURE_NAMES):
        np.testing.assert_allclose(got[i], want[i], rtol=2e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_normalized_features_have_unit_rms(shape):
    p, g, ref, acc = _run_both(shape)
    normed = np.asarray(mulo_features.normalized_features(jnp.asarray(p, jnp.float32), jnp.asarray(g, jnp.float32), acc))
    want = ref.features(p, g)
    want = want / np.sqrt((want**2).reshape(len(want), -1).mean(1) + 1e-8).reshape((-1,) + (1,) * len(shape))
    np.testing.assert_allclose(normed, want, rtol=2e-4, atol=1e-6)


def test_time_features_and_decay_reparametrization():
    for t in (0, 1, 7, 250, 40_000):
        want = np.tanh(t / np.array([1, 3, 10, 30, 100, 300, 1e3, 3e3, 1e4, 3e4, 1e5]) - 1)
        np.testing.assert_allclose(mulo_features.time_features(jnp.int32(t)), want, rtol=1e-6, atol=1e-7)
    for theta, base in [(0.0, 0.9), (0.05, 0.99), (-0.2, 0.999)]:
        want = 1 - np.exp(10 * (np.log(1 - base) / 10 + theta))
        np.testing.assert_allclose(common.decay_from_logit(jnp.float32(theta), jnp.float32(base)), want, rtol=1e-5)


def _numpy_mulo_update(arch, theta, p, g, ref, step):
    th = jax.tree.map(np.asarray, theta)["mlp"]
    feats = ref.features(p, g)
    rms = np.sqrt((feats**2).reshape(len(feats), -1).mean(1) + 1e-8)
    x = np.moveaxis(feats / rms.reshape((-1,) + (1,) * p.ndim), 0, -1)
    t = np.tanh(step / np.array(mulo_features.TIME_SCALES) - 1)
    x = np.concatenate([x, np.broadcast_to(t, p.shape + (11,))], -1)
    h = np.maximum(x @ th["w0"] + th["b0"], 0)
    h = np.maximum(h @ th["w1"] + th["b1"], 0)
    out = h @ th["w2"] + th["b2"]
    return -arch.step_mult * out[..., 0] * np.exp(arch.exp_mult * out[..., 1])


@pytest.mark.parametrize("hidden", [4, 32])  # fused multiply-add path and matmul path
def test_mulo_update_matches_numpy_over_steps(hidden):
    arch = lopt.MuLO(hidden_size=hidden, mom_decays=tuple(MOM), rms_decay=RMS, fac_decays=tuple(FAC))
    theta = arch.init(jax.random.key(0))
    theta["mlp"] = jax.tree.map(lambda w: w + 0.1, theta["mlp"])  # non-zero biases too
    shapes = {"w": (4, 3), "b": (3,), "k": (3, 3, 2, 4)}
    rng = np.random.default_rng(1)
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    refs = {k: NumpyAcc(s) for k, s in shapes.items()}
    opt = arch.optimizer(theta)
    state = opt.init(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params))
    for step in range(3):
        grads = {k: rng.normal(size=s) for k, s in shapes.items()}
        f32 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
        updates, state = opt.update(f32(grads), state, f32(params))
        for k in shapes:
            refs[k].update(grads[k])
            want = _numpy_mulo_update(arch, theta, params[k], grads[k], refs[k], step)
            np.testing.assert_allclose(updates[k], want, rtol=5e-4, atol=1e-7, err_msg=f"{k} step {step}")
            params[k] = params[k] + want


def test_learnable_adam_matches_numpy_adam():
    arch = lopt.LearnableAdam(learning_rate=0.05, b1=0.8, b2=0.95, eps=1e-6)
    opt = arch.optimizer(arch.init(jax.random.key(0)))
    rng = np.random.default_rng(0)
    p = rng.normal(size=(6,))
    m = v = np.zeros(6)
    state = opt.init(jnp.asarray(p, jnp.float32))
    for t in range(1, 6):
        g = rng.normal(size=6)
        m, v = 0.8 * m + 0.2 * g, 0.95 * v + 0.05 * g**2
        want = -0.05 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.95**t)) + 1e-6)
        got, state = opt.update(jnp.asarray(g, jnp.float32), state, jnp.asarray(p, jnp.float32))
        np.testing.assert_allclose(got, want, rtol=1e-4)
        assert isinstance(optax.tree_utils.tree_get(state, "count"), jax.Array)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("hidden,hidden_first", [(4, True), (4, False), (32, False)])
def test_project_features_equals_first_layer_on_normalized_features(shape, hidden, hidden_first):
    p, g, ref, acc = _run_both(shape)
    w = np.random.default_rng(1).normal(size=(mulo_features.NUM_FEATURES, hidden))
    project = jax.jit(mulo_features.project_features, static_argnums=4)
    got = project(jnp.asarray(p, jnp.float32), jnp.asarray(g, jnp.float32), acc, jnp.asarray(w, jnp.float32),
                  hidden_first)
    got = np.moveaxis(np.asarray(got), 0, -1) if hidden_first else got
    want = ref.features(p, g)
    want = want / np.sqrt((want**2).reshape(len(want), -1).mean(1) + 1e-8).reshape((-1,) + (1,) * len(shape))
    want = np.tensordot(want, w, axes=(0, 0))
    assert got.shape == shape + (hidden,)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("shape", [(4, 3), (3, 3, 2, 4)])
def test_feature_matrix_matches_numpy(shape):
    p, g, ref, acc = _run_both(shape)
    x, rms = jax.jit(mulo_features.feature_matrix)(jnp.asarray(p, jnp.float32), jnp.asarray(g, jnp.float32), acc)
    want = ref.features(p, g)[list(mulo_features.MATRIX_ORDER)]
    assert sorted(mulo_features.MATRIX_ORDER) == list(range(mulo_features.NUM_FEATURES))
    np.testing.assert_allclose(x, want.reshape(len(want), -1).T, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(rms, np.sqrt((want**2).reshape(len(want), -1).mean(1) + 1e-8), rtol=2e-4)


def test_dense_pairs_is_a_dense_layer():
    rng = np.random.default_rng(0)
    h, w, b = rng.normal(size=(7, 5)), rng.normal(size=(5, 2)), rng.normal(size=(2,))
    got = common.dense_pairs(*(jnp.asarray(a, jnp.float32) for a in (h, w, b)))
    np.testing.assert_allclose(got, h @ w + b, rtol=1e-5, atol=1e-6)
