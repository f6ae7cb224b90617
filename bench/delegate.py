"""Delegate benchmarks: request latency against a slow GitHub, GitHub round trips, and cold start.

- latency: POST /api/personal-delegate through the local gateway (HTTP → API Gateway event → the real handler
  → moto + the forge), the forge delaying every GitHub call by BENCH_GITHUB_DELAY_MS (default 200 ms: a
  GitHub API call that writes, seen from a Lambda, takes that or more). The forge's own git work (tens of ms
  per request on either path) comes on top, as does moto; delegate_overhead_ms / delegate_baseline_overhead_ms
  are p50 minus the injected delays, i.e. everything but the modelled GitHub latency.
  Both carry a real ID token (from the local OIDC stand-in), verified by the gateway as API Gateway's
  Cognito authorizer would. Two gateways serve the same moto and forge in this run:
  ours (GITHUB_PROTOCOL=graphql: one query, one mutation document) and the baseline (GITHUB_PROTOCOL=rest with
  a named base branch: the prototype's four calls GET ref, POST refs, PUT contents, POST pulls). Requests
  alternate between the two. Ours is the unchanged frontend's request: no Idempotency-Key, no baseBranch (the
  default branch comes with the query). delegate_ratio = p50 ours / p50 baseline (target ≤ 0.55).
  delegate_round_trips / delegate_baseline_round_trips: GitHub calls per request, counted by the forge.
  delegate_idempotent_p50_ms: ours with an Idempotency-Key (two more DynamoDB writes).
- cold start: seconds to import lambda_src.handler in a fresh interpreter, over seconds to import boto3 and
  create a DynamoDB client in one (medians of BENCH_COLD_RUNS runs each, interleaved); target ≤ 1.6.

`python -m bench.delegate --serve` is the gateway child process (not for direct use).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import boto3

from aipm.local import processes
from aipm.local.bootstrap import create_idempotency_table, create_records_table, put_token_secret
from aipm.local.forge import ROUTES, Forge
from aipm.local.moto_server import MotoServer
from aipm.local.signin import LocalSignIn

GITHUB_DELAY_S = float(os.environ.get("BENCH_GITHUB_DELAY_MS", "200")) / 1000
SAMPLES = int(os.environ.get("BENCH_DELEGATE_SAMPLES", "30"))
WARMUP = 3
COLD_RUNS = int(os.environ.get("BENCH_COLD_RUNS", "9"))
REGION = "us-east-1"
OWNER, REPO = "bench", "tools"
# GitHub calls as the forge counts them: REST routes and GraphQL documents, not the fields inside a document.
GITHUB_CALLS = sorted(r for r in ROUTES if not r.startswith("graphql.") and r not in ("git", "pull_page"))

HANDLER_IMPORT = (
    "import time; t = time.perf_counter(); import lambda_src.handler; print(time.perf_counter() - t)"
)
BOTO3_CLIENT = (
    "import time; t = time.perf_counter(); import boto3; boto3.client('dynamodb'); "
    "print(time.perf_counter() - t)"
)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def task(n: int, *, base_branch: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "owner": OWNER,
        "repo": REPO,
        "branchName": f"bench/delegate-{n}",
        "taskTitle": f"Bench task {n}",
        "objective": "Measure the delegate request",
        "prTitle": f"bench: task {n}",
        "constraints": "None",
        "acceptanceCriteria": ["It is measured"],
    }
    if base_branch is not None:
        body["baseBranch"] = base_branch
    return body


class Gateway:
    """A gateway child process serving the real handler with one GITHUB_PROTOCOL."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def delegate(self, body: Mapping[str, Any], *, idempotent: bool = False) -> float:
        """POST one task (with a fresh Idempotency-Key if `idempotent`); returns the wall time in ms.

        Raises unless the answer is 201.
        """
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        if idempotent:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        request = urllib.request.Request(  # noqa: S310 - loopback URL of our own child process
            f"{self.url}/api/personal-delegate",
            data=json.dumps(body).encode(),
            method="POST",
            headers=headers,
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
            resp.read()
            status = resp.status
        elapsed = (time.perf_counter() - started) * 1000
        if status != 201:
            raise RuntimeError(f"delegate answered {status}")
        return elapsed


@contextmanager
def gateway(env: Mapping[str, str], protocol: str, log: IO[bytes], token: str) -> Iterator[Gateway]:
    child_env = {**env, "GITHUB_PROTOCOL": protocol}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.delegate", "--serve"], env=child_env, stdout=subprocess.PIPE, stderr=log
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("ready "):
            raise RuntimeError(f"the {protocol} gateway did not start (see its log)")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield Gateway(line.removeprefix("ready "), token)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def github_calls(forge: Forge) -> int:
    return sum(forge.calls(route) for route in GITHUB_CALLS)


def latency(root: Path) -> dict[str, float | int]:
    with ExitStack() as stack:
        moto = stack.enter_context(MotoServer())
        aws = {
            "AWS_ENDPOINT_URL": moto.endpoint_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
        }
        session = boto3.session.Session(
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - the local emulator takes any key
            region_name=REGION,
        )
        ddb = session.client("dynamodb", endpoint_url=moto.endpoint_url)
        create_records_table(ddb, "bench-records")
        create_idempotency_table(ddb, "bench-idempotency")
        github_token = secrets.token_urlsafe(24)
        secrets_client = session.client("secretsmanager", endpoint_url=moto.endpoint_url)
        put_token_secret(secrets_client, "bench/github", github_token)
        sign_in = LocalSignIn(
            session.client("cognito-idp", endpoint_url=moto.endpoint_url),
            endpoint_url=moto.endpoint_url,
            region=REGION,
            app_origin="http://127.0.0.1:9",
        ).start()
        stack.callback(sign_in.stop)
        forge = stack.enter_context(Forge(root / "forge", token=github_token))
        forge.create_repository(OWNER, REPO)
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")},
            **processes.inherited_markers(),
            **aws,
            "RECORDS_TABLE": "bench-records",
            "IDEMPOTENCY_TABLE": "bench-idempotency",
            "GITHUB_SECRET_ID": "bench/github",
            "GITHUB_API_URL": forge.api_url,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "AIPM_BENCH_ISSUER": sign_in.issuer,
            "AIPM_BENCH_AUDIENCE": sign_in.client_id,
        }
        log = stack.enter_context((root / "gateways.log").open("wb"))
        ours = stack.enter_context(gateway(env, "graphql", log, sign_in.id_token()))
        baseline = stack.enter_context(gateway(env, "rest", log, sign_in.id_token()))
        forge.set_latency(GITHUB_DELAY_S)
        ours_ms: list[float] = []
        baseline_ms: list[float] = []
        idempotent_ms: list[float] = []
        ours_calls: list[int] = []
        baseline_calls: list[int] = []
        for n in range(WARMUP + SAMPLES):
            before = github_calls(forge)
            ours_sample = ours.delegate(task(3 * n, base_branch=None))
            between = github_calls(forge)
            baseline_sample = baseline.delegate(task(3 * n + 1, base_branch="main"))
            after = github_calls(forge)
            idempotent_sample = ours.delegate(task(3 * n + 2, base_branch=None), idempotent=True)
            if n >= WARMUP:
                ours_ms.append(ours_sample)
                baseline_ms.append(baseline_sample)
                idempotent_ms.append(idempotent_sample)
                ours_calls.append(between - before)
                baseline_calls.append(after - between)
    ours_p50, baseline_p50 = statistics.median(ours_ms), statistics.median(baseline_ms)
    delay_ms = GITHUB_DELAY_S * 1000
    return {
        "delegate_p50_ms": round(ours_p50, 1),
        "delegate_p95_ms": round(percentile(ours_ms, 95), 1),
        "delegate_baseline_p50_ms": round(baseline_p50, 1),
        "delegate_baseline_p95_ms": round(percentile(baseline_ms, 95), 1),
        "delegate_ratio": round(ours_p50 / baseline_p50, 3),
        "delegate_idempotent_p50_ms": round(statistics.median(idempotent_ms), 1),
        "delegate_round_trips": max(ours_calls),
        "delegate_baseline_round_trips": max(baseline_calls),
        "delegate_overhead_ms": round(ours_p50 - max(ours_calls) * delay_ms, 1),
        "delegate_baseline_overhead_ms": round(baseline_p50 - max(baseline_calls) * delay_ms, 1),
        "delegate_github_delay_ms": round(delay_ms, 1),
        "delegate_samples": SAMPLES,
    }


