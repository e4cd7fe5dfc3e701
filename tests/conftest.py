"""Shared fixtures. Each area adds its own section; keep fixtures real (no mocks)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

# --------------------------------------------------------------------------------------------
# Model layer (foundation): the scripted server and a fast-retrying client
# --------------------------------------------------------------------------------------------

TEST_KEY = "sk-tome-test-0123456789abcdef"


@pytest.fixture
def scripted() -> Iterator[Callable[..., Any]]:
    """Factory `scripted(turns, **options)`: a running ScriptedServer, stopped at teardown."""
    from agent.testing.server import ScriptedServer

    servers: list[ScriptedServer] = []

    def start(turns: Sequence[Any], **options: Any) -> ScriptedServer:
        server = ScriptedServer(turns, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def api_key() -> str:
    """The key `model_for` clients send; tests check it leaks nowhere."""
    return TEST_KEY


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff waits a `model_for` client asked for (it does not really sleep)."""
    return []


@pytest.fixture
def model_for(sleeps: list[float]) -> Callable[..., Any]:
    """Factory `model_for(server, **options)`: an OpenAIModel with a 10 s call deadline, instant backoff."""
    from agent.model import OpenAIModel
    from agent.profiles import get_profile

    def make(server: Any, *, model: str = "deepseek-v4-pro", profile: Any = None, **options: Any) -> OpenAIModel:
        settings: dict[str, Any] = {
            "api_key": TEST_KEY,
            "base_url": server.base_url,
            "timeout": 10.0,
            "idle_timeout": 5.0,  # tests of the watchdog pass a shorter one
            "max_retries": 3,
            "retry_cap": 2.0,
            "random": lambda: 0.5,
            "sleep": sleeps.append,
        }
        settings.update(options)
        return OpenAIModel(profile or get_profile(model), **settings)

    return make


# --------------------------------------------------------------------------------------------
# Loop: a real git repository with a failing test
# --------------------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path):
    """A small real git repo whose test_even fails until median() is fixed."""
    from loop_helpers import make_repo

    return make_repo(tmp_path)
