"""Webhook benchmark: how long a GitHub delivery takes to queue a follow-up job, against a delegation.

One run, one moto server, one forge, one gateway child (aipm.local.gateway over the real handler, the same
as bench.delegate's): a delegated PR, then a collaborator's `@aipm` comment made on the forge, whose
delivery (the forge's own: GitHub's headers, HMAC and payload) is captured. Samples alternate between

- a webhook delivery: that body and signature with a fresh `X-GitHub-Delivery` GUID (so each is a new
  delivery, as a distinct comment would be), POSTed to `/api/github/webhook`; the 202 answer means the
  follow-up job is queued (delivery, job and PR link are one transaction) — `webhook_to_queued_*`;
- a delegation: `POST /api/personal-delegate` with a real ID token; its 201 means the job is queued —
  `delegate_to_queued_*`.

The forge adds BENCH_GITHUB_DELAY_MS (default 200 ms) to every GitHub call, as bench.delegate does: a
delegation needs GitHub (two round trips) before its job is queued, a follow-up does not.
webhook_vs_delegate_queued_ratio = webhook p99 / delegate p99 in this run (target ≤ 1.5). Each webhook
answer is checked (202, kind follow_up, the job stored as queued).

Follow-up overhead (a second run, on the whole local stack: agent, emulator profile, forge webhooks to the
gateway): BENCH_FOLLOWUP_SAMPLES pairs, one at a time, each a delegated PR's first job and then the follow-up
a collaborator's `@aipm` comment on that PR queues on the same branch. Overhead = the job's wall time
(queued → completed) minus the emulator's fixed working time, as bench.agent's overhead_p50_ms;
followup_vs_first_overhead_ratio = follow-up p50 / first-job p50 in this run (what the follow-up adds:
the webhook, reading the conversation and the diff for its brief, the reply). One pair warms the pool first.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

from aipm.local import processes
from aipm.local.bootstrap import create_idempotency_table, create_records_table, put_token_secret
from aipm.local.forge import Forge
from aipm.local.moto_server import MotoServer
from aipm.local.signin import LocalSignIn
from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions
from bench import agent as bench_agent
from bench.delegate import GITHUB_DELAY_S, OWNER, REGION, REPO, gateway, percentile, task
from lambda_src.records.models import Job
from lambda_src.records.store import JobStore

SAMPLES = int(os.environ.get("BENCH_WEBHOOK_SAMPLES", "40"))
FOLLOWUP_SAMPLES = int(os.environ.get("BENCH_FOLLOWUP_SAMPLES", "10"))
FOLLOWUP_WORK_S = 0.3
WARMUP = 3
REVIEWER = ("rita", secrets.token_urlsafe(16))


class _Sink(BaseHTTPRequestHandler):
    """Where the forge sends its delivery while the benchmark captures it (answers 200, keeps nothing)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[float, int, dict[str, Any]]:
    """(wall ms, status, JSON answer) of one POST."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 - loopback
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
        data = resp.read()
        status = resp.status
    return (time.perf_counter() - started) * 1000, status, json.loads(data or b"{}")


def measure(root: Path) -> dict[str, float | int]:
    with ExitStack() as stack:
        moto = stack.enter_context(MotoServer())
        session = boto3.session.Session(
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - the local emulator takes any key
            region_name=REGION,
        )
        ddb = session.client("dynamodb", endpoint_url=moto.endpoint_url)
        create_records_table(ddb, "bench-records")
        create_idempotency_table(ddb, "bench-idempotency")
        github_token, webhook_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        sm = session.client("secretsmanager", endpoint_url=moto.endpoint_url)
        put_token_secret(sm, "bench/github", github_token)
        sm.create_secret(Name="bench/github-webhook", SecretString=json.dumps({"secret": webhook_secret}))
        sign_in = LocalSignIn(
            session.client("cognito-idp", endpoint_url=moto.endpoint_url),
            endpoint_url=moto.endpoint_url,
            region=REGION,
            app_origin="http://127.0.0.1:9",
        ).start()
        stack.callback(sign_in.stop)
        forge = stack.enter_context(Forge(root / "forge", token=github_token))
        forge.create_repository(OWNER, REPO)
        forge.add_user(*REVIEWER)
        forge.add_collaborator(OWNER, REPO, REVIEWER[0])
        forge.add_webhook(stack.enter_context(sink()), webhook_secret)
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")},
            **processes.inherited_markers(),
            "AWS_ENDPOINT_URL": moto.endpoint_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "RECORDS_TABLE": "bench-records",
            "IDEMPOTENCY_TABLE": "bench-idempotency",
            "GITHUB_SECRET_ID": "bench/github",
            "GITHUB_WEBHOOK_SECRET_ID": "bench/github-webhook",
            "GITHUB_API_URL": forge.api_url,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "AIPM_BENCH_ISSUER": sign_in.issuer,
            "AIPM_BENCH_AUDIENCE": sign_in.client_id,
        }
        log = stack.enter_context((root / "gateway.log").open("wb"))
        api = stack.enter_context(gateway(env, "graphql", log, sign_in.id_token()))
        store = JobStore("bench-records", ddb)

        api.delegate(task(0, base_branch=None))  # PR #1: the PR the comments are on
        comment_as_reviewer(forge.api_url, OWNER, REPO, 1, "@aipm please also handle empty input")
        if not forge.wait_deliveries(10):
            raise RuntimeError("the forge did not deliver the comment's webhook")
        [delivery] = [d for d in forge.deliveries if d.event == "issue_comment"]
        forge.set_latency(GITHUB_DELAY_S)

        webhook_ms: list[float] = []
        delegate_ms: list[float] = []
        for n in range(WARMUP + SAMPLES):
            headers = {**delivery.headers, "X-GitHub-Delivery": str(uuid.uuid4())}
            elapsed, status, answer = post(f"{api.url}/api/github/webhook", delivery.body, headers)
            if status != 202 or answer.get("kind") != "follow_up":
                raise RuntimeError(f"the webhook answered {status}: {answer}")
            if store.get_job(answer["jobId"]).status.value != "queued":
                raise RuntimeError("the follow-up job is not queued")
            delegated = api.delegate(task(n + 1, base_branch=None))
            if n >= WARMUP:
                webhook_ms.append(elapsed)
                delegate_ms.append(delegated)
    webhook_p99, delegate_p99 = percentile(webhook_ms, 99), percentile(delegate_ms, 99)
    return {
        "webhook_to_queued_p50_ms": round(percentile(webhook_ms, 50), 1),
        "webhook_to_queued_p99_ms": round(webhook_p99, 1),
        "delegate_to_queued_p99_ms": round(delegate_p99, 1),
        "webhook_vs_delegate_queued_ratio": round(webhook_p99 / delegate_p99, 3),
        "webhook_samples": SAMPLES,
    }


def followup_overhead(root: Path) -> dict[str, float | int]:
    """First-job and follow-up overheads on the same branches, one pair at a time (module docstring)."""
    first_ms: list[float] = []
    followup_ms: list[float] = []
    with LocalStack(root, StackOptions(emulator_work_s=FOLLOWUP_WORK_S)) as stack:
        stack.forge.add_user(*REVIEWER)
        stack.forge.add_collaborator(DEMO_OWNER, DEMO_REPO, REVIEWER[0])
        for n in range(1 + FOLLOWUP_SAMPLES):
            first, followup = one_pair(stack, n)
            if n:
                first_ms.append(first)
                followup_ms.append(followup)
    first_p50, followup_p50 = statistics.median(first_ms), statistics.median(followup_ms)
    return {
        "first_job_overhead_p50_ms": round(first_p50, 1),
        "followup_overhead_ms": round(followup_p50, 1),
        "followup_overhead_p99_ms": round(percentile(followup_ms, 99), 1),
        "followup_vs_first_overhead_ratio": round(followup_p50 / first_p50, 3),
        "followup_samples": FOLLOWUP_SAMPLES,
    }


def comment_as_reviewer(api_url: str, owner: str, repo: str, number: int, text: str) -> None:
    """Comment on PR `number` through the forge's REST API as the collaborator REVIEWER (the forge then
    sends its signed webhook)."""
    request = urllib.request.Request(  # noqa: S310 - the forge on loopback
        f"{api_url}/repos/{owner}/{repo}/issues/{number}/comments",
        data=json.dumps({"body": text}).encode(),
        method="POST",
        headers={"Authorization": f"token {REVIEWER[1]}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        resp.read()


def one_pair(stack: LocalStack, n: int) -> tuple[float, float]:
    """A delegated PR's first job, then a mention's follow-up on its branch; their overheads in ms."""
    status, answer = stack.api("POST", "/api/personal-delegate", bench_agent.task(n, "followup"))
    if status != 201:
        raise RuntimeError(f"the delegation answered {status}: {answer}")
    first = ended(stack.store(), answer["jobId"])
    text = f"@aipm please also handle empty input ({n})"
    comment_as_reviewer(stack.forge.api_url, DEMO_OWNER, DEMO_REPO, answer["number"], text)
    followup = ended(stack.store(), follow_up_of(stack.store(), answer["number"]))
    return overhead_ms(first), overhead_ms(followup)


def follow_up_of(store: JobStore, pr_number: int, timeout_s: float = 30) -> str:
    """The id of the follow-up job the mention on PR `pr_number` queued (the PR record links it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = store.get_pr_record(DEMO_OWNER, DEMO_REPO, pr_number)
        if record is not None and record.follow_up_job_ids:
            return record.follow_up_job_ids[-1]
        time.sleep(0.02)
    raise RuntimeError(f"no follow-up job was queued for PR #{pr_number}")


def ended(store: JobStore, job_id: str, timeout_s: float = 120) -> Job:
    """The job once completed, read from the table (a follow-up belongs to the GitHub login that asked,
    not to the API's caller). Raises RuntimeError if it ended otherwise or not in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        if job.status.terminal:
            if job.status.value != "completed":
                raise RuntimeError(f"job {job_id} ended {job.status.value}: {job.reason}")
            return job
        time.sleep(0.02)
    raise RuntimeError(f"job {job_id} did not end in {timeout_s} s")


def overhead_ms(job: Job) -> float:
    steps = {entry.step: bench_agent.epoch_s(entry.at) for entry in job.timeline}
    return (steps["completed"] - steps["queued"] - FOLLOWUP_WORK_S) * 1000


def run() -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="aipm-bench-webhook-") as tmp:
        (Path(tmp) / "queued").mkdir()
        (Path(tmp) / "followup").mkdir()
        results = measure(Path(tmp) / "queued")
        results.update(followup_overhead(Path(tmp) / "followup"))
        return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
