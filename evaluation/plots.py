"""Figures of an evaluation: per-task learning curves and one summary of win rates and speed-ups."""

from __future__ import annotations

import pathlib
import re

import matplotlib
import numpy as np

from evaluation.protocol import METRIC_NAMES, METRICS, summarize

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


FLOOR = 1e-9  # losses that reach exactly 0 (a memorized small dataset) are drawn here on the log axis


def _nan(xs) -> np.ndarray:
    return np.asarray([np.nan if x is None else max(x, FLOOR) for x in xs], np.float64)


def _band(ax, steps, o: dict, m: str, label: str, **style) -> None:
    c = o[f"{m}_curve"]
    line, = ax.plot(steps, _nan(c["mean"]), label=label, **style)
    ax.fill_between(steps, _nan(c["min"]), _nan(c["max"]), color=line.get_color(), alpha=0.15)


def task_figure(label: str, entry: dict, path: pathlib.Path) -> None:
    """Training and validation curves (mean over seeds, min–max shaded) of every learned optimizer,
    zero-tune and tuned, against each metric's best baseline and AdamW with warmup + cosine."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    _task_panels(axes, label, entry)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _task_panels(axes, label: str, entry: dict, only: str | None = None) -> None:
    steps = np.asarray(entry["steps"])
    for ax, m in zip(axes, METRICS):
        for name, runs in entry["learned"].items():
            if only is not None and name != only:
                continue
            _band(ax, steps, runs["zero_tune"], m, f"{name} zero-tune", lw=2)
            mult = runs["tuned"][m]["hparams"]["multiplier"]
            if mult != 1.0:
                _band(ax, steps, runs["tuned"][m], m, f"{name} ×{mult:.3g}", ls="--")
        shown = dict.fromkeys(n for n in (entry["best"][m], "adamw_cos") if n and n in entry["baselines"])
        for n in shown:
            o = entry["baselines"][n][m]
            hp = ", ".join(f"{k[:2]} {v:.2g}" for k, v in o["hparams"].items())
            _band(ax, steps, o, m, f"{n} ({hp}){' best' if n == entry['best'][m] else ''}", ls=":")
        curves = [_nan(o[f"{m}_curve"]["mean"]) for o in _all(entry, m)]
        first = np.asarray([c[0] for c in curves])
        ax.set_yscale("log")
        if np.isfinite(first).any():
            low = np.nanmin([np.nanmin(c) if np.isfinite(c).any() else np.nan for c in curves])
            ax.set_ylim(0.8 * low, 1.3 * np.nanmax(first))
        ax.set(title=f"{label}: {METRIC_NAMES[m]}", xlabel="step")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=6)


def suite_figure(results: dict, lopt_label: str, path: pathlib.Path) -> None:
    """One learned optimizer's curves on every task of a run (a row per task: training loss,
    validation loss), against each metric's best baseline and AdamW with warmup + cosine."""
    tasks = list(results["tasks"].items())
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 2.6 * len(tasks)), squeeze=False)
    for row, (label, entry) in zip(axes, tasks):
        _task_panels(row, label, entry, only=lopt_label)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _all(entry: dict, m: str):
    for runs in entry["learned"].values():
        yield runs["zero_tune"]
    for b in entry["baselines"].values():
        yield b[m]


def task_figures(results: dict, out: pathlib.Path) -> None:
    for label, entry in results["tasks"].items():
        task_figure(label, entry, out / f"{slug(label)}.png")


def summary_figure(results: dict, path: pathlib.Path, only: str | None = None) -> None:
    """Left: win rates against the best tuned baseline per learned optimizer, protocol and metric.
    Right: each task's speed-up on training loss (log scale; never reached drawn at the top)."""
    labels = [o["label"] for o in results["lopts"] if only is None or o["label"] == only]
    if not labels or not results["baselines"]:
        return
    summary = results.get("summary") or summarize(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bars = [(l, p, m) for l in labels for p in ("zero_tune", "tuned") for m in METRICS]
    rates = [summary[l][p][f"{m}_wins"] / max(summary[l][p]["tasks"], 1) for l, p, m in bars]
    left.barh(range(len(bars)), rates, color=["C0" if m == "train" else "C1" for _, _, m in bars])
    left.set_yticks(range(len(bars)), [f"{l} {p.replace('_', '-')} {m}" for l, p, m in bars], fontsize=7)
    left.set(xlim=(0, 1), xlabel="fraction of tasks below the best tuned baseline", title="win rate")
    left.invert_yaxis()
    tasks = list(results["tasks"])
    for i, l in enumerate(labels):
        for p, marker in (("zero_tune", "o"), ("tuned", "x")):
            ups = []
            for t in tasks:
                s = results["tasks"][t]["learned"][l]["verdicts"][p]["speedup"]
                ups.append(np.nan if not s or s["status"] == "learned_diverged" else
                           8.0 if s["status"] == "never_reached" else max(s["value"], 1e-2))
            right.scatter(np.arange(len(tasks)) + 0.1 * i, ups, marker=marker, label=f"{l} {p.replace('_', '-')}")
    right.axhline(1.0, color="gray", lw=0.8)
    right.set_yscale("log")
    right.set_xticks(range(len(tasks)), tasks, rotation=60, ha="right", fontsize=6)
    right.set(ylabel="speed-up on training loss (8: never reached)", title="speed-up vs best baseline")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
