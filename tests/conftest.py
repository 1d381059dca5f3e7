"""Shared fixtures. Loading the bundled model is the slow part, so it is loaded once per session."""

import pytest

from engine.models import LoadedModel, load_model, tiny_random_model


@pytest.fixture(scope="session")
def bundled() -> LoadedModel:
    return load_model()


@pytest.fixture
def tiny() -> LoadedModel:
    return tiny_random_model()
