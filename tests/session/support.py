"""Helpers for the terminal-side tests: emulator profiles and TASK.md files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ec2_agent.profiles import CliProfile, builtin_profile

WORK_S = "0.05"  # the emulator's simulated work per task


def emulator_profile(*, approval_answer: str | None = None, **overrides: object) -> CliProfile:
    """The built-in emulator profile with short simulated work (plus any field overrides, and another
    answer to the tool approval if given)."""
    data = builtin_profile("emulator").model_dump()
    data["env"] = {"KIRO_EMULATOR_WORK_S": WORK_S}
    if approval_answer is not None:
        data["questions"] = [
            {**q, "answer": approval_answer} if q["during"] == "task" else q for q in data["questions"]
        ]
    data.update(overrides)
    return CliProfile.model_validate(data)


def write_task(
    directory: Path,
    *,
    title: str = "Add export button",
    criteria: Iterable[str] = ("Button appears in header", "Export works"),
    directive: str | None = None,
) -> Path:
    """Write a TASK.md shaped like the one the API commits, optionally with an emulator directive."""
    lines = [f"# {title}", "", "## Objective", "", "User can export data", ""]
    lines += ["## Constraints", "", "Use existing button patterns", "", "## Acceptance criteria", ""]
    lines += [f"- [ ] {c}" for c in criteria]
    if directive is not None:
        lines += ["", f"<!-- emulator: {directive} -->"]
    path = directory / "TASK.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
