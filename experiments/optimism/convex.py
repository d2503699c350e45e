"""The convex half of the optimistic meta-gradients reproduction; float64 throughout.

Run every function here under `jax.enable_x64(True)` (`experiments.optimism.run` does).

- Problems: the Lessard–Recht–Packard function (m = 1, L = 25; `d` separable copies), a quadratic
  control with spectrum linspace(1, 25, 50), logistic regression with planted labels (with a ridge
  term making κ = 25 for the (a1) control, without one for (a2)), and (a2)'s quadratic.
- (a1) `meta_gaps`: online meta-learning of the update itself through the library
  (`lopt.online.momentum()` with a decayed-SGD meta-learner: standard mode is heavy ball,
  lookahead mode is Nesterov), cross-checked against the closed forms `heavy_ball`/`nesterov`.
- `fairness_grid`: (η, β) tuned per method for the best worst-case contraction over problems.
- (a2) `averaged_adagrad`: iterate averaging (ρ_t = t) with an AdaGrad-norm FTRL meta-learner,
  standard or optimistic (hint ρ_{t+1}∇f at the average formed with the not-yet-updated y).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt

LESSARD_M, LESSARD_L = 1.0, 25.0


def lessard_p(x: jax.Array) -> jax.Array:
    """The 1-D piece: 12.5x² (x < 1), x²/2 + 24x − 12 on [1, 2), 12.5x² − 24x + 36 (x ≥ 2)."""
    return jnp.where(x < 1, 12.5 * x * x, jnp.where(x < 2, 0.5 * x * x + 24 * x - 12, 12.5 * x * x - 24 * x + 36))


def lessard(x: jax.Array) -> jax.Array:
    """F(x) = Σ_i p(x_i): smooth (L = 25), strongly convex (m = 1), minimum 0 at 0."""
    return jnp.sum(lessard_p(x))


class Problem(NamedTuple):
    name: str
    f: Callable[[jax.Array], jax.Array]
    x0: np.ndarray
    f_star: float
    smooth: float  # L
    strong: float  # m (0: not strongly convex)
    x_star: np.ndarray | None = None


def lessard_problem(d: int = 100, seed: int = 0) -> Problem:
    """x0 ~ U[−4, 4]^d from numpy's default_rng(seed); d = 1 starts at 3.3."""
    x0 = np.array([3.3]) if d == 1 else np.random.default_rng(seed).uniform(-4, 4, d)
    return Problem(f"lessard_d{d}", lessard, x0, 0.0, LESSARD_L, LESSARD_M, np.zeros(d))


def quadratic_control(d: int = 50) -> Problem:
    """½ Σ λ_i x_i², λ = linspace(1, 25, d), x0 = 3·1."""
    lam = np.linspace(1.0, 25.0, d)
    return Problem("quadratic", lambda x: 0.5 * jnp.sum(lam * x * x), np.full(d, 3.0), 0.0, 25.0, 1.0, np.zeros(d))


def quadratic_a2(d: int = 500, seed: int = 0) -> Problem:
    """(a2)'s quadratic: ½xᵀAx − cᵀx, A = diag(logspace(−4, 0, d)), x1 = 0, with c = Ax*, x* ~ N(0, I).

    c = Ax* keeps the minimizer O(1); c ~ N(0, I) would put x* = A⁻¹c at norm ~1e5 and f − f* at
    ~1e3 after 300 steps (experiments/optimism/RESULTS.md)."""
    lam = np.logspace(-4, 0, d)
    x_star = np.random.default_rng(seed).standard_normal(d)
    c = lam * x_star
    f = lambda x: 0.5 * jnp.sum(lam * x * x) - jnp.sum(c * x)
    return Problem("quadratic", f, np.zeros(d), float(-0.5 * np.sum(c * x_star)), 1.0, 1e-4, x_star)


def logistic_data(n: int = 2000, d: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features N(0, 1)·logspace(−2, 0, d); labels ~ Bernoulli(σ(X w*)), w* ~ N(0, I) (not separable)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.logspace(-2, 0, d)
    w = rng.standard_normal(d)
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-X @ w))).astype(np.float64)
    return X, y


