"""`rk.fit`: any nn.Module on the user's own DataLoaders, with train's run folder, resume and
report."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

import resnetkit as rk
from resnetkit.checkpoint import CheckpointError, load_model_checkpoint
from resnetkit.config import ConfigError
from resnetkit.data import DataError
from resnetkit.train import RunError, train
from resnetkit.training import train as train_module
from resnetkit.weights.io import read_metadata
from train_helpers import StopAfter, tiny_config

TIME_FIELDS = {"images_per_s", "epoch_time", "elapsed"}
CLASSES = 4


def tiny_task(count: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """3x8x8 noise images whose class shifts the colour (red, green, blue or darker): learnable
    in a few dozen steps by a tiny CNN (chance is 25%)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (count,), generator=generator)
    images = torch.randn(count, 3, 8, 8, generator=generator)
    shifts = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-1.0, -1.0, -1.0]])
    return images + shifts[labels][:, :, None, None], labels


class FlippedImages(Dataset):
    """The task with a random horizontal flip per image, drawn from torch's global RNG: a
    transform that runs in the main process (num_workers=0)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.loads = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.loads += 1
        image = self.images[index]
        return (image.flip(-1) if torch.rand(()) < 0.5 else image), self.labels[index]


def tiny_cnn(seed: int = 0, classes: int = CLASSES) -> nn.Module:
    """Not a resnetkit ResNet: a plain nn.Sequential, with dropout so that resuming must also
    restore the global RNG."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(8, classes),
    )


def loaders(seed: int | None = 1, dataset: Dataset | None = None, **kwargs) -> dict:
    """A shuffling train loader (seeded unless `seed` is None), and val and test loaders."""
    images, labels = tiny_task()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    dataset = dataset or TensorDataset(images, labels)
    val_images, val_labels = tiny_task(64, seed=1)
    test_images, test_labels = tiny_task(96, seed=2)
    return (
        dict(
            train_loader=DataLoader(dataset, batch_size=32, shuffle=True, generator=generator),
            val_loader=DataLoader(TensorDataset(val_images, val_labels), batch_size=64),
            test_loader=DataLoader(TensorDataset(test_images, test_labels), batch_size=64),
        )
        | kwargs
    )


def options(tmp_path, **changes) -> dict:
    return (
        dict(
            epochs=2,
            lr=0.1,
            precision="fp32",  # no probe: tests compare weights bit for bit
            threads=1,
            out_dir=str(tmp_path / "runs"),
            name="run",
            tensorboard=False,
            log_every_steps=1,
        )
        | changes
    )


def without_times(history):
    return [{k: v for k, v in row.items() if k not in TIME_FIELDS} for row in history]


def weights(path) -> dict[str, torch.Tensor]:
    return rk.load_weights(tiny_cnn(), path).state_dict()


def test_a_plain_sequential_cnn_learns_a_tiny_synthetic_task_from_dataloaders(tmp_path):
    model = tiny_cnn()
    result = rk.fit(model, **loaders(), **options(tmp_path, epochs=3))
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"]
    assert last["val_acc"] > 0.8 and last["test_acc"] > 0.8  # chance is 0.25
    assert result.selected_on == "val" and result.class_names == ("0", "1", "2", "3")
    trained = model.state_dict()  # the module given is the one trained
    saved = weights(result.run_dir / "checkpoints/last.safetensors")
    assert all(torch.equal(trained[k], saved[k]) for k in trained)


def test_the_run_folder_records_the_model_and_data_and_has_the_files_of_a_train_run(tmp_path):
    model = tiny_cnn()
    result = rk.fit(model, **loaders(), **options(tmp_path))
    run = result.run_dir
    for name in ("config.yaml", "metrics.csv", "metrics.jsonl", "report.md", "report.html"):
        assert (run / name).is_file(), name
    for name in ("curves.png", "confusion.png", "runtime.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "checkpoints").glob("state-*.pt"))) == 2
    jsonl = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert jsonl == result.history
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["model"], config["data"]) == ("Sequential", "user DataLoader")
    assert config["extra"]["parameters"] == sum(p.numel() for p in model.parameters()) == 276
    assert config["extra"]["loaders"]["train"]["batches"] == 8
    assert config["epochs"] == 2 and config["lr"] == 0.1
    assert not {"batch_size", "crop_padding", "data_dir", "val_fraction"} & set(config)


