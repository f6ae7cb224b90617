"""The stream dispatcher against a real moto server and real HTTP agents on loopback."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from boto3.dynamodb.types import TypeSerializer

from aipm.local.bootstrap import create_records_table, put_parameter, put_token_secret
from aipm.local.gateway import LambdaContext
from lambda_src import aws_clients, dispatch_handler
from lambda_src.records.models import Heartbeat, SlotState, utc_now_iso
from lambda_src.records.store import JobStore
from tests.factories import make_job

TOKEN = "agent-token-for-dispatch-tests"


@dataclass
class FakeAgent:
    """A real HTTP server standing in for an agent's /api/process-pr; records what it was sent."""

    status: int = 202
    received: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                agent.received.append(json.loads(body))
                agent.authorizations.append(self.headers.get("Authorization", ""))
                self.send_response(agent.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def agents() -> Iterator[list[FakeAgent]]:
    running = [FakeAgent(), FakeAgent(), FakeAgent()]
    yield running
    for agent in running:
        agent.server.shutdown()


@pytest.fixture
def table(
    ddb: Any,
    aws_client_factory: Any,
    aws_endpoint: str,
    agents: list[FakeAgent],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    name = f"records-{uuid.uuid4().hex[:8]}"
    create_records_table(ddb, name)
    secret, param = f"agent-token-{uuid.uuid4().hex[:8]}", f"/aipm/test/{uuid.uuid4().hex[:8]}/endpoint"
    put_token_secret(aws_client_factory("secretsmanager"), secret, TOKEN)
    put_parameter(aws_client_factory("ssm"), param, agents[2].endpoint)  # the configured fallback
    for key, value in {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AGENT_ENDPOINT_PARAM": param,
        "AGENT_TOKEN_SECRET_ID": secret,
        "RECORDS_TABLE": name,
    }.items():
        monkeypatch.setenv(key, value)
    dispatch_handler.settings.cache_clear()
    aws_clients.dynamodb.cache_clear()
    parameters.clear_caches()
    monkeypatch.setattr(dispatch_handler, "heartbeats", dispatch_handler.HeartbeatCache(max_age_s=2))
    yield name
    dispatch_handler.settings.cache_clear()
    aws_clients.dynamodb.cache_clear()


def beat(agent_id: str, endpoint: str, *, free: int, busy: int = 0, age_s: float = 0) -> Heartbeat:
    slots = [SlotState(id=i, busy=False, ready=True) for i in range(free)]
    slots += [SlotState(id=free + i, busy=True, ready=True, current_job="j") for i in range(busy)]
    at_ms = time.time_ns() // 1_000_000 - int(age_s * 1000)
    return Heartbeat(
        agent_id=agent_id, created_at=utc_now_iso(), at_ms=at_ms, version="t", slots=slots, endpoint=endpoint
    )


_ser = TypeSerializer()


def stream_record(new: dict[str, Any] | None, old: dict[str, Any] | None, event: str) -> dict[str, Any]:
    image = lambda item: {k: _ser.serialize(v) for k, v in item.items()}  # noqa: E731
    ddb: dict[str, Any] = {
        "Keys": {"pk": {"S": "x"}, "sk": {"S": "JOB"}},
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        ddb["NewImage"] = image(new)
    if old is not None:
        ddb["OldImage"] = image(old)
    return {"eventID": uuid.uuid4().hex, "eventName": event, "eventSource": "aws:dynamodb", "dynamodb": ddb}


def queued_job_item() -> dict[str, Any]:
    job, _ = make_job()
    return job.to_item()


def dispatch(*records: dict[str, Any]) -> dict[str, int]:
    return dispatch_handler.lambda_handler({"Records": list(records)}, LambdaContext("aipm-dispatch", "r"))


def test_nudges_agents_with_free_slots_spread_over_their_slots(
    table: str, ddb: Any, agents: list[FakeAgent]
) -> None:
    store = JobStore(table, ddb)
    store.put_heartbeat(beat("a", agents[0].endpoint, free=2))
    store.put_heartbeat(beat("b", agents[1].endpoint, free=1, busy=1))
    jobs = [queued_job_item() for _ in range(3)]
    result = dispatch(*(stream_record(j, None, "INSERT") for j in jobs))
    assert result == {"queued": 3, "nudged": 3}
    assert [r["jobId"] for r in agents[0].received] == [jobs[0]["jobId"], jobs[1]["jobId"]]
    assert [r["jobId"] for r in agents[1].received] == [jobs[2]["jobId"]]
    assert agents[2].received == []
    assert set(agents[0].authorizations) == {f"Bearer {TOKEN}"}
    sent = agents[0].received[0]
    assert set(sent) == {"jobId", "prNumber", "branch", "owner", "repo"}


def test_without_a_fresh_free_agent_the_configured_endpoint_is_nudged(
    table: str, ddb: Any, agents: list[FakeAgent]
) -> None:
    store = JobStore(table, ddb)
    store.put_heartbeat(beat("busy", agents[0].endpoint, free=0, busy=2))
    store.put_heartbeat(beat("stale", agents[1].endpoint, free=2, age_s=600))
    job = queued_job_item()
    assert dispatch(stream_record(job, None, "INSERT")) == {"queued": 1, "nudged": 1}
    assert [r["jobId"] for r in agents[2].received] == [job["jobId"]]
    assert agents[0].received == agents[1].received == []


def test_only_jobs_entering_the_queue_are_dispatched(table: str, agents: list[FakeAgent]) -> None:
    queued = queued_job_item()
    claimed = {**queued, "status": "claimed"}
    retried = {**queued, "status": "queued"}
    failed = {**queued, "status": "failed"}
    pr = {"kind": "pr", "status": "queued"}
    result = dispatch(
        stream_record(claimed, queued, "MODIFY"),  # leaving the queue
        stream_record(queued, queued, "MODIFY"),  # still queued (e.g. a timeline write)
        stream_record(retried, failed, "MODIFY"),  # a retry: back in the queue
        stream_record(pr, None, "INSERT"),
        stream_record(None, queued, "REMOVE"),
    )
    assert result == {"queued": 1, "nudged": 1}
    assert [r["jobId"] for r in agents[2].received] == [queued["jobId"]]


def test_an_unreachable_agent_falls_through_to_the_next_and_never_raises(
    table: str, ddb: Any, agents: list[FakeAgent]
) -> None:
    store = JobStore(table, ddb)
    store.put_heartbeat(beat("gone", "http://127.0.0.1:9", free=1))
    store.put_heartbeat(beat("b", agents[1].endpoint, free=1))
    job = queued_job_item()
    assert dispatch(stream_record(job, None, "INSERT")) == {"queued": 1, "nudged": 1}
    assert [r["jobId"] for r in agents[1].received] == [job["jobId"]]
    agents[1].status = 503
    assert dispatch(stream_record(queued_job_item(), None, "INSERT"))["nudged"] == 0


def test_a_heartbeat_outside_the_agents_key_space_is_never_nudged(
    table: str, ddb: Any, agents: list[FakeAgent]
) -> None:
    """A heartbeat-shaped item written anywhere but AGENT#<id>/HEARTBEAT (the keys only the agent role may
    write) is forged: its endpoint gets nothing, least of all the agent token."""
    JobStore(table, ddb).put_heartbeat(beat("mallory", agents[0].endpoint, free=4))
    key = {"pk": {"S": "AGENT#mallory"}, "sk": {"S": "HEARTBEAT"}}
    forged = ddb.get_item(TableName=table, Key=key)["Item"]
    ddb.delete_item(TableName=table, Key=key)
    for pk, sk in (("JOB#forged", "JOB"), ("AGENT#someone-else", "HEARTBEAT"), ("AGENT#mallory", "OTHER")):
        ddb.put_item(TableName=table, Item={**forged, "pk": {"S": pk}, "sk": {"S": sk}})
    job = queued_job_item()
    assert dispatch(stream_record(job, None, "INSERT")) == {"queued": 1, "nudged": 1}
    assert agents[0].received == [] and agents[0].authorizations == []
    assert [r["jobId"] for r in agents[2].received] == [job["jobId"]]  # the SSM parameter's agent


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://169.254.169.254:80",  # the instance metadata service
        "http://[fd00:ec2::254]:80",
        "http://localhost:{port}",  # a name, not an address
        "http://127.0.0.1:{port}/api/elsewhere?x=1",
        "http://user:pw@127.0.0.1:{port}",
        "http://10.0.0.5:8082",  # private, but the parameter's agent is on loopback
        "ftp://127.0.0.1:{port}",
    ],
)
def test_an_unverifiable_heartbeat_endpoint_is_refused(
    table: str, ddb: Any, agents: list[FakeAgent], endpoint: str
) -> None:
    port = agents[0].endpoint.rsplit(":", 1)[1]
    JobStore(table, ddb).put_heartbeat(beat("a", endpoint.format(port=port), free=2))
    job = queued_job_item()
    assert dispatch(stream_record(job, None, "INSERT")) == {"queued": 1, "nudged": 1}
    assert agents[0].received == []
    assert [r["jobId"] for r in agents[2].received] == [job["jobId"]]


def test_verified_endpoints_follow_the_parameters_address_class() -> None:
    verified = dispatch_handler.verified_endpoint
    assert verified("http://10.0.1.7:8082", "http://10.0.0.4:8082")
    assert not verified("http://127.0.0.1:8082", "http://10.0.0.4:8082")  # a forged loopback in the cloud
    assert not verified("http://169.254.169.254:80", "http://10.0.0.4:8082")
    assert not verified("http://8.8.8.8:8082", "http://10.0.0.4:8082")  # not private
    assert verified("http://127.0.0.1:9000", "http://127.0.0.1:8082")
    assert not verified("http://10.0.0.4:8082", "not a url")
