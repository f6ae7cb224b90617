"""Shared fixtures: one real moto server process for the whole run, reached through pytest-localstack."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from pytest_localstack.session import RunningSession

from aipm.local.bootstrap import create_records_table
from aipm.local.moto_server import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "us-east-1"


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
