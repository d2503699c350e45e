"""Celo: the update against an independent NumPy reference, its Adam initialization against optax,
and the guarantees users rely on (sparse gradients, learning_rate, finite meta-gradients)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt import celo_features

SHAPES = {"b": (5,), "w": (4, 3), "k": (3, 3, 2, 4), "s": ()}


def _random_theta(seed: int, hidden: int = 8) -> dict:
    """A theta with every part nonzero (the init zeroes the MLP's last layer and the step weights)."""
    arch = lopt.Celo(hidden_size=hidden)
    theta = arch.init(jax.random.key(seed))
    keys = jax.random.split(jax.random.key(seed + 100), 8)
    return {
        "mlp": {k: v + 0.3 * jax.random.normal(keys[i], v.shape) for i, (k, v) in enumerate(sorted(theta["mlp"].items()))},
        "skip": jax.random.normal(keys[6], (celo_features.NUM_FEATURES,)),
        "step": 0.5 * jax.random.normal(keys[7], (celo_features.NUM_TENSOR_FEATURES,)),
        "decay_logits": {"mom": jnp.array([0.05, -0.03]), "rms": jnp.array(0.02)},
    }


class NumpyCelo:
    """Celo written out in float64 NumPy, one tensor at a time, from the module's docstring."""

    def __init__(self, arch: lopt.Celo, theta: dict, num_steps: int | None, gate: float | None = None):
        """`gate`: κ of `decay_gate`, the skip weight on p scaled per tensor by 10^(−κ·progress)."""
        self.t = {k: np.asarray(v, np.float64) for k, v in theta["mlp"].items()}
        self.gate, self.g2 = gate, {}
        self.skip, self.step_w = np.asarray(theta["skip"], np.float64), np.asarray(theta["step"], np.float64)
        lg = theta["decay_logits"]
        self.b_mom = np.clip(1 - (1 - np.array(arch.mom_decays)) * np.exp(10 * np.asarray(lg["mom"], np.float64)), 0, 1 - 1e-6)
        self.b_rms = float(np.clip(1 - (1 - arch.rms_decay) * np.exp(10 * float(lg["rms"])), 0, 1 - 1e-6))
        self.arch, self.num_steps, self.count, self.acc = arch, num_steps, 0, {}

    def _acc(self, name, g):
        if name not in self.acc:
            s = g.shape
            self.acc[name] = dict(m=np.zeros((2,) + s), v=np.zeros(s), row=np.zeros(s[:-1]) if g.ndim >= 2 else None,
                                  col=np.zeros(s[:-2] + s[-1:]) if g.ndim >= 2 else None)
        a = self.acc[name]
        for k in range(2):
            a["m"][k] = self.b_mom[k] * a["m"][k] + (1 - self.b_mom[k]) * g
        a["v"] = self.b_rms * a["v"] + (1 - self.b_rms) * g**2
        if g.ndim >= 2:
            a["row"] = self.b_rms * a["row"] + (1 - self.b_rms) * (g**2).mean(-1)
            a["col"] = self.b_rms * a["col"] + (1 - self.b_rms) * (g**2).mean(-2)
        return a

    def update(self, grads: dict, params: dict) -> dict:
        frac = 0.0 if self.num_steps is None else self.count / self.num_steps
        sched = np.tanh(4 * (frac - np.array(celo_features.SCHEDULE_POINTS)))
        out = {}
        for name, g in grads.items():
            g, p = np.asarray(g, np.float64), np.asarray(params[name], np.float64)
            a = self._acc(name, g)
            rs = lambda x: np.where(x > 0, 1 / np.sqrt(np.where(x > 0, x, 1)), 0.0)
            rv = rs(a["v"])
            if g.ndim >= 2:
                fac = (rs(a["row"]) * np.sqrt(a["row"].mean(-1, keepdims=True)))[..., None] * rs(a["col"])[..., None, :]
            else:
                fac = rv
            m0, m1 = a["m"]
            feats = [g, p, m0, m1, g * rv, m0 * rv, m1 * rv, g * fac, m0 * fac, rv]
            feats = [f / np.sqrt(np.mean(f**2) + 1e-8) for f in feats]
            skip = self.skip.copy()
            if self.gate is not None:  # the progress feature: EMA (0.9) of mean g² from the first nonzero one, vs its peak
                mean_g2, prev = float(np.mean(g**2)), self.g2.get(name)
                ema = mean_g2 if prev is None or prev[0] == 0 else 0.9 * prev[1] + 0.1 * mean_g2
                self.g2[name] = (max(ema, 0.0 if prev is None else prev[0]), ema)
                progress = np.clip(0.5 * np.log10((ema + 1e-30) / (self.g2[name][0] + 1e-30)), -4, 0)
                skip[1] *= 10.0 ** (-self.gate * progress)
            x = np.stack(feats, -1)  # S + (10,)
            x = np.concatenate([x, np.broadcast_to(sched, g.shape + (5,))], -1)
            h = np.maximum(x @ self.t["w0"] + self.t["b0"], 0)
            h = np.maximum(h @ self.t["w1"] + self.t["b1"], 0)
            d = (h @ self.t["w2"] + self.t["b2"])[..., 0] + np.stack(feats, -1) @ skip
            d = np.where(a["v"] > 0, d, 0.0)
            d = d / np.sqrt(np.mean(d**2) + 1e-12)
            fan_in = math.prod(g.shape[:-1]) if g.ndim >= 2 else 1
            psi = np.concatenate([sched, [float(g.ndim >= 2), math.log(fan_in) / math.log(1024)]])
            out[name] = -self.arch.step_mult * np.exp(psi @ self.step_w) * d
        self.count += 1
        return out


@pytest.mark.parametrize("num_steps", [None, 7])
def test_update_matches_numpy_reference(num_steps):
    arch = lopt.Celo(hidden_size=8)
    theta = _random_theta(0)
    opt = jax.jit(arch.optimizer(theta, num_steps=num_steps).update)
    ref = NumpyCelo(arch, theta, num_steps)
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    state = arch.optimizer(theta, num_steps=num_steps).init(params)
    for _ in range(5):
        grads = {k: jnp.asarray(rng.normal(size=s) * 10 ** rng.uniform(-3, 1), jnp.float32) for k, s in SHAPES.items()}
        updates, state = opt(grads, state, params)
        want = ref.update(grads, params)
        for k in SHAPES:
            np.testing.assert_allclose(updates[k], want[k], rtol=2e-4, atol=1e-9, err_msg=k)
        params = optax.apply_updates(params, updates)


def test_init_is_per_tensor_normalized_adam():
    """Untrained, Celo steps along Adam's m/√v (optax, eps 0) scaled to RMS step_mult per tensor:
    bias correction is one factor per tensor, so normalization removes it."""
    arch = lopt.Celo(step_mult=3e-3)
    opt = arch.optimizer(arch.init(jax.random.key(1)), num_steps=50)
    adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=0.0)
    rng = np.random.default_rng(1)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items() if s}
    s_c, s_a = opt.init(params), adam.init(params)
    update_c, update_a = jax.jit(opt.update), jax.jit(adam.update)
    for _ in range(4):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        u_c, s_c = update_c(grads, s_c, params)
        u_a, s_a = update_a(grads, s_a, params)
        for k in params:
            want = -3e-3 * u_a[k] / jnp.sqrt(jnp.mean(u_a[k] ** 2))
            np.testing.assert_allclose(u_c[k], want, rtol=1e-4, atol=1e-9, err_msg=k)
        params = optax.apply_updates(params, u_c)


