"""Evaluate learned optimizers against the baselines users run, tuned per task, on a suite.

    python -m evaluation.evaluate --suite dev --lopt celo_generalist[,mulo_sp,FILE…] [--quick | --part K]
        [--tasks a,b] [--seeds 3] [--steps N] [--baselines adam,adamw_cos] [--baselines_from DIR]
        [--multipliers 0.1,1,10] [--lopt_options weight_decay=0.1] [--out DIR] [--no-plots] [--compile_cache DIR|none]

The protocol is `evaluation.protocol`'s: baselines (`evaluation.baselines`: Adam and AdamW, each
constant and with warmup + cosine, AdamW's weight decay tuned jointly with the learning rate, SGD
with momentum, Lion) tuned per task and per metric on seed 0, then run on seeds 1..S; the learned
optimizer zero-tune (`num_steps` only) and with its learning-rate multiplier tuned on a grid as
large as Adam's. Metrics per task and seed: the final training loss on a fixed, large sample of
the training split, the final validation loss, their learning curves, VeLO's speed-up on
training loss against the best baseline and its converse at the baseline's final loss, and
whether a run diverged or ended above its initial loss. Wins are counted separately for training
and validation loss.

Outputs in `--out` (default runs/eval/<suite>[_quick]): results.json, results.md, and with plots
one PNG of learning curves per task and summary.png (win rates and speed-ups). A run of the
`test` suite appends a row to evaluation/test_ledger.md (`evaluation.ledger`). `--lopt ""` runs
the baselines alone (for `--baselines_from` later). results.json is rewritten after every task, and
`--resume` continues an interrupted run in the same `--out`. A suite with parts (`test`) can be run
one part per command into the same `--out`: each part's results.json also keeps the other parts'
tasks that the same evaluation finished there, so the last part's tables cover the whole suite. Bad input (an unknown suite, task, baseline
or file; mismatched cached baselines; missing data; an empty or non-positive grid) is one
`error:` line and exit status 2, before anything compiles or is written. Compiled programs are kept
in JAX's persistent cache, by default $LOPT_COMPILE_CACHE, else ~/.cache/lopt/jax
(`lopt.compile_cache`); `--compile_cache none` turns it off.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the backend starts: a threading glitch is no divergence (lopt.xla_flags)
    from lopt import xla_flags
    xla_flags.add_xla_flags(xla_flags.SINGLE_THREADED_EIGEN)

import argparse
import datetime
import json
import os
import pathlib
import shlex
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import tqdm

import inner_tasks
import lopt
from evaluation import baselines as bl
from evaluation import ledger, protocol, reuse, suites
from evaluation.tasks import EvalTask
from lopt import compile_cache


class EvaluateError(ValueError):
    """Bad input to `evaluate`: suite, tasks, seeds, steps, baselines or grids."""


def _lopts(names: Sequence[str], options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each learned optimizer as {label, source, arch, theta, digest, options}; labels are unique file
    stems or names. `options` (for every one's `optimizer`) are tried once here, so that a name the
    architecture does not take or a bad value is one error before anything compiles."""
    out = []
    options = dict(options or {})
    for name in names:
        arch, theta, header = lopt.load_theta(name)
        label = pathlib.Path(str(name)).stem if str(name).endswith(".safetensors") else str(name)
        if options:
            try:
                arch.optimizer(theta, num_steps=10, **options)
            except (TypeError, ValueError) as e:
                raise EvaluateError(f"--lopt_options {options} for {label!r} ({arch.name}): {e}") from None
        out.append({"label": label, "source": str(name), "arch": arch, "theta": theta,
                    "digest": header.get("sha256", ""), "options": options})
    labels = [o["label"] for o in out]
    if len(set(labels)) != len(labels):
        raise EvaluateError(f"learned optimizers must have distinct names, got {labels}")
    return out


