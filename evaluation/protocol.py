"""The evaluation protocol for one task: tuned baselines, the learned optimizer under both
protocols, and the verdicts.

- **Baselines** (`evaluation.baselines`): every grid row runs on the tuning seed (`TUNE_SEED`);
  for each metric separately (final training loss on the fixed training sample; final validation
  loss) the row with the lowest final value is chosen (non-finite counts as worst, the first row
  on a tie) and runs on the evaluation seeds. Each metric's best baseline is the one with the
  lowest mean over those seeds.
- **Zero-tune**: the learned optimizer as users load it (`num_steps` only), on the evaluation seeds.
- **Equal tuning**: its learning-rate multiplier tuned like a baseline, on a grid as large as Adam's.

- **Untuned reference** (`baselines.UNTUNED`): AdamW with warmup + cosine at learning rate 1e-3,
  on the evaluation seeds: what a user gets without tuning.

Per metric, a protocol wins a task when its mean is below the best baseline's; `within_5pct` when
it is at most 5% above; `beats_untuned` when its mean is below the untuned reference's. The
speed-ups are on training loss against the best baseline for training loss (`evaluation.speedup`):
VeLO's (the steps the baseline needs to reach the learned optimizer's final loss, over the
horizon; unbounded where it never gets there) and its converse at the baseline's final loss (the
horizon over the steps the learned optimizer needs to reach it; 0 where it never does). A run
*diverged* if any loss is non-finite; it *ended above initial* if its final training-sample or
validation loss is above its step-0 value.

>>> choose([0.5, float("nan"), 0.2, 0.2])
2
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

import inner_tasks
from evaluation import runner
from evaluation.baselines import UNTUNED, Baseline
from evaluation.speedup import speedup, speedup_at_reference, speedup_at_reference_number, speedup_number
from evaluation.tasks import EvalTask

TUNE_SEED = 0
METRICS = ("train", "valid")
METRIC_NAMES = {"train": "training loss (fixed training sample)", "valid": "validation loss"}
TOLERANCE = 0.05
Progress = Callable[[int], None]


def finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def choose(finals: Sequence[float]) -> int:
    """Index of the lowest final loss, non-finite counting as worst; the first on a tie."""
    values = np.asarray(finals, np.float64)
    return int(np.argmin(np.where(np.isfinite(values), values, np.inf)))


def summary(curves: runner.Curves, hparams: dict[str, float], seeds: Sequence[int]) -> dict[str, Any]:
    """Per-seed finals, means, curves (mean, min, max over seeds) and failure counts of a set of runs."""
    out: dict[str, Any] = {"hparams": hparams, "seeds": list(seeds)}
    ok = np.isfinite(curves.train).all(-1) & np.isfinite(curves.valid).all(-1)
    out["nonfinite"] = int((~ok).sum())
    above = (curves.train[:, -1] > curves.train[:, 0]) | (curves.valid[:, -1] > curves.valid[:, 0])
    out["above_initial"] = int((above & ok).sum())
    for m in METRICS:
        c = getattr(curves, m)
        finals = c[:, -1]
        out[f"final_{m}"] = [finite(v) for v in finals]
        every = np.isfinite(finals).all()
        out[f"{m}_mean"] = finite(finals.mean()) if every else None
        out[f"{m}_std"] = finite(finals.std()) if every else None
        with np.errstate(invalid="ignore"):
            out[f"{m}_curve"] = {s: [finite(v) for v in getattr(np, f"nan{s}")(np.where(np.isfinite(c), c, np.nan), 0)]
                                 if np.isfinite(c).any() else [None] * c.shape[1] for s in ("mean", "min", "max")}
    return out


Runner = Callable[[Any, np.ndarray, list[int]], runner.Curves]


def _tuned(run: Runner, groups: dict[str, tuple[Any, list[tuple[float, ...]], list[str]]],
           eval_seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Tune each group (name: (program, rows, hyperparameter names)) on the tuning seed, per metric,
    then run each choice on the evaluation seeds. Groups that share a program run together: one
    call of `run(program, rows, seeds)` for all their tuning rows, one for all their choices."""
    programs = list(dict.fromkeys(g[0] for g in groups.values()))
    finals: dict[str, dict[str, np.ndarray]] = {}
    for prog in programs:
        names = [n for n, g in groups.items() if g[0] == prog]
        rows = [r for n in names for r in groups[n][1]]
        curves = run(prog, np.asarray(rows), [TUNE_SEED] * len(rows))
        at = 0
        for n in names:
            k = len(groups[n][1])
            finals[n] = {m: getattr(curves, m)[at:at + k, -1] for m in METRICS}
            at += k
    chosen = {n: {m: choose(finals[n][m]) for m in METRICS} for n in groups}
    out: dict[str, dict[str, Any]] = {}
    s = len(eval_seeds)
    for prog in programs:
        picks = [(n, i) for n, g in groups.items() if g[0] == prog for i in sorted(set(chosen[n].values()))]
        hp = np.asarray([groups[n][1][i] for n, i in picks for _ in eval_seeds])
        evals = run(prog, hp, [seed for _ in picks for seed in eval_seeds])
        for n in dict.fromkeys(n for n, _ in picks):
            rows, hp_names = groups[n][1], groups[n][2]
            out[n] = {"tuning": {"rows": [list(r) for r in rows],
                                 **{f"final_{m}": [finite(v) for v in finals[n][m]] for m in METRICS}}}
            for m in METRICS:
                k = picks.index((n, chosen[n][m]))
                part = runner.Curves(evals.train[k * s:(k + 1) * s], evals.valid[k * s:(k + 1) * s])
                out[n][m] = summary(part, dict(zip(hp_names, rows[chosen[n][m]])), eval_seeds)
    return out


