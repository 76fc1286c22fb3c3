"""Crash-safe writes and verified files: one hash, one sidecar scheme, one rename, for the
training states of a run and the weights download cache alike."""

import hashlib
from pathlib import Path

import pytest
import torch

from resnetkit import checkpoint
from resnetkit.config import TrainConfig
from resnetkit.experiments.runs import experiment_folder
from resnetkit.explain.images import picture_name
from resnetkit.fileio import (
    atomic_write_text,
    data_slug,
    remove_verified,
    sha256_file,
    sidecar_path,
    slug,
    verified_path,
    verify_file,
)
from resnetkit.train import default_run_name


def test_sha256_file_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * (3 << 20))  # more than one read chunk
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_sidecar_is_the_file_name_plus_sha256_as_both_writers_always_named_it():
    # Training states were `path.with_suffix(".pt.sha256")`, cached weights `name + ".sha256"`.
    state = Path("run/checkpoints/state-000000042.pt")
    assert sidecar_path(state) == state.with_suffix(".pt.sha256")
    weights = Path("cache/weights/resnet50-imagenet.safetensors")
    assert sidecar_path(weights) == weights.with_name(weights.name + ".sha256")


def test_a_verified_file_gets_its_digest_beside_it(tmp_path):
    path = tmp_path / "sub" / "state.pt"
    with verified_path(path) as tmp:
        tmp.write_bytes(b"weights")
    assert path.read_bytes() == b"weights"
    assert sidecar_path(path).read_text() == hashlib.sha256(b"weights").hexdigest() + "\n"
    assert verify_file(path) is None
    assert [p.name for p in path.parent.iterdir()] == sorted(["state.pt", "state.pt.sha256"])


def test_a_failed_write_leaves_neither_the_file_nor_a_sidecar(tmp_path):
    path = tmp_path / "state.pt"
    with pytest.raises(RuntimeError), verified_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_a_changed_file_no_longer_verifies_and_the_reason_names_both_digests(tmp_path):
    path = tmp_path / "w.safetensors"
    with verified_path(path) as tmp:
        tmp.write_bytes(b"original")
    path.write_bytes(b"damaged")
    problem = verify_file(path)
    assert problem is not None and "does not match the recorded" in problem
    assert hashlib.sha256(b"damaged").hexdigest()[:12] in problem


def test_a_missing_sidecar_is_a_problem_only_where_one_is_required(tmp_path):
    path = tmp_path / "old-state.pt"
    path.write_bytes(b"from before checksums")
    assert "missing" in verify_file(path)
    assert verify_file(path, require_sidecar=False) is None


@pytest.mark.parametrize("line", ["{digest}\n", "{digest}", "{digest}  old-state.pt\n"])
def test_sidecars_written_by_hand_or_by_older_versions_verify(tmp_path, line):
    path = tmp_path / "old-state.pt"
    path.write_bytes(b"payload")
    digest = hashlib.sha256(b"payload").hexdigest()
    atomic_write_text(sidecar_path(path), line.format(digest=digest))
    assert verify_file(path) is None


def test_remove_verified_deletes_the_file_and_its_sidecar(tmp_path):
    path = tmp_path / "state.pt"
    with verified_path(path) as tmp:
        tmp.write_bytes(b"x")
    remove_verified(path)
    remove_verified(path)  # already gone: not an error
    assert list(tmp_path.iterdir()) == []


def test_training_states_are_verified_files(tmp_path):
    path = checkpoint.save_state(tmp_path, 7, {"step": 7, "x": torch.ones(3)}, keep=2)
    assert verify_file(path) is None
    assert checkpoint.load_state(path)["step"] == 7
    for step in (8, 9):
        checkpoint.save_state(tmp_path, step, {"step": step}, keep=2)
    # Pruned states go with their sidecars.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "state-000000008.pt",
        "state-000000008.pt.sha256",
        "state-000000009.pt",
        "state-000000009.pt.sha256",
    ]


def test_a_state_from_before_checksums_still_loads_and_a_damaged_one_is_refused(tmp_path):
    path = tmp_path / "state-000000001.pt"
    torch.save({"format": checkpoint.STATE_FORMAT, "step": 1}, path)  # no sidecar
    assert checkpoint.load_state(path)["step"] == 1
    atomic_write_text(sidecar_path(path), "0" * 64 + "\n")
    with pytest.raises(checkpoint.CheckpointError, match="is corrupt: sha256"):
        checkpoint.load_state(path)


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("resnet20", "resnet20"),
        ("my photos (2024)", "my_photos_2024_"),
        ("a/b\\c", "a_b_c"),
        ("día_1.v2-final", "d_a_1.v2-final"),
    ],
)
def test_slug_keeps_letters_digits_dot_dash_underscore_and_squashes_the_rest(text, expected):
    assert slug(text) == expected


def test_data_slug_names_a_folder_dataset_by_its_folder():
    assert data_slug("fashion-mnist") == "fashion-mnist"
    assert data_slug("folder:/data/My Pets/") == "My_Pets"


def test_every_default_name_uses_the_one_slug(tmp_path):
    cfg = TrainConfig(model="resnet8", data="folder:/data/My Pets")
    assert f"resnet8-{data_slug(cfg.data)}-" in default_run_name(cfg)
    folder = experiment_folder(tmp_path, None, "compare", "folder:/data/My Pets")
    assert folder.name == f"compare-{data_slug('folder:/data/My Pets')}"
    assert picture_name(3, "/photos/cat & dog.jpg") == f"003-{slug('cat & dog')}-gradcam.png"
