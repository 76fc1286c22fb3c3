"""Property test of the command line: whatever a careless or hostile user types, every command
ends with exit 0, or exit 2 and one line on stderr (argparse's own usage errors aside), never a
traceback, and no file outside the folders it was told to write changes."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from resnetkit.cli import main
from resnetkit.train import train
from train_helpers import tiny_config

# Values a user could type for any flag: zero, negative, NaN, inf, huge, empty, wrong type, odd
# paths. Path-like values are resolved inside the fuzzing folder (see `fill`).
VALUES = st.sampled_from(
    [
        "0",
        "-1",
        "1",
        "2",
        "nan",
        "inf",
        "-inf",
        "1e308",
        "99999999999999999999",
        "",
        "abc",
        "0.5",
        "{tmp}/new",
        "{user}",
        "{tmp}",
        "{run}",
        "{ckpt}",
        "/dev/null",
        "..",
        ".",
        "a/b",
        "{tmp}/missing/deeper/x",
    ]
)
# RESNETKIT_FUZZ_EXAMPLES=200 explores further (random examples); CI runs the same 12 each time.
EXAMPLES = int(os.environ.get("RESNETKIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 12,
    deadline=None,
    derandomize=not EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished tiny run, an image and a file of the user's, shared by every example."""
    root = tmp_path_factory.mktemp("fuzz")
    run_dir = train(tiny_config(root / "made", epochs=1, tensorboard=False)).run_dir
    image = root / "photo.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(image)
    (root / "afile").write_text("the user's file")
    spec = root / "made" / "tiny.yaml"
    return {"root": root, "run": run_dir, "image": image, "spec": spec}


def snapshot(world, overwrite=False):
    """Every file no command may change: the run, the image and (unless the command was given
    --overwrite, which may replace an output the user names) the user's file."""
    paths = [*world["run"].rglob("*"), world["image"]]
    paths += [] if overwrite else [world["root"] / "afile"]
    return {p: p.read_bytes() for p in paths if p.is_file()}


def fill(text, world, out):
    return text.format(
        tmp=out,
        user=world["root"] / "afile",
        run=world["run"],
        ckpt=world["run"] / "checkpoints" / "best.safetensors",
    )


def run_cli(argv, capsys):
    """Exit code and stderr; argparse's usage errors are SystemExit(2) and count as exit 2."""
    capsys.readouterr()
    try:
        code = main(argv)
        usage = False
    except SystemExit as exc:
        code, usage = exc.code, True
    return code, usage, capsys.readouterr().err


def check(argv, world, tmp_path_factory, capsys):
    before = snapshot(world, "--overwrite" in argv)
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))  # default output folders land here, not in the repo
    try:
        code, usage, err = run_cli(argv, capsys)
    finally:
        os.chdir(cwd)
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 2 and not usage:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and ": error: " in lines[0], (argv, err)
    after = snapshot(world, "--overwrite" in argv)
    assert {p: after.get(p) for p in before} == before, argv  # new files (a run inside) are fine


def flags(*names):
    """One or two (flag, value) pairs from `names`."""
    pair = st.tuples(st.sampled_from(names), VALUES)
    return st.lists(pair, min_size=1, max_size=2, unique_by=lambda p: p[0])


def as_argv(pairs, world, out):
    return [item for flag, value in pairs for item in (flag, fill(value, world, out))]


TRAIN_FLAGS = (
    "--epochs",
    "--batch-size",
    "--lr",
    "--warmup-epochs",
    "--label-smoothing",
    "--momentum",
    "--weight-decay",
    "--milestones",
    "--subset",
    "--image-size",
    "--val-fraction",
    "--max-steps",
    "--seed",
    "--name",
    "--out-dir",
    "--config",
    "--drop-rate",
    "--crop-padding",
    "--cutout",
    "--checkpoint-every-steps",
    "--keep-checkpoints",
    "--max-bad-steps",
    "--threads",
    "--model",
    "--data",
    "--data-dir",
    "--pretrained",
    "--resume",
)


