"""The minimal app end to end: launch build_demo on a free port and call it through gradio_client."""
import socket

import pytest

gr = pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

from engine.generate import Engine  # noqa: E402
from playground import build_demo  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(bundled):
    demo = build_demo(Engine(bundled))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def test_generate_returns_text(client):
    text = client.predict("Say hello.", 0.7, 0.9, 0, 0.0, 8, 0, api_name="/generate")
    assert isinstance(text, str) and text.strip()


def test_bad_top_p_names_the_field(client):
    with pytest.raises(Exception) as info:
        client.predict("Say hello.", 0.7, 2, 0, 0.0, 8, 0, api_name="/generate")
    assert "top_p" in str(info.value)