def run_baselines(et: EvalTask, task: inner_tasks.Task, baselines: Sequence[Baseline], eval_seeds: list[int],
                  progress: Progress | None = None) -> dict[str, dict]:
    """Every baseline tuned on this task, per metric: {name: {"tuning", "train", "valid"}}; the
    baselines of one optax family run in one compiled program."""
    run = lambda family, hp, seeds: runner.run_rows(task, runner.BaselineMaker(family), None, hp, seeds,
                                                    et.num_steps, et.eval_every, et.rows, progress)
    groups = {b.name: (b.family, b.rows(), ["learning_rate", "weight_decay", "cosine"]) for b in baselines}
    out = _tuned(run, groups, eval_seeds)
    for b in baselines:
        for m in METRICS:
            hp = out[b.name][m]["hparams"]
            out[b.name][m]["hparams"] = {"learning_rate": hp["learning_rate"],
                                         **({"weight_decay": hp["weight_decay"]} if b.weight_decays != (0.0,) else {})}
    return {b.name: out[b.name] for b in baselines}


def run_untuned(et: EvalTask, task: inner_tasks.Task, eval_seeds: list[int],
                progress: Progress | None = None) -> dict[str, Any]:
    """The untuned reference (`baselines.UNTUNED`) on the evaluation seeds, as `summary` gives it."""
    row = UNTUNED.rows()[0]
    curves = runner.run_rows(task, runner.BaselineMaker(UNTUNED.family), None, np.asarray([row] * len(eval_seeds)),
                             eval_seeds, et.num_steps, et.eval_every, et.rows, progress)
    return summary(curves, {"learning_rate": row[0], "weight_decay": row[1]}, eval_seeds)


