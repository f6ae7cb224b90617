"""Git workspaces: one clone per slot and repository, driven with argument lists only.

Pushes go to the job's branch only, with an explicit refspec; credentials come from a credential helper
fed through the environment, never from the remote URL.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from lambda_src.models import check_branch_name

log = logging.getLogger(__name__)

PUSH_ATTEMPTS = 3
# How git reports a push refused because the branch moved (porcelain status lines go to stdout).
_REJECTION_MARKS = ("[rejected]", "non-fast-forward", "fetch first")
# How the remote reports a push its rules refuse, whatever the branch holds: a hook (`pre-receive hook
# declined`, git's receive-pack), any other server-side refusal (`[remote rejected]`), GitHub's rulesets and
# branch protections (`GH006: Protected branch update failed`, `GH013: Repository rule violations found`;
# docs.github.com, "Troubleshooting rules"). Pushing again cannot help.
_REFUSAL = re.compile(r"\[remote rejected\]|pre-receive hook declined|\bGH0\d\d\b")
_STDERR_TAIL = 2000


class GitError(RuntimeError):
    """A git command failed. The message carries the command (no secrets) and the tail of its stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args[:2])} failed ({returncode}): {stderr[-_STDERR_TAIL:].strip()}")
        self.returncode = returncode
        self.stderr = stderr


class PushRejected(GitError):
    pass


class PushRefused(GitError):
    """The remote refused the push by its own rules (a hook, a branch protection, a ruleset): permanent.

    `message` is the remote's own explanation: its `remote:` lines and the refused ref's status line.
    """

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(args, returncode, stderr)
        said = [line.removeprefix("remote:").strip() for line in stderr.splitlines() if line[:7] == "remote:"]
        status = [line.split("\t")[-1].strip() for line in stdout.splitlines() if line.startswith("!")]
        self.message = "; ".join(part for part in [*said, *status] if part) or stderr.strip()[-_STDERR_TAIL:]


class UnsafeReference(ValueError):
    """An owner, repository or branch from a job record that must not be handed to git."""


@dataclass(frozen=True)
class Commit:
    sha: str
    changed_files: list[str]