def test_untouched_elements_do_not_move_and_learning_rate_scales():
    arch = lopt.Celo()
    theta = _random_theta(2)
    params = {"w": jnp.ones((4, 3)), "unused": jnp.ones((6,))}
    grads = {"w": jnp.zeros((4, 3)).at[0].set(1.0), "unused": jnp.zeros((6,))}
    opt = arch.optimizer(theta, num_steps=10)
    u, _ = opt.update(grads, opt.init(params), params)
    assert np.all(np.asarray(u["w"][1:]) == 0) and np.all(np.asarray(u["unused"]) == 0)
    assert np.all(np.asarray(u["w"][0]) != 0)
    half = arch.optimizer(theta, num_steps=10, learning_rate=0.5)
    u_half, _ = half.update(grads, half.init(params), params)
    np.testing.assert_allclose(u_half["w"], 0.5 * u["w"], rtol=1e-6)
    sched = arch.optimizer(theta, num_steps=10, learning_rate=optax.linear_schedule(2.0, 0.0, 10))
    u_s, _ = sched.update(grads, sched.init(params), params)
    np.testing.assert_allclose(u_s["w"], 2.0 * u["w"], rtol=1e-6)


def test_meta_gradient_is_finite_through_zero_gradients():
    """Through 3 steps on a model with a dead tensor (zero gradient), d loss / d theta is finite
    and nonzero: the rsqrt guards have no infinite derivative at v = 0."""
    arch = lopt.Celo(hidden_size=4)
    x = jax.random.normal(jax.random.key(0), (16, 4))
    y = x @ jnp.arange(4.0)

    def loss(p):
        return jnp.mean((x @ p["w"] - y) ** 2) + 0.0 * p["dead"].sum()

    def meta(theta):
        opt = arch.optimizer(theta, num_steps=5)
        p = {"w": jnp.zeros((4,)), "dead": jnp.ones((3, 2))}
        def step(carry, _):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, u), s), None

        p, _ = jax.lax.scan(step, (p, opt.init(p)), length=3)[0]
        return loss(p)

    g = jax.jit(jax.grad(meta))(_random_theta(3, hidden=4))
    leaves = jax.tree.leaves(g)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    assert sum(float(jnp.abs(leaf).sum()) for leaf in leaves) > 0


