"""Optimistic meta-gradients (Flennerhag et al., NeurIPS 2023) reproduced at CPU scale: the one command.

    python -m experiments.optimism.run reproduce [--quick] [--out DIR] [--skip-mlp]
    python -m experiments.optimism.run online --workdir DIR [--preset sgd|adam] [--mode standard] [...]

`reproduce` runs every experiment below and writes the tables and plots of
experiments/optimism/RESULTS.md; `online` is one run with TensorBoard events
(`experiments.optimism.online_run`; its flags are `OnlineSetup`'s fields).

What `reproduce` runs:

- Convex, float64 (`experiments.optimism.convex`), identical in both modes:
  (a1) online meta-learning of the update itself, `lopt.online_meta(lopt.momentum(), decayed SGD)`:
  standard mode (heavy ball, η = 4/(√L+√m)², β = ((√κ−1)/(√κ+1))²) against the optimistic
  look-ahead mode (Nesterov, η = 1/L, β = (√κ−1)/(√κ+1)) and the BMG target (L = 2, α = η), 400
  steps, on the Lessard–Recht–Packard function (κ = 25, d = 100 and 1-D) and two controls (a
  quadratic with spectrum linspace(1, 25, 50); ridge logistic regression with κ = 25), each run
  checked against the closed-form heavy ball / Nesterov recursions;
  the fairness ablation: (η, β) tuned per method for the best worst-case contraction over
  {quadratic, Lessard} on a 37 × 39 grid (η·L ≤ 2) and on a wider one (η·L ≤ 3, 57 × 39),
  which holds Polyak's heavy-ball step 4/(√L+√m)² = 2.78/L;
  (a2) iterate averaging with an AdaGrad-norm FTRL meta-learner, standard against optimistic, to
  T = 3000 on a quadratic, logistic regression and Lessard (log–log, reference slopes −1 and −2).
- (b) Fashion-MNIST 8×8 MLP 64-128-10 (`experiments.optimism.mlp`), 3000 steps of batch 128:
  element-wise learning rates meta-learned online (Adam meta-optimizer, meta-lr swept), standard
  against optimistic (BMG target, L ∈ {1, 2, 5, 10}, α = lr0), against SGD on a learning-rate grid,
  SGD with momentum 0.9 on a grid, and compute-matched SGD (the best SGD run for (L + 1)× the steps:
  optimistic-L evaluates 1 + L gradients per step, standard 1); then the same on top of Adam.
  Seeds are vmapped; every row reports train CE (mean minibatch loss over the last 200 steps), test
  CE and accuracy (10k test images), mean ± std over seeds, and the learning rates' percentiles.
  Quick mode: 3 seeds, fewer rows (L = 1 and 5; meta-lr 3e-3 and 1e-2). Full mode: 5 seeds.

Outputs in --out (default runs/optimism[_quick]): results.json, results.md, convex_a1.png,
fairness.png, adagrad_a2.png, fmnist_sgd.png, fmnist_adam.png. The last printed line names the
final losses of standard and optimistic meta-learning on Lessard (d = 100) and Fashion-MNIST.

Cost on 2 shared CPU cores (measured twice each): --quick 2.0–2.5 min, full 10–12 min; one
`online` run 11 s.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.argv[1:2] == ["reproduce"]:
    from lopt import xla_flags  # single-threaded Eigen, as the evaluation commands
    xla_flags.add_xla_flags(xla_flags.SINGLE_THREADED_EIGEN)

import argparse
import dataclasses
import json
import pathlib
import shlex
import time
from typing import Sequence

import jax
import numpy as np

from experiments.optimism import convex as oc
from experiments.optimism import mlp as om
from experiments.optimism import online_run
from experiments.optimism import report

PROFILES = {
    "quick": dict(seeds=3, steps=3000, log_every=100, sgd_lrs=[0.1, 0.3, 1.0], momentum_lrs=[0.03],
                  adam_lrs=[3e-3], meta_lrs=[3e-3, 1e-2], targets=[(1, 0.3), (5, 0.3)],
                  adam_meta_lrs=[1e-3, 3e-3], adam_targets=[(5, 10.0)], matched_Ls=[5]),
    "full": dict(seeds=5, steps=3000, log_every=100, sgd_lrs=[0.03, 0.1, 0.3, 1.0], momentum_lrs=[0.01, 0.03, 0.1],
                 adam_lrs=[1e-3, 3e-3, 1e-2], meta_lrs=[1e-3, 3e-3, 1e-2, 3e-2],
                 targets=[(1, 0.3), (2, 0.3), (5, 0.3), (10, 0.3), (5, 0.15), (5, 0.6)],
                 adam_meta_lrs=[3e-4, 1e-3, 3e-3, 1e-2], adam_targets=[(1, 10.0), (2, 10.0), (5, 10.0), (5, 1.0), (5, 3e-3)],
                 matched_Ls=[1, 2, 5, 10]),
}
# (L, α) of the optimistic rows. The meta-learners start at lr0: SGD's best rate on its grid, and tuned
# Adam's (both checked by the baselines' grids). On top of Adam the target's plain gradient step must
# be comparable to L − 1 Adam steps, so α = 10 (α ≤ 3 let some rates blow up in a 3-seed sweep).
SGD_LR0, ADAM_LR0 = 0.3, 3e-3


def run_convex() -> dict:
    with jax.enable_x64(True):
        t0 = time.time()
        out = {"a1": oc.lessard_experiment(400), "fairness": oc.fairness_grid(400),
               "fairness_wide": oc.fairness_grid(400, np.linspace(0.2, 3.0, 57)), "a2": oc.adagrad_experiment(3000)}
        out["wall_s"] = round(time.time() - t0, 1)
    return out


def _rows(curves: dict, log_every: int, label: str, at: int | None = None) -> list[dict]:
    rows = om.summarize(curves, log_every, at)
    for r in rows:
        r["label"] = label
    return rows


def _mean_curves(curves: dict) -> dict:
    """Mean over seeds of every metric's curve: {metric: [values][points]}."""
    return {k: np.nanmean(v, axis=1).tolist() for k, v in curves.items() if k != "values"}


