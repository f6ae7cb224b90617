from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from aipm.local.forge import Forge
from lambda_src.github import GitHubClient, RetryPolicy
from tests.forge.support import TOKEN, Repo, clear_forge_faults_fixture, forge_fixture, new_repository

__all__ = ["clear_forge_faults_fixture", "forge_fixture"]

# Tiny delays: the sleep function is a recorder anyway, so no test waits; attempts are what tests assert.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.002, total_budget_s=10.0)


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the client asked for, in order (the client's sleep function appends here)."""
    return []


@pytest.fixture
def client(forge: Forge, sleeps: list[float]) -> GitHubClient:
    return GitHubClient(forge.api_url, lambda: TOKEN, retry=FAST_RETRY, sleep=sleeps.append)


@pytest.fixture
def repo(forge: Forge) -> Repo:
    """A fresh repository (owner tests.forge.support.OWNER) with a README on main."""
    return new_repository(forge)


@pytest.fixture(autouse=True)
def _token_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert TOKEN not in caplog.text
