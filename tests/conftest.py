"""Shared fixtures. Loading the bundled model is the slow part, so it is loaded once per session."""

import pytest

from engine.models import LoadedModel, load_model, tiny_random_model


@pytest.fixture(scope="session")
def bundled() -> LoadedModel:
    return load_model()


@pytest.fixture
def tiny() -> LoadedModel:
    return tiny_random_model()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(bundled):
    """The whole app (page + /v1 API) on the bundled model, launched once in this process on a free port."""
    from engine.generate import Engine
    from playground.server import launch_app

    port = free_port()
    demo, _, _ = launch_app(Engine(bundled), "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
