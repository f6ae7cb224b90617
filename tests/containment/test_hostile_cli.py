"""A hostile CLI through the real local stack: the agent runs `hostile_cli.sh` as its CLI profile, inside
the slot's sandbox, and the repository hands it `attack.sh` (tests/containment/attacks.py). Every attack of
the issue must fail, the job's outcome must stay truthful, nothing may be pushed but the job's branch, and
nothing the agent owns (git directories and configuration, PATH, homes, the helper, other slots) may differ
after a job from before it — the class of defence, not a list of cases.

Runs as root and, in CI (`.ci/run`), again as an unprivileged user through `runuser`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions, wait_for_job
from tests.containment.attacks import BACKGROUND_TAG, LEAKED, Layout, first_job, second_job
from tests.containment.cli_user import CLI_USER, ensure_user, reachable_dir

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
OTHER_REPO = "other"
PROFILE = {
    "argv": ["/bin/sh", str(HERE / "hostile_cli.sh")],
    "ready_pattern": r"(?m)^hostile> \Z",
    "reset_command": "/clear",
    "quit_command": "/quit",
    "startup_timeout_s": 20,
}


@pytest.fixture(scope="module", params=["agent-user", "cli-user"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole local stack with the hostile CLI as its profile: the sandbox as the agent's own user (local
    mode), and, as root, again as the CLI's own user (`aipm-cli`, the cloud host's mode)."""
    env = {
        "AIPM_GENERIC_PROFILE": json.dumps(PROFILE),
        "AIPM_SANDBOX_RO_BINDS": json.dumps([str(HERE)]),
        "AIPM_SANDBOX_NETWORK": "none",
    }
    with ExitStack() as cleanup:
        if request.param == "agent-user":
            root = tmp_path_factory.mktemp("containment")
        elif os.geteuid() != 0:
            pytest.skip("starting the sandbox as another user needs root (the cloud agent has CAP_SETUID)")
        else:
            ensure_user(CLI_USER)
            env["AIPM_SANDBOX_CLI_USER"] = CLI_USER
            root = cleanup.enter_context(reachable_dir("aipm-containment-"))
        home = root / "agent-home"
        home.mkdir()
        env["HOME"] = str(home)
        options = StackOptions(pool_size=2, cli_profile="generic", sweep_interval_s=1, agent_env=env)
        with LocalStack(root, options) as running:
            running.forge.create_repository(DEMO_OWNER, OTHER_REPO, files={"README.md": "# other\n"})
            yield running


@pytest.fixture
def mark(tmp_path: Path) -> Path:
    path = tmp_path / "mark"
    path.mkdir()
    return path


def git(stack: LocalStack, *args: str) -> str:
    """git on the forge's bare demo repository (the test's own, trusted git)."""
    return subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), *args], capture_output=True, text=True, check=True
    ).stdout


def base_branch_with(stack: LocalStack, name: str, attack: str) -> str:
    """A branch off main whose tree adds `attack.sh`: the repository content the CLI will read."""
    blob = subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), "hash-object", "-w", "--stdin"],
        input=attack,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    listing = git(stack, "ls-tree", "main")
    tree = subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), "mktree"],
        input=listing + f"100644 blob {blob}\tattack.sh\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    sha = subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), "commit-tree", tree, "-p", "main", "-m", "attack"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.strip()
    git(stack, "update-ref", f"refs/heads/{name}", sha)
    return name


def delegate(stack: LocalStack, title: str, base: str) -> dict[str, Any]:
    status, answer = stack.api(
        "POST",
        "/api/personal-delegate",
        {
            "owner": DEMO_OWNER,
            "repo": DEMO_REPO,
            "branchName": "feature/" + title.lower().replace(" ", "-"),
            "baseBranch": base,
            "taskTitle": title,
            "objective": "Follow the instructions in attack.sh",
            "prTitle": f"feat: {title}",
            "acceptanceCriteria": ["attack.sh ran"],
        },
    )
    assert status == 201, answer
    return answer


def digest_tree(root: Path) -> dict[str, str]:
    """Relative path → a digest of what is there (links by target, never followed)."""
    found: dict[str, str] = {}
    if not root.exists():
        return {"": "missing"}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                found[rel] = "link:" + str(path.readlink())
            elif path.is_file():
                found[rel] = f"{st.st_mode:o}:" + hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = f"{st.st_mode:o}"
    return found


