"""The whole path, end to end: real HTTP, a real moto server, the real forge (git smart HTTP), the real
handlers behind the local gateway, the real agent driving the Kiro emulator in a real PTY."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions, wait_for_job
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e

HAPPY_STEPS = ["queued", "claimed", "preparing", "generating", "committing", "pushed", "completed"]


def task(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "owner": DEMO_OWNER,
        "repo": DEMO_REPO,
        "branchName": "feature/" + title.lower().replace(" ", "-"),
        "taskTitle": title,
        "objective": f"Deliver {title.lower()}",
        "prTitle": f"feat: {title}",
        "constraints": "Keep it small",
        "acceptanceCriteria": [f"{title} works", "Tests pass"],
        **extra,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        tmp_path_factory.mktemp("stack"), StackOptions(emulator_work_s=0.2, sweep_interval_s=2)
    ) as s:
        yield s


def git(stack: LocalStack, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), *args], capture_output=True, text=True, check=True
    ).stdout


def branches(stack: LocalStack) -> list[str]:
    return sorted(git(stack, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def job_count(stack: LocalStack) -> int:
    ddb = stack.client("dynamodb")
    return int(ddb.scan(TableName=stack.records_table, Select="COUNT")["Count"])


def test_a_task_becomes_a_pr_with_the_agents_commit(stack: LocalStack) -> None:
    status, delegated = stack.api("POST", "/api/personal-delegate", task("Add export button"))
    assert status == 201, delegated
    job = wait_for_job(stack, delegated["jobId"], timeout_s=90)

    assert job["status"] == "completed", job
    steps = [e["step"] for e in job["timeline"]]
    assert steps == HAPPY_STEPS
    stamps = [e["at"] for e in job["timeline"]]
    assert stamps == sorted(stamps)
    assert job["worker"] is None and job["attempts"] == 1

    branch = delegated["branchName"]
    log = git(stack, "log", "--format=%H %s", f"main..{branch}").splitlines()
    assert len(log) == 2
    agent_sha, agent_subject = log[0].split(" ", 1)
    assert agent_sha == job["commitSha"]
    assert agent_subject == "feat: Add export button"
    # the TASK.md commit by the API: a product-written message (user text could carry closing keywords)
    assert log[1].split(" ", 1)[1] == f"AIPM task {delegated['jobId']}: add TASK.md"
    changed = git(stack, "show", "--name-only", "--format=", agent_sha).split()
    assert changed == job["changedFiles"] == ["docs/add-export-button.md"]
    content = git(stack, "show", f"{agent_sha}:docs/add-export-button.md")
    assert "Add export button works" in content and "Deliver add export button" in content
    assert "TASK.md" in git(stack, "show", "--name-only", "--format=", f"{agent_sha}~1")

    [pr] = [p for p in stack.forge.pull_requests(DEMO_OWNER, DEMO_REPO) if p["number"] == delegated["number"]]
    assert pr["head"]["sha"] == agent_sha
    # The outcome comment is posted after the job's record says it ended.
    number = delegated["number"]
    outcome = eventually(
        lambda: [c for c in stack.forge.comments(DEMO_OWNER, DEMO_REPO, number) if agent_sha in c["body"]]
    )
    assert outcome, "no PR comment names the pushed commit"


def wait_for_idle_ready_slots(stack: LocalStack, count: int, timeout_s: float = 60) -> None:
    """Until the agents' heartbeats show `count` slots ready and free (a slot restarting its CLI after the
    last job is not ready, and then the busy one rightly claims the next job ahead)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pool = stack.api("GET", "/api/workers")[1]
        slots = [s for a in pool["agents"] if a["healthy"] for s in a["slots"]]
        if sum(1 for s in slots if s["ready"] and not s["busy"]) >= count:
            return
        assert time.monotonic() < deadline, f"never {count} idle ready slots: {slots}"
        time.sleep(0.2)