def run_family(p: dict, rule: str, data: dict) -> dict:
    """Baselines and meta-learners on top of SGD (rule "sgd") or Adam (rule "adam")."""
    T, le, S = p["steps"], p["log_every"], p["seeds"]
    sgd_like = rule == "sgd"
    lr0 = SGD_LR0 if sgd_like else ADAM_LR0
    base_kind, base_lrs = ("sgd", p["sgd_lrs"]) if sgd_like else ("adam", p["adam_lrs"])
    targets = p["targets"] if sgd_like else p["adam_targets"]
    out = {"rule": rule, "lr0": lr0, "rows": [], "curves": {}, "timing": {}}

    def go(group, label, method, at=(None,), **kw):
        t0 = time.time()
        c = om.train(method, S, kw.pop("steps", T), le, data=data, **kw)
        out["timing"][group] = round(time.time() - t0, 1)
        out["curves"][group] = {"label": label, "values": c["values"], **_mean_curves(c)}
        for a, lab in zip(at, [label] if at == (None,) else label):
            out["rows"] += [dict(r, group=group) for r in _rows(c, le, lab, a)]

    go(base_kind, base_kind, om.Method(base_kind, base_kind, lr0), lrs=base_lrs)
    best = min(out["rows"], key=lambda r: r["train_ce"])
    if sgd_like:
        go("momentum", "momentum 0.9", om.Method("momentum", "momentum", 0.03), lrs=p["momentum_lrs"])
    matched = sorted({L for L, _ in targets} & set(p["matched_Ls"]))
    if matched:
        go("matched", [f"{base_kind} {L + 1}× steps (= optimistic L={L} gradients)" for L in matched],
           om.Method("matched", base_kind, best["value"]), at=[(L + 1) * T for L in matched],
           lrs=[best["value"]], steps=(max(matched) + 1) * T)
    meta_lrs = p["meta_lrs"] if sgd_like else p["adam_meta_lrs"]
    go("standard", "standard MG", om.Method("standard", "meta", lr0, rule=rule), meta_lrs=meta_lrs)
    for L, alpha in targets:
        m = om.Method(f"optimistic_L{L}", "meta", lr0, rule=rule, mode="optimistic", target_steps=L, target_lr=alpha)
        go(f"optimistic_L{L}_a{alpha:g}", f"optimistic L={L} (α={alpha:g})", m, meta_lrs=meta_lrs)
    out["best_baseline"] = best
    return out


