"""Git workspaces against the real forge over smart HTTP, with the shipped credential helper: the store,
the private job git directory, the checkout, the commit by content, the push of the job's branch only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aipm.local.forge import Forge
from ec2_agent.profiles import CliProfile
from ec2_agent.sandbox import remove_tree
from ec2_agent.workspace import (
    Git,
    GitError,
    PushRefused,
    TreeRefused,
    UnsafeReference,
    Workspace,
    WorkspaceFault,
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


def make_git(forge: Forge, root: Path, token: str = TOKEN) -> Git:
    return Git(
        base_url=forge.base_url,
        token_provider=lambda: token,
        credential_helper=install_credential_helper(root / ".bin"),
        author_name="Agent",
        author_email="agent@example.test",
        timeout_s=30,
    )


def make_workspace(forge: Forge, root: Path, slot: int = 1) -> Workspace:
    return Workspace(root, root / "slots" / str(slot) / "tree", make_git(forge, root))


def push_from_elsewhere(forge: Forge, tmp: Path, branch: str, path: str, content: str) -> None:
    """Someone else pushes a commit to `branch` (through the forge, with the token)."""
    ws = make_workspace(forge, tmp)
    checkout = ws.prepare("other", "acme", "tools", branch)
    (checkout.tree / path).parent.mkdir(parents=True, exist_ok=True)
    (checkout.tree / path).write_text(content)
    commit = ws.commit_all(checkout, f"someone else changes {path}")
    assert commit is not None
    ws.push(checkout, commit.sha)


@pytest.fixture
def task_branch(forge: Forge, bare_repo: Path, tmp_path: Path) -> str:
    """A branch holding one TASK.md commit, as the API creates it."""
    subprocess.run(["git", "--git-dir", str(bare_repo), "branch", "feature/x-1", "main"], check=True)
    push_from_elsewhere(forge, tmp_path / "api", "feature/x-1", "TASK.md", "# Task\n")
    return "feature/x-1"


def test_checkout_commit_push_round_trip_with_no_git_in_the_tree(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    tree = checkout.tree
    assert sorted(p.name for p in tree.iterdir()) == ["README.md", "TASK.md", "src"]  # no .git
    assert checkout.git_dir.parent == tmp_path / "agent" / "jobs"
    assert checkout.git_dir.name.startswith("job-1-") and checkout.git_dir.name.endswith(".git")
    alternates = (checkout.git_dir / "objects" / "info" / "alternates").read_text().strip()
    assert alternates == str((tmp_path / "agent" / "git" / "acme" / "tools.git" / "objects").resolve())
    assert ws.commit_all(checkout, "nothing") is None
    (tree / "src" / "app.py").write_text("x = 2\n")
    (tree / "new.txt").write_text("new\n")
    commit = ws.commit_all(checkout, "feat: change")
    assert commit is not None and sorted(commit.changed_files) == ["new.txt", "src/app.py"]
    assert ws.push(checkout, commit.sha) == commit.sha
    assert forge.branches("acme", "tools")[task_branch] == commit.sha
    assert forge.branches("acme", "tools")["main"] != commit.sha
    ws.discard(checkout)
    assert not checkout.git_dir.exists()

    inode = tree.stat().st_ino
    (tree / "junk.txt").write_text("left behind by a CLI\n")
    (tree / "README.md").write_text("scribbled\n")
    again = ws.prepare("job-2", "acme", "tools", task_branch)
    assert again.tree == tree and tree.stat().st_ino == inode  # the sandbox's bind mount stays valid
    assert not (tree / "junk.txt").exists() and (tree / "README.md").read_text() == "# tools\n"
    assert (tree / "new.txt").read_text() == "new\n"


def test_what_the_cli_did_with_git_counts_only_as_content(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    tree = checkout.tree
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": str(tmp_path)}
    cli_git = ["git", "-c", "user.name=cli", "-c", "user.email=cli@x"]
    subprocess.run([*cli_git, "init", "-q"], cwd=tree, check=True, env=env)
    (tree / "work.txt").write_text("done by the cli\n")
    subprocess.run([*cli_git, "add", "work.txt"], cwd=tree, check=True, env=env)
    subprocess.run([*cli_git, "commit", "-qm", "cli commit"], cwd=tree, check=True, env=env)
    (tree / ".git" / "info").mkdir(exist_ok=True)
    (tree / ".git" / "info" / "exclude").write_text("*\n")
    with (tree / ".git" / "config").open("a") as config:
        config.write(f"[core]\n\tfsmonitor = touch {tmp_path}/pwned\n")
    (tree / "link-out").symlink_to("/etc/passwd")
    (tree / ".gitattributes").write_text("* filter=evil\n")
    commit = ws.commit_all(checkout, "feat: job")
    assert commit is not None
    assert sorted(commit.changed_files) == [".gitattributes", "link-out", "work.txt"]
    show = ["git", "--git-dir", str(checkout.git_dir)]
    assert (
        subprocess.run(
            [*show, "cat-file", "-p", f"{commit.sha}:link-out"], capture_output=True, text=True, check=True
        ).stdout
        == "/etc/passwd"
    )
    mode = subprocess.run(
        [*show, "ls-tree", commit.sha, "link-out"], capture_output=True, text=True, check=True
    ).stdout
    assert mode.startswith("120000")  # committed as a link, never followed
    assert not (tmp_path / "pwned").exists()


def test_a_retried_job_keeps_its_git_dir_when_the_earlier_run_is_discarded(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    """A cancelled run's checkout is discarded on its publisher thread, possibly after the retry of the same
    job has been checked out on the slot: the retry's private git directory must survive that."""
    ws = make_workspace(forge, tmp_path / "agent")
    cancelled = ws.prepare("job-1", "acme", "tools", task_branch)
    retry = ws.prepare("job-1", "acme", "tools", task_branch)
    ws.discard(cancelled)
    (retry.tree / "retried.txt").write_text("second run\n")
    commit = ws.commit_all(retry, "the retry's change")
    assert commit is not None and commit.changed_files == ["retried.txt"]
    assert not cancelled.git_dir.exists() and retry.git_dir.is_dir()