@pytest.mark.parametrize("shape", [(), (5,), (4, 3)])
def test_direction_custom_vjp_matches_the_unit_form(shape):
    """`mlp_direction` runs the unit-by-unit MLP forward and differentiates the stacked form: its
    value and its vector-Jacobian product (weights, skip and features) equal the unit form's own."""
    ks = iter(jax.random.split(jax.random.key(7), 16))
    layers = tuple((jax.random.normal(next(ks), (a, b)), jax.random.normal(next(ks), (b,)))
                   for a, b in ((celo_features.NUM_FEATURES, 8), (8, 8), (8, 1)))
    skip = jax.random.normal(next(ks), (celo_features.NUM_FEATURES,))
    x = tuple(jax.random.normal(k, shape) for k in jax.random.split(next(ks), celo_features.NUM_FEATURES))
    ct = jax.random.normal(next(ks), shape)
    out, vjp = jax.vjp(celo_features.mlp_direction, layers, skip, x)
    ref_out, ref_vjp = jax.vjp(celo_features.mlp_units, layers, skip, x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves(vjp(ct)), jax.tree.leaves(ref_vjp(ct))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert sum(float(jnp.abs(leaf).sum()) for leaf in jax.tree.leaves(vjp(ct))) > 0


def test_meta_gradient_compiles_cheaply_through_several_tensors():
    """Two differentiated updates of a 4-tensor model used to take XLA:CPU 7 minutes and 16 GB to
    compile (one fused reduction per MLP weight); with the stacked backward pass it is seconds.
    Checks the gradient against central finite differences along a random direction of theta."""
    arch = lopt.Celo()
    params = {n: jnp.full(s, 0.3) for n, s in SHAPES.items()}

    def meta(theta):
        opt = arch.optimizer(theta, num_steps=10)
        state, p = opt.init(params), params
        for _ in range(2):
            g = jax.grad(lambda q: sum(jnp.sum(jnp.sin(3.0 * v) + v * v) for v in jax.tree.leaves(q)))(p)
            u, state = opt.update(g, state, p)
            p = optax.apply_updates(p, u)
        return sum(jnp.sum(v * v) for v in jax.tree.leaves(p))

    with jax.enable_x64(True):
        theta = jax.tree.map(lambda t: t.astype(jnp.float64), _random_theta(5))
        params = jax.tree.map(lambda t: t.astype(jnp.float64), params)
        keys = jax.random.split(jax.random.key(1), len(jax.tree.leaves(theta)))
        direction = jax.tree.unflatten(jax.tree.structure(theta), [
            jax.random.normal(k, t.shape, jnp.float64) for k, t in zip(keys, jax.tree.leaves(theta))])
        g = jax.jit(jax.grad(meta))(theta)
        eps = 1e-5
        plus = meta(jax.tree.map(lambda t, d: t + eps * d, theta, direction))
        minus = meta(jax.tree.map(lambda t, d: t - eps * d, theta, direction))
        fd = (plus - minus) / (2 * eps)
        an = sum(jnp.vdot(a, d) for a, d in zip(jax.tree.leaves(g), jax.tree.leaves(direction)))
        np.testing.assert_allclose(float(an), float(fd), rtol=1e-4)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="num_steps"):
        lopt.Celo().optimizer(lopt.Celo().init(jax.random.key(0)), num_steps=0)
    with pytest.raises(ValueError, match="step_mult"):
        lopt.Celo(step_mult=-1.0)
    with pytest.raises(ValueError, match="decays"):
        lopt.Celo(rms_decay=1.0)
    with pytest.raises(ValueError, match="width_power"):
        lopt.Celo(width_power=-1.0)
    with pytest.raises(ValueError, match="ref_matrices"):
        lopt.Celo(ref_matrices=0)


