"""The CLI's conventions, as people used to gh, aws and kubectl expect them: --version, help on a bare
command, completion, configuration profiles, output formats and field selection, colour rules, job-id
prefixes, "did you mean", global flags after the action, Retry-After and in-progress idempotency retried,
delegate with only repo, title and objective. Against the contract fake of the API (tests/cli/fake_api.py)
and argcomplete itself."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aipm.cli import app, render
from tests.cli.conftest import Runner, run
from tests.cli.fake_api import TOKEN, FakeApi

TASK = ("--repo", "acme/tools", "--title", "Add export", "--objective", "Users export data")


def test_version_and_help_on_bare_commands() -> None:
    with pytest.raises(SystemExit) as done:
        app.build_parser().parse_args(["--version"])
    assert done.value.code == 0
    bare = run()
    assert bare.code == 0 and bare.out.startswith("usage: aipm")
    jobs = run("jobs")
    assert jobs.code == 0 and jobs.out.startswith("usage: aipm jobs") and "cancel" in jobs.out


def test_typos_get_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        app.main(["job", "list"])
    assert done.value.code == 2
    assert "did you mean 'jobs'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        app.main(["jobs", "list", "--stauts", "failed"])
    assert "did you mean '--status'" in capsys.readouterr().err


def test_completion_script_is_argcompletes_and_completes_commands(tmp_path: Path) -> None:
    script = run("completion", "bash")
    assert script.code == 0 and "complete " in script.out and "aipm" in script.out
    # argcomplete's own protocol: what bash would get for `aipm jo<TAB>`.
    out = tmp_path / "completions"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": "aipm jo",
        "COMP_POINT": "7",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
    }
    subprocess.run([sys.executable, "-m", "aipm.cli"], env=env, timeout=60, check=False)
    assert out.read_text().split() == ["jobs"]


def test_profiles_from_the_config_file(
    fake_api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'default_profile = "dev"\n'
        f'[profiles.dev]\napi_url = "{fake_api.url}"\ntoken = "{TOKEN}"\noutput = "json"\n'
        '[profiles.broken]\napi_url = "http://127.0.0.1:9"\ntoken = "wrong"\n'
    )
    config.chmod(0o600)
    monkeypatch.setenv("AIPM_CONFIG", str(config))
    monkeypatch.delenv("AIPM_API_URL", raising=False)
    monkeypatch.delenv("AIPM_API_TOKEN", raising=False)
    fake_api.add_job("One")
    listed = run("jobs", "list")
    assert listed.code == 0 and json.loads(listed.out)["jobs"][0]["taskTitle"] == "One"  # output = json
    assert run("jobs", "list", "--profile", "broken").code == 3  # the flag after the action too
    monkeypatch.setenv("AIPM_API_URL", fake_api.url)  # the environment wins over the profile
    assert run("--profile", "broken", "jobs", "list").code == 3  # (only the URL: the token is still wrong)
    shown = run("config", "-o", "json")
    assert json.loads(shown.out)["profile"] == "dev" and json.loads(shown.out)["token"] == "set"
    assert TOKEN not in shown.out
    monkeypatch.delenv("AIPM_API_URL")
    missing = run("--profile", "nope", "jobs", "list")  # a sign-in-only profile has no settings of its own
    assert missing.code == 2 and "no API URL" in missing.err
    config.chmod(0o644)
    assert "others can read it" in run("jobs", "list").err
    config.chmod(0o600)
    config.write_text("[profiles.dev]\napi_ulr = 'x'\n")
    bad = run("jobs", "list")
    assert bad.code == 2 and str(config) in bad.err and "api_ulr" in bad.err


def test_output_formats_and_fields(aipm: Runner, fake_api: FakeApi) -> None:
    job = fake_api.add_job("Export", status="failed")
    as_yaml = yaml.safe_load(aipm("jobs", "list", "-o", "yaml").out)
    assert as_yaml["jobs"][0]["jobId"] == job["jobId"]
    picked = json.loads(aipm("jobs", "list", "-o", "json", "--fields", "jobId,status").out)
    assert picked["jobs"] == [{"jobId": job["jobId"], "status": "failed"}]
    one = json.loads(aipm("jobs", "show", job["jobId"], "--fields", "status,repo", "-o", "json").out)
    assert one == {"status": "failed", "repo": "acme/tools"}
    table = aipm("jobs", "list", "--fields", "jobId,status").out.splitlines()
    assert table[0].split() == ["JOBID", "STATUS"] and table[1].split() == [job["jobId"], "failed"]
    wrong = aipm("jobs", "list", "-o", "json", "--fields", "nope")
    assert wrong.code == 2 and "no such field: nope" in wrong.err


def test_table_has_relative_times_and_no_colour_off_a_terminal(aipm: Runner, fake_api: FakeApi) -> None:
    fake_api.add_job("Export", status="failed")
    out = aipm("jobs", "list").out
    assert "\033[" not in out and " ago" in out


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert render.use_colour(Tty()) and not render.use_colour(io.StringIO())
    assert not render.use_colour(Tty(), disabled=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not render.use_colour(Tty())
    assert render.paint("failed", "failed", True) == "\033[31mfailed\033[0m"


def test_unique_job_id_prefixes(aipm: Runner, fake_api: FakeApi) -> None:
    first = fake_api.add_job("First")
    shown = aipm("jobs", "show", first["jobId"][:6], "-o", "json")
    assert shown.code == 0 and json.loads(shown.out)["jobId"] == first["jobId"]
    table = aipm("jobs", "list").out
    assert first["jobId"][:8] in table and first["jobId"] not in table  # the short form is shown
    assert aipm("jobs", "show", "ffff" if not first["jobId"].startswith("ffff") else "0000").code == 2
    twin = dict(first, jobId=first["jobId"][:5] + "0" * 27, taskTitle="Twin")
    fake_api.jobs[twin["jobId"]] = twin
    ambiguous = aipm("jobs", "show", first["jobId"][:5])
    assert ambiguous.code == 2 and "2 jobs start with" in ambiguous.err
    assert aipm("jobs", "show", "zz!").code == 2


def test_retry_after_and_in_progress_idempotency_are_retried(aipm: Runner, fake_api: FakeApi) -> None:
    fake_api.answers += [
        (409, {"error": "idempotency_in_progress", "message": "the first request is still running"}),
        (503, {"error": "idempotency_unavailable", "message": "try again"}),
    ]
    fake_api.answer_headers += [{"Retry-After": "1"}, {"Retry-After": "1"}]
    done = aipm("delegate", *TASK, "--no-wait", "-o", "json")
    assert done.code == 0, done.err
    posts = fake_api.seen("POST", "/api/personal-delegate")
    assert len(posts) == 3
    assert len({p.headers["Idempotency-Key"] for p in posts}) == 1
    assert posts[1].at - posts[0].at >= 0.95 and posts[2].at - posts[1].at >= 0.95  # waited as told


def test_a_409_without_retry_after_is_not_retried(aipm: Runner, fake_api: FakeApi) -> None:
    fake_api.answers.append((409, {"error": "branch_exists", "message": "exists", "field": "branchName"}))
    done = aipm("delegate", *TASK, "--no-wait")
    assert done.code == 2 and "branch_exists" in done.err
    assert len(fake_api.seen("POST", "/api/personal-delegate")) == 1


def test_delegate_needs_only_repo_title_and_objective(aipm: Runner, fake_api: FakeApi) -> None:
    missing = aipm("delegate", "--repo", "acme/tools")
    assert missing.code == 2
    assert "taskTitle (--title)" in missing.err and "objective" in missing.err
    assert "branchName" not in missing.err and "prTitle" not in missing.err
    done = aipm("delegate", *TASK, "--no-wait")
    assert done.code == 0
    sent = fake_api.seen("POST", "/api/personal-delegate")[-1].body
    assert sent["branchName"] == "feature/add-export" and sent["prTitle"] == "Add export"


def test_ops_flags_after_the_action_and_aws_region_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    args = app.build_parser().parse_args(["ops", "status", "--stack", "S", "--region", "eu-west-1"])
    assert (args.stack, args.region) == ("S", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    from aipm.cli.config import load_settings

    assert load_settings(None)[1].region == "eu-north-1"
