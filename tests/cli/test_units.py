"""Small pure parts of the CLI: URL checks, task building, output tails."""

from __future__ import annotations

from pathlib import Path

import pytest

from aipm.cli.api import ApiClient, normalise_base_url
from aipm.cli.errors import CliError, Exit
from aipm.cli.follow import tail_delta
from aipm.cli.tasks import build_task, load_task_file


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
        ),
        (
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/api/",
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
        ),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080/", "http://localhost:8080"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
    ],
)
def test_base_urls_are_normalised(raw: str, expected: str) -> None:
    assert normalise_base_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("http://api.example.com", "plain http"),
        ("https://user:pw@api.example.com", "credentials"),
        ("https://api.example.com/prod?token=x", "query"),
        ("ftp://api.example.com", "not an API URL"),
        ("api.example.com", "not an API URL"),
    ],
)
def test_unsafe_or_wrong_urls_are_refused(raw: str, problem: str) -> None:
    with pytest.raises(CliError) as refused:
        normalise_base_url(raw)
    assert refused.value.code == Exit.USAGE and problem in refused.value.message


def test_the_client_never_shows_its_token() -> None:
    client = ApiClient("https://api.example.com/prod", "s3cr3t-token")
    assert "s3cr3t" not in repr(client)


def test_job_ids_are_checked_before_anything_is_sent() -> None:
    client = ApiClient("https://api.example.com/prod", "t")
    with pytest.raises(CliError) as refused:
        client.job("../workers")
    assert refused.value.code == Exit.USAGE


def test_build_task_conveniences() -> None:
    task = build_task({}, {"repo": "acme/tools", "taskTitle": "Add CSV export!", "objective": "x"})
    assert task["owner"] == "acme" and task["repo"] == "tools"
    assert task["branchName"] == "feature/add-csv-export" and task["prTitle"] == "Add CSV export!"
    with pytest.raises(CliError, match="contradicts"):
        build_task({}, {"owner": "other", "repo": "acme/tools", "taskTitle": "t", "objective": "x"})


def test_task_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    json_file = tmp_path / "task.json"
    json_file.write_text('{"owner": "acme", "repo": "tools", "taskTitle": "T", "objective": "O"}')
    assert load_task_file(str(json_file))["taskTitle"] == "T"

    flags = tmp_path / "flags.yaml"  # the flags' names work as keys too
    flags.write_text("repo: acme/tools\ntitle: T\nobjective: O\ncriteria: It works\nbranch: b\n")
    assert load_task_file(str(flags)) == {
        "repo": "acme/tools",
        "taskTitle": "T",
        "objective": "O",
        "acceptanceCriteria": ["It works"],
        "branchName": "b",
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("owner: acme\nbrunch: nope\n")
    with pytest.raises(CliError, match="unknown field"):
        load_task_file(str(bad))
    bad.write_text("- a list\n")
    with pytest.raises(CliError, match="mapping"):
        load_task_file(str(bad))
    bad.write_text("owner: [unclosed\n")
    with pytest.raises(CliError, match="not valid YAML") as problem:
        load_task_file(str(bad))
    assert f'in "{bad}", line' in problem.value.message and "<unicode string>" not in problem.value.message
    with pytest.raises(CliError, match="cannot read"):
        load_task_file(str(tmp_path / "absent.yaml"))

    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("taskTitle: From stdin\n"))
    assert load_task_file("-") == {"taskTitle": "From stdin"}


@pytest.mark.parametrize(
    ("old", "new", "delta"),
    [
        ("", "abc", "abc"),
        ("abc", "abc", ""),
        ("abc", "abcdef", "def"),
        ("0123456789", "6789xyz", "xyz"),  # the tail moved on: only the new part
        ("abc", "xyz", "xyz"),
    ],
)
def test_tail_delta(old: str, new: str, delta: str) -> None:
    assert tail_delta(old, new) == delta
