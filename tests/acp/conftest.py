"""Fixtures for driving the real ACP agents: the pinned CLIs (installed on first use, cached), the model
stand-in, and a session of a built-in profile pointed at it with a home of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aipm.local.model_standin import ModelStandin
from aipm.local.model_standin.clients import standin_profile
from ec2_agent.profiles import BuiltinProfileName, builtin_profile
from ec2_agent.sessions.acp import AcpSession


@pytest.fixture
def acp_session(
    tmp_path: Path, standin: ModelStandin, cli_bin: Path
) -> Iterator[Callable[[BuiltinProfileName], AcpSession]]:
    """Start a session of a built-in ACP profile in ``tmp_path/ws``; closed after the test."""
    made: list[AcpSession] = []

    def make(name: BuiltinProfileName) -> AcpSession:
        workdir = tmp_path / "ws"
        workdir.mkdir(exist_ok=True)
        profile = standin_profile(builtin_profile(name), standin.base_url, tmp_path / "home", cli_bin.parent)
        session = AcpSession(profile, workdir)
        made.append(session)
        session.start()
        return session

    yield make
    for session in made:
        session.close()
