"""Sandbox and workspace benchmarks (issue 10), each against a baseline measured in the same run.

- sandbox_start_ms: per job, what the sandbox adds before a CLI can run: start the slot's sandbox (reap scan,
  a fresh home from the pristine copy) and run a command through bwrap to its exit; p50 of SANDBOX_SAMPLES.
  `sandbox_bare_start_ms` is the same command without the sandbox.
- fresh_workspace_ms: `Workspace.prepare` of a job (fetch into the warm store over the forge's smart HTTP,
  a private git directory, `read-tree` into the emptied slot tree) on a generated repository of
  REPO_FILES files and REPO_COMMITS commits; baselines: a plain `git worktree add` of the same commit, and a
  clone over the forge's HTTP (what the agent would do without a store). Median of WORKSPACE_SAMPLES
  interleaved samples, each after `sync`. The generated repository is built once (git fast-import) and
  kept in `.cache/bench/` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from aipm.local.forge import Forge
from ec2_agent.sandbox import TRASH_PREFIX, Sandbox, SandboxPolicy
from ec2_agent.workspace import Git, Workspace, install_credential_helper

REPO_FILES = int(os.environ.get("BENCH_REPO_FILES", "50000"))
REPO_COMMITS = int(os.environ.get("BENCH_REPO_COMMITS", "3000"))
WORKSPACE_SAMPLES = int(os.environ.get("BENCH_WORKSPACE_SAMPLES", "5"))
SANDBOX_SAMPLES = int(os.environ.get("BENCH_SANDBOX_SAMPLES", "20"))
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench"
TOKEN = "bench-token"  # noqa: S105 - the local forge's own token
OWNER, REPO, BRANCH = "bench", "big", "main"
GIT_ENV = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "LANG": "C"}


def _fast_import_stream(files: int, commits: int) -> Iterator[bytes]:
    """A fast-import stream: the first commit adds `files` files in 100-file directories, each later commit
    changes three of them."""
    stamp = 1_700_000_000
    for n in range(1, commits + 1):
        message = f"commit {n}".encode()
        yield b"commit refs/heads/main\n"
        yield f"committer Bench <bench@example.test> {stamp + n} +0000\n".encode()
        yield f"data {len(message)}\n".encode() + message + b"\n"
        if n == 1:
            for i in range(files):
                body = f"file {i}\n".encode()
                yield (
                    f"M 100644 inline d{i // 100:04d}/f{i:05d}.txt\ndata {len(body)}\n".encode()
                    + body
                    + b"\n"
                )
        else:
            for k in range(3):
                i = (n * 7919 + k * 104729) % files
                body = f"file {i} changed in commit {n}\n".encode()
                yield (
                    f"M 100644 inline d{i // 100:04d}/f{i:05d}.txt\ndata {len(body)}\n".encode()
                    + body
                    + b"\n"
                )
        yield b"\n"


def generated_repository() -> Path:
    """The bare benchmark repository, built once into the cache."""
    target = CACHE / f"repo-{REPO_FILES}-{REPO_COMMITS}.git"
    if (target / "refs" / "heads" / "main").is_file() or (target / "packed-refs").is_file():
        return target
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "--quiet", "--bare", str(staging)], check=True, env=GIT_ENV)
    proc = subprocess.Popen(
        ["git", "--git-dir", str(staging), "fast-import", "--quiet"], stdin=subprocess.PIPE, env=GIT_ENV
    )
    assert proc.stdin is not None
    for chunk in _fast_import_stream(REPO_FILES, REPO_COMMITS):
        proc.stdin.write(chunk)
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    subprocess.run(["git", "--git-dir", str(staging), "repack", "-adq"], check=True, env=GIT_ENV)
    subprocess.run(["git", "--git-dir", str(staging), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    staging.rename(target)
    return target


def _timed(action: Callable[[], object]) -> float:
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _await_trash(parent: Path) -> None:
    """Wait until the background deletion of emptied trees under `parent` is done."""
    while any(parent.glob(f"{TRASH_PREFIX}*")):
        time.sleep(0.05)


def _timed_command(argv: list[str], env: dict[str, str]) -> float:
    return _timed(lambda: subprocess.run(argv, check=True, env=env))


def _workspace_figures(work: Path) -> dict[str, float | int]:
    source = generated_repository()
    forge_root = work / "forge"
    (forge_root / OWNER).mkdir(parents=True)
    subprocess.run(
        [
            "git",
            "clone",
            "--quiet",
            "--bare",
            "--local",
            str(source),
            str(forge_root / OWNER / f"{REPO}.git"),
        ],
        check=True,
        env=GIT_ENV,
    )
    tip = subprocess.run(
        ["git", "--git-dir", str(source), "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with Forge(forge_root, token=TOKEN) as forge:
        helper = install_credential_helper(work / "agent" / ".bin")
        git = Git(
            base_url=forge.base_url,
            token_provider=lambda: TOKEN,
            credential_helper=helper,
            author_name="Bench",
            author_email="bench@example.test",
            timeout_s=600,
        )
        workspace = Workspace(work / "agent", work / "agent" / "slots" / "1" / "tree", git)
        workspace.discard(workspace.prepare("warm-up", OWNER, REPO, BRANCH))  # the store is warm
        local = work / "local.git"
        subprocess.run(
            ["git", "clone", "--quiet", "--bare", str(source), str(local)], check=True, env=GIT_ENV
        )
        clone_env = {
            **GIT_ENV,
            "AIPM_GIT_TOKEN": TOKEN,
            "AIPM_GIT_HOST": forge.base_url.split("//", 1)[1],
            "AIPM_GIT_PROTOCOL": "http",
        }
        fresh, worktree, clone = [], [], []
        for n in range(WORKSPACE_SAMPLES):
            checkout = None

            def prepare(n: int = n) -> None:
                nonlocal checkout
                checkout = workspace.prepare(f"bench-{n}", OWNER, REPO, BRANCH)

            fresh.append(_timed(prepare))
            assert checkout is not None
            workspace.discard(checkout)
            _await_trash(workspace.tree.parent)  # the previous tree's deletion must not slow the baselines
            tree = work / f"worktree-{n}"
            add = ["git", "--git-dir", str(local), "worktree", "add", "--quiet", "--detach", str(tree), tip]
            worktree.append(_timed_command(add, GIT_ENV))
            remove = ["git", "--git-dir", str(local), "worktree", "remove", "--force", str(tree)]
            subprocess.run(remove, check=True, env=GIT_ENV)
            target = work / f"clone-{n}"
            url = forge.clone_url(OWNER, REPO)
            get = ["git", "-c", f"credential.helper={helper}", "clone", "--quiet", url, str(target)]
            clone.append(_timed_command(get, clone_env))
            shutil.rmtree(target)
    fresh_ms, worktree_ms, clone_ms = (statistics.median(x) for x in (fresh, worktree, clone))
    return {
        "fresh_workspace_ms": round(fresh_ms, 1),
        "fresh_workspace_worktree_ms": round(worktree_ms, 1),
        "fresh_workspace_clone_ms": round(clone_ms, 1),
        "fresh_workspace_vs_worktree_ratio": round(fresh_ms / worktree_ms, 3),
        "fresh_workspace_vs_clone_ratio": round(fresh_ms / clone_ms, 3),
        "fresh_workspace_files": REPO_FILES,
        "fresh_workspace_commits": REPO_COMMITS,
        "fresh_workspace_samples": WORKSPACE_SAMPLES,
    }


def _sandbox_figures(work: Path) -> dict[str, float | int]:
    box = Sandbox(work / "slots" / "1", work / "homes" / "cli", SandboxPolicy(network="none"))
    sandboxed, bare = [], []
    for _ in range(SANDBOX_SAMPLES):
        started = time.perf_counter()
        box.start()
        argv, env = box.command(["/bin/true"], {})
        subprocess.run(argv, env=env, check=True)
        sandboxed.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        bare.append((time.perf_counter() - started) * 1000)
    box.stop()
    return {
        "sandbox_start_ms": round(statistics.median(sandboxed), 1),
        "sandbox_bare_start_ms": round(statistics.median(bare), 1),
        "sandbox_samples": SANDBOX_SAMPLES,
    }


def run() -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="aipm-bench-workspace-") as tmp:
        work = Path(tmp)
        return {**_sandbox_figures(work / "sandbox"), **_workspace_figures(work / "workspace")}
