"""`resnetkit train`, `eval` and `predict` end to end, on a generated image folder."""

import pytest

from data_fixtures import write_image_folder
from resnetkit.cli import main
from train_helpers import TINY_SPEC


@pytest.fixture
def folder_run(tmp_path):
    """Train the tiny net for 2 epochs on a 3-class folder through the CLI."""
    root = write_image_folder(tmp_path / "shapes", {"cat": 24, "dog": 24, "fox": 24}, size=(20, 20))
    spec = tmp_path / "tiny.yaml"
    TINY_SPEC.to_yaml(spec)
    args = [
        "train",
        "--model",
        str(spec),
        "--data",
        f"folder:{root}",
        "--image-size",
        "16",
        "--val-fraction",
        "0.25",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--num-workers",
        "0",
        "--out-dir",
        str(tmp_path / "runs"),
        "--name",
        "cli",
        "--threads",
        "1",
        "--no-tensorboard",
    ]
    return root, tmp_path / "runs" / "cli", args


def test_train_eval_predict_on_an_image_folder(folder_run, capsys):
    root, run_dir, args = folder_run
    assert main(args) == 0
    out = capsys.readouterr().out
    # A folder without test/: the held-out quarter chooses the checkpoint and is all there is.
    assert "val accuracy" in out and "no test split" in out and "chosen on val" in out
    assert str(run_dir) in out
    assert (run_dir / "checkpoints" / "best.safetensors").is_file()

    assert (
        main(
            ["eval", str(run_dir), "--val-fraction", "0.25", "--split", "val", "--num-workers", "0"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "top-1" in out and "per-class accuracy" in out and "confusion matrix" in out
    assert "18 images" in out  # a quarter of 72, stratified

    image = root / "dog" / "3.png"
    assert main(["predict", str(run_dir), str(image), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image)
    assert len(lines) == 3 and all("%" in line for line in lines[1:])
    names = {line.split()[-1] for line in lines[1:]}
    assert names <= {"cat", "dog", "fox"}


def test_existing_run_is_refused_in_one_line_and_left_alone(folder_run, capsys):
    _, run_dir, args = folder_run
    assert main(args) == 0
    before = (run_dir / "metrics.csv").read_text()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and "Traceback" not in err
    assert (run_dir / "metrics.csv").read_text() == before


def test_flags_override_the_config_file(tmp_path, capsys):
    config = tmp_path / "recipe.yaml"
    config.write_text("data: synthetic\nepochs: 5\nsubset: 64\nimage_size: 16\nmodel: resnet8\n")
    args = [
        "train",
        "--config",
        str(config),
        "--epochs",
        "1",
        "--out-dir",
        str(tmp_path),
        "--name",
        "r",
        "--no-tensorboard",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert "epochs: 1\n" in saved and "subset: 64\n" in saved


@pytest.mark.parametrize(
    ("extra", "says"),
    [([], "; best checkpoint: epoch 1 ("), (["--val-fraction", "0"], ", selected on test)")],
)
def test_the_final_line_says_which_split_chose_the_best_checkpoint(tmp_path, capsys, extra, says):
    args = ["train", "--model", "resnet8", "--data", "synthetic", "--subset", "64"]
    args += ["--image-size", "16", "--epochs", "1", "--out-dir", str(tmp_path), "--name", "r"]
    args += ["--no-tensorboard", "--threads", "1", "-q", *extra]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("test accuracy ") and says in out
    assert ("chosen on val" in out) == (not extra)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "resnet21"], "did you mean"),
        (["train", "--data", "imagenet"], "unknown dataset"),
        (["train", "--data", "folder:/no/such/folder"], "/no/such/folder"),
        (["train", "--lr", "-1"], "'lr'"),
        (["predict", "/no/such.safetensors", "x.png"], "not found"),
        (["eval", "/no/such/run"], "not found"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys, args, message):
    assert main([*args, *(["--out-dir", str(tmp_path)] if args[0] == "train" else [])]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_failed_start_leaves_no_run_folder(tmp_path, capsys):
    assert main(["train", "--model", "resnet21", "--out-dir", str(tmp_path), "--name", "x"]) == 2
    assert not (tmp_path / "x").exists()
