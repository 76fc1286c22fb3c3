"""Experiments: reports built from the runs' own metrics, plots, and resume instead of retrain.

Every experiment here runs in its `--quick` form: synthetic 16x16 images, a few seconds a run.
"""

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import resnetkit as rk
from resnetkit.cli import main
from resnetkit.experiments import (
    ExperimentError,
    ExperimentSummary,
    RunSummary,
    StepLog,
    cifar_spec,
    degradation_verdict,
    gradient_flow,
    plan_compare,
    read_metrics,
    recipe,
    run_compare,
    run_degradation,
)
from resnetkit.experiments.degradation import degradation_plans, summarise_degradation
from resnetkit.experiments.render import compare_markdown, write_report
from resnetkit.experiments.runs import FINISHED, RESUMED, TRAINED
from resnetkit.experiments.summarise import Curves, Section, summarise_runs
from resnetkit.progress import format_duration
from resnetkit.training.callbacks import StepMetrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table(report: str, first_column: str = "model") -> dict[str, dict[str, str]]:
    """Rows of every Markdown table whose first header is `first_column`, keyed by that cell."""
    rows: dict[str, dict[str, str]] = {}
    header = None
    for line in report.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif header[0] == first_column and not set(cells[0]) <= set("-:"):
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def expected_cells(run_dir) -> dict[str, str]:
    """What the report must show for a run, computed here straight from its metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    best = max(r["test_acc"] for r in rows if r["test_acc"] is not None)
    return {
        "train error (%)": f"{100 * (1 - last['train_acc']):.2f}",
        "test error (%)": f"{100 * (1 - last['test_acc']):.2f}",
        "best test error (%)": f"{100 * (1 - best):.2f}",
        "wall time": format_duration(last["elapsed"]),
    }


def snapshot_files(folder) -> dict[str, tuple[int, bytes]]:
    """(mtime, content) of every metrics file and checkpoint under `folder`."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".pt", ".csv")]
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def assert_png(path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def degradation(tmp_path_factory):
    """The quick degradation experiment, run once through the CLI."""
    out = tmp_path_factory.mktemp("experiments")
    assert main(["experiment", "degradation", "--quick", "--out-dir", str(out), "-q"]) == 0
    return out, out / "degradation-synthetic"


# -- the recipe and the models -------------------------------------------------------------------


def test_recipe_is_he2015_sgd_with_a_step_schedule_and_no_label_smoothing():
    cfg = recipe()
    assert (cfg.optimizer, cfg.momentum, cfg.nesterov, cfg.lr) == ("sgd", 0.9, False, 0.1)
    assert cfg.schedule == "step" and cfg.milestones == (5.0, 7.5) and cfg.gamma == 0.1
    assert cfg.label_smoothing == 0.0 and cfg.cutout == 0 and cfg.crop_padding == 2
    assert (cfg.data, cfg.subset, cfg.epochs) == ("fashion-mnist", 30_000, 10)
    assert (cfg.precision, cfg.channels_last) == ("auto", True)
    assert recipe(quick=True).data == "synthetic"


def test_cifar_spec_equals_the_registered_nets_and_builds_the_missing_ones():
    assert cifar_spec(20, "none") == rk.get_spec("plain20")
    assert cifar_spec(56, "A") == rk.get_spec("resnet56")
    assert cifar_spec(110, preact=True) == rk.get_spec("preact_resnet110")
    preact56 = cifar_spec(56, preact=True)
    assert preact56.name == "preact_resnet56" and preact56.depth == 56 and preact56.preact
    b = cifar_spec(20, "B")
    assert b.name == "resnet20_B" and rk.count_params(rk.create_model(b)) > rk.count_params(
        rk.create_model("resnet20")
    )
    assert cifar_spec(8, "none").depth == 8
    with pytest.raises(ExperimentError, match="6n\\+2"):
        cifar_spec(21)


def test_degradation_verdict_compares_the_deepest_with_the_shallowest_depth():
    plain, residual = {20: 0.05, 56: 0.08}, {20: 0.04, 56: 0.03}
    first, second = degradation_verdict(plain, residual)
    assert first == (
        "plain56 has higher training error than plain20 (8.00% vs 5.00%): degradation reproduced"
    )
    assert second == "resnet56 ≤ resnet20 training error (3.00% vs 4.00%): residuals fix it"
    first, second = degradation_verdict({20: 0.08, 56: 0.05}, {20: 0.03, 56: 0.04})
    assert first.endswith("degradation not reproduced")
    assert second.endswith("residuals do not fix it here")


def test_step_log_records_the_error_of_each_window_between_two_reports(tmp_path):
    log = StepLog(tmp_path / "steps.jsonl", batch_size=10)
    log.on_epoch_start(None)

    def logged(batch, loss, accuracy):  # running means over the epoch so far
        log.on_step_end(None, StepMetrics(batch, 0, batch, 5, loss, accuracy, 0.0))

    logged(2, loss=1.0, accuracy=0.5)  # batches 1-2: 10 of 20 right
    log.on_step_end(None, None)  # a step that is not a logging step: nothing
    logged(4, loss=0.5, accuracy=0.75)  # batches 3-4: 20 of 20 right
    logged(5, loss=0.5, accuracy=0.8)  # the last batch may be partial: skipped
    rows = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert [r["train_error"] for r in rows] == [0.5, 0.0]
    assert rows[1]["train_loss"] == pytest.approx(0.0) and rows[1]["images"] == 20


# -- degradation -----------------------------------------------------------------------------------


def test_quick_degradation_writes_a_report_with_its_plot_and_a_run_per_model(degradation):
    _, folder = degradation
    report = (folder / "report.md").read_text()
    assert "![training error (dashed) and test error (solid)" in report
    assert_png(folder / "degradation.png")
    for label in ("plain8", "plain14", "resnet8", "resnet14"):
        run = folder / "runs" / label
        assert len(read_metrics(run)) == 2
        assert (run / "train_steps.jsonl").stat().st_size > 0
        assert_png(run / "curves.png")
    # plain8 and plain14 are not registered: their specs are written into the experiment.
    assert rk.ResNetSpec.from_file(folder / "specs" / "plain14.yaml").shortcut == "none"


def test_report_numbers_are_the_runs_metrics(degradation):
    _, folder = degradation
    report = (folder / "report.md").read_text()
    rows = table(report)
    assert set(rows) == {"plain8", "plain14", "resnet8", "resnet14"}
    for label, row in rows.items():
        for column, value in expected_cells(folder / "runs" / label).items():
            assert row[column] == value, (label, column)
    errors = {label: 1 - read_metrics(folder / "runs" / label)[-1]["train_acc"] for label in rows}
    verdict = degradation_verdict(
        {8: errors["plain8"], 14: errors["plain14"]},
        {8: errors["resnet8"], 14: errors["resnet14"]},
    )
    for line in verdict:
        assert f"- {line}" in report
    results = json.loads((folder / "results.json").read_text())
    assert [r["label"] for r in results["runs"]] == ["plain8", "plain14", "resnet8", "resnet14"]


def test_rerunning_skips_finished_runs_without_touching_them(degradation):
    out, folder = degradation
    before = snapshot_files(folder / "runs")
    started = time.perf_counter()
    result = run_degradation(quick=True, out_dir=out)
    elapsed = time.perf_counter() - started
    assert [r.status for r in result.runs] == [FINISHED] * 4
    assert snapshot_files(folder / "runs") == before
    assert elapsed < 20  # only the report and its plot are redrawn


def test_rerunning_with_another_recipe_is_refused_in_one_line(degradation, capsys):
    out, _ = degradation
    args = ["experiment", "degradation", "--quick", "--epochs", "3", "--out-dir", str(out), "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "different recipe" in err and "epochs: 2 -> 3" in err and "--overwrite" in err


def test_an_interrupted_run_resumes_and_a_missing_one_is_started(tmp_path):
    first = run_degradation(quick=True, depths=[8], out_dir=tmp_path, name="exp")
    runs = tmp_path / "exp" / "runs"
    complete = read_metrics(runs / "plain8")
    # plain8 "killed" during its second epoch: the last row and the newest state are gone.
    lines = (runs / "plain8" / "metrics.jsonl").read_text().splitlines(keepends=True)
    (runs / "plain8" / "metrics.jsonl").write_text(lines[0])
    newest = sorted((runs / "plain8" / "checkpoints").glob("state-*.pt"))[-1]
    newest.unlink()
    newest.with_suffix(".pt.sha256").unlink()
    # resnet8 never started.
    shutil.rmtree(runs / "resnet8")

    second = run_degradation(quick=True, depths=[8], out_dir=tmp_path, name="exp")
    assert [r.status for r in first.runs] == [TRAINED, TRAINED]
    assert [r.status for r in second.runs] == [RESUMED, TRAINED]
    resumed = read_metrics(runs / "plain8")
    assert len(resumed) == 2
    assert resumed[0] == complete[0]  # the first epoch was kept, not retrained
    for key in ("train_loss", "train_acc", "test_acc"):  # and resuming on the CPU is exact
        assert resumed[1][key] == pytest.approx(complete[1][key], abs=1e-9)
    report = (tmp_path / "exp" / "report.md").read_text()
    assert "one depth only" in report


# -- compare ---------------------------------------------------------------------------------------


def test_quick_compare_reports_both_pairs_from_shared_runs(tmp_path):
    result = run_compare(quick=True, out_dir=tmp_path)
    folder = tmp_path / "compare-synthetic"
    labels = [r.label for r in result.runs]
    # resnet14 (option A) serves both pairs and is trained once.
    assert labels == ["resnet14", "preact_resnet14", "resnet8", "resnet8_B", "resnet14_B"]
    assert_png(folder / "v1v2.png")
    assert_png(folder / "shortcuts.png")
    assert rk.ResNetSpec.from_file(folder / "specs" / "resnet8_B.yaml").shortcut == "B"
    assert rk.ResNetSpec.from_file(folder / "specs" / "preact_resnet14.yaml").preact
    report = (folder / "report.md").read_text()
    assert "## v1 vs v2 (pre-activation) at depth 14" in report
    assert "## shortcut A (zero-padding) vs B (projection)" in report
    rows = table(report)
    assert set(rows) == set(labels)
    for label, row in rows.items():
        for column, value in expected_cells(folder / "runs" / label).items():
            assert row[column] == value, (label, column)
    for line in result.verdict:
        assert f"- {line}" in report
    # report.html: the same report on one page, both plots embedded side by side, no fetches.
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "class='figures'" in page
    assert "<h2>v1 vs v2 (pre-activation) at depth 14</h2>" in page
    assert "href='runs/resnet14/report.html'" in page and "http" not in page.split("<body>")[1]

    again = run_compare(quick=True, out_dir=tmp_path, pairs="v1v2")
    assert [r.status for r in again.runs] == [FINISHED, FINISHED]


def test_compare_rejects_an_unknown_pair(tmp_path):
    with pytest.raises(ExperimentError, match="allowed values: v1v2, shortcuts, all"):
        run_compare(pairs="bottleneck", quick=True, out_dir=tmp_path)


# -- gradient flow ---------------------------------------------------------------------------------


def test_gradient_flow_measures_every_conv_and_linear_weight_in_forward_order():
    torch.manual_seed(0)
    model = rk.create_model(cifar_spec(8, "B"))
    batches = [(torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))) for _ in range(3)]
    report = gradient_flow(model, batches, steps=4)
    weights = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(report.layers) == len(weights) == len(report.init.grad_norms)
    assert report.layers[0] == "conv1.weight" and report.layers[-1] == "fc.weight"
    position = {name: i for i, name in enumerate(report.layers)}
    assert position["layer2.0.conv2.weight"] < position["layer3.0.conv1.weight"]
    assert report.units == ("layer1.0", "layer2.0", "layer3.0")
    assert len(report.init.act_std) == len(report.trained.act_std) == 3
    assert all(g > 0 for g in report.init.grad_norms)
    assert report.trained.grad_norms != report.init.grad_norms
    assert len(report.losses) == 4  # the three batches, then the first again