def _grids(names: Sequence[str] | None, lrs: Mapping[str, Sequence[float]] | None) -> list[bl.Baseline]:
    try:
        chosen = bl.resolve(names)
        lrs = dict(lrs or {})
        unknown = sorted(set(lrs) - {b.name for b in chosen})
        if unknown:
            raise ValueError(f"learning-rate grids given for baselines not run: {unknown}")
        return [bl.dataclasses.replace(b, lrs=bl.check_grid(b.name, lrs[b.name])) if b.name in lrs else b
                for b in chosen]
    except ValueError as e:
        raise EvaluateError(str(e)) from None


def _check_data(tasks: Sequence[EvalTask]) -> None:
    for t in tasks:
        try:
            t.spec.load_data()
        except (inner_tasks.DatasetNotFoundError, inner_tasks.DatasetFormatError):
            raise
        except ValueError as e:
            raise EvaluateError(f"task {t.label!r}: {e}") from None


def write_atomic(path: pathlib.Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the result private
    os.replace(tmp, path)


def evaluate(suite: str | suites.Suite, lopts: Sequence[str], *, seeds: int = 3, out_dir: str | os.PathLike | None = None,
             tasks: Sequence[str] | None = None, quick: bool = False, steps: int | None = None,
             baselines: Sequence[str] | None = None, baselines_from: str | os.PathLike | None = None,
             lrs: Mapping[str, Sequence[float]] | None = None,
             multipliers: Sequence[float] = bl.LEARNED_MULTIPLIERS, plots: bool = True,
             ledger_path: str | os.PathLike | None = ledger.LEDGER, command: str | None = None,
             resume: bool = False, part: int | None = None, lopt_options: Mapping[str, Any] | None = None) -> dict:
    """Runs the protocol on a suite and writes the outputs (module docstring); returns results.json's dict.

    `lrs` replaces baselines' learning-rate grids ({name: grid}); `multipliers` is the learned
    optimizers' grid under equal tuning; `ledger_path` is where a `test` run is logged. results.json
    is rewritten after every task; `resume` keeps the tasks an interrupted run of the same
    evaluation (same header, learned optimizers, baselines and task fingerprints) already finished.
    `part` runs one part of the suite and keeps the other parts' tasks that the same evaluation in
    the output directory finished. `lopt_options` go to every learned optimizer's `optimizer` (e.g.
    {"weight_decay": 0.1}) and are recorded with it."""
    t0 = time.time()
    try:
        the_suite = suite if isinstance(suite, suites.Suite) else suites.get(suite)
        todo = the_suite.select(tasks, quick, part)
        everything = the_suite.select() if part is not None else todo
    except suites.SuiteError as e:
        raise EvaluateError(str(e)) from None
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise EvaluateError(f"seeds must be a positive integer, got {seeds!r}")
    if steps is not None:
        try:
            todo = tuple(t.with_steps(steps) for t in todo)
            everything = tuple(t.with_steps(steps) for t in everything)
        except ValueError as e:
            raise EvaluateError(str(e)) from None
    chosen = _grids(baselines, lrs)
    try:
        multipliers = bl.check_grid("multipliers", multipliers)
    except ValueError as e:
        raise EvaluateError(str(e)) from None
    learned = _lopts(lopts, lopt_options)
    if not learned and not chosen:
        raise EvaluateError("nothing to run: no learned optimizer and no baseline")
    _check_data(todo)
    eval_seeds = list(range(1, seeds + 1))
    header = {"version": reuse.RESULTS_VERSION, "tune_seed": protocol.TUNE_SEED, "eval_seeds": eval_seeds,
              "grids": {b.name: b.grid() for b in chosen}}
    reused, stored_untuned = None, {}
    if baselines_from is not None:
        stored, prints = reuse.read(baselines_from), {t.label: t.fingerprint() for t in todo}
        reused = reuse.pick(stored, header, prints, [b.name for b in chosen])
        stored_untuned = reuse.untuned(stored, prints)
    if the_suite.ledger and ledger_path is not None:
        ledger.check(ledger_path)
    out = pathlib.Path(out_dir or f"runs/eval/{the_suite.name}{'_quick' if quick else ''}")
    done = _finished(out, header, learned, chosen, multipliers, todo) if resume else {}
    others = _other_parts(out, header, learned, chosen, multipliers, everything, todo) if part is not None else {}
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        **header, "suite": the_suite.name, "quick": quick, "seeds": seeds,
        "baselines": [b.name for b in chosen], "multipliers": list(multipliers),
        "lopts": [_lopt_entry(o) for o in learned],
        "command": command or f"evaluate({the_suite.name!r}, {list(lopts)!r}, seeds={seeds}"
                              + (f", lopt_options={dict(lopt_options)!r}" if lopt_options else "")
                              + (f", part={part})" if part is not None else ")"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "tasks": dict(others),  # in every rewrite of results.json, so an interrupted part loses no other part
    }
    if baselines_from is not None:
        results["baselines_from"] = str(baselines_from)
    if the_suite.ledger and ledger_path is not None:  # the look is logged before anything is seen
        ledger.append(ledger_path, _ledger_row(results, out, started=True))
    per_task = len(learned) * (seeds + len(multipliers) + 2 * seeds) + seeds * bool(learned) + (
        0 if reused else sum(len(b.rows()) + 2 * seeds for b in chosen))
    bar = tqdm.tqdm(total=len(todo) * per_task, desc="runs", unit="run")
    for et in todo:
        bar.set_postfix_str(et.label)
        if et.label in done:
            results["tasks"][et.label] = done[et.label]
            bar.update(per_task)
            continue
        results["tasks"][et.label] = _task(et, chosen, learned, multipliers, eval_seeds, reused, bar.update,
                                           stored_untuned.get(et.label))
        write_atomic(out / "results.json", json.dumps(dict(results, partial=True), indent=1, allow_nan=False))
    bar.close()
    results["tasks"] = {t.label: results["tasks"][t.label] for t in everything if t.label in results["tasks"]}
    if len(results["tasks"]) < len(everything):  # a part whose other parts have not run here
        results["partial"] = True
    results["summary"] = protocol.summarize(results)
    results["wall_s"] = round(time.time() - t0, 1)
    from evaluation import plots as plotting, tables  # matplotlib only where outputs are written
    write_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=False))
    write_atomic(out / "results.md", tables.markdown(results))
    if plots:
        plotting.task_figures(results, out)
        plotting.summary_figure(results, out / "summary.png")
    if the_suite.ledger and ledger_path is not None:
        ledger.append(ledger_path, _ledger_row(results, out))
    return results