def test_special_and_oversized_files_are_refused(
    forge: Forge, tmp_path: Path, task_branch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    os.mkfifo(checkout.tree / "pipe")
    with pytest.raises(TreeRefused, match="pipe"):
        ws.commit_all(checkout, "x")
    (checkout.tree / "pipe").unlink()
    monkeypatch.setattr("ec2_agent.workspace.MAX_FILE_BYTES", 10)
    (checkout.tree / "big.bin").write_bytes(b"x" * 11)
    with pytest.raises(TreeRefused, match=r"big\.bin"):
        ws.commit_all(checkout, "x")


def test_a_tree_deeper_than_a_walk_reads_is_refused(forge: Forge, tmp_path: Path, task_branch: str) -> None:
    """A CLI can nest directories thousands deep (Python 3.11's recursive walks raised RecursionError): the
    job fails with the reason, and the next checkout still empties the tree."""
    ws = make_workspace(forge, tmp_path / "agent")
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    fd = os.open(checkout.tree, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(2000):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(os.open("deep.txt", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
    os.close(fd)
    with pytest.raises(TreeRefused, match=r"tree/d/d/d.*more than 128 directories deep"):
        ws.commit_all(checkout, "x")
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    assert not (checkout.tree / "d").exists()
    for trash in checkout.tree.parent.glob(".trash-*"):  # pytest's own clean-up recurses: none may stay
        remove_tree(trash)


@pytest.mark.parametrize("kind", ["gitdir-file", "link", "commondir"])
def test_a_nested_git_pointing_outside_the_tree_is_refused(
    forge: Forge, tmp_path: Path, task_branch: str, kind: str
) -> None:
    """A `.git` below the top makes the agent's `git add` read it as an embedded repository: a `gitdir:`
    file, a link or a `commondir` sends it to a repository of the host (here another job's private git
    directory), whose HEAD would be committed as a submodule link. Refused before git runs."""
    ws = make_workspace(forge, tmp_path / "agent")
    other = ws.prepare("other-job", "acme", "tools", task_branch)
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    nested = checkout.tree / "sub"
    nested.mkdir()
    (nested / "file.txt").write_text("x\n")
    if kind == "gitdir-file":
        (nested / ".git").write_text(f"gitdir: {other.git_dir}\n")
    elif kind == "link":
        (nested / ".git").symlink_to(other.git_dir)
    else:
        (nested / ".git").mkdir()
        (nested / ".git" / "HEAD").write_text(f"ref: refs/heads/{task_branch}\n")
        (nested / ".git" / "commondir").write_text(f"{other.git_dir}\n")
        (nested / ".git" / "objects").mkdir()
        (nested / ".git" / "refs").mkdir()
    with pytest.raises(TreeRefused, match=r"sub/\.git"):
        ws.commit_all(checkout, "x")
    assert (
        subprocess.run(  # nothing was committed
            ["git", "--git-dir", str(checkout.git_dir), "rev-parse", f"refs/heads/{task_branch}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        == checkout.base
    )


def test_push_after_the_branch_moved_replays_and_keeps_both_commits(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    (checkout.tree / "agent.txt").write_text("agent\n")
    commit = ws.commit_all(checkout, "feat: agent change")
    assert commit is not None
    push_from_elsewhere(forge, tmp_path / "human", task_branch, "human.txt", "human\n")

    pushed = ws.push(checkout, commit.sha)
    assert pushed != commit.sha and forge.branches("acme", "tools")[task_branch] == pushed
    check = make_workspace(forge, tmp_path / "check").prepare("check", "acme", "tools", task_branch)
    assert (check.tree / "agent.txt").exists() and (check.tree / "human.txt").exists()


def test_conflicting_replay_fails_cleanly_and_leaves_the_branch_alone(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    (checkout.tree / "README.md").write_text("agent's readme\n")
    commit = ws.commit_all(checkout, "feat: agent readme")
    assert commit is not None
    push_from_elsewhere(forge, tmp_path / "human", task_branch, "README.md", "human's readme\n")
    theirs = forge.branches("acme", "tools")[task_branch]
    with pytest.raises(GitError, match="conflicts"):
        ws.push(checkout, commit.sha)
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
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    (checkout.tree / "agent.txt").write_text("agent\n")
    commit = ws.commit_all(checkout, "feat: agent change")
    assert commit is not None
    before = forge.branches("acme", "tools")[task_branch]
    install_pre_receive_hook(bare_repo, "error: GH013: Repository rule violations found for refs/heads/x.")
    with pytest.raises(PushRefused) as refused:
        ws.push(checkout, commit.sha)
    assert refused.value.message == (
        "error: GH013: Repository rule violations found for refs/heads/x.; "
        "[remote rejected] (pre-receive hook declined)"
    )
    assert forge.branches("acme", "tools")[task_branch] == before


def test_no_credentials_in_any_git_config(forge: Forge, tmp_path: Path, task_branch: str) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    checkout = ws.prepare("job-1", "acme", "tools", task_branch)
    for config in (checkout.git_dir / "config", ws.store_path("acme", "tools") / "config"):
        text = config.read_text()
        assert TOKEN not in text and "url" not in text and "remote" not in text


def test_wrong_token_fails_with_a_message_that_hides_it(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    root = tmp_path / "agent"
    ws = Workspace(root, root / "tree", make_git(forge, root, token="wrong-token-value"))
    with pytest.raises(GitError) as caught:
        ws.prepare("job-1", "acme", "tools", task_branch)
    assert "wrong-token-value" not in str(caught.value)


def test_a_locked_or_broken_store_is_rebuilt(forge: Forge, tmp_path: Path, task_branch: str) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    ws.prepare("job-1", "acme", "tools", task_branch)
    store = ws.store_path("acme", "tools")
    lock = store / "refs" / "remotes" / "origin" / "feature" / "x-1.lock"
    lock.write_text("stale\n")  # what a kill during a fetch leaves
    (store / "index.lock").write_text("stale\n")
    push_from_elsewhere(forge, tmp_path / "human", task_branch, "moved.txt", "the branch moved\n")
    checkout = ws.prepare("job-2", "acme", "tools", task_branch)
    assert (checkout.tree / "moved.txt").is_file() and not lock.exists()
    (store / "HEAD").unlink()
    assert (ws.prepare("job-3", "acme", "tools", task_branch).tree / "TASK.md").is_file()


def test_a_checkout_that_cannot_be_made_is_a_slot_fault(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    root = tmp_path / "agent"
    ws = Workspace(root, root / "tree", make_git(forge, root))
    root.mkdir(exist_ok=True)
    (root / "jobs").write_text("not a directory")  # local state broken, not the job's fault
    with pytest.raises(WorkspaceFault, match="after a rebuild"):
        ws.prepare("job-1", "acme", "tools", task_branch)


def test_a_replaced_credential_helper_is_refused(forge: Forge, tmp_path: Path, task_branch: str) -> None:
    ws = make_workspace(forge, tmp_path / "agent")
    helper = tmp_path / "agent" / ".bin" / "git-credential-aipm"
    helper.chmod(0o700)
    helper.write_text("#!/bin/sh\nenv > /tmp/leaked-token\n")
    with pytest.raises(WorkspaceFault, match="credential helper"):
        ws.prepare("job-1", "acme", "tools", task_branch)


def test_default_branch_comes_from_the_forge(forge: Forge, tmp_path: Path, bare_repo: Path) -> None:
    assert make_workspace(forge, tmp_path / "agent").default_branch("acme", "tools") == "main"


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
        make_workspace(forge, tmp_path / "agent").prepare("job-1", owner, repo, branch)


def test_files_the_cli_writes_for_itself_are_never_committed(
    forge: Forge, tmp_path: Path, task_branch: str
) -> None:
    """A profile's commit_exclude (Kiro: `.kiro/**`): new files under it are not added, a tracked one keeps
    the branch's version; a tree changed only there is no change at all."""
    push_from_elsewhere(forge, tmp_path / "api", task_branch, ".kiro/steering.md", "# the repo's own\n")
    root = tmp_path / "agent"
    ws = Workspace(
        root, root / "slots" / "1" / "tree", make_git(forge, root), commit_exclude=(".kiro/**", "**/*.log")
    )
    checkout = ws.prepare("job-x", "acme", "tools", task_branch)
    tree = checkout.tree
    (tree / ".kiro" / "steering.md").write_text("rewritten by the CLI\n")
    (tree / ".kiro" / "history.json").write_text("{}\n")
    (tree / "debug.log").write_text("log\n")
    (tree / "src" / "trace.log").write_text("nested log\n")
    assert ws.commit_all(checkout, "only the CLI's own files") is None
    (tree / "src" / "app.py").write_text("x = 3\n")
    commit = ws.commit_all(checkout, "feat: change")
    assert commit is not None and commit.changed_files == ["src/app.py"]
    shown = subprocess.run(
        ["git", "--git-dir", str(checkout.git_dir), "show", f"{commit.sha}:.kiro/steering.md"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == "# the repo's own\n"


@pytest.mark.parametrize("glob", ["", "/etc/*", "../x", "a/../../b"])
def test_commit_exclude_globs_stay_inside_the_tree(glob: str) -> None:
    with pytest.raises(ValueError, match="commit_exclude"):
        CliProfile(name="x", kind="headless", argv=("x",), commit_exclude=(glob,))


def test_a_branch_holds_its_pushed_commits_until_it_is_force_pushed_past_them(
    forge: Forge, bare_repo: Path, tmp_path: Path, task_branch: str
) -> None:
    """Workspace.holds: what a follow-up checks before it resumes a PR's saved session."""
    ws = make_workspace(forge, tmp_path / "agent")
    first = ws.prepare("job-1", "acme", "tools", task_branch)
    (first.tree / "agent.txt").write_text("agent\n")
    commit = ws.commit_all(first, "feat: agent change")
    assert commit is not None
    pushed = ws.push(first, commit.sha)
    push_from_elsewhere(forge, tmp_path / "human", task_branch, "human.txt", "human\n")

    later = ws.prepare("job-2", "acme", "tools", task_branch)
    assert ws.holds(later, pushed) and ws.holds(later, later.base)
    assert not ws.holds(later, "0" * 40)  # not a commit at all
    assert not ws.holds(later, "--all") and not ws.holds(later, pushed[:12])  # only full object names

    # someone force-pushes the branch back to before the agent's commit
    back = ["git", "--git-dir", str(bare_repo), "update-ref", f"refs/heads/{task_branch}", first.base]
    subprocess.run(back, check=True)
    after = ws.prepare("job-3", "acme", "tools", task_branch)
    assert not ws.holds(after, pushed)
