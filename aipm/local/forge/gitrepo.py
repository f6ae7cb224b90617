"""Bare git repositories on disk, read and changed only through git plumbing (argument lists, never a shell).

Commits are built in a throw-away index (hash-object, update-index, write-tree, commit-tree) and published
with `update-ref <ref> <new> <old>`, so a concurrent push can never be overwritten silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ZERO_OID = "0" * 40
FORGE_LOGIN = "aipm-forge"
FORGE_EMAIL = "aipm-forge@users.noreply.localhost"
_GIT_TIMEOUT_S = 60.0
_FORBIDDEN_IN_REFS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_COMMIT_FORMAT = "%x00".join(["%T", "%P", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B"])


class GitError(Exception):
    """A git command failed; the message carries git's stderr."""


class RefConflictError(GitError):
    """A ref was not where the update expected it (exists already, moved, or is gone)."""


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    kind: str  # "blob" or "tree"
    oid: str
    path: str


@dataclass(frozen=True)
class CommitInfo:
    oid: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    author_date: str
    committer_name: str
    committer_email: str
    committer_date: str
    message: str


def git_executable() -> str:
    """Absolute path of git; raises GitError when git is not installed."""
    found = shutil.which("git")
    if found is None:
        raise GitError("git is not installed (needed by the local forge)")
    return found


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for git: no user or system config, a fixed identity and locale."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
        "GIT_AUTHOR_NAME": FORGE_LOGIN,
        "GIT_AUTHOR_EMAIL": FORGE_EMAIL,
        "GIT_COMMITTER_NAME": FORGE_LOGIN,
        "GIT_COMMITTER_EMAIL": FORGE_EMAIL,
    }
    if extra:
        env.update(extra)
    return env


def is_valid_branch_name(name: str) -> bool:
    """Whether git accepts `name` as a branch name: the rules of `git check-ref-format --branch`."""
    if not name or name in ("@", "HEAD") or name.startswith("-") or name.endswith(("/", ".")):
        return False
    if ".." in name or "@{" in name or "//" in name or _FORBIDDEN_IN_REFS.search(name):
        return False
    return all(not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))


def is_valid_file_path(path: str) -> bool:
    """A relative, normalised path inside the work tree (no '.', '..', '.git', empty or absolute parts)."""
    if not path or path.startswith("/") or "\x00" in path or "\\" in path:
        return False
    return all(part not in ("", ".", "..") and part.lower() != ".git" for part in path.split("/"))


