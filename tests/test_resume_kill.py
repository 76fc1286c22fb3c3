"""Resume after SIGKILL: a killed run, resumed, ends exactly where an uninterrupted one does."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from resnetkit.checkpoint import list_states, load_model_checkpoint
from resnetkit.train import train
from train_helpers import tiny_config

CHANGES = dict(
    subset=4096,
    image_size=32,
    epochs=2,
    batch_size=32,
    checkpoint_every_steps=10,
    keep_checkpoints=2,
    tensorboard=False,
    drop_rate=0.1,
)


def cli_args(cfg_path):
    return [sys.executable, "-m", "resnetkit", "train", "--config", str(cfg_path), "--quiet"]


def history(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k not in ("images_per_s", "epoch_time", "elapsed")}
        for r in rows
    ]


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    reference = train(tiny_config(tmp_path / "ref", **CHANGES))

    cfg = tiny_config(tmp_path / "killed", **CHANGES)
    cfg_path = tmp_path / "killed.yaml"
    cfg.to_yaml(cfg_path)
    run_dir = tmp_path / "killed" / "runs" / "run"
    process = subprocess.Popen(
        cli_args(cfg_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and process.poll() is None:
        states = list_states(run_dir / "checkpoints")
        if states and int(states[-1].stem.split("-")[1]) >= 30:  # epoch 1 has 128 steps
            os.kill(process.pid, signal.SIGKILL)
            killed_at = states[-1].name
            break
        time.sleep(0.005)
    process.wait(timeout=30)
    assert killed_at is not None, "the run ended before it could be killed"
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "report.md").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "resnetkit", "train", "--resume", str(run_dir), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert history(run_dir) == history(reference.run_dir)
    a = load_model_checkpoint(reference.run_dir / "checkpoints/last.safetensors").model
    b = load_model_checkpoint(run_dir / "checkpoints/last.safetensors").model
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_resume_skips_a_corrupt_newest_state_and_uses_the_one_before(tmp_path):
    cfg = tiny_config(tmp_path, epochs=2, checkpoint_every_steps=4, keep_checkpoints=5)
    full = train(cfg)
    checkpoints = full.run_dir / "checkpoints"
    newest = list_states(checkpoints)[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    resumed = train(cfg, resume=full.run_dir)
    assert history(resumed.run_dir) == history(full.run_dir)