def run_mlp(p: dict) -> dict:
    data = om.device_data()
    t0 = time.time()
    out = {"sgd": run_family(p, "sgd", data), "adam": run_family(p, "adam", data)}
    out["wall_s"] = round(time.time() - t0, 1)
    return out


def final_line(results: dict) -> str:
    a1 = results["convex"]["a1"]["lessard_d100"]
    s, o = a1["standard"], a1["optimistic"]

    def best(rows, prefix):
        r = min((r for r in rows if r["label"].startswith(prefix)), key=lambda r: r["train_ce"])
        return f"{r['train_ce']:.4f} (meta-lr {r['value']:g})"

    rows = results["mlp"]["sgd"]["rows"]
    L = max(L for L, a in results["profile"]["targets"] if a == SGD_LR0)
    return (f"final loss: lessard standard {s['gaps'][-1]:.3g} (period-3 cycle {s['cycle']['min']:.3g}–"
            f"{s['cycle']['max']:.3g}) optimistic {o['gaps'][-1]:.2g}; fmnist train CE standard "
            f"{best(rows, 'standard MG')} optimistic L={L} {best(rows, f'optimistic L={L} (α={SGD_LR0:g})')}")


def reproduce(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Every experiment of the module docstring; writes results.json, results.md and the plots."""
    name = "quick" if args.quick else "full"
    out = pathlib.Path(args.out or f"runs/optimism{'_quick' if args.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    command = " ".join(["python -m experiments.optimism.run", shlex.join(argv)]).strip()
    results = {"command": command, "profile_name": name, "profile": PROFILES[name], "convex": run_convex()}
    print(report.convex_text(results["convex"]), flush=True)
    if not args.skip_mlp:
        results["mlp"] = run_mlp(PROFILES[name])
        print(report.mlp_text(results["mlp"]), flush=True)
    results["wall_s"] = round(time.time() - t0, 1)
    report.plots(results, out)
    (out / "results.json").write_text(json.dumps(results, allow_nan=True))
    (out / "results.md").write_text(report.markdown(results))
    print(f"wrote {out}/results.md, results.json and plots; wall time {results['wall_s'] / 60:.1f} min")
    if not args.skip_mlp:
        print(final_line(results))
    return 0


def online_setup(args: argparse.Namespace) -> online_run.OnlineSetup:
    """The run the `online` flags describe: the preset with every flag given replacing its field."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(online_run.OnlineSetup)
             if getattr(args, f.name) is not None}
    return dataclasses.replace(online_run.PRESETS[args.preset], **given)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.optimism.run", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="every experiment: tables, plots, results.json")
    rep.add_argument("--quick", action="store_true", help="3 seeds, fewer rows (under 10 minutes on 2 cores)")
    rep.add_argument("--out", default=None, help="output directory (default runs/optimism[_quick])")
    rep.add_argument("--skip-mlp", action="store_true", help="the convex experiments only")
    one = sub.add_parser("online", help="one online meta-learning run on Fashion-MNIST, TensorBoard events")
    one.add_argument("--workdir", required=True, help="directory for the TensorBoard events")
    one.add_argument("--preset", choices=sorted(online_run.PRESETS), default="sgd",
                     help="the documented run to start from (default sgd); flags below replace its settings")
    for f in dataclasses.fields(online_run.OnlineSetup):
        kind = type(f.default)
        one.add_argument(f"--{f.name}", type=kind, default=None,
                         help=f"{kind.__name__}; preset sgd: {getattr(online_run.PRESETS['sgd'], f.name)!r}")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.command == "reproduce":
        return reproduce(args, argv)
    try:
        setup = online_setup(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = online_run.run(setup, args.workdir)
    for k, v in summary.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