def test_model_feature_scales_the_step_by_depth_as_numpy_says():
    """With model_features, ψ gains log(#matrices)/log(16): the step is the base step times
    exp(w · that feature), and a zero weight (the init, `adopt`) changes nothing."""
    base = lopt.Celo()
    arch = lopt.Celo(model_features=True)
    theta0 = _random_theta(3)
    rng = np.random.default_rng(3)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    grads = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    n_matrices = sum(len(s) >= 2 for s in SHAPES.values())  # w and k
    feature = math.log(n_matrices) / math.log(16)
    np.testing.assert_allclose(celo_features.model_feature(params), [feature], rtol=1e-6)
    want = NumpyCelo(base, theta0, 10).update(grads, params)
    adopted = arch.adopt(theta0, base)
    assert adopted["step"].shape == (arch.num_step_features,) and float(adopted["step"][-1]) == 0.0
    for w, scale in ((0.0, 1.0), (-1.5, math.exp(-1.5 * feature))):
        theta = dict(adopted, step=adopted["step"].at[-1].set(w))
        opt = arch.optimizer(theta, num_steps=10)
        got, _ = opt.update(grads, opt.init(params), params)
        for k in SHAPES:
            np.testing.assert_allclose(got[k], scale * want[k], rtol=2e-4, atol=1e-9, err_msg=k)


@pytest.mark.parametrize("width_power,depth_power", [(1.0, 0.0), (0.5, 1.0)])
def test_step_priors_scale_each_tensor_as_numpy_says(width_power, depth_power):
    """The static priors multiply tensor X's step by (64/max(fan_in(X), 64))^p (matrices only) and
    every step by (3/max(#matrices, 3))^q; the rest of the update is the reference's."""
    base, theta = lopt.Celo(), _random_theta(4)
    arch = lopt.Celo(width_power=width_power, depth_power=depth_power)
    rng = np.random.default_rng(4)
    shapes = dict(SHAPES, wide=(200, 3), k2=(3, 3, 16, 2), k3=(2, 2))  # fan-ins 200, 144 and 2 (below 64)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    grads = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    want = NumpyCelo(base, theta, 10).update(grads, params)
    opt = arch.optimizer(arch.adopt(theta, base), num_steps=10)
    got, _ = opt.update(grads, opt.init(params), params)
    n_matrices = 5  # w, k, wide, k2, k3
    for k, shape in shapes.items():
        width = (64 / max(math.prod(shape[:-1]), 64)) ** width_power if len(shape) >= 2 else 1.0
        scale = width * (3 / n_matrices) ** depth_power
        atol = 1e-5 * float(np.abs(scale * want[k]).max())  # float32 cancellation in small elements
        np.testing.assert_allclose(got[k], scale * want[k], rtol=2e-4, atol=atol, err_msg=k)


