"""Git workspaces against the real forge over smart HTTP, with the shipped credential helper."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aipm.local.forge import Forge
from ec2_agent.workspace import (
    Git,
    GitError,
    PushRefused,
    UnsafeReference,
    Workspace,
    install_credential_helper,
)

TOKEN = "forge-token-for-workspace-tests"


@pytest.fixture
def forge(tmp_path: Path) -> Iterator[Forge]:
    with Forge(tmp_path / "forge", token=TOKEN) as running:
        yield running


@pytest.fixture
def bare_repo(forge: Forge) -> Path:
    return forge.create_repository("acme", "tools", files={"README.md": "# tools\n", "src/app.py": "x = 1\n"})


def make_workspace(forge: Forge, root: Path) -> Workspace:
    git = Git(
        base_url=forge.base_url,
        token_provider=lambda: TOKEN,
        credential_helper=install_credential_helper(root / ".bin"),
        author_name="Agent",
        author_email="agent@example.test",
        timeout_s=30,
    )
    return Workspace(root / "slot-1", git)


def push_from_elsewhere(forge: Forge, tmp: Path, branch: str, path: str, content: str) -> None:
    """Someone else pushes a commit to `branch` (through the forge, with the token)."""
    ws = make_workspace(forge, tmp)
    tree = ws.prepare("acme", "tools", branch)
    (tree / path).parent.mkdir(parents=True, exist_ok=True)
    (tree / path).write_text(content)
    commit = ws.commit_all(tree, f"someone else changes {path}")
    assert commit is not None
    ws.push("acme", "tools", branch, commit.sha)


@pytest.fixture
def task_branch(forge: Forge, bare_repo: Path, tmp_path: Path) -> str:
    """A branch holding one TASK.md commit, as the API creates it."""
    push_from_elsewhere(forge, tmp_path / "api", "main", "TASK.md", "# Task\n")
    subprocess.run(["git", "--git-dir", str(bare_repo), "branch", "feature/x-1", "main"], check=True)
    return "feature/x-1"


def test_prepare_checks_out_clean_and_commit_push_round_trip(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    tree = ws.prepare("acme", "tools", task_branch)
    assert (tree / "TASK.md").read_text() == "# Task\n"
    assert ws.commit_all(tree, "nothing") is None
    (tree / "src" / "app.py").write_text("x = 2\n")
    (tree / "new.txt").write_text("new\n")
    commit = ws.commit_all(tree, "feat: change")
    assert commit is not None and sorted(commit.changed_files) == ["new.txt", "src/app.py"]
    assert ws.push("acme", "tools", task_branch, commit.sha) == commit.sha
    assert forge.branches("acme", "tools")[task_branch] == commit.sha

    (tree / "junk.txt").write_text("left behind by a CLI\n")
    (tree / "README.md").write_text("scribbled\n")
    tree_again = ws.prepare("acme", "tools", task_branch)
    assert tree_again == tree
    assert not (tree / "junk.txt").exists() and (tree / "README.md").read_text() == "# tools\n"


def test_push_after_the_branch_moved_rebases_and_keeps_both_commits(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    tree = ws.prepare("acme", "tools", task_branch)
    (tree / "agent.txt").write_text("agent\n")
    commit = ws.commit_all(tree, "feat: agent change")
    assert commit is not None
    push_from_elsewhere(forge, tmp_path / "human", task_branch, "human.txt", "human\n")

    pushed = ws.push("acme", "tools", task_branch, commit.sha)
    assert pushed != commit.sha and forge.branches("acme", "tools")[task_branch] == pushed
    check = make_workspace(forge, tmp_path / "check").prepare("acme", "tools", task_branch)
    assert (check / "agent.txt").exists() and (check / "human.txt").exists()
    assert not list((tmp_path / "agent" / "slot-1" / ".scratch").iterdir())  # scratch worktree removed


def test_conflicting_rebase_fails_cleanly_and_leaves_the_branch_alone(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    tree = ws.prepare("acme", "tools", task_branch)
    (tree / "README.md").write_text("agent's readme\n")
    commit = ws.commit_all(tree, "feat: agent readme")
    assert commit is not None
    push_from_elsewhere(forge, tmp_path / "human", task_branch, "README.md", "human's readme\n")
    theirs = forge.branches("acme", "tools")[task_branch]
    with pytest.raises(GitError, match="rebase"):
        ws.push("acme", "tools", task_branch, commit.sha)
    assert forge.branches("acme", "tools")[task_branch] == theirs


def install_pre_receive_hook(bare_repo: Path, message: str) -> None:
    """A server-side rule, as GitHub's rulesets answer (a `pre-receive` hook in the forge's bare repository,
    run by the real `git receive-pack`): every push is refused with `message`."""
    hook = bare_repo / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit 1\n")
    hook.chmod(0o755)


def test_a_push_the_remote_refuses_fails_at_once_with_its_message(
    forge: Forge, bare_repo: Path, tmp_path: Path, task_branch: str
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    tree = ws.prepare("acme", "tools", task_branch)
    (tree / "agent.txt").write_text("agent\n")
    commit = ws.commit_all(tree, "feat: agent change")
    assert commit is not None
    before = forge.branches("acme", "tools")[task_branch]
    install_pre_receive_hook(bare_repo, "error: GH013: Repository rule violations found for refs/heads/x.")
    with pytest.raises(PushRefused) as refused:
        ws.push("acme", "tools", task_branch, commit.sha)
    assert refused.value.message == (
        "error: GH013: Repository rule violations found for refs/heads/x.; "
        "[remote rejected] (pre-receive hook declined)"
    )
    assert forge.branches("acme", "tools")[task_branch] == before
    assert not (tmp_path / "agent" / "slot-1" / ".scratch").exists()  # no rebase was tried


def test_no_credentials_in_remote_urls_or_config(forge: Forge, tmp_path: Path, task_branch: str) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    tree = ws.prepare("acme", "tools", task_branch)
    url = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=tree, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert url == forge.clone_url("acme", "tools") and TOKEN not in url
    assert TOKEN not in (tree / ".git" / "config").read_text()


def test_wrong_token_fails_with_a_message_that_hides_it(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    ws._git._token_provider = lambda: "wrong-token-value"
    with pytest.raises(GitError) as caught:
        ws.prepare("acme", "tools", task_branch)
    assert "wrong-token-value" not in str(caught.value)


@pytest.mark.parametrize(
    ("owner", "repo", "branch"),
    [
        ("-acme", "tools", "b"),
        ("acme", "../etc", "b"),
        ("acme", "tools", "--upload-pack=x"),
        ("acme", "tools", "a..b"),
    ],
)
def test_unsafe_references_never_reach_git(
    tmp_path: Path, forge: Forge, bare_repo: Path, owner: str, repo: str, branch: str
) -> None:
    with pytest.raises(UnsafeReference):
        make_workspace(forge, tmp_path / "agent").prepare(owner, repo, branch)