def _finished(out: pathlib.Path, header: dict, learned: list[dict], chosen: list[bl.Baseline],
              multipliers: Sequence[float], todo: Sequence[EvalTask]) -> dict[str, dict]:
    """The tasks an earlier run of this same evaluation in `out` finished (nothing if it differs)."""
    if not (out / "results.json").is_file():
        return {}
    stored = reuse.read(out)
    same = all(stored[k] == header[k] for k in reuse.HEADER_KEYS) and stored["baselines"] == [b.name for b in chosen] \
        and stored.get("multipliers") == list(multipliers) \
        and [(o["label"], o["digest"], o.get("options", {})) for o in stored.get("lopts", [])] \
        == [(o["label"], o["digest"], o["options"]) for o in learned]
    if not same:
        raise EvaluateError(f"--resume: {out} holds another evaluation (other learned optimizers, baselines, grids "
                            "or seeds); use another --out")
    fingerprints = {t.label: t.fingerprint() for t in todo}
    return {label: e for label, e in stored["tasks"].items() if fingerprints.get(label) == e.get("fingerprint")}


def _other_parts(out: pathlib.Path, header: dict, learned: list[dict], chosen: list[bl.Baseline],
                 multipliers: Sequence[float], everything: Sequence[EvalTask],
                 todo: Sequence[EvalTask]) -> dict[str, dict]:
    """The tasks outside this part that the same evaluation in `out` finished (nothing if `out` holds another)."""
    try:
        stored = _finished(out, header, learned, chosen, multipliers, everything)
    except EvaluateError:
        print(f"note: {out} holds another evaluation; its tasks are not kept", file=sys.stderr)
        return {}
    mine = {t.label for t in todo}
    return {label: e for label, e in stored.items() if label not in mine}


