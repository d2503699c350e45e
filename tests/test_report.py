"""evaluation.report: compute spent from TensorBoard events, the shipped file and its model card,
and the width figure from real (short) evaluations."""

import json
import time

import jax
import numpy as np
import pytest
from tensorboardX import SummaryWriter

import lopt
import inner_tasks
from evaluation import evaluate as ev
from evaluation import report, suites
from evaluation.tasks import EvalTask



@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A meta-training workdir: events logged every 10 steps, 4 s apart, stopped after step 50 and
    resumed an hour later into a second events file, and an exported μLO file."""
    wd = tmp_path_factory.mktemp("run")
    t0 = time.time()
    first = SummaryWriter(str(wd), filename_suffix=".a")  # its first event is stamped now
    for i, step in enumerate(range(10, 60, 10)):
        first.add_scalar("meta/loss", 1.0 / step, step, walltime=t0 + 20 + 4 * i)
    first.add_scalar("eval/heldout_meta_loss", 1.0, 0, walltime=t0 + 5)
    first.close()
    second = SummaryWriter(str(wd), filename_suffix=".b")  # the resumed run's file
    for i, step in enumerate(range(60, 110, 10)):
        second.add_scalar("meta/loss", 1.0 / step, step, walltime=t0 + 3600 + 20 + 4 * (5 + i))
    second.add_scalar("eval/heldout_meta_loss", 0.5, 100, walltime=t0 + 3700)
    second.close()
    arch = lopt.MuLO(hidden_size=4)
    lopt.save(wd / "lopt.safetensors", arch, arch.init(jax.random.key(3)), {"config": {"seed": 0}})
    return wd


def test_compute_spent_leaves_out_the_pause(workdir):
    got = report.compute_spent(workdir)
    # 20 s before the first log, then 8 gaps of 4 s; the 1-hour pause is a resume, not compute
    assert got == {"meta_steps": 100, "wall_clock_s": pytest.approx(20 + 8 * 4, abs=1.0), "resumes": 1}


def test_scalars_sorted_and_missing_tag(workdir):
    steps, values, _ = report.scalars(workdir, "meta/loss")
    assert steps.tolist() == list(range(10, 110, 10)) and np.allclose(values, 1.0 / steps)
    with pytest.raises(ValueError, match="no scalar 'nope'"):
        report.scalars(workdir, "nope")


@pytest.fixture(scope="module")
def width_results(tmp_path_factory):
    arch = lopt.MuLO(hidden_size=4)
    path = lopt.save(tmp_path_factory.mktemp("lo") / "tiny.safetensors", arch, arch.init(jax.random.key(0)))
    suite = suites.Suite("width", tuple(EvalTask(f"w{w}", inner_tasks.get_spec("mlp", dataset="digits", width=w,
                                                                              depth=1), 10, points=2)
                                        for w in (8, 16)))
    out = tmp_path_factory.mktemp("width")
    ev.evaluate(suite, [str(path)], seeds=1, out_dir=out, baselines=[], multipliers=[1.0], ledger_path=None)
    with_adam = tmp_path_factory.mktemp("width_adam")
    ev.evaluate(suite, [str(path)], seeds=1, out_dir=with_adam, baselines=["adam"], lrs={"adam": [1e-2]},
                multipliers=[1.0], ledger_path=None)
    return out, with_adam


def test_card_ships_the_same_theta_with_provenance_and_a_card(workdir, width_results, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("Hand-written findings.")
    shipped = report.card("tiny_lo", str(workdir), "configs/tiny.py", [str(width_results[0])], str(notes),
                          out_dir=tmp_path / "pretrained")
    arch, theta, header = lopt.load_theta(shipped)
    arch0, theta0, header0 = lopt.load_theta(workdir / "lopt.safetensors")
    assert arch == arch0 and header["sha256"] == header0["sha256"]
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta0)))
    prov = header["provenance"]
    assert prov["recipe"] == "configs/tiny.py" and prov["compute"]["meta_steps"] == 100
    md = (tmp_path / "pretrained" / "tiny_lo.md").read_text()
    assert md.startswith("# `tiny_lo`") and 'lopt.load("tiny_lo"' in md and "Hand-written findings." in md
    assert "| w8 |" in md and "| w16 |" in md and "100 meta-steps" in md
    assert (tmp_path / "pretrained" / "tiny_lo_curve.png").stat().st_size > 0
    # the results sections are rewritten from other results, the rest of the card kept
    report.replace_results("tiny_lo", [str(width_results[1])], out_dir=tmp_path / "pretrained")
    new = (tmp_path / "pretrained" / "tiny_lo.md").read_text()
    assert new.count("## Results: ") == 1 and "Hand-written findings." in new and new.endswith(md[md.index("## Config"):])
    notes.write_text("## What it is good for\n\nRewritten findings.")
    report.replace_results("tiny_lo", [str(width_results[1])], out_dir=tmp_path / "pretrained", notes=str(notes))
    again = (tmp_path / "pretrained" / "tiny_lo.md").read_text()
    assert "Rewritten findings." in again and "Hand-written findings." not in again and "## Meta-training curve" in again
    assert again.count("## Results: ") == 1 and again.endswith(md[md.index("## Config"):])
    assert "best baseline" in new and "tiny zero-tune" in new and "![learning curves on width](tiny_lo_width_curves.png)" in new
    for png in ("tiny_lo_width_curves.png", "tiny_lo_width_summary.png"):
        assert (tmp_path / "pretrained" / png).stat().st_size > 0
    with pytest.raises(ValueError, match="no model card"):
        report.replace_results("nope", [str(width_results[1])], out_dir=tmp_path / "pretrained")


def test_width_figure_and_errors(width_results, tmp_path, capsys):
    png = tmp_path / "w.png"
    assert report.main(["width", "--results", str(width_results[0]), "--results", str(width_results[1]),
                        "--out", str(png)]) == 0
    assert png.stat().st_size > 0
    assert json.loads((width_results[0] / "results.json").read_text())["baselines"] == []
    assert report.main(["width", "--results", str(tmp_path / "none"), "--out", str(png)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_card_adopts_a_setting_chosen_after_meta_training(workdir, tmp_path, capsys):
    """`--adopt` ships the same θ under the architecture with a setting changed (Celo2's horizon
    exponent here), recording what it was meta-trained with; a setting the architecture cannot
    adopt is one error and ships nothing."""
    wd = tmp_path / "run"
    wd.mkdir()
    for f in workdir.glob("events*"):
        (wd / f.name).write_bytes(f.read_bytes())
    trained = lopt.Celo2(horizon_exponent=0.0)
    theta = jax.tree.map(lambda x: x + 0.1, trained.init(jax.random.key(5)))
    lopt.save(wd / "lopt.safetensors", trained, theta, {"config": {"seed": 0}})
    out = tmp_path / "pretrained"
    shipped = report.card("c2", str(wd), "configs/celo2/stage1.py", [], None, out_dir=out,
                          adopt={"horizon_exponent": 0.5})
    arch, theta2, header = lopt.load_theta(shipped)
    assert arch == lopt.Celo2(horizon_exponent=0.5) and arch.peak(4000) == pytest.approx(5e-4)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta2)))
    adopted = header["provenance"]["adopted"]
    assert adopted["settings"] == {"horizon_exponent": 0.5} and adopted["meta_trained_with"]["horizon_exponent"] == 0.0
    md = (out / "c2.md").read_text()
    assert 'shipped with {"horizon_exponent": 0.5}' in md and '"horizon_exponent": 0.5, ' in md.split("; ")[0]
    assert report.main(["card", "--name", "c3", "--workdir", str(wd), "--recipe", "configs/celo2/stage1.py",
                        "--adopt", "hidden_size=8"]) == 2
    assert "--adopt {'hidden_size': 8}" in capsys.readouterr().err and not (report.PRETRAINED / "c3.md").exists()
    from evaluation.evaluate import parse_options
    adopt = parse_options("relative_step=0.1,relative_to=init", "--adopt", names=True)  # as `main` parses it
    report.card("c4", str(wd), "configs/celo2/stage1.py", [], None, out_dir=out, adopt=adopt)
    arch4, _, header4 = lopt.load_theta(out / "c4.safetensors")
    assert arch4 == lopt.Celo2(horizon_exponent=0.0, relative_step=0.1, relative_to="init")
    assert header4["provenance"]["adopted"]["settings"] == {"relative_step": 0.1, "relative_to": "init"}
