"""Git for jobs, with the agent's git kept where the CLI never reaches (docs/sandbox-and-sessions.md).

Layout under `AIPM_WORK_DIR`: `git/<owner>/<repo>.git` a bare per-repository object store (the warm cache,
fetched with the token); `jobs/<job_id>-<run>.git` the private git directory of one run of the job
(`HEAD`, index, its own new objects, `objects/info/alternates` → the store); the slot's tree (mounted in
the sandbox at /workspace) holds the job's files and no git directory of the agent's.

- checkout: `read-tree -u --reset <tip>` into the emptied tree — a checkout, not a clone;
- commit: `add --all` into the private index, `write-tree`, and `commit-tree` on the branch tip, so what the
  CLI did is compared as content with the branch (its own commits, stashes or git directories count for
  nothing); `None` when the tree equals the branch;
- push: `<sha>:refs/heads/<job branch>` only, to the URL (no remote in any config); a push refused because
  the branch moved is replayed with `merge-tree` onto the new tip (no work tree, no rebase state);
- git itself: `/usr/bin/git` by absolute path, `GIT_CONFIG_GLOBAL=/dev/null`, `GIT_CONFIG_NOSYSTEM=1`, hooks
  and fsmonitor off, attribute and exclude files off (a `.gitattributes` in the tree can name filters, but
  no configuration the agent's git reads defines one), protocols limited to the forge's scheme, the
  credential helper by absolute path outside every sandbox mount and checked against its shipped bytes
  before each use; the token is in git's environment only for fetch and push;
- the tree is untrusted input: walked without following links, symlinks committed as links, special files
  and oversized trees refused (`TreeRefused`);
- a store or job directory that git cannot use (a stale lock, a corrupt object, a half-made directory) is
  rebuilt once; if that fails too, `WorkspaceFault` — slot-local, the job does not lose an attempt.

Sources: git(1) ENVIRONMENT (GIT_CONFIG_GLOBAL, GIT_CONFIG_NOSYSTEM, GIT_DIR, GIT_WORK_TREE), git-config(1)
(core.hooksPath, core.fsmonitor, protocol.allow), gitrepository-layout(5) (objects/info/alternates),
git-read-tree(1), git-commit-tree(1), git-merge-tree(1) (`--write-tree`, git ≥ 2.38).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import subprocess
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from ec2_agent.faults import SlotFault
from ec2_agent.sandbox import CliUser, TreeEntry, WalkLimit, discard, remove_tree, walk_tree
from lambda_src.models import check_branch_name

log = logging.getLogger(__name__)

GIT = "/usr/bin/git"
PUSH_ATTEMPTS = 3
MAX_FILE_BYTES = 100 * 1024 * 1024  # GitHub refuses larger files
MAX_TREE_BYTES = 2 * 1024 * 1024 * 1024
MAX_TREE_ENTRIES = 1_000_000
# How git reports a push refused because the branch moved (porcelain status lines go to stdout).
_REJECTION_MARKS = ("[rejected]", "non-fast-forward", "fetch first")
# How the remote reports a push its rules refuse, whatever the branch holds: a hook (`pre-receive hook
# declined`, git's receive-pack), any other server-side refusal (`[remote rejected]`), GitHub's rulesets and
# branch protections (`GH006: Protected branch update failed`, `GH013: Repository rule violations found`;
# docs.github.com, "Troubleshooting rules"). Pushing again cannot help.
_REFUSAL = re.compile(r"\[remote rejected\]|pre-receive hook declined|\bGH0\d\d\b")
_STDERR_TAIL = 2000
_SHA = re.compile(r"[0-9a-f]{40}")  # a full SHA-1 object name, as git prints it
_EMPTY_DIR_NAME = ".git-home"


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


class TreeRefused(ValueError):
    """The CLI left a work tree the agent will not commit (too large, a special file); the job fails."""


class WorkspaceFault(SlotFault):
    """The slot's git state could not be made usable even after a rebuild. Slot-local: the job goes back
    to the queue without using an attempt."""


@dataclass(frozen=True)
class Commit:
    sha: str
    changed_files: list[str]


@dataclass(frozen=True)
class Checkout:
    """A job's checkout: its private git directory, the tree it was read into, the branch and its tip."""

    job_id: str
    owner: str
    repo: str
    branch: str
    git_dir: Path
    tree: Path
    base: str


