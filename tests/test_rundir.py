"""The run folder is ours alone: a marker before anything is deleted, a lock against two
trainers, and no stale temporary files after a killed run."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from resnetkit.cli import main
from resnetkit.rundir import MARKER, RUN_ENTRIES, RunLock, clean_stale_temp_files, foreign_entries
from resnetkit.train import RunError, train
from train_helpers import tiny_config


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(run_dir, pid, host=None):
    info = {"pid": pid, "host": host or socket.gethostname(), "started": time.time()}
    (run_dir / ".lock").write_text(json.dumps(info))


@pytest.fixture
def finished_run(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, schedule="step", tensorboard=False)
    return cfg, train(cfg).run_dir


def test_a_new_run_folder_carries_the_marker(finished_run):
    _, run_dir = finished_run
    marker = json.loads((run_dir / MARKER).read_text())
    assert marker["version"] == 1 and marker["created"] > 0
    assert not (run_dir / ".lock").exists()  # released at the end


def test_overwrite_never_deletes_a_user_folder_that_merely_has_a_config_yaml(tmp_path):
    mine = tmp_path / "runs" / "run"
    mine.mkdir(parents=True)
    (mine / "config.yaml").write_text("epochs: 1\n")
    (mine / "thesis.tex").write_text("years of work")
    before = snapshot(tmp_path / "runs")
    with pytest.raises(RunError, match="remove it by hand"):
        train(tiny_config(tmp_path, epochs=1), overwrite=True)
    assert snapshot(tmp_path / "runs") == before


def test_overwrite_replaces_a_marked_run(finished_run):
    cfg, run_dir = finished_run
    (run_dir / "checkpoints" / "state-000009999.pt").write_bytes(b"a state of the old run")
    train(cfg, overwrite=True)
    assert not (run_dir / "checkpoints" / "state-000009999.pt").exists()
    assert (run_dir / MARKER).is_file()


def test_overwrite_never_deletes_a_file_the_user_put_into_a_run(finished_run):
    cfg, run_dir = finished_run
    (run_dir / "notes.txt").write_text("what I learned from this run")
    before = snapshot(run_dir)
    with pytest.raises(RunError, match=r"did not write \(notes.txt\)"):
        train(cfg, overwrite=True)
    assert snapshot(run_dir) == before


def test_overwrite_never_deletes_a_file_the_user_put_into_checkpoints(finished_run):
    cfg, run_dir = finished_run
    (run_dir / "checkpoints" / "my-finetuned.safetensors").write_bytes(b"mine")
    before = snapshot(run_dir)
    with pytest.raises(RunError, match=r"checkpoints/my-finetuned\.safetensors"):
        train(cfg, overwrite=True)
    assert snapshot(run_dir) == before


def test_overwrite_never_deletes_a_user_folder_under_a_name_resnetkit_gives_a_file(finished_run):
    cfg, run_dir = finished_run
    (run_dir / "report.md").unlink(missing_ok=True)
    (run_dir / "report.md").mkdir()
    (run_dir / "report.md" / "notes.txt").write_text("mine")
    before = snapshot(run_dir)
    with pytest.raises(RunError, match=r"report\.md"):
        train(cfg, overwrite=True)
    assert snapshot(run_dir) == before


def test_a_finished_run_holds_only_entries_overwrite_knows(tmp_path):
    """The lists --overwrite checks against must name everything a run writes (with the
    TensorBoard log, a validation split, the weight average's raw weights and the report), or
    overwriting would be refused."""
    cfg = tiny_config(tmp_path, epochs=1, val_fraction=0.2, ema_decay=0.9)
    run_dir = train(cfg).run_dir
    assert {entry.name for entry in run_dir.iterdir()} <= RUN_ENTRIES
    assert (run_dir / "checkpoints" / "last_raw.safetensors").is_file()
    assert foreign_entries(run_dir) == []


@pytest.mark.parametrize("name", ["..", ".", "sub/run", "/tmp"])
def test_cli_run_name_outside_the_output_folder_is_refused_and_nothing_changes(
    tmp_path, capsys, name
):
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "config.yaml").write_text("epochs: 1\n")
    (work / "notes.txt").write_text("keep me")
    before = snapshot(work)
    args = ["train", "--data", "synthetic", "--out-dir", str(work / "out"), "--name", name]
    assert main([*args, "--overwrite", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plain folder name" in err
    assert snapshot(work) == before


def test_a_second_trainer_on_a_busy_run_gets_one_line_and_exit_2(finished_run, capsys):
    _, run_dir = finished_run
    write_lock(run_dir, os.getpid())  # a live process holds it
    before = (run_dir / "metrics.csv").read_text()
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "busy" in err and str(os.getpid()) in err
    assert (run_dir / "metrics.csv").read_text() == before


def test_overwrite_refuses_a_run_that_is_being_trained(finished_run):
    cfg, run_dir = finished_run
    write_lock(run_dir, os.getpid())
    with pytest.raises(RunError, match="in use"):
        train(cfg, overwrite=True)
    assert (run_dir / "metrics.csv").is_file()


def test_the_stale_lock_of_a_killed_process_is_taken_over(finished_run, caplog):
    _, run_dir = finished_run
    write_lock(run_dir, dead_pid())
    with caplog.at_level("INFO"):
        train(None, resume=run_dir, resume_changes={"epochs": 2})
    assert "stale lock" in caplog.text
    assert not (run_dir / ".lock").exists()


def test_lock_is_exclusive_and_released(tmp_path):
    first = RunLock(tmp_path).acquire()
    with pytest.raises(RunError, match="busy"):
        RunLock(tmp_path).acquire()
    first.release()
    RunLock(tmp_path).acquire().release()


def test_stale_checkpoint_temp_files_are_removed_on_resume_and_nothing_else(finished_run):
    _, run_dir = finished_run
    checkpoints = run_dir / "checkpoints"
    stale = [
        checkpoints / ".state-000000008.pt.k2j_x9a1.tmp",
        checkpoints / ".state-000000008.pt.sha256.ab12cd34.tmp",
        checkpoints / ".last.safetensors.zz99yy88.tmp",
    ]
    kept = [checkpoints / "notes.tmp", checkpoints / ".mine.pt.abc.tmp", run_dir / ".x.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x" * 1000)
    train(None, resume=run_dir, resume_changes={"epochs": 2})
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    assert clean_stale_temp_files(checkpoints) == []


def test_cli_resume_applies_more_epochs_and_refuses_other_flags_by_name(finished_run, capsys):
    _, run_dir = finished_run
    assert main(["train", "--resume", str(run_dir), "--lr", "0.5", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot change lr" in err
    assert main(["train", "--resume", str(run_dir), "--config", "x.yaml", "-q"]) == 2
    assert "--config" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "-q"]) == 0
    assert "epochs: 2\n" in (run_dir / "config.yaml").read_text()
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2"]  # no duplicate epochs