def logistic_problem(ridge: bool, n: int = 2000, d: int = 100, seed: int = 0) -> Problem:
    """Mean logistic loss (+ λ/2‖x‖² with λ = L_logistic/24, so that L/m = 25, if `ridge`);
    x0 = 0; f* by Newton's method to machine precision (`logistic_newton`)."""
    X, y = logistic_data(n, d, seed)
    smooth = float(np.linalg.eigvalsh(X.T @ X / n).max() / 4)
    lam = smooth / 24 if ridge else 0.0
    Xj, yj = jnp.asarray(X), jnp.asarray(y)

    def f(x):
        z = Xj @ x
        return jnp.mean(jax.nn.softplus(z) - yj * z) + 0.5 * lam * jnp.sum(x * x)

    x_star = logistic_newton(f, np.zeros(d))
    name = "logistic_ridge" if ridge else "logistic"
    return Problem(name, f, np.zeros(d), float(f(x_star)), smooth + lam, lam, np.asarray(x_star))


def logistic_newton(f: Callable, x0: np.ndarray, iters: int = 50) -> jax.Array:
    """Damped Newton (backtracking on f); the d = 100 Hessian is solved directly."""
    g, h = jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
    x = jnp.asarray(x0)
    for _ in range(iters):
        step = jnp.linalg.solve(h(x), g(x))
        t = 1.0
        while f(x - t * step) > f(x) and t > 1e-8:
            t /= 2
        x = x - t * step
        if float(jnp.max(jnp.abs(g(x)))) < 1e-15:
            break
    return x


def quad_optimal(smooth: float, strong: float) -> dict[str, tuple[float, float]]:
    """(η, β) optimal on quadratics with spectrum in [m, L]: heavy ball's Polyak values
    (4/(√L+√m)², ((√κ−1)/(√κ+1))²) and Nesterov's (1/L, (√κ−1)/(√κ+1))."""
    sk = np.sqrt(smooth / strong)
    return {"standard": (4 / (np.sqrt(smooth) + np.sqrt(strong)) ** 2, ((sk - 1) / (sk + 1)) ** 2),
            "optimistic": (1 / smooth, (sk - 1) / (sk + 1))}


# -------------------------------------------------------------------- (a1): the library's method
def decayed_sgd(eta, beta) -> optax.GradientTransformation:
    """GD with decay: w ← βw − ηG (GD on the meta-loss + (1−β)/(2η)‖w‖²)."""
    return optax.chain(optax.add_decayed_weights((1 - beta) / eta), optax.sgd(eta))


MODES = {"standard": "standard", "optimistic": "lookahead"}  # the rows' names → online_meta modes


def meta_optimizer(method: str, eta, beta, target_steps: int = 2) -> optax.GradientTransformationExtraArgs:
    """`online_meta(momentum(), ·)` for a row: "standard" (decayed SGD: heavy ball), "optimistic"
    (lookahead mode: Nesterov) or "bmg" (the BMG target with L = `target_steps`, α = η, and meta
    step 1 with decay 2 − β, so that w_{t+1} = βw_t − η∇f(x_{t+1} + w_t) for L = 2: the look-ahead
    point is the rule's own prediction x_{t+1} + w_t rather than Nesterov's x_{t+1} + βw_t)."""
    if method == "bmg":
        return lopt.online_meta(lopt.momentum(), optax.chain(optax.add_decayed_weights(2.0 - beta), optax.sgd(1.0)),
                                mode="optimistic", target_steps=target_steps, target_lr=eta)
    return lopt.online_meta(lopt.momentum(), decayed_sgd(eta, beta), mode=MODES[method])


def meta_gaps(problem: Problem, method: str, eta, beta, steps: int) -> jax.Array:
    """F(x_t) − F* for t = 0..steps under `meta_optimizer(method, η, β)` (η, β may be traced).

    The library's first call returns a zero step (w_0 = 0), so its x_{t+1} is the classical
    method's z_t (`heavy_ball`, `nesterov`); the gaps returned are those of z_t = x_{t+1}."""
    opt = meta_optimizer(method, eta, beta)
    f, grad = problem.f, jax.grad(problem.f)
    x0 = jnp.asarray(problem.x0)

    def step(carry, _):
        x, state = carry
        updates, state = opt.update(grad(x), state, x, obj_fn=f)
        x = optax.apply_updates(x, updates)
        return (x, state), f(x) - problem.f_star

    _, gaps = jax.lax.scan(step, (x0, opt.init(x0)), None, length=steps + 1)
    return gaps