def _timed_import(code: str) -> float:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(processes.inherited_markers())
    env["AWS_DEFAULT_REGION"] = REGION
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def cold_start() -> dict[str, float]:
    handler_s: list[float] = []
    boto3_s: list[float] = []
    _timed_import(
        HANDLER_IMPORT
    )  # fills the page cache and writes .pyc files, as a deployed package has them
    for _ in range(COLD_RUNS):
        handler_s.append(_timed_import(HANDLER_IMPORT))
        boto3_s.append(_timed_import(BOTO3_CLIENT))
    handler_ms, boto3_ms = statistics.median(handler_s) * 1000, statistics.median(boto3_s) * 1000
    return {
        "cold_start_handler_import_ms": round(handler_ms, 1),
        "cold_start_boto3_client_ms": round(boto3_ms, 1),
        "cold_start_ratio": round(handler_ms / boto3_ms, 3),
    }


def run() -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="aipm-bench-delegate-") as tmp:
        results: dict[str, float | int] = {**latency(Path(tmp))}
    results.update(cold_start())
    return results


def serve() -> None:
    """The gateway child: aipm.local.gateway's HTTP server and one handler container (no stream pump)."""
    from aipm.local.authorizer import CognitoAuthorizer
    from aipm.local.gateway import Gateway as LocalGateway

    authorizer = CognitoAuthorizer(os.environ["AIPM_BENCH_ISSUER"], [os.environ["AIPM_BENCH_AUDIENCE"]])
    server = LocalGateway(authorizer, containers=1)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: server.request_stop())
    print(f"ready {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()  # ends its handler process, so neither it nor the resource tracker is orphaned


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        print(json.dumps(run(), indent=2))