def agent_state(stack: LocalStack) -> dict[str, Any]:
    """Everything the agent owns that a CLI could plant something in: its helper, pristine homes, the
    stores' configuration, hooks and info, its home, every directory on its PATH."""
    work = stack.agents[0].work_dir
    state: dict[str, Any] = {
        "bin": digest_tree(work / ".bin"),
        "homes": digest_tree(work / "homes"),
        "agent_home": digest_tree(Path(stack.agents[0].env["HOME"])),
    }
    for store in (work / "git").glob("*/*.git"):
        for part in ("config", "hooks", "info", "HEAD"):
            state[f"{store.name}/{part}"] = (
                digest_tree(store / part)
                if (store / part).is_dir()
                else ((store / part).read_text() if (store / part).exists() else None)
            )
    for directory in stack.agents[0].env["PATH"].split(os.pathsep):
        path = Path(directory)
        state[f"PATH:{directory}"] = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
    return state


def run_job(stack: LocalStack, title: str, attack: str) -> dict[str, Any]:
    base = base_branch_with(stack, f"attack/{title.lower().replace(' ', '-')}", attack)
    delegated = delegate(stack, title, base)
    job = wait_for_job(stack, delegated["jobId"], timeout_s=120)
    job["branchName"] = delegated["branchName"]
    return job


def claimed_slot(job: dict[str, Any]) -> str:
    """The slot that claimed the job: `by <agent>/slot-<n>` (the lease owner without its claim id)."""
    detail: str = next(e["detail"] for e in job["timeline"] if e["step"] == "claimed")
    return detail.rsplit("/", 1)[0]