def _untuned_hparams() -> dict[str, float]:
    row = bl.UNTUNED.rows()[0]
    return {"learning_rate": row[0], "weight_decay": row[1]}


def _lopt_entry(o: dict) -> dict[str, Any]:
    """A learned optimizer as results.json records it (its options only when given)."""
    return {k: o[k] for k in ("label", "source", "digest")} | {"arch": o["arch"].name} \
        | ({"options": o["options"]} if o["options"] else {})


def _task(et: EvalTask, chosen: list[bl.Baseline], learned: list[dict], multipliers: Sequence[float],
          eval_seeds: list[int], reused: dict | None, progress: Callable[[int], None],
          untuned: dict | None = None) -> dict[str, Any]:
    """One task's entry of results.json; `reused` baselines and a stored `untuned` reference are kept."""
    start = time.time()
    task = et.make()
    params = jax.eval_shape(task.init, jax.random.key(0))
    entry: dict[str, Any] = {
        "fingerprint": et.fingerprint(), "kind": et.kind, "pair": list(et.pair), "num_steps": et.num_steps,
        "steps": et.steps, "num_params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(params))),
    }
    entry["baselines"] = reused[et.label] if reused else protocol.run_baselines(et, task, chosen, eval_seeds, progress)
    entry["best"] = protocol.best_baselines(entry["baselines"])
    if learned:
        if untuned is not None and untuned["hparams"] == _untuned_hparams() and untuned["seeds"] == eval_seeds:
            entry["untuned"] = untuned
            progress(len(eval_seeds))
        else:
            entry["untuned"] = protocol.run_untuned(et, task, eval_seeds, progress)
    entry["learned"] = {}
    for o in learned:
        runs = protocol.run_learned(et, task, o["arch"], o["theta"], multipliers, eval_seeds, progress, o["options"])
        runs["verdicts"] = (protocol.verdicts(et, entry["baselines"], runs, entry["untuned"]) if entry["baselines"]
                            else None)
        entry["learned"][o["label"]] = runs
    entry["wall_s"] = round(time.time() - start, 1)
    return entry


