"""Markdown tables of an evaluation's results (`evaluation.evaluate`'s results.json).

For each metric (training loss on the fixed training sample; validation loss): one row per task
with the learned optimizers zero-tune and with their multiplier tuned, the best baseline, Adam
and AdamW with warmup + cosine at their tuned settings; then per-task verdicts and the summary.
"""

from __future__ import annotations

import math
from typing import Any

from evaluation.protocol import METRIC_NAMES, METRICS, summarize


def num(x: float | None, like: float | None = None) -> str:
    """4 significant decimals, or scientific notation for a value (or the mean it goes with) below 0.01."""
    if x is None:
        return "diverged"
    ref = x if like is None else like
    return f"{x:.4f}" if ref == 0 or abs(ref) >= 0.01 else f"{x:.2e}"


def _cell(o: dict, m: str, bold: bool = False) -> str:
    if o.get("missing"):
        return "–"
    mean = o[f"{m}_mean"]
    text = "diverged" if mean is None else f"{num(mean)} ± {num(o[f'{m}_std'], mean)}"
    return f"**{text}**" if bold else text


def _hp(o: dict) -> str:
    parts = [f"{'×' if k == 'multiplier' else ''}{v:.3g}" if k in ("learning_rate", "multiplier") else f"wd {v:g}"
             for k, v in o["hparams"].items()]
    return f" ({', '.join(parts)})"


def speedup_text(s: dict | None) -> str:
    if not s:
        return "–"
    if s["status"] == "learned_diverged":
        return "n/a (diverged)"
    if s["status"] == "never_reached":
        return "> 1 (never reached)"
    return f"{s['value']:.2f}"


_MISSING = {"missing": True} | {f"{m}_{k}": None for m in METRICS for k in ("mean", "std")}  # not run: "–"


def _metric_table(results: dict, m: str) -> list[str]:
    labels = [o["label"] for o in results["lopts"]]
    shown = [n for n in ("adam_cos", "adamw_cos") if n in results["baselines"]]
    head = ["task", "steps"] + [f"{l} zero-tune" for l in labels] + [f"{l} tuned" for l in labels]
    untuned = any("untuned" in e for e in results["tasks"].values())
    head += ["best baseline"] * bool(results["baselines"]) + shown + ["AdamW + cosine at 1e-3 (untuned)"] * untuned
    lines = [f"### Final {METRIC_NAMES[m]}", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for label, e in results["tasks"].items():
        cells: list[tuple[dict, str]] = [(e["learned"][l]["zero_tune"], "") for l in labels]
        cells += [(e["learned"][l]["tuned"][m], _hp(e["learned"][l]["tuned"][m])) for l in labels]
        best = e["best"][m]
        if best:
            cells.append((e["baselines"][best][m], f" ({best}: {_hp(e['baselines'][best][m])[2:]}"))
        cells += [(e["baselines"][n][m], _hp(e["baselines"][n][m])) for n in shown]
        if untuned:
            cells.append((e.get("untuned") or _MISSING, ""))
        means = [o[f"{m}_mean"] for o, _ in cells if o[f"{m}_mean"] is not None]
        low = min(means) if means else math.inf
        row = [_cell(o, m, o[f"{m}_mean"] == low) + hp for o, hp in cells]
        lines.append(f"| {label} | {e['num_steps']} | " + " | ".join(row) + " |")
    return lines + [""]


def _verdicts(results: dict) -> list[str]:
    yes = lambda b: "yes" if b else "**no**"
    lines = ["### Per task", "", "| task | learned | protocol | train win | valid win | valid within 5% | "
             "speed-up (train) | never diverged | never above initial |", "|---" * 9 + "|"]
    for label, e in results["tasks"].items():
        for l, runs in e["learned"].items():
            for p, name in (("zero_tune", "zero-tune"), ("tuned", "equal tuning")):
                v = (runs["verdicts"] or {}).get(p)
                if v is None:
                    continue
                lines.append(f"| {label} | {l} | {name} | {yes(v['train']['win'])} | {yes(v['valid']['win'])} | "
                             f"{yes(v['valid']['within_5pct'])} | {speedup_text(v['speedup'])} | "
                             f"{yes(v['never_diverged'])} | {yes(v['never_above_initial'])} |")
    return lines + [""]


def summary_lines(results: dict) -> list[str]:
    lines = ["### Summary", ""]
    for l, per in (results.get("summary") or summarize(results)).items():
        for p, name in (("zero_tune", "zero-tune"), ("tuned", "equal tuning")):
            s = per[p]
            n = s["tasks"]
            if not n:
                continue
            med = ("> 1 (never reached)" if s["speedup_median_never_reached"] else
                   "–" if s["speedup_median"] is None else f"{s['speedup_median']:.2f}")
            lines.append(f"- **{l}, {name}**: training loss below the best tuned baseline on {s['train_wins']}/{n} "
                         f"tasks, validation loss on {s['valid_wins']}/{n} (within 5%: {s['valid_within_5pct']}/{n}); "
                         f"median speed-up on training loss {med}"
                         + (f" (at the baseline's final loss: {s['speedup_at_baseline_median']:.2f})"
                            if s.get("speedup_at_baseline_median") is not None else "")
                         + "; runs with a non-finite loss "
                         f"{s['nonfinite_runs']}/{s['runs']}, ending above their initial loss "
                         f"{s['above_initial_runs']}/{s['runs']}."
                         + (f" Below untuned AdamW + cosine at 1e-3: training loss on {s['train_beats_untuned']}/"
                            f"{s['untuned_tasks']}, validation loss on {s['valid_beats_untuned']}/{s['untuned_tasks']}."
                            if s.get("untuned_tasks") else ""))
    return lines + [""]


def markdown(results: dict[str, Any]) -> str:
    """The whole report: header, one table per metric, verdicts, summary, command."""
    names = ", ".join(f"`{o['source']}` ({o['arch']})" for o in results["lopts"]) or "baselines only"
    partial = " (partial: the tasks finished so far)" if results.get("partial") else ""
    lines = [f"## Suite `{results['suite']}`{' (quick)' if results.get('quick') else ''}: {names}{partial}", "",
             f"Mean ± std over {results['seeds']} seeds (bold: lowest in the row). Baselines "
             f"({', '.join(results['baselines']) or 'none'}) and the learned optimizers' multiplier ('tuned') are "
             f"tuned per task and per metric on seed {results['tune_seed']}, then run on seeds "
             f"{results['eval_seeds']}; 'zero-tune' is the learned optimizer with `num_steps` only. Speed-up: the "
             "steps the best baseline for training loss needs to reach the learned optimizer's final training "
             "loss, over the horizon (> 1: the learned optimizer is faster).", ""]
    for m in METRICS:
        lines += _metric_table(results, m)
    if results["lopts"] and results["baselines"]:
        lines += _verdicts(results) + summary_lines(results)
    lines.append(f"Command: `{results['command']}`; {results['date']}"
                 + (f"; wall time {results['wall_s'] / 60:.1f} min." if "wall_s" in results else "."))
    if results.get("baselines_from"):
        lines += ["", f"Tuned baselines reused from `{results['baselines_from']}` (`evaluation.reuse`)."]
    return "\n".join(lines) + "\n"
