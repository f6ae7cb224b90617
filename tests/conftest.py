"""Shared fixtures: one real moto server process for the whole run, reached through pytest-localstack.

And the end-of-run check that no test leaves a process behind: every process started during the run
inherits `AIPM_TEST_RUN=<uuid>` (set here, before any test runs); when the session ends, any live process
carrying it — a descendant of pytest, or one re-parented to init — fails the run, and is killed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from pytest_localstack.session import RunningSession

from aipm.local import processes
from aipm.local.bootstrap import create_records_table
from aipm.local.moto_server import MotoServer

# The real agent CLIs and the model stand-in, for the ACP, terminal and headless tests.
pytest_plugins = ["tests.real_cli_fixtures"]

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "us-east-1"
TEST_RUN_MARKER = "AIPM_TEST_RUN"
LEFTOVER_GRACE_S = 10  # processes still ending at the session's end (a server's last SIGTERM) may finish


def pytest_configure(config: pytest.Config) -> None:
    # xdist workers inherit the controller's value; only the controller sets it.
    os.environ.setdefault(TEST_RUN_MARKER, uuid.uuid4().hex)
    # The CLI's configuration file and sign-in tokens (`aipm local` writes its profile there): never the
    # person's own.
    if "AIPM_CONFIG" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="aipm-test-config-"))
        os.environ["XDG_CONFIG_HOME"] = str(folder)
        os.environ["AIPM_CONFIG"] = str(folder / "aipm" / "config.toml")
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """After every other session-finish step (fixture teardown, xdist stopping its workers): fail the run
    if any process it started is still alive, listing and killing them."""
    yield
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller checks once all workers have ended
    run_id = os.environ[TEST_RUN_MARKER]

    def leftovers() -> list[processes.ProcessInfo]:
        # Children whose environment a test replaced are still below pytest; orphans carry the marker.
        found = {info.pid: info for info in processes.descendants(os.getpid())}
        found.update((info.pid, info) for info in processes.marked(TEST_RUN_MARKER, run_id))
        return sorted(found.values(), key=lambda info: info.pid)

    deadline = time.monotonic() + LEFTOVER_GRACE_S
    left = leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leftovers()
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(left)} process(es) started by this test run outlived it (now killed):"]
    lines += [f"  {info.describe()}" for info in left]
    if reporter is not None:
        reporter.write_sep("=", "processes left behind", red=True)
        reporter.write_line("\n".join(lines))
    processes.kill_marked(TEST_RUN_MARKER, run_id, grace_s=2)
    for info in processes.descendants(os.getpid()):
        processes.kill(info.pid)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """URL of a moto server child process, checked ready for every service we use by pytest-localstack."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    with MotoServer() as server:
        services = {name: server.port for name in ("dynamodb", "dynamodbstreams", "ssm", "secretsmanager")}
        session = RunningSession("127.0.0.1", services=services, region_name=REGION)
        session.start(timeout=30)
        yield session.endpoint_url("dynamodb")
        session.stop()


@pytest.fixture(scope="session")
def aws_client_factory(aws_endpoint: str) -> Any:
    def make(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=aws_endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return make


@pytest.fixture(scope="session")
def ddb(aws_client_factory: Any) -> DynamoDBClient:
    client: DynamoDBClient = aws_client_factory("dynamodb")
    return client


@pytest.fixture
def records_table(ddb: DynamoDBClient) -> str:
    """A fresh records table (same schema as production) per test."""
    name = f"records-{uuid.uuid4().hex[:8]}"
    create_records_table(ddb, name)
    return name
