"""Tables and plots of `experiments.optimism.run reproduce`'s results (text for the terminal, results.md, PNGs)."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

A1_NAMES = {"standard": "standard (heavy ball)", "optimistic": "optimistic look-ahead (Nesterov)",
            "bmg": "optimistic BMG target, L=2"}
PROBLEM_NAMES = {"lessard_d100": "Lessard, d = 100", "lessard_d1": "Lessard, 1-D from 3.3",
                 "quadratic": "quadratic", "logistic_ridge": "logistic + ridge (κ = 25)", "logistic": "logistic"}


def _g(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def convex_tables(c: dict) -> list[str]:
    steps = (10, 50, 100, 200, 400)
    lines = ["### (a1) Standard vs optimistic online meta-learning of the update (`lopt.online_meta(momentum())`)", "",
             "F(x_t) − F* at step t; contraction per step in distance units until the float64 floor; the limit "
             "cycle's range over the last 30 steps; largest relative difference from the closed-form recursion.", "",
             "| problem | method | η | β | " + " | ".join(f"t={t}" for t in steps)
             + " | contraction | last-30 range | vs closed form |", "|---" * (7 + len(steps)) + "|"]
    for prob, row in c["a1"].items():
        for m, r in row.items():
            at = {int(k): v for k, v in r["at"].items()}
            cyc = r["cycle"]
            rng = f"{_g(cyc['min'])}–{_g(cyc['max'])}" + (" (period 3)" if cyc["periodic"] and cyc["max"] > 1e-6 else "")
            diff = r.get("closed_form_max_rel_diff")
            lines.append(f"| {PROBLEM_NAMES[prob]} | {A1_NAMES[m]} | {r['eta']:.4g} | {r['beta']:.4g} | "
                         + " | ".join(_g(at[t]) for t in steps)
                         + f" | {r['contraction']:.3f} | {rng} | {'–' if diff is None else f'{diff:.1e}'} |")
    for key, title in (("fairness", "grid η·L ≤ 2"), ("fairness_wide", "wider grid, holding Polyak's step")):
        f = c[key]
        lines += ["", f"### Fairness ablation ({title}): (η, β) tuned per method for the best worst-case contraction", "",
                  f"Grid η·L ∈ {len(f['etas_over_L'])} points {f['etas_over_L'][0]:g}…{f['etas_over_L'][-1]:g}, "
                  f"β ∈ {len(f['betas'])} points {f['betas'][0]:g}…{f['betas'][-1]:g}; worst case over "
                  f"{', '.join(f['problems'])}.", "",
                  "| method | best worst-case contraction | η·L | β | at that (η, β): quadratic | Lessard | "
                  "tuned on the quadratic alone: (η·L, β) → quadratic / Lessard | grid points converging on the "
                  "quadratic / on both |", "|---|---|---|---|---|---|---|---|"]
        for m in ("standard", "optimistic"):
            r = f[m]
            pp, tq = r["per_problem_at_best"], r["tuned_on_quadratic"]
            lines.append(f"| {A1_NAMES[m]} | {r['best_worst_case']:.3f} | {r['eta_times_L']:.3g} | {r['beta']:.3g} | "
                         f"{pp['quadratic']:.3f} | {pp['lessard_d100']:.3f} | ({tq['eta_times_L']:.3g}, "
                         f"{tq['beta']:.3g}) → {tq['quadratic']:.3f} / {tq['lessard_d100']:.3f} | "
                         f"{r['converge_quadratic']} / {r['converge_both']} of {r['grid_points']} |")
    lines += ["", "Converging: contraction below 0.97 (10 orders of magnitude in 400 steps)."]
    lines += ["", "### (a2) Averaged iterates (ρ_t = t) with an AdaGrad-norm FTRL meta-learner", "",
              "| problem | standard @300 | standard @3000 | optimistic @300 | optimistic @3000 | log–log slope "
              "standard / optimistic (t ∈ [300, 3000]) |", "|---|---|---|---|---|---|"]
    for prob, row in c["a2"].items():
        s, o = row["standard"], row["optimistic"]
        at = lambda r, t: _g(r["at"][str(t)] if str(t) in r["at"] else r["at"][t])
        lines.append(f"| {PROBLEM_NAMES[prob]} | {at(s, 300)} | {at(s, 3000)} | {at(o, 300)} | {at(o, 3000)} | "
                     f"{s['slope_300_end']:.2f} / {o['slope_300_end']:.2f} |")
    return lines


def convex_text(c: dict) -> str:
    return "\n".join(convex_tables(c)) + f"\n\n(convex experiments: {c['wall_s']} s)\n"


def mlp_tables(m: dict) -> list[str]:
    lines = []
    for fam in ("sgd", "adam"):
        f = m[fam]
        lines += [f"### Fashion-MNIST MLP, element-wise rates on top of {fam.upper()} (lr0 = {f['lr0']:g})", "",
                  "Train CE: mean minibatch loss over the last 200 steps; test CE and accuracy on the 10k test "
                  "images; mean ± std over seeds; rates: median over seeds of the rates' percentiles at the end "
                  "(baselines: their constant rate).", "",
                  "| method | lr / meta-lr | train CE | test CE | test acc | rate p10 / p50 / p90 | skipped |",
                  "|---|---|---|---|---|---|---|"]
        for r in f["rows"]:
            if not r["finite"]:
                cells = "diverged | – | – "
            else:
                cells = (f"{r['train_ce']:.4f} ± {r['train_ce_std']:.4f} | {r['test_ce']:.4f} ± {r['test_ce_std']:.4f}"
                         f" | {r['test_acc']:.4f} ")
            rates = " / ".join(f"{r[f'rate_{q}']:.3g}" for q in ("p10", "p50", "p90"))
            lines.append(f"| {r['label']} | {r['value']:g} | {cells}| {rates} | {r['skipped']:g} |")
        lines += [""] + paired_table(f)
        lines += ["", "Wall time per row group (s): " + ", ".join(f"{k} {v}" for k, v in f["timing"].items()), ""]
    return lines


def paired_table(f: dict) -> list[str]:
    """Optimistic rows minus the standard meta-gradient at the same meta-lr, and each one's best
    meta-lr against the other's, paired over seeds (every method sees the same inits and batches)."""
    rows = [r for r in f["rows"] if "train_ce_seeds" in r]
    std = {r["value"]: r for r in rows if r["group"] == "standard"}
    opt_groups = list(dict.fromkeys(r["group"] for r in rows if r["group"].startswith("optimistic")))
    if not std or not opt_groups:
        return []
    diff = lambda a, b, k: np.asarray(a[f"{k}_seeds"]) - np.asarray(b[f"{k}_seeds"])
    cell = lambda d: f"{d.mean():+.4f} ± {d.std():.4f}" if np.all(np.isfinite(d)) and abs(d.mean()) < 5 else "diverged"
    lines = ["Paired over seeds (mean ± std of the per-seed difference, negative: optimistic lower), train CE "
             "at each meta-lr, and best-vs-best (each method at its own best meta-lr):", "",
             "| optimistic row | " + " | ".join(f"Δ train CE @ {v:g}" for v in std) + " | best vs best: Δ train CE | Δ test CE "
             "| best vs the tuned baseline: Δ train CE |", "|---" * (len(std) + 4) + "|"]
    best_std = min(std.values(), key=lambda r: r["train_ce"] if r["finite"] else np.inf)
    for g in opt_groups:
        rr = {r["value"]: r for r in rows if r["group"] == g}
        best = min(rr.values(), key=lambda r: r["train_ce"] if r["finite"] else np.inf)
        lines.append(f"| {best['label']} | " + " | ".join(cell(diff(rr[v], std[v], "train_ce")) for v in std)
                     + f" | {cell(diff(best, best_std, 'train_ce'))} ({best['value']:g} vs {best_std['value']:g}) | "
                     f"{cell(diff(best, best_std, 'test_ce'))} | {cell(diff(best, f['best_baseline'], 'train_ce'))} |")
    lines.append(f"| standard MG (best, {best_std['value']:g}) |" + " |" * (len(std) + 2)
                 + f" {cell(diff(best_std, f['best_baseline'], 'train_ce'))} |")
    return lines