def heavy_ball(problem: Problem, eta, beta, steps: int, lookahead: bool = False) -> jax.Array:
    """Closed form: x_{t+1} = y − η∇f(·) with y = x_t + β(x_t − x_{t−1}); the gradient at x_t
    (heavy ball) or at y (`lookahead`: Nesterov). Gaps for t = 0..steps."""
    f, grad = problem.f, jax.grad(problem.f)
    x0 = jnp.asarray(problem.x0)

    def step(carry, _):
        x, prev = carry
        y = x + beta * (x - prev)
        x_new = y - eta * grad(y if lookahead else x)
        return (x_new, x), f(x_new) - problem.f_star

    _, gaps = jax.lax.scan(step, (x0, x0), None, length=steps)
    return jnp.concatenate([(f(x0) - problem.f_star)[None], gaps])


nesterov = functools.partial(heavy_ball, lookahead=True)


def contraction(gaps: np.ndarray, floor: float = 1e-20, abs_floor: float = 0.0) -> float:
    """Per-step contraction in distance units, (gap_k / gap_0)^(1/(2k)), with k the last step
    before the gap first falls to max(floor·gap_0, abs_floor) (else the last step): the rate of
    the run before it reaches the floor of float64 rounding; inf if anything is non-finite."""
    gaps = np.asarray(gaps, np.float64)
    if not np.all(np.isfinite(gaps)):
        return float("inf")
    hit = np.flatnonzero(gaps[1:] <= max(floor * gaps[0], abs_floor))
    k = int(hit[0]) if len(hit) else len(gaps) - 1
    if k == 0:
        return 0.0
    return float(max(gaps[k], 1e-300) / gaps[0]) ** (1 / (2 * k))


def cycle(gaps: np.ndarray, period: int = 3) -> dict:
    """Min, max and period-3 check over the last 30 steps (Lessard's limit cycle)."""
    tail = np.asarray(gaps[-30:])
    return {"min": float(tail.min()), "max": float(tail.max()),
            "periodic": bool(np.allclose(tail[period:], tail[:-period], rtol=1e-8, atol=0))}


def lessard_experiment(steps: int = 400) -> dict:
    """(a1): standard vs optimistic at the quadratic-optimal (η, β) on Lessard (d = 100, 1-D) and
    the controls, with the closed forms' largest relative disagreement as a check of the library."""
    problems = [lessard_problem(100), lessard_problem(1), quadratic_control(), logistic_problem(ridge=True)]
    out = {}
    for p in problems:
        hp = quad_optimal(p.smooth, p.strong)
        abs_floor = 1e-13 * max(1.0, abs(p.f_star))  # float64 rounding of f near f*
        row = {}
        for method, closed in (("standard", heavy_ball), ("optimistic", nesterov), ("bmg", None)):
            eta, beta = hp["optimistic" if method == "bmg" else method]
            gaps = np.asarray(jax.jit(functools.partial(meta_gaps, p, method, eta, beta, steps))())
            row[method] = {"eta": eta, "beta": beta, "gaps": gaps.tolist(),
                           "at": {t: float(gaps[t]) for t in (10, 50, 100, 200, steps) if t <= steps},
                           "contraction": contraction(gaps, abs_floor=abs_floor), "cycle": cycle(gaps)}
            if closed is not None:
                ref = np.asarray(jax.jit(functools.partial(closed, p, eta, beta, steps))())
                above = ref > max(1e-12 * ref[0], 1e3 * abs_floor)  # relative error means something above rounding
                row[method]["closed_form_max_rel_diff"] = float(np.max(np.abs(gaps - ref)[above] / ref[above]))
        out[p.name] = row
    return out


# -------------------------------------------------------------------- fairness ablation
CONVERGED = 0.97  # a contraction below this gains 10+ orders of magnitude of F − F* in 400 steps