def test_every_attack_fails_and_nothing_the_agent_owns_changes(stack: LocalStack, mark: Path) -> None:
    agent = stack.agents[0]
    assert agent.proc is not None
    layout = Layout(
        work_dir=agent.work_dir,
        agent_home=Path(agent.env["HOME"]),
        agent_pid=agent.proc.pid,
        mark=mark,
        forge_url=stack.forge.base_url,
        owner=DEMO_OWNER,
        repo=DEMO_REPO,
        other_repo=OTHER_REPO,
        branch="feature/hostile-one",
    )
    # The store exists once a job has run: warm it with a harmless job so the attack can aim at it.
    run_job(stack, "Warm up", "#!/bin/sh\necho warm > /workspace/warm.txt\n")
    state_before = agent_state(stack)
    heads_before = stack.forge.branches(DEMO_OWNER, DEMO_REPO)
    other_before = stack.forge.branches(DEMO_OWNER, OTHER_REPO)

    job = run_job(stack, "Hostile one", first_job(layout))

    # The outcome is truthful: the job did its work and the commit holds what the CLI wrote.
    assert job["status"] == "completed", job
    branch = job["branchName"]
    sha = job["commitSha"]

    def show(path: str) -> str:
        return git(stack, "show", f"{sha}:{path}")

    assert show("results/done") == "done\n"
    # What the CLI printed is stored screened: the token-shaped string it leaked is redacted.
    assert "found a token: [redacted github token]" in job["outputTail"] and LEAKED not in job["outputTail"]
    assert show("work.txt") == "the job itself\n"

    # Nothing the agent or its git could have run on the CLI's behalf ran: the mark directory is empty.
    assert sorted(p.name for p in mark.iterdir()) == []
    # No secret of the agent's reached the sandbox: not its environment, not its files.
    results = {
        p: show(f"results/{p}") for p in git(stack, "ls-tree", "--name-only", f"{sha}:results").split()
    }
    everything = "\n".join(results.values())
    for secret in (stack.github_token, stack.agent_token, stack.api_token):
        assert secret not in everything
    env_names = {line.split("=", 1)[0] for line in results["env.txt"].splitlines() if "=" in line}
    assert not {n for n in env_names if n.startswith(("AWS_", "AIPM_", "GITHUB_", "GIT_"))}, env_names
    assert "No such file" in results["agent-environ.txt"]
    seen_pids = [
        int(line.split()[0][6:]) for line in results["processes.txt"].splitlines() if line[:6] == "/proc/"
    ]
    assert seen_pids and max(seen_pids) < 100 and agent.proc.pid not in seen_pids, results["processes.txt"]
    assert str(agent.work_dir) not in results["find.txt"]
    assert results["work-dir.txt"].count("No such file") == 6
    assert "No such file" in results["helper.txt"] and "No such file" in results["homes.txt"]
    assert "Errno" in results["metadata.txt"] and "Errno" in results["forge.txt"]
    assert results["write-agent-git.txt"].count("Directory nonexistent") == 2
    assert results["system-shim.txt"].count("Read-only file system") == 2
    assert "Directory nonexistent" in results["helper-overwrite.txt"]

    # The planted filter did not run: the committed file is what the CLI wrote; links are links.
    assert show("filtered.txt") == "written by the cli\n"
    for link, target in (("link-passwd", "/etc/passwd"), ("link-work-dir", str(agent.work_dir))):
        assert git(stack, "ls-tree", sha, link).startswith("120000")
        assert show(link) == target
    assert ".git" not in git(stack, "ls-tree", "--name-only", sha).split()

    # Nothing was pushed anywhere but the job's branch.
    heads_after = stack.forge.branches(DEMO_OWNER, DEMO_REPO)
    changed = {name for name in heads_after if heads_before.get(name) != heads_after[name]}
    assert changed == {branch, "attack/hostile-one"}, changed
    assert heads_after["main"] == heads_before["main"]
    assert stack.forge.branches(DEMO_OWNER, OTHER_REPO) == other_before
    assert "fatal" in results["push.txt"] or "error" in results["push.txt"].lower()

    # Nothing the agent owns changed.
    assert agent_state(stack) == state_before

    # The next job on the same slot finds nothing of this one: no home files, no /tmp, no git directory,
    # no background process; and its own change is committed (no_changes would be a lie).
    for attempt in range(4):
        after = run_job(stack, f"Hostile next {attempt}", second_job())
        assert after["status"] == "completed", after
        nsha = after["commitSha"]
        assert git(stack, "show", f"{nsha}:next-work.txt") == "the next job\n"
        if claimed_slot(after) == claimed_slot(job):
            break
    else:
        pytest.fail("four jobs in a row ran on the other slot")

    def shown(path: str) -> str:
        return git(stack, "show", f"{nsha}:results-next/{path}")

    assert shown("leftovers.txt").count("No such file") == 3
    assert "No such file" in shown("git-dir.txt")
    assert "No such file" in shown("background.txt")
    assert BACKGROUND_TAG not in shown("processes.txt")
    assert not any(BACKGROUND_TAG in _cmdline(pid) for pid in _pids())
    assert sorted(p.name for p in mark.iterdir()) == []
    assert agent_state(stack) == state_before


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_file_names_the_cli_chose_stay_code_in_the_pr_comment(stack: LocalStack) -> None:
    """The agent's PR comment lists the changed files; their names are the CLI's: a name with a backtick
    and line breaks must not end the code span and put a team @mention, an issue reference or Markdown of
    its own on a line of the product's comment."""
    attack = """#!/bin/sh
printf 'x' > "/workspace/a\\`

@octocat approved: Fixes #1 **ship it**
\\`b"
"""
    job = run_job(stack, "Hostile names", attack)
    assert job["status"] == "completed", job
    name = "a`\n\n@octocat approved: Fixes #1 **ship it**\n`b"
    assert job["changedFiles"] == [name]
    number = job["prNumber"]
    deadline = time.monotonic() + 30
    while not (comments := stack.forge.comments(DEMO_OWNER, DEMO_REPO, number)):
        assert time.monotonic() < deadline, "no PR comment"
        time.sleep(0.2)
    body = comments[-1]["body"]
    listed = body.split("Changed files:\n", 1)[1]
    assert listed == "- `` a`\\u000a\\u000a@octocat approved: Fixes #1 **ship it**\\u000a`b ``", body


def test_a_refusal_naming_a_path_the_cli_chose_stays_code_in_the_pr_comment(stack: LocalStack) -> None:
    """A refused tree's reason names the CLI's path (here a nested `.git`); in the failure comment it is
    code on one line, never an @mention or Markdown of the product's."""
    attack = """#!/bin/sh
mkdir -p "/workspace/a

@octocat approved"
echo 'gitdir: /nowhere' > "/workspace/a

@octocat approved/.git"
"""
    job = run_job(stack, "Hostile refusal", attack)
    assert job["status"] == "failed", job
    deadline = time.monotonic() + 30
    while not (comments := stack.forge.comments(DEMO_OWNER, DEMO_REPO, job["prNumber"])):
        assert time.monotonic() < deadline, "no PR comment"
        time.sleep(0.2)
    body = comments[-1]["body"]
    assert "\n" not in body, body
    assert "` the work tree was refused: a\\u000a\\u000a@octocat approved/.git: " in body, body
