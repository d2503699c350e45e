"""optax conformance: the checks of optax.contrib's common tests, applied to every shipped learned
optimizer (`lopt.load(name, num_steps=N)`, no μP roles, as a user with a standard flax model would
load it) and to every architecture in `lopt.ARCHITECTURES` at its init theta.

Checks: extra keyword args to `update` are accepted and a second call does not recompile;
`optax.tree.map_params` works on the state; updates keep the params' dtype; `optax.MultiSteps`
emits zeros between accumulation steps; the state keeps its dtypes under `lax.cond` (float16,
bfloat16, float32, float64); `lopt.load` and every architecture work with `jax_enable_x64`; and
(slow) convergence to within 3e-2 on optax's four targets after 30 000 steps.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt

NUM_STEPS = 100  # the horizon given to the optimizers of the quick checks
CONVERGENCE_STEPS = 30_000  # as optax's common test
Target = tuple[Any, Any, Callable[[Any], jax.Array]]


def _cases() -> list[str]:
    """'<name>' for each shipped file, '<arch>-init' for each architecture at its init theta."""
    return list(lopt.list_pretrained()) + [f"{name}-init" for name in sorted(lopt.ARCHITECTURES)]


def _make(case: str, num_steps: int = NUM_STEPS) -> optax.GradientTransformationExtraArgs:
    """The optimizer of a case, built under the current x64 setting."""
    if case.endswith("-init"):
        arch = lopt.get_arch(case.removesuffix("-init"))
        return arch.optimizer(arch.init(jax.random.key(0)), num_steps=num_steps)
    return lopt.load(case, num_steps=num_steps)


# The four targets of optax's common test (parabola, Rosenbrock, matrix parabola, mixed 1-D/2-D).
def _parabola(dtype) -> Target:
    final = jnp.array([1.0, -1.0, 1.0], dtype)
    return jnp.array([-1.0, 10.0, 1.0], dtype), final, lambda p: jnp.sum(jnp.square(p - final))


def _rosenbrock(dtype) -> Target:
    a, b = 1.0, 100.0
    obj = lambda p: jnp.square(a - p[0]) + b * jnp.square(p[1] - p[0] ** 2)
    return jnp.zeros((2,), dtype), jnp.array([a, a**2], dtype), obj


def _matrix_parabola(dtype) -> Target:
    final = jnp.array([[3.0, -2.0], [1.0, 4.0]], dtype)
    return jnp.zeros((2, 2), dtype), final, lambda p: jnp.sum(jnp.square(p - final))


def _mixed(dtype) -> Target:
    final = (jnp.array([1.0, -1.0, 2.0], dtype), jnp.array([[1.0, 0.0], [-1.0, 1.0]], dtype))
    obj = lambda p: sum(jnp.sum(jnp.square(x - f)) for x, f in zip(p, final))
    return (jnp.zeros((3,), dtype), jnp.zeros((2, 2), dtype)), final, obj


TARGETS = {"parabola": _parabola, "rosenbrock": _rosenbrock, "matrix_parabola": _matrix_parabola, "mixed": _mixed}


def _avals(tree) -> list:
    return [jax.typeof(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("case", _cases())
def test_accepts_extra_args_and_does_not_recompile(case):
    """Unknown keyword args to `update` are ignored, and the state it returns has the init state's
    types, so that a jitted step traces once."""
    opt = _make(case)
    params, _, obj = _rosenbrock(jnp.float32)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)  # runs once per trace
        value, grads = jax.value_and_grad(obj)(params)
        updates, state = opt.update(grads, state, params, value=value, unexpected_junk=1)
        return optax.apply_updates(params, updates), state

    new, state = step(params, opt.init(params))
    new, state = step(new, state)
    assert len(traces) == 1, "update recompiles on its second call (the state's types changed)"
    assert np.all(np.isfinite(new)) and np.any(np.asarray(new) != np.asarray(params))


@pytest.mark.parametrize("case", _cases())
def test_map_params_over_the_state(case):
    """optax's check (the identity, on the initial state), and that map_params finds the params'
    copies in the state at all."""
    opt = _make(case)
    state = opt.init(_mixed(jnp.float32)[0])
    same = optax.tree.map_params(opt, lambda v: v, state)
    assert jax.tree.structure(same) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    mapped = []
    zeroed = optax.tree.map_params(opt, lambda v: mapped.append(v) or jnp.zeros_like(v), state)
    assert mapped, "map_params found no params-shaped tree in the state"
    assert _avals(zeroed) == _avals(state)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("case", _cases())
def test_updates_keep_the_params_dtype_and_multisteps_emits_zeros_between_steps(case, dtype):
    """optax's dtype and gradient-accumulation checks, in one test to compile the bare update once:
    it keeps the params' dtype, and MultiSteps emits exact zeros, then the optimizer's first step."""
    opt = _make(case)
    multi = optax.MultiSteps(opt, every_k_schedule=4)
    params = jnp.array([1.0, 2.0], dtype)
    value, grads = jax.value_and_grad(lambda x: jnp.sum(x**2))(params)
    update = jax.jit(multi.update)
    state = jax.jit(multi.init)(params)
    for _ in range(3):
        updates, state = update(grads, state, params, value=value)
        assert updates.dtype == dtype
        np.testing.assert_array_equal(updates, jnp.zeros_like(grads))
    updates, _ = update(grads, state, params, value=value)
    # the 4th step is the optimizer's first, on the mean of 4 equal gradients
    expected, _ = jax.jit(opt.update)(grads, jax.jit(opt.init)(params), params, value=value)
    assert expected.dtype == updates.dtype == dtype and np.any(np.asarray(updates) != 0)
    np.testing.assert_allclose(np.float32(updates), np.float32(expected), rtol=1e-2 if dtype == jnp.bfloat16 else 1e-5)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
@pytest.mark.parametrize("case", _cases())
def test_state_dtypes_are_stable_under_cond(case, dtype):
    """optax's check: `lax.cond` between an update and a no-op demands identical types on both
    branches, for the updates (against the params) and for the state. float64 runs with
    jax_enable_x64, the shipped files loaded there."""
    with jax.enable_x64(dtype == jnp.float64):
        opt = _make(case)
        params, _, obj = _parabola(dtype)
        pick = lambda: jax.random.randint(jax.random.key(0), (), 0, 2) == 0

        @jax.jit
        def step(params, state):
            value, grads = jax.value_and_grad(obj)(params)
            value = value.astype(jnp.bfloat16 if dtype == jnp.float16 else jnp.float16)  # an odd loss dtype
            updates, state = jax.lax.cond(pick(), lambda: opt.update(grads, state, params, value=value),
                                          lambda: (params, state))
            return optax.apply_updates(params, updates), state

        state = opt.init(params)
        for _ in range(2):
            params, new_state = step(params, state)
            assert params.dtype == dtype
            state = jax.lax.cond(pick(), lambda: state, lambda: new_state)  # noqa: B023
        assert _avals(state) == _avals(opt.init(params))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("case", _cases())
def test_updates_under_x64(case, dtype):
    """With jax_enable_x64 on, float64 params get float64 updates and float32 params float32 ones,
    on a vector and a matrix (factored accumulators), and the state keeps its types."""
    with jax.enable_x64(True):
        opt = _make(case)
        params, _, obj = _mixed(dtype)
        value, grads = jax.value_and_grad(obj)(params)
        state = opt.init(params)
        updates, new_state = jax.jit(opt.update)(grads, state, params, value=value)
        assert [u.dtype for u in updates] == [dtype, dtype]
        assert all(np.all(np.isfinite(u)) for u in updates) and any(np.any(u != 0) for u in updates)
        assert _avals(new_state) == _avals(state)


@pytest.mark.parametrize("name", lopt.list_pretrained())
def test_load_under_x64_keeps_theta_float32(name):
    """A shipped file loads with jax_enable_x64 on, into the same float32 theta."""
    _, theta32, _ = lopt.load_theta(name)
    with jax.enable_x64(True):
        _, theta, _ = lopt.load_theta(name)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(theta))
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta32)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(lopt.ARCHITECTURES))
def test_theta_saved_under_x64_loads(name, tmp_path):
    """theta is float32 by design: an architecture's init gives float32 under x64 too, so that a
    file saved there loads."""
    with jax.enable_x64(True):
        arch = lopt.get_arch(name)
        theta = arch.init(jax.random.key(0))
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(theta))
        loaded = lopt.load_theta(lopt.save(tmp_path / "opt.safetensors", arch, theta))[1]
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(theta)):
        np.testing.assert_array_equal(a, b)


def final_error(case: str, target: str, steps: int = CONVERGENCE_STEPS) -> tuple[float, bool]:
    """(max |p − p*| after `steps` float32 steps on a target, whether optax's tolerance holds:
    |p − p*| <= 3e-2 + 3e-2·|p*| everywhere)."""
    opt = _make(case, num_steps=steps)
    params, final, obj = TARGETS[target](jnp.float32)

    def body(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(obj)(params)
        updates, state = opt.update(grads, state, params, value=value)
        return (optax.apply_updates(params, updates), state), None

    run = jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), length=steps)[0][0])
    found = jax.tree.leaves(run(params))
    errors = [np.abs(np.float64(a) - np.float64(b)) for a, b in zip(found, jax.tree.leaves(final))]
    ok = all(np.all(e <= 3e-2 + 3e-2 * np.abs(np.float64(b))) for e, b in zip(errors, jax.tree.leaves(final)))
    return float(max(e.max() for e in errors)), ok


# Measured failures (max |p − p*| after 30 000 float32 steps; optax's tolerance is 3e-2 + 3e-2·|p*|).
# Strict: a case that starts passing fails as XPASS, so that this table stays true.
_RANDOM_MLP = "untrained: a random per-parameter MLP, whose steps do not descend"
_RANDOM_BANK = "untrained: a random LSTM mixing random per-parameter MLPs; its steps do not descend"
XFAIL: dict[tuple[str, str], str] = {
    ("mulo_mup", "rosenbrock"): "ends at (0.859, 0.808), error 0.19, loss 1.5e-2 (it passed 3.4e-4 on the way): "
                                "μLO's fixed step scale does not settle in Rosenbrock's valley",
    ("mulo-init", "parabola"): f"error 100.5, loss 125 → 2.0e4 ({_RANDOM_MLP})",
    ("mulo-init", "rosenbrock"): f"error 145.1 ({_RANDOM_MLP})",
    ("mulo-init", "matrix_parabola"): f"error 185.9 ({_RANDOM_MLP})",
    ("mulo-init", "mixed"): f"error 175.9 ({_RANDOM_MLP})",
    ("velo-init", "parabola"): f"error 17.8, loss 125 → 411 ({_RANDOM_BANK})",
    ("velo-init", "rosenbrock"): f"error 5.99, loss 1 → 4.9e3 ({_RANDOM_BANK})",
    ("velo-init", "matrix_parabola"): f"error 8.98 ({_RANDOM_BANK})",
    ("velo-init", "mixed"): f"error 9.82 ({_RANDOM_BANK})",
}
# Convergence runs in the default suite for Adam (its four runs take 0.4 s, compiles included),
# celo, the default the issue targets (3.3 s), and celo2, the Celo2-class default (4.2 s); the others
# (4-6 s each, measured on 2 busy cores) only with -m slow, so that this file's default part stays
# under ~45 s.
QUICK_CONVERGENCE = {"adam-init", "celo-init", "celo2-init"}


def _convergence_cases() -> list:
    cases = []
    for case in _cases():
        for target in TARGETS:
            marks = [] if case in QUICK_CONVERGENCE else [pytest.mark.slow]
            if (case, target) in XFAIL:
                marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[case, target]))
            cases.append(pytest.param(case, target, marks=marks))
    return cases


@pytest.mark.parametrize("case, target", _convergence_cases())
def test_converges(case, target):
    error, ok = final_error(case, target)
    assert ok, f"{case} on {target}: max |p - p*| = {error:.3g} after {CONVERGENCE_STEPS} steps"
