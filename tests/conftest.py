"""Shared fixtures: tiny replicas of every real repo, in a hub cache, and an offline engine.

The hub is never reached: HF_HUB_OFFLINE is set before huggingface_hub is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from tests.support.tiny_repos import TinyRepos, build_tiny_repos, make_settings

# Tests that use one of these fixtures (directly or through another fixture) load the tiny
# torch/diffusers models: they get the `engine` marker here, so none can be left unmarked.
ENGINE_FIXTURES = frozenset({"tiny_repos", "engine"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)


@pytest.fixture(scope="session")
def tiny_repos(tmp_path_factory) -> TinyRepos:
    return build_tiny_repos(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def engine(tiny_repos):
    """One engine for the session: models load once. Tests must leave it as they found it."""
    from engine.generate.engine import Engine

    return Engine(make_settings(tiny_repos))


@pytest.fixture
def hub_online(monkeypatch):
    """For tests that reach a local hub server: undo the offline switch above for them only.
    The client reads the constant at request time (``constants.is_offline_mode``), the
    environment only at import; a hang in a fault test should fail in 5 s, not 10."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5)
