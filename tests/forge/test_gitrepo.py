"""The forge's git plumbing: branch-name rules equal git's, commits built without a work tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aipm.local.forge.gitrepo import BareRepo, GitError, is_valid_branch_name, is_valid_file_path

NAMES = [
    "main",
    "feature/add-export-1733356800123",
    "v1.2/x_y-z",
    "x@",
    "@x",
    "ünïcode",
    "HEAD",
    "a@{b",
    "-lead",
    "a..b",
    ".hidden",
    "a/.hidden",
    "a.lock",
    "a/b.lock/c",
    "trail/",
    "trail.",
    "a//b",
    "sp ace",
    "tab\tx",
    "til~de",
    "ca^ret",
    "co:lon",
    "q?",
    "st*r",
    "br[acket",
    "back\\slash",
    "ctl\x01",
    "del\x7f",
]


@pytest.mark.parametrize("name", NAMES)
def test_branch_names_are_judged_as_git_judges_them(name: str) -> None:
    git = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True, check=False)

    assert is_valid_branch_name(name) == (git.returncode == 0)


def test_the_at_sign_alone_is_refused() -> None:
    assert not is_valid_branch_name("@")  # git reads it as HEAD; never a branch here


@pytest.mark.parametrize(
    ("path", "valid"),
    [
        ("TASK.md", True),
        ("docs/a b.md", True),
        ("/abs", False),
        ("a/../b", False),
        (".git/config", False),
        ("a//b", False),
    ],
)
def test_file_paths_stay_inside_the_tree(path: str, valid: bool) -> None:
    assert is_valid_file_path(path) is valid


def test_commits_are_built_in_a_scratch_index(tmp_path: Path) -> None:
    repo = BareRepo.create(
        tmp_path / "r.git", default_branch="main", files={"README.md": "r\n", "old.txt": "o\n"}
    )
    parent = repo.branch_tip("main")
    assert parent is not None

    commit = repo.commit_tree(
        parent=parent, additions={"docs/new.md": b"n\n"}, deletions=["old.txt"], message="Change\n\nBody"
    )

    info = repo.commit_info(commit)
    assert (info.parents, info.message) == ((parent,), "Change\n\nBody")
    assert [entry.path for entry in repo.list_directory(commit, "")] == ["README.md", "docs"]
    assert repo.branch_tip("main") == parent  # objects only: no ref moved
    with pytest.raises(GitError, match="no such file"):
        repo.commit_tree(parent=parent, additions={}, deletions=["missing.txt"], message="m")