def run_learned(et: EvalTask, task: inner_tasks.Task, arch: Any, theta: Any, multipliers: Sequence[float],
                eval_seeds: list[int], progress: Progress | None = None,
                options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The learned optimizer (given `options` for its `optimizer`) zero-tune and with its multiplier
    tuned: {"zero_tune", "tuned": {...}}."""
    make = runner.LearnedMaker(arch, tuple(sorted((options or {}).items())))
    ones = np.ones((len(eval_seeds), 1))
    run = lambda _, hp, seeds: runner.run_rows(task, make, theta, hp, seeds, et.num_steps, et.eval_every, 1,
                                               progress)
    zero = run(None, ones, eval_seeds)

    def run_or_reuse(prog, hp, seeds):
        if np.array_equal(hp, ones) and list(seeds) == eval_seeds:
            if progress is not None:
                progress(len(seeds))
            return zero  # multiplier 1 on the evaluation seeds: the zero-tune runs, the same program
        return run(prog, hp, seeds)

    tuned = _tuned(run_or_reuse, {"learned": (None, [(float(m),) for m in multipliers], ["multiplier"])}, eval_seeds)
    return {"zero_tune": summary(zero, {"multiplier": 1.0}, eval_seeds), "tuned": tuned["learned"]}


def _score(o: dict | None, m: str) -> float:
    v = None if o is None else o[f"{m}_mean"]
    return math.inf if v is None else v


def best_baselines(baselines: dict[str, dict]) -> dict[str, str | None]:
    """Per metric, the baseline with the lowest mean final loss (None without baselines)."""
    return {m: min(baselines, key=lambda n: _score(baselines[n][m], m)) if baselines else None for m in METRICS}


def verdicts(et: EvalTask, baselines: dict[str, dict], learned: dict[str, Any],
             untuned: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per protocol and metric: the learned mean against the best baseline's (win, within 5%,
    ratio) and, given `untuned` (`run_untuned`), against the untuned reference's (beats_untuned);
    the speed-ups on training loss (VeLO's, and at the best baseline's final loss); divergence
    flags of the zero-tune runs."""
    best = best_baselines(baselines)
    out: dict[str, Any] = {}
    for protocol, runs in (("zero_tune", {m: learned["zero_tune"] for m in METRICS}),
                           ("tuned", {m: learned["tuned"][m] for m in METRICS})):
        v = {}
        for m in METRICS:
            mine = _score(runs[m], m)
            ref = _score(baselines[best[m]][m], m) if best[m] else math.inf
            v[m] = {"best": best[m], "learned": finite(mine), "baseline": finite(ref),
                    "win": bool(mine < ref), "within_5pct": bool(mine <= ref * (1 + TOLERANCE) if ref >= 0
                                                               else mine <= ref * (1 - TOLERANCE)),
                    "ratio": finite(mine / ref) if ref not in (0.0, math.inf) and math.isfinite(mine) else None}
            if untuned is not None:
                v[m]["beats_untuned"] = bool(mine < _score(untuned, m))
        bt = baselines[best["train"]]["train"] if best["train"] else None  # the best baseline's training runs
        v["speedup"] = (speedup(bt["train_curve"]["mean"], et.steps, runs["train"]["train_mean"], et.num_steps)
                        if bt else None)
        v["speedup_at_baseline"] = (speedup_at_reference(runs["train"]["train_curve"]["mean"], et.steps,
                                                         bt["train_mean"], et.num_steps) if bt else None)
        v["never_diverged"] = runs["train"]["nonfinite"] == 0 and runs["valid"]["nonfinite"] == 0
        v["never_above_initial"] = runs["train"]["above_initial"] == 0 and runs["valid"]["above_initial"] == 0
        out[protocol] = v
    return out


def rescore(results: dict) -> dict:
    """`results` with every verdict and the summary recomputed from its stored runs under this
    protocol (no run is repeated): for results written before a verdict was added."""
    for entry in results["tasks"].values():
        et = _Stored(entry["steps"], entry["num_steps"])
        for runs in entry["learned"].values():
            runs["verdicts"] = (verdicts(et, entry["baselines"], runs, entry.get("untuned")) if entry["baselines"]
                                else None)
    results["summary"] = summarize(results)
    return results


class _Stored(NamedTuple):
    steps: list[int]
    num_steps: int


def summarize(results: dict) -> dict[str, Any]:
    """Per learned optimizer and protocol: wins per metric (and within 5% on validation), the
    median speed-ups, diverged runs and runs that ended above their initial loss."""
    tasks = list(results["tasks"].values())
    out: dict[str, Any] = {}
    for o in results["lopts"]:
        label = o["label"]
        per: dict[str, Any] = {}
        for p in ("zero_tune", "tuned"):
            verdicts = [t["learned"][label]["verdicts"][p] for t in tasks if t["learned"][label]["verdicts"]]
            runs = [t["learned"][label]["zero_tune"] if p == "zero_tune" else t["learned"][label]["tuned"][m]
                    for t in tasks for m in (("train",) if p == "zero_tune" else METRICS)]
            s: dict[str, Any] = {"tasks": len(verdicts)}
            compared = [v for v in verdicts if "beats_untuned" in v["train"]]
            s["untuned_tasks"] = len(compared)
            for m in METRICS:
                s[f"{m}_wins"] = sum(v[m]["win"] for v in verdicts)
                s[f"{m}_within_5pct"] = sum(v[m]["within_5pct"] for v in verdicts)
                s[f"{m}_beats_untuned"] = sum(v[m]["beats_untuned"] for v in compared)
            ups = [speedup_number(v["speedup"]) for v in verdicts if v["speedup"]
                   and v["speedup"]["status"] != "learned_diverged"]
            median = float(np.median(ups)) if ups else None
            s["speedup_median"] = median if median is None or np.isfinite(median) else None
            s["speedup_median_never_reached"] = median == float("inf")
            s["speedup_tasks"] = len(ups)
            at = [speedup_at_reference_number(v["speedup_at_baseline"]) for v in verdicts
                  if v.get("speedup_at_baseline") and v["speedup_at_baseline"]["status"] != "reference_diverged"]
            at_median = float(np.median(at)) if at else None
            s["speedup_at_baseline_median"] = at_median if at_median is None or np.isfinite(at_median) else None
            s["nonfinite_runs"] = sum(r["nonfinite"] for r in runs)
            s["above_initial_runs"] = sum(r["above_initial"] for r in runs)
            s["runs"] = sum(len(r["seeds"]) for r in runs)
            per[p] = s
        out[label] = per
    return out
