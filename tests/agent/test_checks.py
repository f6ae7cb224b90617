"""`.aipm.yml`: the validated shape of a repository's checks (the runs: tests/e2e/test_checks.py)."""

from __future__ import annotations

import pytest

from ec2_agent.checks import CheckResult, ChecksConfig, ChecksConfigInvalid, comment_section, load_config


def test_a_documented_file_loads_with_its_defaults() -> None:
    config = load_config("checks:\n  - name: unit tests\n    run: [python, -m, pytest, -q]\n")
    assert config == ChecksConfig.model_validate(
        {"checks": [{"name": "unit tests", "run": ["python", "-m", "pytest", "-q"], "timeout_s": 300}]}
    )
    assert config is not None and config.max_rounds == 2


@pytest.mark.parametrize("text", [None, "", "# only a comment\n"])
def test_no_file_or_an_empty_one_means_no_checks(text: str | None) -> None:
    assert load_config(text) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("checks: [", "is not valid YAML"),
        ("- a list", "the file: Input should be a valid dictionary"),
        ("checks:\n  - name: x\n    run: echo hi\n", "checks.0.run: Input should be a valid list"),
        ("checks:\n  - name: x\n    run: []\n", "checks.0.run: List should have at least 1 item"),
        ("checks:\n  - name: x\n    run: [a]\n    timeout_s: 99999\n", "checks.0.timeout_s"),
        ("checks:\n  - name: x\n    run: [a]\n    shell: true\n", "checks.0.shell: Extra inputs"),
        ("max_rounds: 9\n", "max_rounds: Input should be less than or equal to 5"),
        ('checks:\n  - name: "a\\nb"\n    run: [a]\n', "checks.0.name"),
        ("!!python/object/apply:os.system [id]\n", "is not valid YAML"),  # safe_load: no object tags
    ],
)
def test_an_invalid_file_is_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ChecksConfigInvalid, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_config(text)


def test_the_comment_quotes_check_names_and_output_as_code() -> None:
    results = [
        CheckResult(
            name="lint `x`", passed=False, exit_status=2, duration_s=0.1, output_tail="@aipm <b>x</b>"
        ),
        CheckResult(name="unit", passed=True, exit_status=0, duration_s=0.1, output_tail=""),
    ]
    section = comment_section(results)
    assert "- ❌ `` lint `x` `` — failed (exit 2)" in section and "- ✅ ` unit ` — passed" in section
    assert "```text\n@aipm <b>x</b>\n```" in section