def test_weights_of_a_user_model_carry_no_spec_and_load_into_the_users_module(tmp_path):
    result = rk.fit(tiny_cnn(), **loaders(), **options(tmp_path, epochs=1))
    best = result.run_dir / "checkpoints/best.safetensors"
    metadata = read_metadata(best)
    assert "spec" not in metadata and "mean" not in metadata
    assert metadata["model_class"] == "torch.nn.modules.container.Sequential"
    assert metadata["selected_on"] == "val"
    with pytest.raises(CheckpointError, match=r"no model spec.*rk\.load_weights"):
        load_model_checkpoint(best)
    model = rk.load_weights(tiny_cnn(seed=5), best).eval()
    images, _ = tiny_task(8)
    assert model(images).shape == (8, CLASSES)


@pytest.mark.parametrize("sampling", ["seeded generator", "DistributedSampler"])
def test_resume_mid_epoch_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, sampling):
    def run(folder, **kwargs):
        images, labels = tiny_task()
        dataset = FlippedImages(images, labels)  # random transform in the main process
        if sampling == "seeded generator":
            data = loaders(seed=7, dataset=dataset)
        else:  # one process: its own shard is the whole set, ordered by (seed, epoch)
            sampler = DistributedSampler(dataset, num_replicas=1, rank=0, seed=7)
            data = loaders(dataset=dataset)
            data["train_loader"] = DataLoader(dataset, batch_size=32, sampler=sampler)
        settings = options(folder, epochs=2, checkpoint_every_steps=3)
        return rk.fit(tiny_cnn(), **data, **settings, **kwargs)

    full = run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", callbacks=[StopAfter(11)])  # epoch 2, batch 3; last state: step 9
    resumed = run(tmp_path / "cut", resume=tmp_path / "cut/runs/run")
    assert without_times(resumed.history) == without_times(full.history)
    a = weights(full.run_dir / "checkpoints/last.safetensors")
    b = weights(resumed.run_dir / "checkpoints/last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_unseeded_loader_resumes_exactly_from_an_epoch_boundary(tmp_path):
    def run(folder, **kwargs):
        return rk.fit(tiny_cnn(), **loaders(seed=None), **options(folder, epochs=3), **kwargs)

    full = run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", callbacks=[StopAfter(10)])  # epoch 2; last state: end of epoch 1
    resumed = run(tmp_path / "cut", resume=tmp_path / "cut/runs/run")
    assert without_times(resumed.history) == without_times(full.history)
    config = yaml.safe_load((resumed.run_dir / "config.yaml").read_text())
    assert config["extra"]["loaders"]["train"]["order_on_resume"].startswith(
        "exact from an epoch boundary; resumed mid-epoch the rest of the epoch is a new random"
    )


def test_a_resumed_run_skips_the_batches_it_already_trained_on_without_loading_them(tmp_path):
    images, labels = tiny_task()
    settings = options(tmp_path, epochs=1, checkpoint_every_steps=3)
    first = FlippedImages(images, labels)
    with pytest.raises(KeyboardInterrupt):
        rk.fit(tiny_cnn(), **loaders(dataset=first), **settings, callbacks=[StopAfter(4)])
    second = FlippedImages(images, labels)
    rk.fit(tiny_cnn(), **loaders(dataset=second), **settings, resume=tmp_path / "runs/run")
    # 32 images of the first batch (fit's look before training), then batches 4 to 8 of 8.
    assert second.loads == 32 + 5 * 32


def scripted_accuracies(monkeypatch, by_count):
    """Evaluate for real, then report scripted top-1 per split (told apart by image count)."""
    real, calls = train_module.evaluate, {}

    def fake(model, loader, *args, **kwargs):
        result = real(model, loader, *args, **kwargs)
        script = by_count[result.count]
        calls[result.count] = calls.get(result.count, -1) + 1
        return dataclasses.replace(result, top1=script[calls[result.count]])

    monkeypatch.setattr(train_module, "evaluate", fake)


def test_the_val_loader_chooses_best_and_the_test_loader_is_only_reported(tmp_path, monkeypatch):
    scripted_accuracies(monkeypatch, {64: [0.3, 0.9, 0.5], 96: [0.8, 0.2, 0.4]})
    result = rk.fit(tiny_cnn(), **loaders(), **options(tmp_path, epochs=3))
    assert result.selected_on == "val" and result.best_accuracy == 0.9
    assert [r["test_acc"] for r in result.history] == [0.8, 0.2, 0.4]
    best = read_metadata(result.run_dir / "checkpoints/best.safetensors")
    assert (best["epoch"], best["selected_on"], best["test_acc"]) == ("2", "val", "0.2")
    report = (result.run_dir / "report.md").read_text()
    assert "best checkpoint: epoch 2, val accuracy 90.00%, test accuracy 20.00%" in report
    assert "chosen on the val_loader (64 images); the test split is only reported" in report


def test_without_a_val_loader_the_test_loader_chooses_and_the_report_says_so(tmp_path, monkeypatch):
    scripted_accuracies(monkeypatch, {96: [0.3, 0.9, 0.5]})
    data = loaders(val_loader=None)
    result = rk.fit(tiny_cnn(), **data, **options(tmp_path, epochs=3))
    assert result.selected_on == "test" and result.best_row["epoch"] == 2
    report = (result.run_dir / "report.md").read_text()
    assert "selected on test" in report and "(no val_loader was given)" in report
    assert "val_acc" not in (result.run_dir / "metrics.csv").read_text()


def test_without_held_out_loaders_nothing_is_evaluated_and_no_best_is_written(tmp_path):
    data = loaders(val_loader=None, test_loader=None)
    result = rk.fit(tiny_cnn(), **data, **options(tmp_path))
    assert all(row["test_acc"] is None for row in result.history)
    assert (result.run_dir / "checkpoints/last.safetensors").is_file()
    assert not (result.run_dir / "checkpoints/best.safetensors").exists()
    assert (
        "not selected: there was no validation or test data"
        in (result.run_dir / "report.md").read_text()
    )


def test_ema_weights_in_bf16_are_what_the_checkpoints_ship(tmp_path):
    result = rk.fit(tiny_cnn(), **loaders(), **options(tmp_path, precision="bf16", ema_decay=0.9))
    metadata = read_metadata(result.run_dir / "checkpoints/last.safetensors")
    assert (metadata["weights"], metadata["precision"]) == ("ema (decay 0.9)", "bf16")
    assert result.history[-1]["val_acc"] > 0.25


def test_class_names_come_from_the_argument_else_the_datasets_classes(tmp_path):
    data = loaders()
    data["train_loader"].dataset.classes = ["a", "b", "c", "d"]  # as torchvision's have
    result = rk.fit(tiny_cnn(), **data, **options(tmp_path, epochs=1))
    assert result.class_names == ("a", "b", "c", "d")
    names = ("w", "x", "y", "z")
    again = rk.fit(tiny_cnn(), **data, class_names=names, **options(tmp_path, epochs=1, name="b"))
    assert again.class_names == names
    metadata = read_metadata(again.run_dir / "checkpoints/last.safetensors")
    assert json.loads(metadata["class_names"]) == list(names)


def test_a_fit_run_resumes_only_with_fit_and_a_model_like_the_one_it_trained(tmp_path):
    settings = options(tmp_path, epochs=1)
    run_dir = rk.fit(tiny_cnn(), **loaders(), **settings).run_dir
    with pytest.raises(RunError, match=r"made by resnetkit\.fit; resume it with rk\.fit\("):
        train(None, resume=run_dir)
    with pytest.raises(RunError, match="it trained a Sequential of 276 parameters, but the model"):
        rk.fit(tiny_cnn(classes=5), **loaders(), **settings, resume=run_dir)
    with pytest.raises(RunError, match="cannot change lr when resuming"):
        rk.fit(tiny_cnn(), **loaders(), **(settings | {"lr": 0.5}), resume=run_dir)
    other_batches = loaders()
    other_batches["train_loader"] = DataLoader(TensorDataset(*tiny_task()), batch_size=64)
    with pytest.raises(RunError, match="batch_size 32, batches 8; the one given has samples 256"):
        rk.fit(tiny_cnn(), **other_batches, **settings, resume=run_dir)
    train_run = train(tiny_config(tmp_path / "cli", epochs=1, tensorboard=False)).run_dir
    with pytest.raises(RunError, match="made by resnetkit train"):
        rk.fit(tiny_cnn(), **loaders(), resume=train_run)


def images_only(count=64):
    images, _ = tiny_task(count)
    return DataLoader(TensorDataset(images), batch_size=32)


def with_labels(labels, images=None):
    images = tiny_task(len(labels))[0] if images is None else images
    return DataLoader(TensorDataset(images, labels), batch_size=32)


BAD_INPUTS = {
    "not a loader": (
        dict(train_loader=TensorDataset(*tiny_task(64))),
        DataError,
        "train_loader must be a torch.utils.data.DataLoader, got TensorDataset",
    ),
    "empty": (
        dict(train_loader=with_labels(torch.zeros(0, dtype=torch.long))),
        DataError,
        r"train_loader is empty: it yields no batches \(dataset of 0 samples, batch_size 32",
    ),
    "images only": (
        dict(train_loader=images_only()),
        DataError,
        r"train_loader batch 0 is a list of 1 items; it must be an \(images, labels\) pair",
    ),
    "labels beyond the logits": (
        dict(train_loader=with_labels(torch.arange(64) % 10)),
        DataError,
        r"train_loader batch 0: label \d is not a class of the model's 4 logits",
    ),
    "float labels": (
        dict(train_loader=with_labels(torch.zeros(64))),
        DataError,
        "labels must be a 1-D integer tensor of class indices, got a float32 tensor",
    ),
    "bad val labels": (
        dict(val_loader=with_labels(torch.full((64,), -1))),
        DataError,
        "val_loader batch 0: label -1 is not a class",
    ),
    "images the model cannot take": (
        dict(train_loader=with_labels(torch.zeros(64, dtype=torch.long), torch.ones(64, 1, 8, 8))),
        DataError,
        r"model\(images\) fails on train_loader's first batch \(a float32 tensor of shape "
        r"\(32, 1, 8, 8\)\)",
    ),
    "not a module": (dict(model=lambda x: x), TypeError, "model must be a torch.nn.Module"),
    "a misspelt option": (dict(epoch=3), TypeError, "'epoch'; did you mean 'epochs'"),
    "the loader's batch size": (dict(batch_size=64), ConfigError, "train_loader's batch size"),
    "resnetkit's augmentation": (dict(crop_padding=4), ConfigError, "'crop_padding'"),
    "a head to freeze": (dict(freeze_backbone=True), ConfigError, "get_classifier()"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_are_one_clear_error_line_before_any_run_folder_exists(tmp_path, case):
    changes, error, message = BAD_INPUTS[case]
    arguments = dict(model=tiny_cnn(), **loaders(), **options(tmp_path)) | changes
    with pytest.raises(error, match=message) as info:
        rk.fit(**arguments)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_a_training_batch_of_another_image_size_stops_the_run_naming_the_batch(tmp_path):
    images, labels = tiny_task(64)
    small = tiny_task(32)[0][:, :, :6, :6]
    dataset = [(images[:32], labels[:32]), (small, labels[:32])]
    loader = DataLoader(dataset, batch_size=None)  # the list's items are the batches
    with pytest.raises(DataError, match="train_loader batch 1: images of 6x6, but the first"):
        rk.fit(tiny_cnn(), loader, **options(tmp_path))


DDP_SCRIPT = """
    import json, sys
    import torch, torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
    import resnetkit as rk
    from test_fit_api import tiny_cnn, tiny_task

    dist.init_process_group("gloo")  # the script's own group: fit joins it and leaves it be
    dataset = TensorDataset(*tiny_task())
    train = DataLoader(dataset, batch_size=16, sampler=DistributedSampler(dataset, seed=1))
    val = DataLoader(TensorDataset(*tiny_task(64, seed=1)), batch_size=64)
    result = rk.fit(
        tiny_cnn(), train, val_loader=val, epochs=2, lr=0.1, precision="fp32", threads=1,
        out_dir=sys.argv[1], name="ddp", tensorboard=False,
    )
    row = result.history[-1]
    print(json.dumps(dict(rank=dist.get_rank(), step=row["step"], val_acc=row["val_acc"],
                          group_kept=dist.is_initialized())))
    dist.destroy_process_group()
"""


def json_objects(text: str) -> list[dict]:
    """Every JSON object printed in `text`: the two ranks share one stdout, so one rank's line
    can land in the middle of the other's, with no newline between them."""
    decoder, found, index = json.JSONDecoder(), [], text.find("{")
    while index != -1:
        try:
            value, end = decoder.raw_decode(text, index)
            found.append(value)
        except json.JSONDecodeError:  # a brace in other output, such as a log line
            end = index + 1
        index = text.find("{", end)
    return found


def test_two_gloo_processes_train_a_user_model_on_distributed_sampler_shards(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    source = str(Path(rk.__file__).parents[1])
    tests = str(Path(__file__).parent)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([source, tests])}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*launch, str(script), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    by_rank = {line["rank"]: line for line in json_objects(done.stdout)}
    assert sorted(by_rank) == [0, 1]
    assert by_rank[0]["step"] == by_rank[1]["step"] == 2 * 8  # 128 images a rank, 16 a batch
    assert by_rank[0]["val_acc"] > 0.5 and by_rank[1]["val_acc"] is None  # rank 0 evaluates
    assert by_rank[0]["group_kept"] and by_rank[1]["group_kept"]
    assert (tmp_path / "runs/ddp/checkpoints/best.safetensors").is_file()


def test_mixup_applies_to_a_users_batches_and_the_loss_sees_soft_targets(tmp_path):
    shapes = []

    def loss_fn(logits, targets):
        shapes.append(tuple(targets.shape))
        return torch.nn.functional.cross_entropy(logits, targets)

    result = rk.fit(
        tiny_cnn(), **loaders(), loss_fn=loss_fn, **options(tmp_path, epochs=1, mixup_alpha=0.4)
    )
    assert shapes and all(len(shape) == 2 and shape[1] == 4 for shape in shapes)
    assert "mixup_alpha: 0.4" in (result.run_dir / "config.yaml").read_text()