def install_credential_helper(bin_dir: Path) -> Path:
    """Install the credential helper git runs (`git-credential-aipm`, shipped with this package) into an
    agent-only directory (never mounted in a sandbox); returns its path. Raises ValueError if the path
    would contain a space (git would split it)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    bin_dir.chmod(0o700)
    helper = bin_dir / "git-credential-aipm"
    if " " in str(helper):
        raise ValueError(f"the credential helper path must not contain spaces: {helper}")
    if helper.is_symlink() or helper.exists():
        helper.unlink()
    helper.write_bytes(_helper_bytes())
    helper.chmod(0o500)
    return helper


def _helper_bytes() -> bytes:
    return resources.files("ec2_agent").joinpath("git-credential-aipm").read_bytes()


class Git:
    """Runs `/usr/bin/git` with a fixed, safe configuration on an explicit git directory. Every command
    has a timeout (GitError on expiry)."""

    def __init__(
        self,
        *,
        base_url: str,
        token_provider: Callable[[], str],
        credential_helper: Path,
        author_name: str,
        author_email: str,
        timeout_s: float,
        executable: str = GIT,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.username or parts.password:
            raise ValueError("the git base URL must not carry credentials")
        if parts.scheme not in ("https", "http"):
            raise ValueError(f"the git base URL must be http(s), not {parts.scheme!r}")
        self.base_url = base_url.rstrip("/")
        self._host = parts.netloc
        self._protocol = parts.scheme
        self._token_provider = token_provider
        self._helper = credential_helper
        self._helper_digest = hashlib.sha256(_helper_bytes()).hexdigest()
        self._executable = executable
        self._home = credential_helper.parent / _EMPTY_DIR_NAME
        self._home.mkdir(mode=0o700, exist_ok=True)
        self._author = (author_name, author_email)
        self._config = [
            "-c", "credential.helper=",
            "-c", f"credential.helper={credential_helper}",
            "-c", "credential.useHttpPath=false",
            "-c", f"user.name={author_name}",
            "-c", f"user.email={author_email}",
            "-c", "core.hooksPath=/dev/null",
            "-c", "core.fsmonitor=false",
            "-c", "core.untrackedCache=false",
            "-c", "core.attributesFile=/dev/null",
            "-c", "core.excludesFile=/dev/null",
            "-c", "core.symlinks=true",
            "-c", "core.autocrlf=false",
            "-c", "core.askPass=",
            "-c", "commit.gpgsign=false",
            "-c", "protocol.allow=never",
            "-c", f"protocol.{self._protocol}.allow=always",
            "-c", "http.followRedirects=false",
            "-c", "submodule.recurse=false",
            "-c", "fetch.recurseSubmodules=false",
            "-c", "push.recurseSubmodules=no",
            "-c", "advice.detachedHead=false",
            # Several slots share a store: no background gc or maintenance may repack under them.
            "-c", "gc.auto=0",
            "-c", "maintenance.auto=false",
        ]  # fmt: skip
        self._timeout_s = timeout_s

    def run(
        self,
        args: Sequence[str],
        git_dir: Path,
        *,
        work_tree: Path | None = None,
        auth: bool = False,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run `git <args>` on `git_dir` (and `work_tree`); returns stdout. Raises GitError (PushRejected
        for a push refused because the branch moved, PushRefused for one the remote's rules refuse),
        WorkspaceFault if the credential helper is not the shipped one."""
        full_env = self._env(git_dir, work_tree, env)
        token = ""
        if auth:
            self._check_helper()
            token = self._token_provider()
            full_env.update(AIPM_GIT_TOKEN=token, AIPM_GIT_HOST=self._host, AIPM_GIT_PROTOCOL=self._protocol)
        cwd = work_tree if work_tree is not None else git_dir
        try:
            proc = subprocess.run(
                [self._executable, *self._config, *args],
                cwd=cwd,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise GitError(args, -1, f"timed out after {self._timeout_s} s") from err
        except OSError as err:
            raise GitError(args, -1, f"cannot run {self._executable}: {err}") from err
        if proc.returncode != 0:
            stderr = proc.stderr.replace(token, "***") if token else proc.stderr
            if args[0] == "push" and _REFUSAL.search(proc.stdout + stderr):
                raise PushRefused(args, proc.returncode, proc.stdout, stderr)
            if args[0] == "push" and any(mark in proc.stdout + stderr for mark in _REJECTION_MARKS):
                raise PushRejected(args, proc.returncode, stderr)
            raise GitError(args, proc.returncode, stderr)
        return proc.stdout

    def output_head(self, args: Sequence[str], git_dir: Path, *, max_bytes: int) -> tuple[bytes, bool]:
        """The first `max_bytes` bytes of what `git <args>` (local, no credentials) prints on `git_dir`, and
        whether it printed more (git is then stopped: a huge output is never held in memory). Raises
        GitError (a failure, or the timeout)."""
        try:
            proc = subprocess.Popen(
                [self._executable, *self._config, *args],
                cwd=git_dir,
                env=self._env(git_dir, None, None),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as err:
            raise GitError(args, -1, f"cannot run {self._executable}: {err}") from err
        out, err_out = proc.stdout, proc.stderr
        assert out is not None and err_out is not None
        timer = threading.Timer(self._timeout_s, proc.kill)
        timer.start()
        try:
            head = out.read(max_bytes + 1)
            more = len(head) > max_bytes
            if more:
                proc.kill()
            stderr = err_out.read(64 * 1024).decode("utf-8", "replace")
            returncode = proc.wait()
        finally:
            timer.cancel()
            out.close()
            err_out.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if more:
            return head[:max_bytes], True
        if returncode != 0:
            killed = returncode == -9
            raise GitError(args, returncode, f"timed out after {self._timeout_s} s" if killed else stderr)
        return head, False

    def _env(self, git_dir: Path, work_tree: Path | None, env: dict[str, str] | None) -> dict[str, str]:
        full_env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self._home),
            "XDG_CONFIG_HOME": str(self._home),
            "LANG": "C",
            "GIT_DIR": str(git_dir),
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_PROTOCOL_FROM_USER": "0",
        }
        if work_tree is not None:
            full_env["GIT_WORK_TREE"] = str(work_tree)
        full_env.update(env or {})
        return full_env

    def commit_env(self) -> dict[str, str]:
        name, email = self._author
        return {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }

    def _check_helper(self) -> None:
        try:
            st = self._helper.lstat()
            data = self._helper.read_bytes()
        except OSError as err:
            raise WorkspaceFault(f"the credential helper is missing: {err}") from err
        if not stat.S_ISREG(st.st_mode) or hashlib.sha256(data).hexdigest() != self._helper_digest:
            raise WorkspaceFault(f"the credential helper {self._helper} is not the shipped one; refusing")

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