class BareRepo:
    """One bare repository. Methods raise GitError (RefConflictError for ref races) and never use a shell."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, path: Path, *, default_branch: str, files: Mapping[str, str]) -> BareRepo:
        """`git init --bare` at `path` with receive-pack enabled and one initial commit holding `files`."""
        if not is_valid_branch_name(default_branch):
            raise GitError(f"invalid branch name: {default_branch!r}")
        if path.exists():
            raise FileExistsError(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _run([git_executable(), "init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path)])
        repo = cls(path)
        repo.git("config", "http.receivepack", "true")
        additions = {name: text.encode("utf-8") for name, text in files.items()}
        commit = repo.commit_tree(parent=None, additions=additions, deletions=(), message="Initial commit")
        repo.create_ref(f"refs/heads/{default_branch}", commit)
        return repo

    def git(self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> bytes:
        """Run `git --git-dir=<repo> args...` and return its stdout; GitError on a non-zero exit."""
        return _run([git_executable(), f"--git-dir={self.path}", *args], stdin=stdin, env=env)

    def default_branch(self) -> str:
        return self.git("symbolic-ref", "--short", "HEAD").decode().strip()

    def resolve_commit(self, revision: str) -> str | None:
        """The commit `revision` names, or None."""
        try:
            found = self.git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
        except GitError:
            return None
        return found.decode().strip()

    def branch_tip(self, branch: str) -> str | None:
        """The branch's tip, or None (also for names git would not accept)."""
        return self.resolve_commit(f"refs/heads/{branch}") if is_valid_branch_name(branch) else None

    def branches(self) -> dict[str, str]:
        """Every branch and its tip."""
        raw = self.git("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
        tips = {}
        for line in raw.decode("utf-8", "replace").splitlines():
            oid, ref = line.split(" ", 1)
            tips[ref[len("refs/heads/") :]] = oid
        return tips

    def create_ref(self, ref: str, oid: str) -> None:
        """Create `ref` at `oid`; RefConflictError if it exists already."""
        self.update_ref(ref, oid, ZERO_OID)

    def update_ref(self, ref: str, new: str, old: str) -> None:
        """Move `ref` from `old` (ZERO_OID: must not exist) to `new`; RefConflictError if not at `old`."""
        try:
            self.git("update-ref", "-m", "forge", ref, new, old)
        except GitError as err:
            raise RefConflictError(str(err)) from err

    def delete_ref(self, ref: str, old: str) -> None:
        """Delete `ref` if it is still at `old`; RefConflictError otherwise."""
        try:
            self.git("update-ref", "-d", ref, old)
        except GitError as err:
            raise RefConflictError(str(err)) from err

    def commit_tree(
        self,
        *,
        parent: str | None,
        additions: Mapping[str, bytes],
        deletions: Sequence[str],
        message: str,
    ) -> str:
        """Write a commit whose tree is `parent`'s with `additions` written and `deletions` removed.

        Only objects are written; no ref moves. Raises GitError for invalid paths or a missing deletion.
        """
        bad = [path for path in [*additions, *deletions] if not is_valid_file_path(path)]
        if bad:
            raise GitError(f"invalid path: {bad[0]!r}")
        with tempfile.TemporaryDirectory(prefix="forge-index-") as scratch:
            index_env = git_environment({"GIT_INDEX_FILE": str(Path(scratch) / "index")})
            if parent is None:
                self.git("read-tree", "--empty", env=index_env)
            else:
                self.git("read-tree", parent, env=index_env)
            for path in deletions:
                if not self.git("ls-files", "--", path, env=index_env).strip():
                    raise GitError(f"cannot delete {path!r}: no such file")
            lines = [f"0 {ZERO_OID}\t{path}\n" for path in deletions]
            for path, content in additions.items():
                blob = self.git("hash-object", "-w", "--stdin", stdin=content).decode().strip()
                lines.append(f"100644 {blob}\t{path}\n")
            self.git("update-index", "--index-info", stdin="".join(lines).encode("utf-8"), env=index_env)
            tree = self.git("write-tree", env=index_env).decode().strip()
        parents = ["-p", parent] if parent is not None else []
        commit = self.git("commit-tree", "--no-gpg-sign", tree, *parents, stdin=message.encode("utf-8"))
        return commit.decode().strip()

    def entry(self, revision: str, path: str) -> TreeEntry | None:
        """The tree entry at `path` in `revision`, or None."""
        found = self._ls_tree(revision, path)
        return found[0] if found and found[0].path == path else None

    def list_directory(self, revision: str, path: str) -> list[TreeEntry]:
        """Entries of directory `path` ('' for the root) in `revision`."""
        return self._ls_tree(revision, f"{path}/" if path else "")

    def blob(self, oid: str) -> bytes:
        return self.git("cat-file", "blob", oid)

    def commit_info(self, oid: str) -> CommitInfo:
        fields = self.git(
            "show", "-s", "--format=%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B", oid
        )
        tree, parents, an, ae, ad, cn, ce, cd, message = fields.decode("utf-8", "replace").split("\x00", 8)
        return CommitInfo(
            oid=oid,
            tree=tree,
            parents=tuple(parents.split()),
            author_name=an,
            author_email=ae,
            author_date=ad,
            committer_name=cn,
            committer_email=ce,
            committer_date=cd,
            message=message.rstrip("\n"),
        )

    def count_commits(self, base: str, head: str) -> int:
        """Commits reachable from `head` but not from `base`."""
        return int(self.git("rev-list", "--count", f"{base}..{head}").decode().strip())

    def _ls_tree(self, revision: str, path: str) -> list[TreeEntry]:
        args = ["ls-tree", "-z", "--end-of-options", revision]
        if path:
            args += ["--", path]
        try:
            raw = self.git(*args)
        except GitError:
            return []
        entries = []
        for record in raw.decode("utf-8", "replace").split("\x00"):
            if record:
                meta, name = record.split("\t", 1)
                mode, kind, oid = meta.split()
                entries.append(TreeEntry(mode=mode, kind=kind, oid=oid, path=name))
        return entries


def _run(argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> bytes:
    result = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        env=dict(env) if env is not None else git_environment(),
        timeout=_GIT_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        command = next((arg for arg in argv[1:] if not arg.startswith("--git-dir=")), "")
        raise GitError(f"git {command} failed: {result.stderr.decode('utf-8', 'replace').strip()}")
    return result.stdout
