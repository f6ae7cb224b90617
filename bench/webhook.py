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
"""

from __future__ import annotations

import json
import os
import secrets
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
from bench.delegate import GITHUB_DELAY_S, OWNER, REGION, REPO, gateway, percentile, task
from lambda_src.records.store import JobStore

SAMPLES = int(os.environ.get("BENCH_WEBHOOK_SAMPLES", "40"))
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
        comment = json.dumps({"body": "@aipm please also handle empty input"}).encode()
        request = urllib.request.Request(  # noqa: S310 - the forge on loopback
            f"{forge.api_url}/repos/{OWNER}/{REPO}/issues/1/comments",
            data=comment,
            method="POST",
            headers={"Authorization": f"token {REVIEWER[1]}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            resp.read()
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


def run() -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="aipm-bench-webhook-") as tmp:
        return measure(Path(tmp))


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
