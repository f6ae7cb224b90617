"""The README stays true: the commands, settings, stack outputs and exit codes it names exist in the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from aipm.cli.app import build_parser
from aipm.cli.config import Settings as CliSettings
from aipm.cli.errors import Exit
from aipm.cli.ops import OUTPUT_KEYS
from ec2_agent.config import AgentSettings
from lambda_src.settings import ApiSettings, DispatchSettings, ReconcileSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# The CLI's variables: the Settings model's (prefix AIPM_), the config file's and the profile's.
CLI_VARIABLES = {f"AIPM_{name.upper()}" for name in CliSettings.model_fields} | {
    "AIPM_API_URL",
    "AIPM_API_TOKEN",
    "AIPM_CONFIG",
    "AIPM_PROFILE",
}


def subcommands(parser: object) -> dict[str, object]:
    for action in getattr(parser, "_actions", []):
        if action.__class__.__name__ == "_SubParsersAction":
            return dict(action.choices)
    return {}


def test_every_aipm_command_in_the_readme_exists() -> None:
    top = subcommands(build_parser())
    used = re.findall(r"\baipm (?:--json )?([a-z]+)(?: ([a-z]+))?", README)
    assert used
    for first, second in used:
        assert first in top, f"README mentions `aipm {first}`, which does not exist"
        nested = subcommands(top[first])
        if nested and second:
            assert second in nested, f"README mentions `aipm {first} {second}`, which does not exist"


def test_every_agent_setting_is_documented_and_nothing_else() -> None:
    settings = {f"AIPM_{name.upper()}" for name in AgentSettings.model_fields}
    missing = sorted(name for name in settings if name not in README)
    assert not missing, f"agent settings missing from the README: {missing}"
    named = set(re.findall(r"\bAIPM_[A-Z_]+[A-Z]\b", README))
    unknown = sorted(named - settings - CLI_VARIABLES)
    assert not unknown, f"the README names settings that do not exist: {unknown}"


@pytest.mark.parametrize("model", [ApiSettings, DispatchSettings, ReconcileSettings])
def test_every_lambda_setting_is_documented(model: type) -> None:
    missing = sorted(n.upper() for n in model.model_fields if f"`{n.upper()}`" not in README)
    assert not missing, f"{model.__name__} settings missing from the README: {missing}"


def test_the_stack_outputs_table_matches_what_the_cli_reads() -> None:
    section = README[README.index("## Operations runbook") : README.index("**SSM access.**")]
    documented = set(re.findall(r"`([A-Z][A-Za-z]+)`", section))
    assert set(OUTPUT_KEYS) <= documented


def test_the_exit_code_table_matches_the_cli() -> None:
    table = README[README.index("| code | meaning |") :]
    table = table[: table.index("\n\n")]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", table, flags=re.MULTILINE))
    assert sorted(int(code) for code in rows) == sorted(int(code) for code in Exit)


def test_the_architecture_picture_renders_from_its_source() -> None:
    dot = shutil.which("dot")
    if dot is None:
        pytest.fail("Graphviz `dot` is missing: run `make sysdeps`")
    source = ROOT / "docs" / "architecture.dot"
    done = subprocess.run([dot, "-Tsvg", str(source)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    png = ROOT / "docs" / "architecture.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "docs/architecture.png" in README


def test_every_doc_the_cli_names_exists() -> None:
    """Hints and help name docs by path or by README section: each one is there."""
    root = Path(__file__).resolve().parents[2]
    text = "\n".join(p.read_text() for p in (root / "aipm" / "cli").glob("*.py"))
    for path in set(re.findall(r"\bdocs/[\w.-]+\.md\b", text)):
        assert (root / path).is_file(), f"the CLI names {path}, which does not exist"
    if "Operations runbook" in text:
        assert "## Operations runbook" in README
