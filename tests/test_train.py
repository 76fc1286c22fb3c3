"""Training: the run folder, reproducibility, exact resume, and the rules of the loop."""

import csv
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

import resnetkit as rk
from resnetkit import train as train_module
from resnetkit.checkpoint import list_states, load_model_checkpoint
from resnetkit.train import NonFiniteLossError, RunError, param_groups, train
from train_helpers import StopAfter, tiny_config

TIME_FIELDS = {"images_per_s", "epoch_time", "elapsed"}


def without_times(history):
    return [{k: v for k, v in row.items() if k not in TIME_FIELDS} for row in history]


def test_run_folder_holds_config_metrics_checkpoints_tensorboard_and_report(tmp_path):
    result = train(tiny_config(tmp_path))
    run = result.run_dir
    for name in (
        "config.yaml",
        "metrics.csv",
        "metrics.jsonl",
        "report.md",
        "curves.png",
        "confusion.png",
        "checkpoints/best.safetensors",
        "checkpoints/last.safetensors",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "train_acc", "test_acc", "lr", "images_per_s", "epoch_time"} <= set(
        rows[0]
    )
    jsonl = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert jsonl == result.history
    assert len(list_states(run / "checkpoints")) == 2
    report = (run / "report.md").read_text()
    assert f"{result.history[-1]['test_acc']:.2%}" in report


def test_checkpoint_carries_spec_class_names_and_normalisation(tmp_path):
    result = train(tiny_config(tmp_path, epochs=1))
    loaded = load_model_checkpoint(result.run_dir)
    assert loaded.class_names == result.class_names and len(loaded.class_names) == 10
    assert loaded.model.spec.num_classes == 10
    assert len(loaded.mean) == 3 and loaded.image_size == (16, 16)


def test_training_learns_the_synthetic_task(tmp_path):
    result = train(tiny_config(tmp_path, epochs=3, subset=512))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_accuracy > 0.5  # chance is 0.1


def test_same_seed_gives_identical_weights_and_metrics_on_cpu(tmp_path):
    a = train(tiny_config(tmp_path / "a", epochs=1))
    b = train(tiny_config(tmp_path / "b", epochs=1))
    assert without_times(a.history) == without_times(b.history)
    sa = load_model_checkpoint(a.run_dir / "checkpoints/last.safetensors").model.state_dict()
    sb = load_model_checkpoint(b.run_dir / "checkpoints/last.safetensors").model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_existing_run_folder_is_never_overwritten_without_overwrite(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    first = train(cfg)
    marker = first.run_dir / "metrics.csv"
    before = marker.read_text()
    with pytest.raises(RunError, match="--overwrite"):
        train(cfg)
    assert marker.read_text() == before
    train(cfg, overwrite=True)


def test_resume_mid_epoch_gives_the_same_weights_and_metrics_as_an_uninterrupted_run(tmp_path):
    changes = dict(epochs=2, checkpoint_every_steps=3, drop_rate=0.2)
    full = train(tiny_config(tmp_path / "full", **changes))
    cfg = tiny_config(tmp_path / "cut", **changes)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[StopAfter(11)])  # epoch 2, batch 3 of 8; last state at step 9
    assert [p.name for p in list_states(tmp_path / "cut/runs/run/checkpoints")][-1].endswith(
        "000000009.pt"
    )
    resumed = train(cfg, resume=tmp_path / "cut/runs/run")
    assert without_times(resumed.history) == without_times(full.history)
    a = load_model_checkpoint(full.run_dir / "checkpoints/last.safetensors").model.state_dict()
    b = load_model_checkpoint(resumed.run_dir / "checkpoints/last.safetensors").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader((resumed.run_dir / "metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]


def test_resume_without_a_state_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match=r"no config\.yaml"):
        train(tiny_config(tmp_path), resume=tmp_path / "empty")


def test_no_weight_decay_on_batchnorm_and_bias():
    model = rk.create_model("resnet20")
    decay, no_decay = param_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    bn_and_bias = {id(p) for n, p in model.named_parameters() if p.ndim == 1}
    assert {id(p) for p in no_decay["params"]} == bn_and_bias
    assert id(model.fc.bias) in bn_and_bias and id(model.bn1.weight) in bn_and_bias
    assert id(model.fc.weight) in {id(p) for p in decay["params"]}


def poisoned_loss(bad_calls):
    """The training loss, NaN on the given (1-based) calls."""
    calls = {"n": 0}

    def loss_fn(logits, labels):
        calls["n"] += 1
        loss = F.cross_entropy(logits, labels)
        return loss * float("nan") if calls["n"] in bad_calls else loss

    return loss_fn


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    loss_fn = poisoned_loss(set(range(11, 100)))  # epoch 1 is 8 steps: it completes
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        train(tiny_config(tmp_path), loss_fn=loss_fn)
    checkpoints = tmp_path / "runs/run/checkpoints"
    states = list_states(checkpoints)
    assert [p.name for p in states] == ["state-000000008.pt"]
    model = load_model_checkpoint(checkpoints / "last.safetensors").model
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_a_bounded_number_of_non_finite_steps_is_skipped(tmp_path):
    result = train(tiny_config(tmp_path, max_bad_steps=2), loss_fn=poisoned_loss({3, 5}))
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in result.history)


