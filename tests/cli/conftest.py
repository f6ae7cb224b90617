"""Fixtures of the CLI tests: run `aipm` in-process, a contract fake of the API, the real local stack."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from aipm.cli import app
from aipm.local.stack import LocalStack, StackOptions
from tests.cli.fake_api import TOKEN, FakeApi


@dataclass
class Result:
    code: int
    out: str
    err: str


Runner = Callable[..., Result]


def run(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = app.main(list(argv), out=out, err=err)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    with FakeApi().running() as api:
        yield api


@pytest.fixture
def aipm(fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> Runner:
    """`aipm ...` against the fake API (configured through the environment, as a person would)."""
    monkeypatch.setenv("AIPM_API_URL", fake_api.url)
    monkeypatch.setenv("AIPM_API_TOKEN", TOKEN)
    return run


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The real local stack (SPEC §7), shared by this package's end-to-end tests."""
    with LocalStack(tmp_path_factory.mktemp("cli-stack"), StackOptions(emulator_work_s=0.2)) as s:
        yield s