@FUZZ
@given(pairs=flags(*TRAIN_FLAGS))
def test_train_with_odd_flags_exits_0_or_2_in_one_line(world, tmp_path_factory, capsys, pairs):
    out = tmp_path_factory.mktemp("train")
    base = ["train", "--model", str(world["spec"]), "--data", "synthetic", "--image-size", "16"]
    base += ["--subset", "64", "--epochs", "1", "--batch-size", "32", "--threads", "1", "-q"]
    base += ["--out-dir", str(out / "runs"), "--name", "r", "--no-tensorboard"]
    base += ["--schedule", "step", "--eval-batch-size", "64"]
    check(base + as_argv(pairs, world, out), world, tmp_path_factory, capsys)


@FUZZ
@given(pairs=flags("--batch-size", "--num-workers", "--val-fraction", "--split", "--data"))
def test_eval_with_odd_flags_exits_0_or_2_in_one_line(world, tmp_path_factory, capsys, pairs):
    out = tmp_path_factory.mktemp("eval")
    argv = ["eval", str(world["run"]), *as_argv(pairs, world, out)]
    check(argv, world, tmp_path_factory, capsys)


@FUZZ
@given(pairs=flags("--top-k", "--backend", "--pretrained"), image=VALUES)
def test_predict_with_odd_flags_exits_0_or_2_in_one_line(
    world, tmp_path_factory, capsys, pairs, image
):
    out = tmp_path_factory.mktemp("predict")
    images = [str(world["image"]), fill(image, world, out)]
    argv = ["predict", str(world["run"]), *images, *as_argv(pairs, world, out)]
    check(argv, world, tmp_path_factory, capsys)


@FUZZ
@given(pairs=flags("-o", "--tolerance", "--format"), overwrite=st.booleans())
def test_export_with_odd_flags_exits_0_or_2_and_keeps_the_checkpoint(
    world, tmp_path_factory, capsys, pairs, overwrite
):
    out = tmp_path_factory.mktemp("export")
    argv = ["export", str(world["run"]), "--format", "torchscript", "-o", str(out / "m.pt")]
    argv += as_argv(pairs, world, out) + (["--overwrite"] if overwrite else [])
    check(argv, world, tmp_path_factory, capsys)


@FUZZ
@given(
    model=st.sampled_from(["resnet20", "resnet50", "plain20", "nope", "{ckpt}", "{tmp}/afile"]),
    pairs=flags("--depth", "--num-classes"),
    size=st.lists(VALUES, min_size=3, max_size=3),
)
def test_summary_with_odd_sizes_exits_0_or_2_in_one_line(
    world, tmp_path_factory, capsys, model, pairs, size
):
    out = world["root"]
    sizes = [fill(v, world, out) for v in size]
    argv = ["summary", fill(model, world, out), "--input-size", *sizes, *as_argv(pairs, world, out)]
    check(argv, world, tmp_path_factory, capsys)


@FUZZ
@given(pattern=VALUES, pretrained=st.booleans())
def test_models_with_any_pattern_exits_0_or_2(world, tmp_path_factory, capsys, pattern, pretrained):
    argv = ["models", fill(pattern, world, world["root"])] + (["--pretrained"] * pretrained)
    check(argv, world, tmp_path_factory, capsys)


@settings(FUZZ, max_examples=EXAMPLES or 8)
@given(pairs=flags("--steps", "--batch-size", "--lr", "--momentum", "--seed", "--out"))
def test_inspect_with_odd_flags_exits_0_or_2_in_one_line(world, tmp_path_factory, capsys, pairs):
    assume(("--steps", "99999999999999999999") not in pairs)  # a long run, as asked
    out = tmp_path_factory.mktemp("inspect")
    argv = ["inspect", "gradients", "resnet8", "--quick", "--steps", "1", "--out", str(out / "g")]
    check(argv + as_argv(pairs, world, out), world, tmp_path_factory, capsys)