def test_two_tasks_sent_at_once_run_in_parallel_on_both_slots(stack: LocalStack) -> None:
    wait_for_idle_ready_slots(stack, 2)
    slow = "<!-- emulator: slow=2 -->"
    tasks = [task("Parallel one", constraints=slow), task("Parallel two", constraints=slow)]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda t: stack.api("POST", "/api/personal-delegate", t), tasks))
    assert [s for s, _ in answers] == [201, 201]
    with ThreadPoolExecutor(2) as pool:
        jobs = list(pool.map(lambda a: wait_for_job(stack, a[1]["jobId"], timeout_s=90), answers))
    assert [j["status"] for j in jobs] == ["completed", "completed"]

    def at(job: dict[str, Any], step: str) -> str:
        return next(e["at"] for e in job["timeline"] if e["step"] == step)

    # `by <agent>/slot-<n>/<claim id>`: the claim id is unique per claim, so compare the slots
    claimers = {
        next(e["detail"] for e in j["timeline"] if e["step"] == "claimed").rsplit("/", 1)[0] for j in jobs
    }
    assert len(claimers) == 2, claimers  # two different slots
    a, b = jobs
    assert at(a, "generating") < at(b, "committing") and at(b, "generating") < at(a, "committing")  # overlap
    for (_, delegated), job in zip(answers, jobs, strict=True):
        files = git(stack, "show", "--name-only", "--format=", job["commitSha"]).split()
        slug = job["taskTitle"].lower().replace(" ", "-")
        assert files == [f"docs/{slug}.md"]
        assert git(stack, "rev-parse", delegated["branchName"]).strip() == job["commitSha"]


def _post_raw(stack: LocalStack, body: bytes, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{stack.api_url}/api/personal-delegate", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{oops", ""),
        (json.dumps(task("Bad branch", branchName="feature/a..b")).encode(), "branchName"),
        (json.dumps(task("Bad owner", owner="-x")).encode(), "owner"),
        (
            json.dumps({k: v for k, v in task("No objective").items() if k != "objective"}).encode(),
            "objective",
        ),
    ],
    ids=["non-json", "branch", "owner", "missing-field"],
)
def test_malformed_requests_create_nothing(stack: LocalStack, body: bytes, field: str) -> None:
    before = (branches(stack), len(stack.forge.pull_requests(DEMO_OWNER, DEMO_REPO)), job_count(stack))
    status, answer = _post_raw(stack, body, stack.api_token)
    assert status == 400, answer
    assert answer["field"] == field and answer["message"]
    after = (branches(stack), len(stack.forge.pull_requests(DEMO_OWNER, DEMO_REPO)), job_count(stack))
    assert after == before


def test_the_local_api_is_not_open(stack: LocalStack) -> None:
    status, _ = _post_raw(stack, json.dumps(task("No token")).encode(), None)
    assert status == 401
    status, _ = _post_raw(stack, json.dumps(task("Wrong token")).encode(), "not-the-token")
    assert status == 401


def _agent(stack: LocalStack, port: int, method: str, path: str, body: Any, token: str | None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_agent_api_needs_the_token_and_validates(stack: LocalStack) -> None:
    agent = stack.agents[0]
    assert _agent(stack, agent.pool_port, "GET", "/health", None, None) == 401
    assert _agent(stack, agent.processor_port, "GET", "/health", None, "wrong") == 401
    health = stack.agent_health(agent)
    assert health is not None and len(health["workers"]) == 2
    assert {"id", "busy", "ready", "currentTask", "idle", "restarts"} <= set(health["workers"][0])
    assert (
        _agent(stack, agent.processor_port, "POST", "/api/process-pr", {"prNumber": "x"}, stack.agent_token)
        == 400
    )
    # no such PR: the reason, never an accepted answer for nothing (see test_prototype_agent_endpoints.py)
    nudge = {"prNumber": 1, "branch": "b", "owner": "o", "repo": "r"}
    status = _agent(stack, agent.processor_port, "POST", "/api/process-pr", nudge, stack.agent_token)
    assert status in (403, 404)


def listening_sockets() -> dict[int, str]:
    """Port → local IPv4 address of every listening TCP socket on this host (from /proc/net/tcp)."""
    found: dict[int, str] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] != "0A":  # LISTEN
            continue
        addr_hex, port_hex = fields[1].split(":")
        addr = ".".join(str(int(addr_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
        found[int(port_hex, 16)] = addr
    return found


def test_nothing_listens_beyond_loopback(stack: LocalStack) -> None:
    listening = listening_sockets()
    ports = [a.pool_port for a in stack.agents] + [a.processor_port for a in stack.agents]
    ports += [
        stack.moto.port,
        int(stack.api_url.rsplit(":", 1)[1]),
        int(stack.forge.base_url.rsplit(":", 1)[1]),
    ]
    assert {port: listening.get(port) for port in ports} == {port: "127.0.0.1" for port in ports}


def test_stack_logs_hold_no_secret(stack: LocalStack) -> None:
    text = "".join(p.read_text(errors="replace") for p in Path(stack.logs).glob("*.log"))
    assert stack.github_token not in text and stack.agent_token not in text and stack.api_token not in text
