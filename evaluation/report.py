"""Model cards and figures for shipped learned optimizers, from a meta-training workdir and
`evaluation.evaluate` results.

    python -m evaluation.report card --name mulo_mup --workdir runs/mulo_mup --recipe configs/mulo_mup.py \\
        --results runs/eval/heldout_mup --results runs/eval/width_mup --notes notes.md
    python -m evaluation.report results --name celo_generalist --results runs/eval/dev --results runs/eval/test
    python -m evaluation.report width --results runs/eval/width_mup --results runs/eval/width_sp --out w.png
    python -m evaluation.report rescore --results runs/eval/test_celo2_ns

`card` copies WORKDIR/lopt.safetensors to lopt/pretrained/NAME.safetensors (same θ, with the
recipe and compute spent added to its provenance), draws NAME_curve.png from the run's
TensorBoard events and writes NAME.md: usage, recipe and config, compute, curve, results tables
and the hand-written notes. `results` rewrites the results sections of a shipped card (tables,
per-task learning curves and a summary figure of win rates and speed-ups, as PNGs beside the
card) and keeps the rest. `width` plots the final metric against width for each results
directory (one line per learned optimizer, plus any tuned baselines).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Sequence

import jax
import matplotlib
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lopt
from evaluation import plots, protocol, reuse, tables

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PRETRAINED = pathlib.Path(__file__).resolve().parents[1] / "lopt" / "pretrained"
RESUME_GAP_S = 300.0  # a longer pause between two logged steps is a stop and a resume, not compute


Events = str | pathlib.Path | EventAccumulator


def load_events(workdir: Events) -> EventAccumulator:
    """A run's TensorBoard events, read once (every scalar kept); an accumulator passes through."""
    if isinstance(workdir, EventAccumulator):
        return workdir
    acc = EventAccumulator(str(workdir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def scalars(events: Events, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, values, wall times) of one TensorBoard scalar, sorted by step, last write per step."""
    acc = load_events(events)
    if tag not in acc.Tags()["scalars"]:
        raise ValueError(f"{acc.path}: no scalar {tag!r} in its TensorBoard events")
    by_step = {e.step: e for e in acc.Scalars(tag)}
    ordered = [by_step[s] for s in sorted(by_step)]
    return tuple(np.asarray([getattr(e, f) for e in ordered]) for f in ("step", "value", "wall_time"))


def compute_spent(events: Events) -> dict:
    """Meta-steps, wall-clock seconds from the first event on (pauses over RESUME_GAP_S between two
    logged steps left out) and resumes (events files beyond the first: one per start)."""
    acc = load_events(events)
    steps, _, wall = scalars(acc, "meta/loss")
    gaps = np.diff(wall)
    running = gaps[gaps <= RESUME_GAP_S].sum() + max(0.0, wall[0] - acc.FirstEventTimestamp())
    runs = len(list(pathlib.Path(acc.path).glob("events.out.tfevents.*")))  # one per start or resume
    return {"meta_steps": int(steps[-1]), "wall_clock_s": float(running), "resumes": max(0, runs - 1)}


def curve_figure(events: Events, path: pathlib.Path, title: str) -> None:
    """Meta-loss (raw and smoothed) and held-out meta-loss against the meta-step."""
    acc = load_events(events)
    fig, ax = plt.subplots(figsize=(6, 4))
    steps, loss, _ = scalars(acc, "meta/loss")
    ax.plot(steps, loss, color="C0", alpha=0.3, label="meta-loss (training groups)")
    k = max(1, len(loss) // 20)
    ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, "valid"), color="C0", label=f"smoothed ({k} logs)")
    try:
        s, v, _ = scalars(acc, "eval/heldout_meta_loss")
        ax.plot(s, v, "o-", color="C1", label="held-out meta-loss")
    except ValueError:
        pass
    ax.set(title=title, xlabel="meta-step", ylabel="mean training loss / initial loss", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _results(dirs: Sequence[str | pathlib.Path]) -> list[dict]:
    out = []
    for d in dirs:
        f = pathlib.Path(d) / "results.json"
        if not f.is_file():
            raise ValueError(f"{d}: no results.json (run python -m evaluation.evaluate --out {d} first)")
        res = json.loads(f.read_text())
        if res.get("version") != reuse.RESULTS_VERSION:
            raise ValueError(f"{f}: results version {res.get('version')!r}, this report reads "
                             f"{reuse.RESULTS_VERSION}; re-run the evaluation")
        out.append(res)
    return out


def width_figure(results: Sequence[dict], path: pathlib.Path, metric: str = "valid") -> None:
    """Final `metric` (mean over seeds) against width, one line per (results, learned optimizer
    zero-tune or tuned baseline); × marks a run that diverged or ended above its initial loss."""
    fig, ax = plt.subplots(figsize=(6, 4))
    widths: list[int] = []
    for i, res in enumerate(results):
        tasks = sorted(res["tasks"].values(), key=lambda t: t["fingerprint"]["fields"]["width"])
        widths = [t["fingerprint"]["fields"]["width"] for t in tasks]
        param = tasks[0]["fingerprint"]["fields"].get("parametrization", "mup")
        lines = [(o["label"], lambda t, l=o["label"]: t["learned"][l]["zero_tune"], "o-") for o in res["lopts"]]
        lines += [(f"{n} (tuned)", lambda t, n=n: t["baselines"][n][metric], "s--") for n in res["baselines"]]
        for j, (name, get, style) in enumerate(lines):
            ys = np.asarray([np.nan if get(t)[f"{metric}_mean"] is None else get(t)[f"{metric}_mean"] for t in tasks])
            line, = ax.plot(widths, ys, style, color=f"C{(2 * i + j) % 10}", label=f"{name}, {param} model")
            bad = [w for w, t in zip(widths, tasks) if get(t)["nonfinite"] or get(t)["above_initial"]]
            ax.plot(bad, [np.nanmax(ys) if np.isfinite(ys).any() else 1.0] * len(bad), "x", color=line.get_color(),
                    markersize=10)
    ax.set(xscale="log", xlabel="width", ylabel=f"final {protocol.METRIC_NAMES[metric]}",
           title="μP against standard parametrization as width grows")
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def continuation_chain(provenance: dict) -> list[dict]:
    """The files a run continued from (`--config.init_from`), oldest first: init_from, sha256,
    date and meta-training steps of each, from the nested `continues` provenance."""
    chain, prov = [], provenance
    while isinstance(prov.get("continues"), dict):
        c = prov["continues"]
        prov = c.get("provenance") or {}
        chain.append({"init_from": c.get("init_from"), "sha256": c.get("sha256"), "date": prov.get("date"),
                      "meta_training_steps": prov.get("meta_training_steps")})
    return chain[::-1]


def _chain_lines(provenance: dict, compute: dict) -> list[str]:
    chain = continuation_chain(provenance)
    if not chain:
        return []
    lines = ["Continuation chain (`--config.init_from`), oldest first:", ""]
    for i, c in enumerate(chain, 1):
        lines.append(f"{i}. `{c['init_from']}` (sha256 `{str(c['sha256'])[:16]}…`, written {c['date']}): "
                     f"{c['meta_training_steps']} meta-steps")
    lines += [f"{len(chain) + 1}. this run: {compute['meta_steps']} meta-steps; "
              f"{provenance.get('total_meta_training_steps', '?')} meta-steps in all", ""]
    return lines


def results_section(res: dict, name: str, out_dir: pathlib.Path) -> str:
    """A card's section for one evaluation: its tables and, for `name`'s learned optimizer, the
    per-task curves and the summary figure (PNGs written beside the card)."""
    labels = [o["label"] for o in res["lopts"]]
    label = name if name in labels else (labels[0] if len(labels) == 1 else None)
    if label is None:
        raise ValueError(f"results of suite {res['suite']!r} hold {labels}, not {name!r}")
    tag = f"{res['suite']}{'_quick' if res.get('quick') else ''}"
    body = tables.markdown(res).strip().split("\n", 1)[1]  # its own title goes
    lines = [f"## Results: suite `{tag}`", body, ""]
    if res["baselines"]:
        plots.suite_figure(res, label, out_dir / f"{name}_{tag}_curves.png")
        plots.summary_figure(res, out_dir / f"{name}_{tag}_summary.png", only=label)
        lines += [f"![win rates and speed-ups on {tag}]({name}_{tag}_summary.png)", "",
                  f"![learning curves on {tag}]({name}_{tag}_curves.png)", ""]
    return "\n".join(lines)


def replace_results(name: str, results_dirs: Sequence[str], out_dir: pathlib.Path = PRETRAINED,
                    notes: str | None = None) -> pathlib.Path:
    """Rewrites the results sections of NAME.md (every `## Results: …` section, up to `## Config`)
    from `results_dirs`, and with `notes` (a file) the hand-written sections after the
    meta-training curve; the rest of the card stays."""
    path = out_dir / f"{name}.md"
    if not path.is_file():
        raise ValueError(f"no model card {path}")
    text = path.read_text()
    head, sep, config = text.partition("\n## Config\n")
    if not sep:
        raise ValueError(f"{path}: no '## Config' section; not a card this report wrote")
    keep = head.split("\n## Results: ", 1)[0].rstrip("\n")
    if notes is not None:
        image = keep.find("![meta-training curve](")
        if image < 0:
            raise ValueError(f"{path}: no meta-training curve to put the notes after; not a card this report wrote")
        end = keep.find("\n", image)
        keep = keep[:len(keep) if end < 0 else end] + "\n\n" + pathlib.Path(notes).read_text().strip()
    sections = [results_section(res, name, out_dir) for res in _results(results_dirs)]
    path.write_text("\n".join([keep, "", *sections]).rstrip("\n") + "\n" + sep + config)
    return path


def card(name: str, workdir: str, recipe: str, results_dirs: Sequence[str], notes: str | None,
         out_dir: pathlib.Path = PRETRAINED, machine: str = "a 2-core CPU machine",
         adopt: dict | None = None) -> pathlib.Path:
    """Ships WORKDIR's export as NAME.safetensors with its model card NAME.md and NAME_curve.png.

    `results_dirs` hold `evaluation.evaluate` or `evaluation.user_models` results; `machine` says
    where the compute was spent. `adopt` ({setting: value}) ships the same θ under the architecture
    with those settings changed (`arch.adopt`, e.g. a default chosen on `dev` after meta-training);
    the provenance records them as "adopted"."""
    src = pathlib.Path(workdir) / "lopt.safetensors"
    arch, theta, header = lopt.load_theta(src)
    prov = dict(header["provenance"])
    if adopt:
        trained = arch
        try:
            arch = dataclasses.replace(trained, **adopt)
            theta = arch.adopt(theta, trained)
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"--adopt {adopt}: {e}") from None
        prov["adopted"] = {"settings": dict(adopt), "meta_trained_with": dataclasses.asdict(trained)}
    events = load_events(workdir)
    compute = compute_spent(events)
    prov = dict(prov, recipe=recipe, compute=compute, model_card=f"{name}.md")
    out_dir.mkdir(parents=True, exist_ok=True)
    shipped = lopt.save(out_dir / f"{name}.safetensors", arch, theta, prov)
    curve_figure(events, out_dir / f"{name}_curve.png", f"{name}: meta-training")
    results = _results(results_dirs)
    hours = compute["wall_clock_s"] / 3600
    mup_note = "  # + roles=, fan_in= on a μP model" if arch.name == "mulo" else ""
    lines = [
        f"# `{name}`: {arch.name} learned optimizer", "",
        "```python", "import lopt", f'opt = lopt.load("{name}", num_steps=N){mup_note}',
        "```", "",
        f"Architecture `{arch.name}` {json.dumps(lopt.load_theta(shipped)[2]['arch_config'])}; "
        f"{sum(np.size(x) for x in jax.tree.leaves(theta))} meta-parameters; tensor sha256 `{header['sha256'][:16]}…`"
        + (f"; meta-trained with {json.dumps({k: prov['adopted']['meta_trained_with'][k] for k in adopt})}, "
           f"shipped with {json.dumps(adopt)}" if adopt else "") + ".", "",
        "## Recipe", "",
        f"`{recipe}`, trained with `python meta_train.py --config {recipe} --workdir {workdir}` "
        f"(config below, as stored in the file's provenance).", "",
        "## Compute spent", "",
        f"{compute['meta_steps']} meta-steps in {hours:.2f} h of wall-clock ({compute['resumes']} "
        f"resume{'' if compute['resumes'] == 1 else 's'}), on {machine}.", "",
        *_chain_lines(header["provenance"], compute),
        "## Meta-training curve", "", f"![meta-training curve]({name}_curve.png)", "",
    ]
    if notes:
        lines += [pathlib.Path(notes).read_text().strip(), ""]
    for res in results:
        lines += [results_section(res, name, out_dir), ""]
    lines += ["## Config", "", "```json", json.dumps(header["provenance"]["config"], indent=1), "```", ""]
    (out_dir / f"{name}.md").write_text("\n".join(lines))
    return shipped


def rescore_dirs(results_dirs: Sequence[str | pathlib.Path]) -> list[pathlib.Path]:
    """Recomputes the verdicts and summary of each directory's results.json under the current
    `evaluation.protocol` from its stored runs (`protocol.rescore`; nothing is re-run) and rewrites
    results.json and results.md atomically."""
    from evaluation.evaluate import write_atomic

    out = []
    for d, res in zip(results_dirs, _results(results_dirs)):
        res = protocol.rescore(res)
        d = pathlib.Path(d)
        write_atomic(d / "results.json", json.dumps(res, indent=1, allow_nan=False))
        write_atomic(d / "results.md", tables.markdown(res))
        out.append(d / "results.json")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("card")
    c.add_argument("--name", required=True)
    c.add_argument("--workdir", required=True)
    c.add_argument("--recipe", required=True)
    c.add_argument("--results", action="append", default=[])
    c.add_argument("--notes", default=None)
    c.add_argument("--machine", default="a 2-core CPU machine", help="where the compute was spent, for the card")
    c.add_argument("--adopt", default="", help="comma-separated SETTING=VALUE: ship the θ under the architecture "
                                              "with these settings changed (e.g. horizon_exponent=0.5)")
    r = sub.add_parser("results", help="rewrite a shipped card's results sections")
    r.add_argument("--name", required=True)
    r.add_argument("--results", action="append", required=True)
    r.add_argument("--notes", default=None, help="hand-written sections to put in place of the card's")
    s = sub.add_parser("rescore", help="recompute verdicts and summaries of results from their stored runs")
    s.add_argument("--results", action="append", required=True)
    w = sub.add_parser("width")
    w.add_argument("--results", action="append", required=True)
    w.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "card":
            from evaluation.evaluate import parse_options
            print(card(args.name, args.workdir, args.recipe, args.results, args.notes, machine=args.machine,
                       adopt=parse_options(args.adopt, "--adopt", names=True)))
        elif args.cmd == "results":
            print(replace_results(args.name, args.results, notes=args.notes))
        elif args.cmd == "rescore":
            print("\n".join(map(str, rescore_dirs(args.results))))
        else:
            width_figure(_results(args.results), pathlib.Path(args.out))
    except (ValueError, lopt.LoptFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