def install_credential_helper(bin_dir: Path) -> Path:
    """Install the credential helper git runs (`git-credential-aipm`, shipped with this package); returns its
    path. Raises ValueError if the path would contain a space (git would split it)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    helper = bin_dir / "git-credential-aipm"
    if " " in str(helper):
        raise ValueError(f"the credential helper path must not contain spaces: {helper}")
    helper.write_bytes(resources.files("ec2_agent").joinpath("git-credential-aipm").read_bytes())
    helper.chmod(0o700)
    return helper


class Git:
    """Runs git with a fixed, safe configuration. Every command has a timeout (GitError on expiry)."""

    def __init__(
        self,
        *,
        base_url: str,
        token_provider: Callable[[], str],
        credential_helper: Path,
        author_name: str,
        author_email: str,
        timeout_s: float,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.username or parts.password:
            raise ValueError("the git base URL must not carry credentials")
        self.base_url = base_url.rstrip("/")
        self._host = parts.netloc
        self._protocol = parts.scheme
        self._token_provider = token_provider
        self._config = [
            "-c", "credential.helper=",
            "-c", f"credential.helper={credential_helper}",
            "-c", f"user.name={author_name}",
            "-c", f"user.email={author_email}",
            "-c", "core.hooksPath=/dev/null",
            "-c", "commit.gpgsign=false",
            "-c", "protocol.file.allow=never",
            "-c", "advice.detachedHead=false",
            # A slot's threads use one repository at once (a fetch ahead while the publisher pushes):
            # no background gc or maintenance may repack refs under them.
            "-c", "gc.auto=0",
            "-c", "maintenance.auto=false",
        ]  # fmt: skip
        self._timeout_s = timeout_s

    def run(self, args: Sequence[str], cwd: Path, *, auth: bool = False) -> str:
        """Run `git <args>` in `cwd`; returns stdout. Raises GitError (PushRejected for a push refused because
        the branch moved, PushRefused for one the remote's rules refuse)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT"}
        }
        env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_ASKPASS="", SSH_ASKPASS="")
        token = ""
        if auth:
            token = self._token_provider()
            env.update(AIPM_GIT_TOKEN=token, AIPM_GIT_HOST=self._host, AIPM_GIT_PROTOCOL=self._protocol)
        argv = ["git", *self._config, *args]
        try:
            proc = subprocess.run(
                argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=self._timeout_s, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise GitError(args, -1, f"timed out after {self._timeout_s} s") from err
        if proc.returncode != 0:
            stderr = proc.stderr.replace(token, "***") if token else proc.stderr
            if args[0] == "push" and _REFUSAL.search(proc.stdout + stderr):
                raise PushRefused(args, proc.returncode, proc.stdout, stderr)
            if args[0] == "push" and any(mark in proc.stdout + stderr for mark in _REJECTION_MARKS):
                raise PushRejected(args, proc.returncode, stderr)
            raise GitError(args, proc.returncode, stderr)
        return proc.stdout

    def clone_url(self, owner: str, repo: str) -> str:
        return f"{self.base_url}/{owner}/{repo}.git"


def check_job_reference(owner: str, repo: str, branch: str) -> None:
    """Refuse names that could be read as options or paths. Raises UnsafeReference."""
    for label, value in (("owner", owner), ("repo", repo)):
        if not value or value.startswith(("-", ".")) or any(c in value for c in "/\\ \0\n"):
            raise UnsafeReference(f"{label} {value!r} is not a safe repository name")
    try:
        check_branch_name(branch)
    except ValueError as err:
        raise UnsafeReference(f"branch {branch!r}: {err}") from None


class Workspace:
    """A slot's working trees, one per repository, under `root`. Never shared with another slot."""

    def __init__(self, root: Path, git: Git) -> None:
        self.root = root
        self._git = git

    def path_for(self, owner: str, repo: str) -> Path:
        return self.root / owner / repo

    def prepare(self, owner: str, repo: str, branch: str, *, fetched: bool = False) -> Path:
        """Check `branch` out, clean, at the remote's tip (skip the fetch if `fetch` already ran for it).
        Returns the working tree. Raises UnsafeReference, GitError."""
        tree = self.fetch(owner, repo, branch) if not fetched else self.path_for(owner, repo)
        self._git.run(["checkout", "--force", "-B", branch, f"refs/remotes/origin/{branch}"], tree)
        self._git.run(["clean", "-ffdx"], tree)
        return tree

    def fetch(self, owner: str, repo: str, branch: str) -> Path:
        """Bring `branch` into the repository (cloning it first if needed) without touching the working
        tree, so it is safe while a CLI works there. Returns the tree. Raises UnsafeReference, GitError."""
        check_job_reference(owner, repo, branch)
        tree = self.path_for(owner, repo)
        git = self._git
        if not (tree / ".git").is_dir():
            tree.parent.mkdir(parents=True, exist_ok=True)
            git.run(
                ["clone", "--no-checkout", "--", git.clone_url(owner, repo), str(tree)], self.root, auth=True
            )
        git.run(_fetch_args(branch), tree, auth=True)
        return tree

    def commit_all(self, tree: Path, message: str) -> Commit | None:
        """Commit every change in the tree; None when there is nothing to commit."""
        self._git.run(["add", "--all"], tree)
        listed = self._git.run(["diff", "--cached", "--name-only", "-z"], tree).split("\0")
        changed = [name for name in listed if name]
        if not changed:
            return None
        self._git.run(["commit", "--quiet", "--no-verify", "-m", message], tree)
        return Commit(sha=self._git.run(["rev-parse", "HEAD"], tree).strip(), changed_files=changed)

    def push(self, owner: str, repo: str, branch: str, sha: str) -> str:
        """Push commit `sha` to the job's branch only (never the working tree's HEAD: the slot may already
        be preparing its next job in `tree`). If the branch moved meanwhile, rebase `sha` onto it in a
        scratch worktree and push again.

        Returns the pushed commit's sha. Raises PushRefused at once when the remote's rules refuse it,
        PushRejected after PUSH_ATTEMPTS, GitError otherwise (a rebase that conflicts is aborted).
        """
        tree = self.path_for(owner, repo)
        url = self._git.clone_url(owner, repo)
        try:
            self._push_sha(tree, url, branch, sha)
            return sha
        except PushRejected:
            log.info("push rejected: the branch moved; rebasing onto it", extra={"branch": branch})
        scratch = self.root / ".scratch" / uuid.uuid4().hex
        self._git.run(["worktree", "add", "--detach", str(scratch), sha], tree)
        try:
            return self._rebase_and_push(scratch, url, branch)
        finally:
            self._git.run(["worktree", "remove", "--force", str(scratch)], tree)

    def _rebase_and_push(self, scratch: Path, url: str, branch: str) -> str:
        remote_ref = f"refs/remotes/origin/{branch}"
        for attempt in range(2, PUSH_ATTEMPTS + 1):
            self._git.run(_fetch_args(branch), scratch, auth=True)
            try:
                self._git.run(["rebase", remote_ref], scratch)
            except GitError:
                self._git.run(["rebase", "--abort"], scratch)
                raise
            sha = self._git.run(["rev-parse", "HEAD"], scratch).strip()
            try:
                self._push_sha(scratch, url, branch, sha)
                return sha
            except PushRejected:
                if attempt == PUSH_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _push_sha(self, cwd: Path, url: str, branch: str, sha: str) -> None:
        # To the URL, not the remote's name: git then updates no remote-tracking ref in this repository,
        # which the slot may be fetching into at the same moment.
        self._git.run(["push", "--porcelain", url, f"{sha}:refs/heads/{branch}"], cwd, auth=True)


def _fetch_args(branch: str) -> list[str]:
    """Fetch one branch into its remote-tracking ref; FETCH_HEAD is not written (a shared file)."""
    return [
        "fetch",
        "--no-tags",
        "--no-write-fetch-head",
        "origin",
        f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
    ]
