"""The API Lambda wired to a real moto server and a real local forge, invoked with API Gateway events."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from aipm.local.bootstrap import create_idempotency_table, create_records_table, put_token_secret
from aipm.local.forge import Forge
from aipm.local.gateway import LambdaContext, proxy_event
from lambda_src import aws_clients, handler
from lambda_src.records.store import JobStore

GITHUB_TOKEN = "ghp_test_token_never_logged"
USER = {"sub": "u-1", "email": "ada@example.test"}
OTHER_USER = {"sub": "u-2", "email": "grace@example.test"}


@dataclass
class ApiHarness:
    forge: Forge
    repo_path: Path
    store: JobStore
    table: str
    idempotency_table: str
    last_headers: dict[str, str] = field(default_factory=dict)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        claims: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Invoke the handler as API Gateway would; returns (status, JSON body), keeps the headers."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        hdrs = {"Host": "api.example.test", "Content-Type": "application/json", **(headers or {})}
        event = proxy_event(method, path, hdrs, data, host="api.example.test", source_ip="127.0.0.1")
        event["requestContext"]["path"] = "/prod" + event["path"]
        event["requestContext"]["authorizer"] = {"claims": claims} if claims is not None else None
        result = handler.lambda_handler(event, LambdaContext(function_name="aipm-api", aws_request_id="r"))
        self.last_headers = {
            **(result.get("headers") or {}),
            **{k: ", ".join(v) for k, v in (result.get("multiValueHeaders") or {}).items()},
        }
        return result["statusCode"], json.loads(result["body"] or "{}")

    def branches(self) -> list[str]:
        out = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.repo_path),
                "for-each-ref",
                "--format=%(refname:short)",
                "refs/heads",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sorted(out.split())

    def open_pulls(self) -> list[dict[str, Any]]:
        return [p for p in self.forge.pull_requests("acme", "tools") if p["state"] == "open"]

    def records(self) -> list[dict[str, Any]]:
        return self.store._ddb.scan(TableName=self.table)["Items"]

    def record_kinds(self) -> list[str]:
        """The kinds of stored records by key prefix (INTENT, JOB, PR, …), sorted."""
        return sorted(item["pk"]["S"].split("#")[0] for item in self.records())

    def idempotency_records(self) -> list[dict[str, Any]]:
        return self.store._ddb.scan(TableName=self.idempotency_table)["Items"]


@contextmanager
def api_harness(
    root: Path, ddb: Any, aws_client_factory: Any, aws_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiHarness]:
    """Fresh tables, secret and forge (repository acme/tools); the handler's environment points at them."""
    table = f"records-{uuid.uuid4().hex[:8]}"
    idempotency_table = f"idempotency-{uuid.uuid4().hex[:8]}"
    create_records_table(ddb, table)
    create_idempotency_table(ddb, idempotency_table)
    secret = f"github-{uuid.uuid4().hex[:8]}"
    put_token_secret(aws_client_factory("secretsmanager"), secret, GITHUB_TOKEN)
    with Forge(root / "forge", token=GITHUB_TOKEN) as forge:
        repo_path = forge.create_repository("acme", "tools", files={"README.md": "# tools\n"})
        for name, value in {
            "AWS_ENDPOINT_URL": aws_endpoint,
            "RECORDS_TABLE": table,
            "IDEMPOTENCY_TABLE": idempotency_table,
            "GITHUB_SECRET_ID": secret,
            "GITHUB_API_URL": forge.api_url,
        }.items():
            monkeypatch.setenv(name, value)
        _reset_caches()
        try:
            yield ApiHarness(
                forge=forge,
                repo_path=repo_path,
                store=JobStore(table, ddb),
                table=table,
                idempotency_table=idempotency_table,
            )
        finally:
            _reset_caches()


def _reset_caches() -> None:
    handler.services.cache_clear()
    aws_clients.dynamodb.cache_clear()
    parameters.clear_caches()


@pytest.fixture
def api(
    tmp_path: Path, ddb: Any, aws_client_factory: Any, aws_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiHarness]:
    with api_harness(tmp_path, ddb, aws_client_factory, aws_endpoint, monkeypatch) as harness:
        yield harness


VALID_TASK = {
    "owner": "acme",
    "repo": "tools",
    "branchName": "feature/add-export",
    "taskTitle": "Add export button",
    "objective": "User can export data",
    "prTitle": "feat: Add export button",
    "constraints": "Use existing button patterns",
    "acceptanceCriteria": ["Button appears", "Export works"],
}
