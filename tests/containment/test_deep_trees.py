"""A CLI can make a tree thousands of levels deep in its home or work tree (`mkdir d; cd d` in a loop). Python
3.11's os.walk and shutil.rmtree recurse (RecursionError near 1,000 levels), which escaped the save of a
session, killed the slot's thread in the pool's tidy-up and the trash thread, and made every later
`Sandbox.start` fail. The sandbox's walks are iterative: saving and comparing refuse such a tree with a
SandboxFault naming it, removing it always succeeds. The trees here are real (made inside the real bubblewrap
sandbox, or by descriptors in the test)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ec2_agent.profiles import builtin_profile
from ec2_agent.runner import SlotState
from ec2_agent.sandbox import TRASH_PREFIX, Sandbox, SandboxFault, SandboxPolicy, pack_home_paths, remove_tree
from ec2_agent.sessions.headless import HeadlessSession
from ec2_agent.workspace import Git, Workspace, empty_directory, install_credential_helper

LEVELS = 2000  # RecursionError came near 1,000 (os.walk: one frame per level, the default limit 1,000)


def deep_tree(parent: Path, levels: int = LEVELS, name: str = "d") -> None:
    """`parent/d/d/.../d/leaf.jsonl`, `levels` directories deep, made by descriptors (no path that long)."""
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        os.close(os.open("leaf.jsonl", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
    finally:
        os.close(fd)


def cli_makes_deep_tree(box: Sandbox, inside: str, levels: int = LEVELS) -> None:
    """A process in the real sandbox makes the tree, as a hostile CLI would."""
    code = f"import os\nos.makedirs({inside!r}, exist_ok=True)\nos.chdir({inside!r})\n"
    code += f"for _ in range({levels}):\n    os.mkdir('d')\n    os.chdir('d')\nopen('leaf', 'w').close()\n"
    argv, env = box.command(["/usr/bin/python3", "-c", code], {})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture(autouse=True)
def _no_deep_tree_left(tmp_path: Path) -> Iterator[None]:
    """pytest removes old temporary directories with shutil.rmtree, which recurses: none may stay deep."""
    yield
    for entry in list(tmp_path.iterdir()):
        remove_tree(entry)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    seed = tmp_path / "seed"
    (seed / ".claude").mkdir(parents=True)
    (seed / ".claude" / "settings.json").write_text("{}")
    box = Sandbox(tmp_path / "slots" / "1", tmp_path / "homes" / "claude", SandboxPolicy(home_seed=seed))
    box.start()
    yield box
    box.stop()


def test_a_deep_home_refuses_the_save_and_counts_as_changed(sandbox: Sandbox) -> None:
    cli_makes_deep_tree(sandbox, "/home/cli/.claude/projects/p")
    with pytest.raises(SandboxFault, match=r"more than 128 directories deep; not read"):
        sandbox.save_home_paths([".claude/projects"], 1_000_000)
    assert sandbox.home_changed()
    sandbox.reset_home()
    assert not sandbox.home_changed()


def test_a_deep_tree_in_the_work_tree_and_the_home_is_removed_and_the_slot_starts_again(
    sandbox: Sandbox,
) -> None:
    cli_makes_deep_tree(sandbox, "/workspace/src")
    cli_makes_deep_tree(sandbox, "/home/cli/.cache")
    remove_tree(sandbox.tree / "src")
    assert not (sandbox.tree / "src").exists()
    cli_makes_deep_tree(sandbox, "/workspace/src")
    empty_directory(sandbox.tree)  # the next checkout's emptying: moved to a trash, removed by a thread
    assert list(sandbox.tree.iterdir()) == []
    sandbox.start()  # clears any trash the thread has not finished, then a fresh home
    assert not list(sandbox.slot_dir.glob(f"{TRASH_PREFIX}*"))
    assert not sandbox.home_changed()


def test_removal_holds_a_bounded_number_of_descriptors(tmp_path: Path) -> None:
    """10,000 levels, removed under a descriptor limit of 256 (deeper directories are moved up first)."""
    deep_tree(tmp_path / "t", 10_000)
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from ec2_agent.sandbox import remove_tree\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
        "remove_tree(Path(sys.argv[1]))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "t")], check=True, timeout=120)
    assert not (tmp_path / "t").exists()


def test_pack_names_the_deep_path_and_a_too_deep_archive_is_refused(tmp_path: Path) -> None:
    deep_tree(tmp_path / "home" / ".gemini" / "tmp", 200)
    with pytest.raises(SandboxFault, match=r"home/\.gemini/tmp/d/d/.*more than 128 directories deep"):
        pack_home_paths(tmp_path / "home", [".gemini/tmp"], 1_000_000)


def _slot(tmp_path: Path, sandbox: Sandbox) -> SlotState:
    """A slot as the agent builds it (ec2_agent.app), with the real claude-headless profile's session (it
    starts no process between turns); no job runs: the test plays what the job's CLI leaves behind."""
    git = Git(
        base_url="http://127.0.0.1:9",
        token_provider=lambda: "unused",
        credential_helper=install_credential_helper(tmp_path / "bin"),
        author_name="aipm",
        author_email="aipm@example.invalid",
        timeout_s=10,
    )
    profile = builtin_profile("claude-headless")
    return SlotState(
        id=1,
        workspace=Workspace(tmp_path / "work", sandbox.tree, git),
        sandbox=sandbox,
        session_factory=lambda tree, _out: HeadlessSession(profile, tree, sandbox=sandbox),
    )


@pytest.mark.parametrize("where", ["/home/cli/.claude/projects/p", "/home/cli/.cache/x"])
def test_tidy_after_a_job_that_left_a_deep_tree_recovers_the_slot(
    tmp_path: Path, sandbox: Sandbox, where: str
) -> None:
    """The pool's tidy-up after a job (ec2_agent/pool.py runs it in a `finally`): in `.claude` (restored to
    pristine between jobs: the deep tree goes to the trash thread) or elsewhere in the home (home_changed:
    a fresh home). Nothing raises, the next session starts, and a restarted agent's start clears the rest."""
    slot = _slot(tmp_path, sandbox)
    slot.ensure_session()
    slot.clean = False  # a job ran
    cli_makes_deep_tree(sandbox, where)
    slot.tidy()
    slot.ensure_session()
    assert not sandbox.home_changed()
    sandbox.start()
    assert not list(sandbox.slot_dir.glob(f"{TRASH_PREFIX}*"))
    slot.drop_session()