def test_inspect_gradients_writes_report_json_and_plots(tmp_path, capsys):
    out = tmp_path / "grads"
    assert main(["inspect", "gradients", "plain20", "resnet8", "--quick", "--out", str(out)]) == 0
    assert "plain20: loss" in capsys.readouterr().out
    data = json.loads((out / "gradients.json").read_text())
    assert [m["model"] for m in data["models"]] == ["plain20", "resnet8"]
    plain = data["models"][0]
    assert len(plain["layers"]) == 20  # 19 convolutions and the classifier
    assert len(plain["init"]["grad_norms"]) == len(plain["trained"]["grad_norms"]) == 20
    assert len(plain["units"]) == len(plain["init"]["act_std"]) == 9
    assert_png(out / "gradients.png")
    assert_png(out / "activations.png")
    assert "plain20" in (out / "report.md").read_text()


def test_inspect_gradients_never_replaces_a_report_without_overwrite(tmp_path, capsys):
    out = tmp_path / "grads"
    out.mkdir()
    (out / "report.md").write_text("my own notes")
    args = ["inspect", "gradients", "resnet8", "--quick", "--steps", "1", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert (out / "report.md").read_text() == "my own notes"
    assert main([*args, "--overwrite"]) == 0
    assert "resnet8" in (out / "report.md").read_text()


def test_inspect_gradients_refuses_a_non_finite_learning_rate(tmp_path, capsys):
    args = ["inspect", "gradients", "resnet8", "--quick", "--out", str(tmp_path / "g")]
    assert main([*args, "--lr", "nan"]) == 2
    assert "'lr'" in capsys.readouterr().err and not (tmp_path / "g").exists()


@pytest.mark.parametrize("name", ["..", "a/b", "/abs"])
def test_experiment_name_must_be_a_plain_folder_name(tmp_path, capsys, name):
    args = ["experiment", "degradation", "--quick", "--out-dir", str(tmp_path), "--name", name]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2 and "plain folder name" in capsys.readouterr().err


def test_experiment_never_writes_into_a_folder_that_is_not_an_experiment(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my own report")
    args = ["experiment", "degradation", "--quick", "--out-dir", str(tmp_path), "--name", "mine"]
    assert main(args) == 2
    assert "not a resnetkit experiment folder" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["report.md"]
    assert (mine / "report.md").read_text() == "my own report"


@pytest.mark.parametrize(
    ("flag", "value"), [("--batch-size", "99999999999999999999"), ("--seed", "-1")]
)
def test_inspect_gradients_refuses_impossible_batch_sizes_and_seeds(tmp_path, capsys, flag, value):
    args = ["inspect", "gradients", "resnet8", "--quick", "--out", str(tmp_path / "g")]
    assert main([*args, flag, value]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- plan -> run -> summarise -> render ------------------------------------------------------------


def test_the_compare_plan_is_data_made_before_anything_trains():
    plan = plan_compare("all", quick=True)
    assert [kind for kind, _ in plan.sections] == ["v1v2", "shortcuts"]
    # resnet14 (option A) serves both pairs and is planned once.
    labels = [p.label for p in plan.runs]
    assert labels == ["resnet14", "preact_resnet14", "resnet8", "resnet8_B", "resnet14_B"]
    assert not plan.warms_up and plan_compare("v1v2", depth=110).warms_up
    assert not plan_compare("shortcuts", depth=110).warms_up
    with pytest.raises(ExperimentError, match="'pairs'"):
        plan_compare("bottleneck")


def test_summarising_reads_the_runs_and_writes_nothing(degradation):
    _, folder = degradation
    plans = degradation_plans((8, 14))
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    runs = summarise_runs(folder, plans, [FINISHED] * len(plans))
    summary = summarise_degradation(runs, (8, 14), recipe(quick=True), folder, "resnetkit ...")
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    assert summary.verdict == tuple(json.loads((folder / "results.json").read_text())["verdict"])
    (section,) = summary.sections
    assert [c.label for _, curves in section.panels for c in curves] == [
        "plain-8",
        "plain-14",
        "ResNet-8",
        "ResNet-14",
    ]


def made_up_run(label: str, train_error: float, test_error: float) -> RunSummary:
    return RunSummary(
        label,
        Path("runs") / label,
        TRAINED,
        2,
        16,
        train_error,
        test_error,
        test_error,
        61.0,
        1234,
        note=f"the {label} net",
    )


def test_a_report_renders_from_summarised_numbers_alone(tmp_path):
    a, b = made_up_run("resnet8", 0.25, 0.3), made_up_run("resnet8_B", 0.125, 0.2)
    curves = Curves("x", (1.0, 2.0), (0.5, 0.25), (1.0, 2.0), (0.6, 0.3))
    section = Section(
        "shortcuts", "shortcut A vs B", (a, b), (("resnet8", (curves,)),), "epoch", ("B is better",)
    )
    summary = ExperimentSummary(
        "compare",
        tmp_path,
        recipe(quick=True),
        (a, b),
        (section,),
        ("B is better",),
        "resnetkit experiment compare --quick",
        results={"pairs": "shortcuts"},
    )
    result = write_report(summary, compare_markdown(summary))  # no run folder exists at all
    report = result.report.read_text()
    rows = table(report)
    assert rows["resnet8_B"]["train error (%)"] == "12.50" and rows["resnet8"]["params"] == "1,234"
    assert rows["resnet8"]["what"] == "the resnet8 net" and rows["resnet8"]["wall time"] == "01:01"
    assert "- B is better" in report and "resnetkit experiment compare --quick" in report
    assert_png(tmp_path / "shortcuts.png")
    assert (tmp_path / "report.html").is_file()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert (saved["experiment"], saved["pairs"]) == ("compare", "shortcuts")
    assert [r["label"] for r in saved["runs"]] == ["resnet8", "resnet8_B"]
