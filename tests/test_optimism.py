"""The optimistic meta-gradients experiment (experiments/optimism): the Lessard function, the
library's heavy-ball limit cycle and optimistic convergence at `reproduce`'s settings, the `online`
command's typed values and errors, and one tiny online run writing TensorBoard events."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.optimism import convex as oc
from experiments.optimism import mlp as om
from experiments.optimism import run as command
from experiments.optimism.online_run import PRESETS, OnlineSetup


def test_lessard_is_smooth_and_strongly_convex(x64):
    p, dp = oc.lessard_p, jax.vmap(jax.grad(oc.lessard_p))
    for knot in (1.0, 2.0):  # value and gradient continuous at the knots
        lo, hi = jnp.array([knot - 1e-9, knot + 1e-9])
        np.testing.assert_allclose(p(lo), p(hi), atol=1e-7)
        np.testing.assert_allclose(dp(jnp.array([knot - 1e-9])), dp(jnp.array([knot + 1e-9])), atol=1e-6)
    x = jnp.asarray(np.random.default_rng(0).uniform(-4, 5, (2, 20000)))
    slopes = (dp(x[0]) - dp(x[1])) / (x[0] - x[1])  # m ≤ (p'(a) − p'(b))/(a − b) ≤ L
    assert 1 - 1e-9 <= float(slopes.min()) < 1.5 and 24.5 < float(slopes.max()) <= 25 + 1e-9
    np.testing.assert_allclose(jax.vmap(jax.grad(jax.grad(oc.lessard_p)))(jnp.array([0.5, 1.5, 3.0])), [25, 1, 25])
    assert float(oc.lessard(jnp.zeros(3))) == 0.0


def _gaps(problem, method, steps=400):
    eta, beta = oc.quad_optimal(problem.smooth, problem.strong)["optimistic" if method == "bmg" else method]
    return np.asarray(jax.jit(functools.partial(oc.meta_gaps, problem, method, eta, beta, steps))())


def test_standard_meta_learning_cycles_on_lessard(x64):
    """Heavy ball at its quadratic-optimal (η, β) = (1/9, 4/9), run by online_meta: a period-3 cycle."""
    for d, cycle_values, at_400 in ((100, (227.4276, 508.2234, 656.6232), 508.2234),
                                    (1, (5.22502, 40.6103, 41.1818), 40.6103)):
        p = oc.lessard_problem(d)
        gaps = _gaps(p, "standard")
        np.testing.assert_allclose(gaps[400], at_400, rtol=1e-5)
        np.testing.assert_allclose(sorted(gaps[-3:]), cycle_values, rtol=1e-5)
        np.testing.assert_allclose(gaps[103:], gaps[100:-3], rtol=1e-8)  # from step 100 on, exactly periodic
        np.testing.assert_allclose(gaps, np.asarray(oc.heavy_ball(p, 1 / 9, 4 / 9, 400)), rtol=1e-9)


def test_optimistic_meta_learning_converges_on_lessard(x64):
    p = oc.lessard_problem(100)
    look = _gaps(p, "optimistic")  # Nesterov (η = 1/25, β = 2/3) through the look-ahead mode
    assert look[10] < 1e-100 and look[400] == 0.0
    np.testing.assert_allclose(look[:4], np.asarray(oc.nesterov(p, 1 / 25, 2 / 3, 3)), rtol=1e-12)
    bmg = _gaps(p, "bmg")  # the BMG target (L = 2, α = η): linear, ~0.74 per step in distance
    assert bmg[400] < 1e-80 and 0.70 < oc.contraction(bmg) < 0.78
    ratios = bmg[201:400] / bmg[200:399]
    assert np.all(ratios < 0.65) and np.all(ratios > 0.45)  # a steady linear rate, no cycle


def test_quadratic_control_both_converge(x64):
    q = oc.quadratic_control()
    assert _gaps(q, "standard")[100] < 1e-25 and _gaps(q, "optimistic")[100] < 1e-15


def _setup(*argv: str) -> OnlineSetup:
    return command.online_setup(command.parser().parse_args(["online", "--workdir", "unused", *argv]))


def test_online_flags_become_typed_values():
    s = _setup()
    assert s == PRESETS["sgd"] and (s.rule, s.mode, s.target_steps, s.target_lr) == ("sgd", "optimistic", 5, 0.3)
    assert s.method().gradients_per_step == 6
    a = _setup("--preset", "adam")
    assert (a.rule, a.lr0, a.target_lr, a.meta_lr) == ("adam", 3e-3, 10.0, 1e-3)
    assert _setup("--preset", "adam", "--meta_lr", "3e-3").meta_lr == 3e-3  # a flag replaces the preset's value
    standard = _setup("--mode", "standard").method()
    assert standard.target_steps == 1 and standard.target_lr is None and standard.gradients_per_step == 1


@pytest.mark.parametrize("argv, match", [
    (("--mode", "bogus"), r"mode='bogus' is not one of \['standard', 'optimistic'\]"),
    (("--rule", "lion"), r"rule='lion'"),
    (("--target_steps", "0", "--meta_lr", "-1"), r"target_steps must be an integer >= 1.*|meta_lr must be a positive"),
    (("--steps", "250"), "steps=250 must be a multiple of log_every=100"),
    (("--meta_optimizer", "rmsprop"), "meta_optimizer"),
])
def test_bad_online_values_fail_clearly(argv, match, capsys):
    with pytest.raises(ValueError, match=match):
        _setup(*argv)
    assert command.main(["online", "--workdir", "unused", *argv]) == 2
    assert capsys.readouterr().err.startswith("error: online run: ")


def test_unknown_online_flags_fail_clearly(capsys):
    with pytest.raises(SystemExit):
        command.main(["online", "--workdir", "unused", "--meta_lrr", "1e-3"])
    assert "unrecognized arguments: --meta_lrr" in capsys.readouterr().err


def test_tiny_online_run_writes_tensorboard_events(tmp_path, fashion_mnist_dir, capsys):
    argv = ["online", "--workdir", str(tmp_path), "--steps", "20", "--log_every", "10", "--hidden", "8",
            "--target_steps", "2"]
    assert command.main(argv) == 0
    assert "steps: 20" in capsys.readouterr().out
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0}).Reload()
    assert set(om.METRICS) <= set(acc.Tags()["scalars"])
    for key in om.METRICS:
        assert [e.step for e in acc.Scalars(key)] == [10, 20]
    assert np.isfinite(acc.Scalars("learner/train_loss")[-1].value)
    rates = [acc.Scalars(f"rates/{q}")[-1].value for q in ("p10", "p50", "p90")]
    assert rates[0] <= rates[1] <= rates[2] and rates[0] != rates[2]  # the rates moved apart from lr0
    assert acc.Scalars("meta/matching_loss")[-1].value > 0 and acc.Scalars("meta/skipped")[-1].value == 0
