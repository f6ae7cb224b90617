"""The emulator's task reading and writing, without a terminal."""

from __future__ import annotations

import pytest

from ec2_agent.kiro_emulator import Directives, main, parse_task, render_change, slug

API_SHAPED = """# Add export button

## Objective

User can export
data

## Constraints

Use existing button patterns

## Acceptance criteria

- [ ] Button appears in header
- [ ] Export works

---
Requested by someone through AIPM (job `j-1`).
"""

PROTOTYPE_SHAPED = """# Add Export Button

Add an export button to the UI

Constraints: Use existing button styles

Acceptance Criteria:
- Button appears in header
- Exports data as JSON

<!-- emulator: flood=5, slow=1.5 no-change -->
"""


def test_parses_the_api_task_document() -> None:
    spec = parse_task(API_SHAPED)
    assert spec.title == "Add export button"
    assert spec.objective == "User can export data"
    assert spec.criteria == ("Button appears in header", "Export works")
    assert spec.directives == Directives()


def test_parses_the_prototype_task_document_and_directives() -> None:
    spec = parse_task(PROTOTYPE_SHAPED)
    assert (spec.title, spec.objective) == ("Add Export Button", "Add an export button to the UI")
    assert spec.criteria == ("Button appears in header", "Exports data as JSON")
    assert spec.directives == Directives(flood_mb=5, slow_s=1.5, no_change=True)


def test_directive_flags() -> None:
    spec = parse_task("# T\n<!-- emulator: hang -->\n<!-- Emulator: crash, wedge, flood -->")
    assert spec.directives == Directives(hang=True, crash=True, wedge=True, flood_mb=10)
    with pytest.raises(ValueError):
        parse_task("# T\n<!-- emulator: slow=soon -->")


def test_render_is_deterministic_and_clean() -> None:
    path, content = render_change(parse_task(API_SHAPED))
    assert str(path) == "docs/add-export-button.md"
    assert render_change(parse_task(API_SHAPED)) == (path, content)
    assert "- [x] Button appears in header\n- [x] Export works\n" in content
    hostile = parse_task("# Evil \x1b]0;pwn\x07\x03 title\u202e\n## Acceptance criteria\n- a\x1b[31mb\x04\n")
    assert hostile.title == "Evil title"
    assert hostile.criteria == ("ab",)


def test_slug() -> None:
    assert slug("Add Export Button!") == "add-export-button"
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("日本語") == "task"
    assert len(slug("x" * 200)) == 60


def test_prompt_only_with_no_interactive() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["chat", "--no-interactive"])
    assert raised.value.code == 2
    with pytest.raises(SystemExit):
        main(["chat", "do it"])


def test_a_follow_up_brief_names_the_reviewed_file_and_line() -> None:
    """The brief the agent renders for a review comment (lambda_src.taskdoc) is what the emulator reads."""
    from lambda_src.taskdoc import render_follow_up_brief

    brief = render_follow_up_brief(
        "# ` Add export `\n",
        job_id="j",
        author="rita",
        comment="@aipm use a constant\nFile: ` elsewhere.py `, line 9",
        where="a review comment",
        path="src/a `b`.py",
        line=3,
    )
    spec = parse_task(brief)
    assert (spec.file, spec.line) == ("src/a `b`.py", 3)  # the quoted comment's look-alike line is not it
    assert parse_task("# Task\n").file is None
    not_a_review = render_follow_up_brief(
        "# T\n", job_id="j", author="sam", comment="File: ` README.md `, line 1", where="a comment"
    )
    assert parse_task(not_a_review).file is None