def test_adopt_refuses_anything_but_turning_model_features_on():
    theta = lopt.Celo(model_features=True).init(jax.random.key(0))
    with pytest.raises(ValueError, match="only turning model_features, progress_feature or decay_gate on"):
        lopt.Celo().adopt(theta, lopt.Celo(model_features=True))
    with pytest.raises(ValueError, match="only turning model_features, progress_feature or decay_gate on"):
        lopt.Celo(hidden_size=4, model_features=True).adopt(lopt.Celo().init(jax.random.key(0)), lopt.Celo())
    theta = lopt.Celo().init(jax.random.key(0))
    adopted = lopt.Celo(width_power=1.0, depth_power=1.0).adopt(theta, lopt.Celo())
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), adopted, theta))


def test_progress_feature_shrinks_the_step_with_the_gradients_as_numpy_says():
    """With progress_feature, ψ gains clip(log10(√(EMA_0.9 of mean g², from the first nonzero
    gradient) / √(that EMA's peak)), -4, 0) per tensor, weighted by `progress_init` after `adopt`:
    growing gradients leave the step alone, shrinking ones shrink it; a tensor whose gradients
    never were nonzero has feature 0."""
    base, theta = lopt.Celo(), _random_theta(5)
    arch = lopt.Celo(progress_feature=True, progress_init=0.7)
    adopted = arch.adopt(theta, base)
    np.testing.assert_allclose(adopted["step"], np.append(np.asarray(theta["step"]), 0.7), rtol=1e-6)
    rng = np.random.default_rng(5)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    g_dirs = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    ref, opt = NumpyCelo(base, theta, 10), arch.optimizer(adopted, num_steps=10)
    state = opt.init(params)
    g2 = {k: None for k in SHAPES}
    for t, factor in enumerate([1.0, 10.0, 0.1, 0.01, 1e-4]):  # the gradients grow, then shrink by decades
        grads = {k: jnp.asarray(factor * g_dirs[k] * (k != "s"), jnp.float32) for k in SHAPES}  # "s": always zero
        want = ref.update(grads, params)
        got, state = opt.update(grads, state, params)
        for k in SHAPES:
            m = float(np.mean(np.asarray(grads[k], np.float64) ** 2))
            ema = m if g2[k] is None or g2[k][0] == 0 else 0.9 * g2[k][1] + 0.1 * m
            g2[k] = (max(ema, 0.0 if g2[k] is None else g2[k][0]), ema)
            feature = np.clip(0.5 * np.log10((g2[k][1] + 1e-30) / (g2[k][0] + 1e-30)), -4, 0)
            assert (feature == 0) == (k == "s" or t <= 1), (k, t, feature)
            np.testing.assert_allclose(got[k], np.exp(0.7 * feature) * want[k], rtol=5e-4, atol=1e-12,
                                       err_msg=f"{k} at step {t}")
    kept = lopt.Celo(progress_feature=True, model_features=True).adopt(dict(adopted, step=adopted["step"].at[-1].set(-2.0)), arch)
    assert kept["step"].shape == (celo_features.NUM_TENSOR_FEATURES + 2,) and float(kept["step"][-1]) == -2.0
    assert float(kept["step"][-2]) == 0.0