def mlp_text(m: dict) -> str:
    return "\n".join(mlp_tables(m)) + f"\n(Fashion-MNIST experiments: {m['wall_s']} s)\n"


def markdown(results: dict) -> str:
    lines = [f"# Optimistic meta-gradients: CPU reproduction ({results['profile_name']})", "",
             f"Command: `{results['command']}`; wall time {results['wall_s'] / 60:.1f} min on this machine.", "",
             "Plots: convex_a1.png, fairness.png, adagrad_a2.png" + (", fmnist_sgd.png, fmnist_adam.png"
                                                                      if "mlp" in results else ""), ""]
    lines += convex_tables(results["convex"])
    if "mlp" in results:
        lines += [""] + mlp_tables(results["mlp"])
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ plots
def _floor(g, low=1e-32):
    return np.maximum(np.asarray(g, np.float64), low)


def plot_convex(c: dict, out: pathlib.Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, (prob, row) in zip(axes, c["a1"].items()):
        for m, r in row.items():
            ax.semilogy(_floor(r["gaps"]), label=A1_NAMES[m], lw=1.2)
        ax.set(title=PROBLEM_NAMES[prob], xlabel="step t", ylabel="F(x_t) − F* (floored at 1e-32)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "convex_a1.png", dpi=90)
    plt.close(fig)

    f = c["fairness_wide"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, m in zip(axes, ("standard", "optimistic")):
        grid = np.minimum(np.asarray(f[m]["worst_case_grid"]), 1.0)
        im = ax.imshow(grid.T, origin="lower", aspect="auto", vmin=0.6, vmax=1.0, cmap="viridis",
                       extent=[f["etas_over_L"][0], f["etas_over_L"][-1], f["betas"][0], f["betas"][-1]])
        ax.plot(f[m]["eta_times_L"], f[m]["beta"], "r*", ms=12, label="best worst case")
        tq = f[m]["tuned_on_quadratic"]
        ax.plot(tq["eta_times_L"], tq["beta"], "wo", ms=7, mfc="none", label="best on the quadratic alone")
        ax.axvline(2.0, color="w", ls=":", lw=1)  # the edge of the η·L ≤ 2 grid
        ax.legend(fontsize=7, loc="lower left")
        ax.set(title=f"{A1_NAMES[m]}: worst case {f[m]['best_worst_case']:.3f}", xlabel="η·L", ylabel="β")
        fig.colorbar(im, ax=ax, label="worst-case contraction (clipped at 1)")
    fig.tight_layout()
    fig.savefig(out / "fairness.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (prob, row) in zip(axes, c["a2"].items()):
        for m in ("standard", "optimistic"):
            g = _floor(row[m]["gaps"], 1e-34)
            ax.loglog(np.arange(1, len(g) + 1), g, label=m)
        t = np.arange(30, len(g) + 1)
        ref = _floor(row["standard"]["gaps"])[29]
        ax.loglog(t, ref * (t / 30.0) ** -1, "k:", lw=0.8, label="slope −1")
        ax.loglog(t, ref * (t / 30.0) ** -2, "k--", lw=0.8, label="slope −2")
        ax.set(title=f"(a2) {PROBLEM_NAMES[prob]}", xlabel="t", ylabel="f(x̄_t) − f*")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "adagrad_a2.png", dpi=90)
    plt.close(fig)


def plot_family(f: dict, log_every: int, path: pathlib.Path) -> None:
    curves = f["curves"]
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.5))
    x = lambda n: log_every * np.arange(1, n + 1)
    best = lambda name: int(np.nanargmin([np.mean(c[-2:]) for c in curves[name]["learner/train_loss"]]))
    for name, c in curves.items():
        if name == "matched":
            continue
        i = best(name)
        y = np.asarray(c["learner/train_loss"][i])
        axes[0].plot(x(len(y)), y, label=f"{c['label']} ({c['values'][i]:g})")
    axes[0].set(xlabel="step", ylabel="train CE (chunk mean, mean over seeds)", yscale="log", title="training loss, best rate",
                ylim=(None, 1.2))
    axes[0].legend(fontsize=7)
    metas = [n for n in curves if n == "standard" or n.startswith("optimistic")]
    main = [n for n in metas if n == "standard" or n.endswith(f"_a{f['lr0'] if f['rule'] == 'sgd' else ''}")
            or (f["rule"] != "sgd" and "_a10" in n)]
    for k, name in enumerate(metas):
        if name not in main:
            continue
        c = curves[name]
        for i, v in enumerate(c["values"]):
            p50 = np.asarray(c["rates/p50"][i])
            axes[1].plot(x(len(p50)), p50, color=f"C{k}", alpha=0.3 + 0.7 * (i + 1) / len(c["values"]),
                         label=c["label"] if i == len(c["values"]) - 1 else None)
    axes[1].axhline(f["lr0"], color="k", ls=":", lw=0.8)
    axes[1].set(xlabel="step", ylabel="median learning rate (mean over seeds)", yscale="log",
                title="median rate; darker: larger meta-lr (" + ", ".join(f"{v:g}" for v in curves["standard"]["values"])
                + ")", ylim=(f["lr0"] / 30, f["lr0"] * 30))
    axes[1].legend(fontsize=7, loc="upper left")
    base = f["best_baseline"]["train_ce"]
    top = base + 0.04
    for k, name in enumerate(metas):
        rr = [r for r in f["rows"] if r["group"] == name]
        ce = np.array([r["train_ce"] if r["finite"] else np.inf for r in rr])
        vals = [r["value"] for r in rr]
        axes[2].semilogx(vals, np.where(ce <= top, ce, np.nan), "o-", color=f"C{k}", label=curves[name]["label"])
        off = ce > top
        axes[2].semilogx(np.asarray(vals)[off], np.full(off.sum(), top), "x", color=f"C{k}", ms=9)
    axes[2].axhline(base, color="k", ls="--", lw=0.8, label="tuned baseline")
    axes[2].set(xlabel="meta learning rate", ylabel="final train CE (x: above the axis / diverged)",
                title="sensitivity to the meta-lr", ylim=(None, top + 0.002))
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plots(results: dict, out: pathlib.Path) -> None:
    plot_convex(results["convex"], out)
    if "mlp" in results:
        for fam in ("sgd", "adam"):
            plot_family(results["mlp"][fam], results["profile"]["log_every"], out / f"fmnist_{fam}.png")
