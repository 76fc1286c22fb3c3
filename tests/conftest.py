"""Suite-wide isolation: no test reads or writes the user's own cache folders (resnetkit's
and torch.hub's)."""

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RESNETKIT_CACHE", str(tmp_path_factory.mktemp("resnetkit-cache")))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))