@pytest.mark.parametrize("precision", ["bf16"])
def test_bf16_autocast_on_cpu_trains(tmp_path, precision):
    result = train(tiny_config(tmp_path, epochs=1, precision=precision))
    assert result.history[-1]["train_loss"] < 2.5


def test_a_diverged_run_stops_instead_of_saving_infinite_batchnorm_statistics(tmp_path):
    cfg = tiny_config(tmp_path, lr=1e3, schedule="constant", epochs=1, tensorboard=False)
    with pytest.raises(NonFiniteLossError, match=r"diverged.*running_var"):
        train(cfg)
    assert not (tmp_path / "runs/run/checkpoints/last.safetensors").exists()
    assert not list_states(tmp_path / "runs/run/checkpoints")


def test_non_finite_loss_before_any_checkpoint_does_not_claim_one_is_kept(tmp_path):
    with pytest.raises(NonFiniteLossError) as info:
        train(tiny_config(tmp_path), loss_fn=poisoned_loss(set(range(1, 100))))
    assert "last good checkpoint" not in str(info.value)
    assert "No checkpoint" in str(info.value)


def test_resume_applies_more_epochs_to_a_step_schedule_and_saves_them(tmp_path, caplog):
    cfg = tiny_config(tmp_path, epochs=1, schedule="step", milestones=(1,), tensorboard=False)
    run_dir = train(cfg).run_dir
    with caplog.at_level("INFO"):
        result = train(None, resume=run_dir, resume_changes={"epochs": 2, "eval_every": 2})
    assert [row["epoch"] for row in result.history] == [1, 2]
    saved = train_module.TrainConfig.from_yaml(run_dir / "config.yaml")
    assert (saved.epochs, saved.eval_every) == (2, 2)
    assert "epochs changed from 1 to 2" in caplog.text


def test_resume_refuses_flags_it_cannot_apply_and_names_them(tmp_path):
    run_dir = train(tiny_config(tmp_path, epochs=1, tensorboard=False)).run_dir
    before = (run_dir / "config.yaml").read_text()
    with pytest.raises(RunError, match="cannot change batch_size, lr when resuming"):
        train(None, resume=run_dir, resume_changes={"lr": 0.5, "batch_size": 64, "epochs": 1})
    with pytest.raises(RunError, match=r"onecycle schedule.*learning rate"):
        train(None, resume=run_dir, resume_changes={"epochs": 6})
    assert (run_dir / "config.yaml").read_text() == before


def test_a_run_stopped_before_its_first_checkpoint_says_to_restart_not_resume(tmp_path):
    cfg = tiny_config(tmp_path, tensorboard=False)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[StopAfter(2)])
    with pytest.raises(RunError) as info:
        train(cfg)
    assert "--resume" not in str(info.value) and "--overwrite" in str(info.value)
    with pytest.raises(RunError, match=r"before its first checkpoint.*--overwrite"):
        train(None, resume=tmp_path / "runs/run")
    assert train(cfg, overwrite=True).history


def test_crop_padding_as_large_as_the_image_is_a_config_error_not_a_crash(tmp_path):
    from resnetkit.config import ConfigError

    with pytest.raises(ConfigError, match="'crop_padding'"):
        train(tiny_config(tmp_path, image_size=2, crop_padding=2, tensorboard=False))
    assert not (tmp_path / "runs" / "run").exists()


