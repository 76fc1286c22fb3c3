"""torchrun + DistributedDataParallel on 2 CPU processes (gloo on loopback) against one process.

Both see the same global batches: each rank takes every 2nd image of the epoch's order, so
the union of the ranks' k-th batches is the single process's k-th batch, and DDP averages the
gradients. What differs is BatchNorm: each rank normalises with the statistics of its half of
the batch (SyncBatchNorm, which would remove this, needs CUDA). The tolerance below is set for
that difference.
"""

import json
import subprocess
import sys

import pytest
import torch

from resnetkit.checkpoint import load_model_checkpoint
from resnetkit.train import train
from train_helpers import tiny_config

# No augmentation or dropout: their random draws are per rank by design.
CHANGES = dict(
    epochs=2,
    subset=512,
    batch_size=64,
    crop_padding=0,
    flip=False,
    lr=0.02,
    tensorboard=False,
    threads=1,
)
# Relative L2 distance of all weights after 16 steps, and the train-loss difference.
WEIGHT_TOLERANCE = 0.02  # measured: 0.006; a different seed: 1.02
LOSS_TOLERANCE = 0.05


def relative_distance(a: dict, b: dict) -> float:
    keys = [k for k in a if a[k].is_floating_point()]
    diff = sum((a[k] - b[k]).double().square().sum() for k in keys)
    norm = sum(a[k].double().square().sum() for k in keys)
    return float((diff / norm).sqrt())


def run_two_processes(tmp_path, cfg):
    """`resnetkit train` of `cfg` under torchrun with 2 gloo processes; its run folder."""
    cfg_path = tmp_path / "ddp.yaml"
    cfg.to_yaml(cfg_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "resnetkit",
            "train",
            "--config",
            str(cfg_path),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp_path / "ddp" / "runs" / "run"


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single = train(tiny_config(tmp_path / "single", **CHANGES))
    run_dir = run_two_processes(tmp_path, tiny_config(tmp_path / "ddp", **CHANGES))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2], "rank 0 alone writes one row per epoch"
    assert [r["step"] for r in rows] == [8, 16], "512 images / global batch 64 = 8 steps"

    a = load_model_checkpoint(single.run_dir / "checkpoints/last.safetensors").model.state_dict()
    b = load_model_checkpoint(run_dir / "checkpoints/last.safetensors").model.state_dict()
    assert relative_distance(a, b) < WEIGHT_TOLERANCE
    for mine, theirs in zip(single.history, rows, strict=True):
        assert abs(mine["train_loss"] - theirs["train_loss"]) < LOSS_TOLERANCE
    # Sanity: a run with a different seed lands much further away than DDP does.
    other = train(tiny_config(tmp_path / "other", **CHANGES, seed=1))
    c = load_model_checkpoint(other.run_dir / "checkpoints/last.safetensors").model.state_dict()
    assert relative_distance(a, c) > 4 * relative_distance(a, b)


def test_global_batch_must_split_evenly_over_the_processes(tmp_path):
    from resnetkit.config import ConfigError
    from resnetkit.train import load_data

    cfg = tiny_config(tmp_path, batch_size=33)
    with pytest.raises(ConfigError, match="does not split evenly over 2 processes"):
        load_data(cfg, torch.device("cpu"), rank=0, world=2)


def test_two_gloo_processes_accumulating_match_one_process_accumulating(tmp_path):
    # Each optimizer step: 2 batches of 32 (16 a rank); only the second all-reduces (no_sync).
    changes = dict(CHANGES, batch_size=32, accum_steps=2, epochs=1)
    single = train(tiny_config(tmp_path / "single", **changes))
    run_dir = run_two_processes(tmp_path, tiny_config(tmp_path / "ddp", **changes))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [8], "512 images / 32 a batch / 2 a step"
    a = load_model_checkpoint(single.run_dir / "checkpoints/last.safetensors").model.state_dict()
    b = load_model_checkpoint(run_dir / "checkpoints/last.safetensors").model.state_dict()
    assert relative_distance(a, b) < WEIGHT_TOLERANCE
    assert abs(single.history[0]["train_loss"] - rows[0]["train_loss"]) < LOSS_TOLERANCE