_store_locks: dict[Path, threading.Lock] = {}
_store_locks_guard = threading.Lock()


def _store_lock(path: Path) -> threading.Lock:
    with _store_locks_guard:
        return _store_locks.setdefault(path, threading.Lock())


class Workspace:
    """A slot's view of the git layout: the shared stores and job directories under `work_dir`, and this
    slot's `tree` (the sandbox's /workspace). One slot thread prepares and commits; its publisher pushes.

    `cli_user`: the CLI's own user, if any: the checked-out tree is handed over to it, and taken back (the
    agent's again, unwritable by the CLI) before the agent commits or empties it. `commit_exclude`: git
    pathspec globs (the profile's) of files the CLI writes for itself, never committed."""

    def __init__(
        self,
        work_dir: Path,
        tree: Path,
        git: Git,
        *,
        cli_user: CliUser | None = None,
        commit_exclude: Sequence[str] = (),
    ) -> None:
        self.work_dir = work_dir
        self.tree = tree
        self._git = git
        self._cli_user = cli_user
        self._exclude = [f":(exclude,glob){pattern}" for pattern in commit_exclude]

    def store_path(self, owner: str, repo: str) -> Path:
        return self.work_dir / "git" / owner / f"{repo}.git"

    def job_dir(self, job_id: str) -> Path:
        """A private git directory for one run of the job: a retried job's run never shares it with an
        earlier run whose discard may still be pending (a cancel's publisher removes it later)."""
        return self.work_dir / "jobs" / f"{job_id}-{uuid.uuid4().hex[:12]}.git"

    # -- the store --------------------------------------------------------------------------------

    def fetch(self, owner: str, repo: str, branch: str) -> str:
        """Bring `branch` into the repository's store (creating it if needed); returns its tip. A fetch
        that fails is retried once into a rebuilt store; a second failure is the remote's (GitError).
        Safe while a CLI works: the store is never in a sandbox. Raises UnsafeReference, GitError."""
        check_job_reference(owner, repo, branch)
        store = self.store_path(owner, repo)
        with _store_lock(store):
            try:
                return self._fetch_into(store, owner, repo, branch)
            except GitError as err:
                log.warning("fetch failed; rebuilding the store once", extra={"error": str(err)[:300]})
            remove_tree(store)
            return self._fetch_into(store, owner, repo, branch)

    def _fetch_into(self, store: Path, owner: str, repo: str, branch: str) -> str:
        git = self._git
        if not (store / "objects").is_dir() or not (store / "HEAD").is_file():
            remove_tree(store)
            store.parent.mkdir(parents=True, exist_ok=True)
            git.run(["init", "--quiet", "--bare", str(store)], store.parent)
        ref = f"refs/remotes/origin/{branch}"
        git.run(
            [
                "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--",
                git.clone_url(owner, repo), f"+refs/heads/{branch}:{ref}",
            ],
            store,
            auth=True,
        )  # fmt: skip
        return git.run(["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"], store).strip()

    def default_branch(self, owner: str, repo: str) -> str:
        """The repository's default branch, as the forge says (`ls-remote --symref HEAD`). Raises
        UnsafeReference, GitError."""
        check_job_reference(owner, repo, "main")
        store = self.store_path(owner, repo)
        with _store_lock(store):
            if not (store / "HEAD").is_file():
                remove_tree(store)
                store.parent.mkdir(parents=True, exist_ok=True)
                self._git.run(["init", "--quiet", "--bare", str(store)], store.parent)
            out = self._git.run(
                ["ls-remote", "--symref", "--", self._git.clone_url(owner, repo), "HEAD"], store, auth=True
            )
        for line in out.splitlines():
            if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                return line.removeprefix("ref: refs/heads/").removesuffix("\tHEAD")
        raise GitError(["ls-remote", "--symref"], 0, "the forge named no default branch")

    # -- a job ------------------------------------------------------------------------------------

    def prepare(self, job_id: str, owner: str, repo: str, branch: str) -> Checkout:
        """Fetch `branch` and read its tip into the emptied tree through a fresh private git directory.
        Raises UnsafeReference, GitError (the remote), WorkspaceFault (local state, after one rebuild)."""
        if not job_id or not all(c.isalnum() or c in "-_" for c in job_id):
            raise UnsafeReference(f"job id {job_id!r} is not a safe directory name")
        tip = self.fetch(owner, repo, branch)
        store = self.store_path(owner, repo)
        git_dir = self.job_dir(job_id)
        for attempt in (1, 2):
            try:
                return self._checkout(job_id, git_dir, owner, repo, branch, store, tip)
            except (GitError, OSError) as err:
                if attempt == 2:
                    raise WorkspaceFault(f"the checkout failed after a rebuild: {err}") from err
                log.warning(
                    "checkout failed; rebuilding the job's workspace", extra={"error": str(err)[:300]}
                )
        raise AssertionError("unreachable")

    def _checkout(
        self, job_id: str, git_dir: Path, owner: str, repo: str, branch: str, store: Path, tip: str
    ) -> Checkout:
        remove_tree(git_dir)
        # The private git directory, written as gitrepository-layout(5) describes it (no `git init`: no
        # template hooks, no process per file): HEAD on the job's branch, its tip, the store as alternate.
        (git_dir / "objects" / "info").mkdir(parents=True)
        (git_dir / "refs" / "tags").mkdir(parents=True)
        head = git_dir / "refs" / "heads" / branch
        head.parent.mkdir(parents=True, exist_ok=True)
        head.write_text(f"{tip}\n")
        (git_dir / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
        (git_dir / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tbare = false\n")
        (git_dir / "objects" / "info" / "alternates").write_text(f"{(store / 'objects').resolve()}\n")
        self.clear()
        self._git.run(["read-tree", "-u", "--reset", tip], git_dir, work_tree=self.tree)
        if self._cli_user is not None:
            self._cli_user.hand_over(self.tree)
            self._cli_user.share_root(self.tree)  # the agent may still replace TASK.md between turns
        return Checkout(job_id, owner, repo, branch, git_dir, self.tree, tip)

    def clear(self) -> None:
        """Empty the tree (taken back from the CLI user first, if any). Raises OSError, SandboxFault."""
        empty_directory(self.tree, owner=self._cli_user)

    def commit_all(self, checkout: Checkout, message: str) -> Commit | None:
        """Commit the tree as it is now onto the branch tip, leaving out the profile's `commit_exclude`
        (files the CLI wrote for itself; a tracked one keeps the branch's version); None when it equals
        the branch. With a CLI user, the tree is taken back first, so the CLI can no longer change it.
        Raises TreeRefused, GitError, SandboxFault (take back)."""
        if self._cli_user is not None:
            try:
                self._cli_user.take_back(checkout.tree)
            except WalkLimit as err:
                raise TreeRefused(str(err)) from err
        check_tree(checkout.tree)
        git, git_dir, tree = self._git, checkout.git_dir, checkout.tree
        git.run(["add", "--all", "--", ".", *self._exclude], git_dir, work_tree=tree)
        written = git.run(["write-tree"], git_dir).strip()
        if written == git.run(["rev-parse", f"{checkout.base}^{{tree}}"], git_dir).strip():
            return None
        sha = git.run(
            ["commit-tree", written, "-p", checkout.base, "-m", message], git_dir, env=git.commit_env()
        ).strip()
        git.run(["update-ref", f"refs/heads/{checkout.branch}", sha, checkout.base], git_dir)
        return Commit(sha=sha, changed_files=self._changed(git_dir, checkout.base, sha))

    def _changed(self, git_dir: Path, base: str, sha: str) -> list[str]:
        listed = self._git.run(["diff-tree", "-r", "--no-renames", "--name-only", "-z", base, sha], git_dir)
        return [name for name in listed.split("\0") if name]

    def push(self, checkout: Checkout, sha: str) -> str:
        """Push `sha` to the job's branch only. If the branch moved meanwhile, replay the commit onto its
        new tip (`merge-tree`) and push again. Returns the pushed sha. Raises PushRejected after
        PUSH_ATTEMPTS, PushRefused at once when the remote's rules refuse it, GitError (a conflicting
        replay: nothing is pushed)."""
        git = self._git
        url = git.clone_url(checkout.owner, checkout.repo)
        base = checkout.base
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            try:
                git.run(
                    ["push", "--porcelain", "--", url, f"{sha}:refs/heads/{checkout.branch}"],
                    checkout.git_dir,
                    auth=True,
                )
                return sha
            except PushRejected:
                if attempt == PUSH_ATTEMPTS:
                    raise
                log.info(
                    "push rejected: the branch moved; replaying onto it", extra={"branch": checkout.branch}
                )
            tip = self.fetch(checkout.owner, checkout.repo, checkout.branch)
            sha, base = self._replay(checkout.git_dir, base, sha, tip), tip
        raise AssertionError("unreachable")

    def _replay(self, git_dir: Path, base: str, sha: str, onto: str) -> str:
        """Our single commit `base..sha` recreated on `onto` (their merge base is `base` when the branch
        moved forward; `--merge-base` needs git 2.40). Raises GitError on a conflict."""
        git = self._git
        try:
            tree = git.run(["merge-tree", "--write-tree", onto, sha], git_dir)
        except GitError as err:
            raise GitError(
                ["rebase", "onto"], err.returncode, f"the branch moved and conflicts: {err}"
            ) from err
        message = git.run(["log", "-1", "--format=%B", sha], git_dir)
        return git.run(
            ["commit-tree", tree.splitlines()[0].strip(), "-p", onto, "-m", message.rstrip("\n")],
            git_dir,
            env=git.commit_env(),
        ).strip()

    def holds(self, checkout: Checkout, sha: str) -> bool:
        """True if commit `sha` (40 hex digits) is the job branch's tip when it was checked out or one of its
        ancestors; False when it is not, or is not in the store at all (the branch was force-pushed past
        it). Raises GitError when git cannot answer."""
        if _SHA.fullmatch(sha) is None:
            return False
        try:
            self._git.run(["merge-base", "--is-ancestor", sha, checkout.base], checkout.git_dir)
        except GitError as err:
            if err.returncode in (1, 128):  # not an ancestor; not a commit in this store
                return False
            raise
        return True

    def branch_diff(self, checkout: Checkout, base_branch: str, *, max_bytes: int) -> tuple[str, bool]:
        """The job branch (its tip when checked out) against `base_branch` from their merge base, as
        `git diff` prints it, TASK.md left out; at most `max_bytes` bytes (True: it was cut, at a line end
        when there is one). No external diff or textconv runs; binary files show as such. The text is
        the branch's (untrusted). Raises UnsafeReference, GitError."""
        base_tip = self.fetch(checkout.owner, checkout.repo, base_branch)
        raw, cut = self._git.output_head(
            [
                "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
                f"{base_tip}...{checkout.base}", "--", ".", ":(exclude,top)TASK.md",
            ],
            checkout.git_dir,
            max_bytes=max_bytes,
        )  # fmt: skip
        if cut and b"\n" in raw:
            raw = raw[: raw.rindex(b"\n") + 1]
        return raw.decode("utf-8", "replace"), cut

    def discard(self, checkout: Checkout) -> None:
        """Remove the job's private git directory (its tree is emptied by the next checkout)."""
        remove_tree(checkout.git_dir)


def check_tree(tree: Path) -> None:
    """Refuse a tree the agent will not commit: special files, files over MAX_FILE_BYTES, more than
    MAX_TREE_ENTRIES entries or MAX_TREE_BYTES in all, deeper than WALK_MAX_DEPTH, a `.git` below the top
    (git would read it as an embedded repository: a `gitdir:` file, a link or a `commondir` in it sends the
    agent's git to any path of the host, whose HEAD it would commit as a submodule link), a tree it cannot
    read. Walked relative to directory descriptors (:func:`~ec2_agent.sandbox.walk_tree`), never following
    links; the top-level `.git` is skipped (git never adds it: the agent's git directory is elsewhere).
    Raises TreeRefused."""
    total = 0
    try:
        top = os.open(tree, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise TreeRefused(f"the work tree cannot be read: {err}") from err
    try:
        for entries, entry in enumerate(walk_tree(top, tree, max_entries=None, prune=_top_git), start=1):
            if entries > MAX_TREE_ENTRIES:
                raise TreeRefused(f"the work tree has more than {MAX_TREE_ENTRIES} entries")
            if entry.name == ".git":
                raise TreeRefused(
                    f"{entry.rel}: a git repository inside the tree cannot be committed; remove it"
                )
            mode = entry.st.st_mode
            if stat.S_ISREG(mode):
                if entry.st.st_size > MAX_FILE_BYTES:
                    raise TreeRefused(f"{entry.rel} is larger than {MAX_FILE_BYTES} bytes")
                total += entry.st.st_size
                if total > MAX_TREE_BYTES:
                    raise TreeRefused(f"the work tree holds more than {MAX_TREE_BYTES} bytes")
            elif not (stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                raise TreeRefused(f"{entry.rel} is not a file, directory or symbolic link")
    except (WalkLimit, OSError) as err:
        raise TreeRefused(f"the work tree cannot be read: {err}") from err
    finally:
        os.close(top)


def _top_git(entry: TreeEntry) -> bool:
    return entry.rel == ".git"


def empty_directory(directory: Path, *, owner: CliUser | None = None) -> None:
    """Empty `directory`, keeping the directory itself so a bind mount of it stays valid: its entries are
    renamed into a sibling trash directory (outside any mount of `directory`), which a background thread
    deletes without following links (`Sandbox.start` clears what an earlier process left). With `owner`
    (the CLI user), the directory and its entries are taken back first. Raises OSError, SandboxFault."""
    directory.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        owner.take_back_top(directory)
    entries = [Path(entry.path) for entry in os.scandir(directory)]
    if entries:
        discard(entries, directory.parent, owner=owner)
