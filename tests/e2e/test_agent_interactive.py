"""The agent's interactive surfaces through the local stack: POST /execute and the WebSocket attach."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions, wait_for_job

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("interactive"), StackOptions(emulator_work_s=0.1)) as running:
        yield running


def execute(stack: LocalStack, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.agents[0].pool_port}/execute",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_execute_needs_the_token(stack: LocalStack) -> None:
    assert execute(stack, {"prompt": "hello"}, None)[0] == 401
    assert execute(stack, {"prompt": "hello"}, "wrong")[0] == 401


def test_execute_runs_a_sanitised_prompt_on_a_free_slot(stack: LocalStack) -> None:
    status, answer = execute(
        stack, {"prompt": "say hi\x1b[2J\x03 now", "timeoutMs": 20_000}, stack.agent_token
    )
    assert status == 200, answer
    assert answer["timeout"] is False and isinstance(answer["success"], bool)
    assert answer["output"] and "\x1b" not in answer["output"]


@pytest.mark.parametrize(
    "body", [{}, {"prompt": ""}, {"prompt": "x", "timeoutMs": 5}, {"prompt": "\x1b[0m\x03"}]
)
def test_execute_refuses_bad_bodies(stack: LocalStack, body: dict[str, Any]) -> None:
    status, answer = execute(stack, body, stack.agent_token)
    assert status == 400 and answer["field"] in {"prompt", "timeoutMs"}


@contextmanager
def attach(stack: LocalStack, origin: str | None = None, **overrides: str) -> Iterator[ClientConnection]:
    url = f"ws://127.0.0.1:{stack.agents[0].attach_port}/attach"
    with connect(url, open_timeout=10, origin=origin) as ws:  # type: ignore[arg-type]
        request = {"type": "attach", "token": stack.agent_token, "owner": DEMO_OWNER, "repo": DEMO_REPO}
        ws.send(json.dumps({**request, "branch": "main", **overrides}))
        yield ws


def receive_until(ws: ClientConnection, kind: str, timeout_s: float = 20) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = json.loads(ws.recv(timeout=timeout_s))
        seen.append(message)
        if message["type"] in (kind, "error"):
            return seen


def job_branch(stack: LocalStack, title: str) -> str:
    """The branch of a job delegated through the API and finished."""
    status, delegated = stack.api(
        "POST",
        "/api/personal-delegate",
        {
            "owner": DEMO_OWNER,
            "repo": DEMO_REPO,
            "branchName": "feature/" + title.lower().replace(" ", "-"),
            "taskTitle": title,
            "objective": f"Deliver {title}",
            "prTitle": f"feat: {title}",
            "acceptanceCriteria": ["It works"],
        },
    )
    assert status == 201, delegated
    assert wait_for_job(stack, delegated["jobId"], timeout_s=60)["status"] == "completed"
    return str(delegated["branchName"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"token": "wrong"},
        {"branch": "a..b"},
        {"owner": "-x"},
        {"branch": "main"},  # the default branch
        {"branch": "not-a-job-branch"},
        {"owner": "someone-else"},  # not an allowed owner
    ],
    ids=["token", "bad-branch", "bad-owner", "default-branch", "not-a-job", "other-owner"],
)
def test_attach_refuses(stack: LocalStack, overrides: dict[str, str]) -> None:
    subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), "branch", "-f", "not-a-job-branch", "main"], check=True
    )
    with attach(stack, **overrides) as ws:
        [answer] = receive_until(ws, "ready")
        assert answer["type"] == "error"


def test_attach_refuses_a_browser_from_another_origin(stack: LocalStack) -> None:
    assert stack.console is not None
    with pytest.raises(InvalidStatus) as refused, attach(stack, origin="http://evil.example"):
        pass
    assert refused.value.response.status_code == 403
    branch = job_branch(stack, "Origin check")
    with attach(stack, origin=stack.console.origin, branch=branch) as ws:
        assert receive_until(ws, "ready")[-1]["type"] == "ready"


def test_attach_gives_a_terminal_on_the_branch_and_pushes_on_finish(stack: LocalStack) -> None:
    branch = job_branch(stack, "Attach base")
    task_md = "# Refine the readme\n\n## Objective\n\nAdd a section\n\n## Acceptance criteria\n\n- [ ] Done\n"
    subprocess.run(
        [
            "git",
            "--git-dir",
            str(stack.demo_repo),
            "update-ref",
            f"refs/heads/{branch}",
            _commit_task(stack, branch, task_md),
        ],
        check=True,
    )
    with attach(stack, branch=branch) as ws:
        assert receive_until(ws, "ready")[-1]["type"] == "ready"
        ws.send(json.dumps({"type": "resize", "rows": 40, "cols": 120}))
        ws.send(json.dumps({"type": "input", "data": "Read TASK.md and implement it\r"}))
        output = ""
        # A person answers once the CLI reads keys again: its prompt is back (bracketed paste turned on).
        while "\x1b[?2004h" not in output.rsplit("[y/n/t]", 1)[-1] or "[y/n/t]" not in output:
            output += json.loads(ws.recv(timeout=20)).get("data", "")
        ws.send(json.dumps({"type": "input", "data": "y\r"}))
        while "Done:" not in output.rsplit("[y/n/t]", 1)[1]:
            output += json.loads(ws.recv(timeout=20)).get("data", "")
        ws.send(json.dumps({"type": "finish"}))
        finished = receive_until(ws, "finished")[-1]
    assert finished["type"] == "finished" and finished["commit"]
    tip = subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), "rev-parse", branch],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert tip == finished["commit"]
    files = subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), "show", "--name-only", "--format=", tip],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert files == ["docs/refine-the-readme.md"]


def _commit_task(stack: LocalStack, branch: str, task_md: str) -> str:
    """A commit on `branch` adding or replacing TASK.md, made with git plumbing in the bare repository."""
    git = ["git", "--git-dir", str(stack.demo_repo)]
    blob = subprocess.run(
        [*git, "hash-object", "-w", "--stdin"], input=task_md, capture_output=True, text=True, check=True
    ).stdout.strip()
    base_tree = subprocess.run(
        [*git, "rev-parse", f"{branch}^{{tree}}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    listing = subprocess.run([*git, "ls-tree", base_tree], capture_output=True, text=True, check=True).stdout
    listing = "".join(line + "\n" for line in listing.splitlines() if not line.endswith("\tTASK.md"))
    tree = subprocess.run(
        [*git, "mktree"],
        input=listing + f"100644 blob {blob}\tTASK.md\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parent = subprocess.run(
        [*git, "rev-parse", branch], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [*git, "commit-tree", tree, "-p", parent, "-m", "task"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