def test_step_gain_stores_the_step_weights_divided_and_steps_identically():
    """theta["step"] holds w_s / step_gain: adopting across gains keeps every update, and the
    meta-gradient with respect to the stored weights is step_gain times that of w_s."""
    base, theta = lopt.Celo(progress_feature=True), _random_theta(6)
    theta = dict(theta, step=jnp.append(theta["step"], 0.3))
    arch = lopt.Celo(progress_feature=True, step_gain=10.0)
    adopted = arch.adopt(theta, base)
    np.testing.assert_allclose(adopted["step"], np.asarray(theta["step"]) / 10.0, rtol=1e-6)
    np.testing.assert_allclose(lopt.Celo(progress_feature=True).adopt(adopted, arch)["step"], theta["step"], rtol=1e-6)
    assert float(lopt.Celo(progress_feature=True, progress_init=0.5, step_gain=4.0).init(jax.random.key(0))["step"][-1]) \
        == pytest.approx(0.125)
    rng = np.random.default_rng(6)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    grads = [{k: jnp.asarray(f * rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()} for f in (1.0, 0.1)]

    def last_update(a, th):
        opt = a.optimizer(th, num_steps=10)
        state = opt.init(params)
        for g in grads:
            u, state = opt.update(g, state, params)
        return u

    want, got = last_update(base, theta), last_update(arch, adopted)
    for k in SHAPES:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-12, err_msg=k)

    def meta(a, step):
        return sum(jnp.sum(u) for u in jax.tree.leaves(last_update(a, dict(theta, step=step))))

    g_base = jax.grad(lambda s: meta(base, s))(theta["step"])
    g_gain = jax.grad(lambda s: meta(arch, s))(adopted["step"])
    np.testing.assert_allclose(g_gain, 10.0 * g_base, rtol=1e-4, atol=1e-9)
    with pytest.raises(ValueError, match="step_gain"):
        lopt.Celo(step_gain=0.0)


def test_decay_gate_scales_the_weight_decay_with_the_progress_as_numpy_says():
    """With decay_gate, the skip weight on the parameter feature is multiplied per tensor by
    10^(−κ·progress), progress as in `test_progress_feature_...`: the decay grows as the gradients
    fade below their peak; κ = 0 is the ungated optimizer; adopt keeps a learned κ across gains."""
    base, theta = lopt.Celo(), _random_theta(7)
    theta = dict(theta, skip=theta["skip"].at[celo_features.PARAM_FEATURE].set(0.8))
    arch = lopt.Celo(decay_gate=True, decay_gate_init=0.6)
    adopted = arch.adopt(theta, base)
    assert float(adopted["decay_gate"][0]) == pytest.approx(0.6)
    rng = np.random.default_rng(7)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    g_dirs = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    ref, ungated = NumpyCelo(base, theta, 10, gate=0.6), NumpyCelo(base, theta, 10)
    opts = {"gated": arch.optimizer(adopted, num_steps=10),  # against NumPy; κ = 0 against the ungated file
            "zero": arch.optimizer(dict(adopted, decay_gate=jnp.zeros((1,))), num_steps=10),
            "base": base.optimizer(theta, num_steps=10)}
    states = {n: o.init(params) for n, o in opts.items()}
    updates = {n: jax.jit(o.update) for n, o in opts.items()}
    for t, factor in enumerate([1.0, 10.0, 0.1, 0.01, 1e-3]):
        grads = {k: jnp.asarray(factor * g_dirs[k], jnp.float32) for k in SHAPES}
        want, plain = ref.update(grads, params), ungated.update(grads, params)
        got = {}
        for n in opts:
            got[n], states[n] = updates[n](grads, states[n], params)
        for k in SHAPES:
            np.testing.assert_allclose(got["gated"][k], want[k], rtol=5e-4, atol=1e-12, err_msg=f"{k} at step {t}")
            np.testing.assert_allclose(got["zero"][k], got["base"][k], rtol=1e-5, atol=1e-12, err_msg=f"{k} at step {t}")
            if t >= 3 and k != "s":  # the gradients have fallen from their peak: the gate is above 1
                assert np.max(np.abs(want[k] - plain[k])) > 1e-3 * np.max(np.abs(plain[k])), (k, t)
    gained = lopt.Celo(decay_gate=True, step_gain=4.0).adopt(dict(adopted, decay_gate=jnp.full((1,), 0.9)), arch)
    assert float(gained["decay_gate"][0]) == pytest.approx(0.9 / 4.0)
    assert float(lopt.Celo(decay_gate=True).adopt(gained, lopt.Celo(decay_gate=True, step_gain=4.0))["decay_gate"][0]) \
        == pytest.approx(0.9)
    with pytest.raises(ValueError, match="decay_gate on"):
        base.adopt(adopted, arch)