def fairness_grid(steps: int = 400, etas_over_L: np.ndarray | None = None,
                  betas: np.ndarray | None = None) -> dict:
    """Tunes (η, β) per method over a grid for the best worst-case contraction over {quadratic
    control, Lessard d = 100}; default grid η·L ∈ linspace(0.2, 2, 37), β ∈ linspace(0, 0.95, 39)."""
    etas_over_L = np.linspace(0.2, 2.0, 37) if etas_over_L is None else np.asarray(etas_over_L)
    betas = np.linspace(0.0, 0.95, 39) if betas is None else np.asarray(betas)
    E, B = np.meshgrid(etas_over_L / LESSARD_L, betas, indexing="ij")
    problems = [quadratic_control(), lessard_problem(100)]
    out = {"etas_over_L": etas_over_L.tolist(), "betas": betas.tolist(), "problems": [p.name for p in problems]}
    for method in ("standard", "optimistic"):
        rates = []
        for p in problems:
            fn = jax.jit(jax.vmap(lambda e, b, p=p, m=method: meta_gaps(p, m, e, b, steps)))
            gaps = np.asarray(fn(jnp.asarray(E.ravel()), jnp.asarray(B.ravel())))
            rates.append(np.array([contraction(g) for g in gaps]).reshape(E.shape))
        worst = np.maximum(*rates)
        i, j = np.unravel_index(np.argmin(worst), worst.shape)
        at_opt = {p.name: float(r[i, j]) for p, r in zip(problems, rates)}
        quad, less = rates
        qi, qj = np.unravel_index(np.argmin(quad), quad.shape)
        ok_quad = quad < CONVERGED
        out[method] = {"best_worst_case": float(worst[i, j]), "eta_times_L": float(etas_over_L[i]),
                       "beta": float(betas[j]), "per_problem_at_best": at_opt,
                       "best_per_problem": {p.name: float(r.min()) for p, r in zip(problems, rates)},
                       "tuned_on_quadratic": {"eta_times_L": float(etas_over_L[qi]), "beta": float(betas[qj]),
                                              "quadratic": float(quad[qi, qj]), "lessard_d100": float(less[qi, qj])},
                       "grid_points": int(quad.size), "converge_quadratic": int(ok_quad.sum()),
                       "converge_both": int((worst < CONVERGED).sum()),
                       "worst_case_grid": worst.tolist()}
    return out


# -------------------------------------------------------------------- (a2): averaged AdaGrad
def averaged_adagrad(problem: Problem, optimistic: bool, steps: int, D: float | None = None) -> jax.Array:
    """Anytime online-to-batch (ρ_t = t, x_t = (ρ_{1:t−1}x_{t−1} + ρ_t y_t)/ρ_{1:t}) over an
    AdaGrad-norm FTRL learner y_{t+1} = x_1 − η_t(Σ_{s≤t} ρ_s g_s + m_{t+1}),
    η_t = D / √(Σ_{s≤t}‖ρ_s g_s − m_s‖²), g_t = ∇f(x_t), D = ‖x* − x_1‖ unless given.
    Optimistic: m_{t+1} = ρ_{t+1}∇f(x̃_{t+1}) with x̃_{t+1} the average formed with y_t (2 gradients
    per step); standard: m = 0. Returns f(x_t) − f* for t = 1..steps."""
    f, grad = problem.f, jax.grad(problem.f)
    x1 = jnp.asarray(problem.x0)
    D = float(np.linalg.norm(problem.x_star - problem.x0)) if D is None else D

    def step(carry, t):
        x_prev, y, S, Q, m, rsum = carry
        rho = t
        rsum_new = rsum + rho
        x = (rsum * x_prev + rho * y) / rsum_new
        g = grad(x)
        S = S + rho * g
        Q = Q + jnp.sum((rho * g - m) ** 2)
        eta = D / jnp.sqrt(Q)
        if optimistic:
            x_tilde = (rsum_new * x + (t + 1) * y) / (rsum_new + t + 1)
            m_next = (t + 1) * grad(x_tilde)
        else:
            m_next = jnp.zeros_like(x)
        return (x, x1 - eta * (S + m_next), S, Q, m_next, rsum_new), f(x) - problem.f_star

    init = (x1, x1, jnp.zeros_like(x1), jnp.zeros(()), jnp.zeros_like(x1), jnp.zeros(()))
    _, gaps = jax.lax.scan(step, init, jnp.arange(1.0, steps + 1))
    return gaps


def loglog_slope(gaps: np.ndarray, lo: int, hi: int) -> float:
    """Least-squares slope of log gap against log t over t ∈ [lo, hi] (t counted from 1)."""
    t = np.arange(lo, hi + 1)
    g = np.maximum(np.asarray(gaps)[lo - 1:hi], 1e-300)
    return float(np.polyfit(np.log(t), np.log(g), 1)[0])


def adagrad_experiment(steps: int = 3000) -> dict:
    """(a2) on the quadratic, logistic regression and Lessard (d = 100)."""
    problems = [quadratic_a2(), logistic_problem(ridge=False), lessard_problem(100)]
    out = {}
    for p in problems:
        row = {}
        for method in ("standard", "optimistic"):
            gaps = np.asarray(jax.jit(functools.partial(averaged_adagrad, p, method == "optimistic", steps))())
            row[method] = {"gaps": gaps.tolist(),
                           "at": {t: float(gaps[t - 1]) for t in (300, 3000, steps) if t <= steps},
                           "slope_300_end": loglog_slope(gaps, min(300, steps // 10), steps)}
        out[p.name] = row
    return out