def _ledger_row(results: dict, out: pathlib.Path, started: bool = False) -> dict[str, str]:
    wins = lambda label, p: (f"{results['summary'][label][p]['train_wins']}/{results['summary'][label][p]['tasks']}, "
                             f"{results['summary'][label][p]['valid_wins']}/{results['summary'][label][p]['tasks']}")
    labels = [o["label"] for o in results["lopts"]]
    if started:
        return {"date": results["date"], "lopts": ", ".join(f"{o['label']} ({o['digest'][:12]})" for o in
                                                            results["lopts"]) or "baselines only",
                "command": results["command"], "zero_tune": "started", "tuned": "started", "out": str(out)}
    return {"date": results["date"], "lopts": ", ".join(f"{o['label']} ({o['digest'][:12]})" for o in results["lopts"])
            or "baselines only", "command": results["command"],
            "zero_tune": "; ".join(f"{l}: {wins(l, 'zero_tune')}" for l in labels) or "–",
            "tuned": "; ".join(f"{l}: {wins(l, 'tuned')}" for l in labels) or "–", "out": str(out)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", required=True, help=f"one of {list(suites.SUITES)}")
    ap.add_argument("--lopt", required=True, help="comma-separated learned-optimizer files or pretrained names "
                                                  "(empty: the baselines alone)")
    ap.add_argument("--quick", action="store_true", help="the suite's quick subset")
    ap.add_argument("--part", type=int, default=None,
                    help="run one part of a suite that has parts (test: 1 or 2); the other parts' finished "
                         "tasks in --out are kept")
    ap.add_argument("--tasks", default="", help="comma-separated task labels (default: the whole suite)")
    ap.add_argument("--seeds", type=int, default=3, help="evaluation seeds per (task, optimizer)")
    ap.add_argument("--steps", type=int, default=None, help="every task's horizon (default: each task's own)")
    ap.add_argument("--baselines", default=",".join(bl.BASELINES),
                    help="comma-separated subset of the baselines; empty for the learned optimizers alone")
    ap.add_argument("--baselines_from", default=None,
                    help="an earlier run's directory: reuse its tuned baselines, run only the learned optimizers")
    ap.add_argument("--out", default=None, help="output directory (default runs/eval/<suite>[_quick])")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    ap.add_argument("--resume", action="store_true",
                    help="keep the tasks an interrupted run of the same evaluation in --out finished")
    ap.add_argument("--multipliers", default=",".join(f"{m:g}" for m in bl.LEARNED_MULTIPLIERS),
                    help="comma-separated grid of the learned optimizers' multiplier under equal tuning "
                         "(default: as many points as Adam's grid; '1' screens zero-tune alone)")
    ap.add_argument("--lopt_options", default="",
                    help="comma-separated NAME=VALUE arguments for every learned optimizer's optimizer "
                         "(e.g. weight_decay=0.1); values are numbers or true/false")
    ap.add_argument("--compile_cache", default=None,
                    help=f"directory of JAX's persistent compilation cache; 'none' turns it off "
                         f"(default: ${compile_cache.ENV}, else ~/.cache/lopt/jax)")
    args = ap.parse_args(argv)
    command = "python -m evaluation.evaluate " + shlex.join(sys.argv[1:] if argv is None else argv)
    split = lambda s: [x for x in s.split(",") if x]

    def job() -> dict:
        compile_cache.enable(compile_cache.resolve(args.compile_cache))
        return evaluate(args.suite, split(args.lopt), seeds=args.seeds, out_dir=args.out, tasks=split(args.tasks),
                        quick=args.quick, steps=args.steps, baselines=split(args.baselines),
                        baselines_from=args.baselines_from, plots=not args.no_plots, command=command,
                        resume=args.resume, part=args.part, lopt_options=parse_options(args.lopt_options),
                        multipliers=_numbers("--multipliers", args.multipliers))

    return run_cli(job)


def _numbers(flag: str, text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EvaluateError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def parse_options(text: str, flag: str = "--lopt_options", names: bool = False) -> dict[str, float | int | bool | str]:
    """"a=1,b=0.5,c=true" as {"a": 1, "b": 0.5, "c": True}; with `names`, a value that is an
    identifier is kept as a string. A malformed pair is an EvaluateError.

    >>> parse_options("weight_decay=0.1,newton=false")
    {'weight_decay': 0.1, 'newton': False}
    >>> parse_options("relative_step=0.1,relative_to=init", "--adopt", names=True)
    {'relative_step': 0.1, 'relative_to': 'init'}
    """
    out: dict[str, float | int | bool | str] = {}
    for pair in (p for p in text.split(",") if p):
        name, sep, value = pair.partition("=")
        if not sep or not name.strip().isidentifier():
            raise EvaluateError(f"{flag}: expected NAME=VALUE, got {pair!r}")
        v = value.strip().lower()
        if v in ("true", "false"):
            out[name.strip()] = v == "true"
            continue
        if names and value.strip().isidentifier():
            out[name.strip()] = value.strip()
            continue
        try:
            out[name.strip()] = int(v) if v.lstrip("+-").isdigit() else float(v)
        except ValueError:
            raise EvaluateError(f"{flag}: {name.strip()}={value!r} is not a number or true/false"
                                + (" or a name" if names else "")) from None
    return out


def run_cli(job: Callable[[], dict]) -> int:
    """Runs an evaluation and prints its tables: 0; a bad file, name, setting or missing data
    prints one `error:` line instead: 2."""
    from evaluation import tables
    try:
        results = job()
    except (lopt.LoptFileError, inner_tasks.DatasetNotFoundError, inner_tasks.DatasetFormatError, EvaluateError,
            reuse.BaselineReuseError, ledger.LedgerError, compile_cache.CompileCacheError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(tables.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