def scripted_accuracies(monkeypatch, by_count):
    """Evaluate for real, then report scripted top-1 per split (told apart by image count)."""
    real, calls = train_module.evaluate, {}

    def fake(model, loader, *args, **kwargs):
        result = real(model, loader, *args, **kwargs)
        script = by_count[result.count]
        calls[result.count] = calls.get(result.count, -1) + 1
        return dataclasses.replace(result, top1=script[calls[result.count]])

    monkeypatch.setattr(train_module, "evaluate", fake)


def test_by_default_a_held_out_validation_split_chooses_best_and_test_is_only_reported(
    tmp_path, monkeypatch
):
    # Synthetic data: 2,048 training images of which 10% (200, rounded per class) are held
    # out, and 512 test images; the two splits are told apart by their size.
    scripted_accuracies(monkeypatch, {200: [0.3, 0.9, 0.5], 512: [0.8, 0.2, 0.4]})
    result = train(tiny_config(tmp_path, epochs=3, tensorboard=False))
    assert result.selected_on == "val" and result.best_accuracy == 0.9
    assert [r["val_acc"] for r in result.history] == [0.3, 0.9, 0.5]
    assert [r["test_acc"] for r in result.history] == [0.8, 0.2, 0.4]
    best = load_model_checkpoint(result.run_dir / "checkpoints/best.safetensors").metadata
    assert (best["epoch"], best["selected_on"], best["val_fraction"]) == ("2", "val", "0.1")
    report = (result.run_dir / "report.md").read_text()
    assert "best checkpoint: epoch 2, val accuracy 90.00%, test accuracy 20.00%" in report
    assert "200 validation images held out from training" in report and "seed 0" in report
    header = (result.run_dir / "metrics.csv").read_text().splitlines()[0]
    assert "val_acc" in header and "test_acc" in header


def test_without_a_validation_split_the_report_says_selected_on_test(tmp_path, monkeypatch):
    scripted_accuracies(monkeypatch, {512: [0.3, 0.9, 0.5]})
    result = train(tiny_config(tmp_path, epochs=3, val_fraction=0.0, tensorboard=False))
    assert result.selected_on == "test" and result.best_row["epoch"] == 2
    report = (result.run_dir / "report.md").read_text()
    assert "(selected on test)" in report and "model selection: selected on test" in report
    assert "selected on test" in (result.run_dir / "report.html").read_text()
    assert "val_acc" not in (result.run_dir / "metrics.csv").read_text()


def test_resuming_a_run_folder_from_before_the_validation_split_keeps_selecting_on_test(
    tmp_path,
):
    cfg = tiny_config(
        tmp_path, epochs=1, schedule="step", milestones=(1,), val_fraction=0.0, tensorboard=False
    )
    run_dir = train(cfg).run_dir
    config = run_dir / "config.yaml"  # as written before val_fraction existed
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(line for line in lines if not line.startswith("val_fraction:")))
    result = train(None, resume=run_dir, resume_changes={"epochs": 2})
    assert result.selected_on == "test" and [r["epoch"] for r in result.history] == [1, 2]
    assert "val_acc" not in (run_dir / "metrics.csv").read_text()


def test_lower_resolution_epochs_feed_smaller_images_then_the_full_size(tmp_path):
    sides = []

    def record(module, args):
        if isinstance(module, rk.ResNet):
            sides.append((module.training, args[0].shape[-1]))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        cfg = tiny_config(tmp_path, epochs=3, low_res_size=8, low_res_epochs=2, subset=64)
        train(cfg)
    finally:
        hook.remove()
    trained = [side for training, side in sides if training]
    steps_per_epoch = len(trained) // 3
    assert trained == [8] * (2 * steps_per_epoch) + [16] * steps_per_epoch
    assert {side for training, side in sides if not training} == {16}  # evaluation at full size


def test_the_training_loss_is_a_parameter_called_once_per_step_and_never_to_evaluate(tmp_path):
    losses = []

    def loss_fn(logits, labels):
        loss = 2 * F.cross_entropy(logits, labels)
        losses.append((len(labels), loss.item()))
        return loss

    result = train(tiny_config(tmp_path, tensorboard=False), loss_fn=loss_fn)
    assert [n for n, _ in losses] == [32] * 16  # 2 epochs of 8 batches of 32
    for epoch, row in enumerate(result.history):  # the reported loss is the one returned
        mean = sum(loss for _, loss in losses[8 * epoch : 8 * epoch + 8]) / 8
        assert row["train_loss"] == pytest.approx(mean, rel=1e-6)
