"""The task a person delegates: read from a YAML/JSON file and/or flags, shaped as the API's request body."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aipm.cli.errors import usage_error

# The API's request fields (POST /api/personal-delegate) and the flag that sets each.
FIELDS: dict[str, str] = {
    "owner": "--repo OWNER/REPO (or --owner)",
    "repo": "--repo OWNER/REPO",
    "branchName": "--branch",
    "taskTitle": "--title",
    "objective": "--objective",
    "prTitle": "--pr-title",
    "constraints": "--constraints",
    "acceptanceCriteria": "--criterion (repeatable)",
    "baseBranch": "--base-branch",
}
# The same fields under the flags' names (a task file may use either): `title: ...` is `taskTitle: ...`.
FLAG_NAMES: dict[str, str] = {
    "title": "taskTitle",
    "branch": "branchName",
    "pr-title": "prTitle",
    "pr_title": "prTitle",
    "criteria": "acceptanceCriteria",
    "criterion": "acceptanceCriteria",
    "base-branch": "baseBranch",
    "base_branch": "baseBranch",
}
REQUIRED = ("owner", "repo", "taskTitle", "objective")  # branchName and prTitle are derived from the title
MAX_FILE_BYTES = 256 * 1024


def load_task_file(path: str) -> dict[str, Any]:
    """A task from a YAML or JSON file (`-` reads standard input). Raises CliError (usage) when unusable."""
    try:
        if path == "-":
            text = sys.stdin.read(MAX_FILE_BYTES + 1)
        else:
            with Path(path).open(encoding="utf-8") as f:
                text = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise usage_error(f"cannot read the task file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise usage_error(f"the task file {path} is not UTF-8 text") from None
    if len(text) > MAX_FILE_BYTES:
        raise usage_error(f"the task file {path} is larger than {MAX_FILE_BYTES // 1024} KiB")
    data = _parse(path, text)
    if not isinstance(data, dict):
        raise usage_error(f"the task file {path} must hold a mapping of fields (e.g. taskTitle: ...)")
    data = {FLAG_NAMES.get(str(k), str(k)): v for k, v in data.items()}
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        known = ", ".join(sorted({*FLAG_NAMES, *FIELDS} - {"pr_title", "base_branch", "criterion"}))
        raise usage_error(f"unknown field(s) in {path}: {', '.join(unknown)}", hint=f"known fields: {known}")
    if isinstance(data.get("acceptanceCriteria"), str):
        data["acceptanceCriteria"] = [data["acceptanceCriteria"]]
    return {str(k): v for k, v in data.items() if v is not None}


def _parse(path: str, text: str) -> object:
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as err:
            raise usage_error(f"the task file {path} is not valid JSON: {err}") from None
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency of the CLI
        try:
            return json.loads(text)
        except ValueError:
            raise usage_error(
                f"cannot read {path}: YAML needs PyYAML (pip install pyyaml); JSON files work without it"
            ) from None
    stream = io.StringIO(text)
    stream.name = path  # PyYAML names the stream in its messages: the file, not "<unicode string>"
    try:
        return yaml.safe_load(stream)
    except yaml.YAMLError as err:
        raise usage_error(f"the task file {path} is not valid YAML/JSON: {err}") from None


def build_task(from_file: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the file's fields with the flags (flags win) into the API's request body.

    Conveniences: `repo: owner/name` sets both fields; `prTitle` defaults to the task title; `branchName`
    defaults to `feature/<slug of the title>`. Raises CliError (usage) naming each missing field and its flag.
    """
    task: dict[str, Any] = dict(from_file)
    for key, value in flags.items():
        if value is None or value == []:
            continue
        if key == "acceptanceCriteria":
            task[key] = list(value)
        else:
            task[key] = value
    repo = task.get("repo")
    if isinstance(repo, str) and "/" in repo:
        owner, _, name = repo.partition("/")
        if task.get("owner") not in (None, owner):
            raise usage_error(f"--owner {task['owner']} contradicts --repo {repo}")
        task["owner"], task["repo"] = owner, name
    title = task.get("taskTitle")
    if isinstance(title, str) and title.strip():
        task.setdefault("prTitle", title.strip())
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].strip("-")
        if slug:
            task.setdefault("branchName", f"feature/{slug}")
    missing = [name for name in REQUIRED if not task.get(name)]
    missing += [name for name in ("branchName", "prTitle") if not task.get(name) and task.get("taskTitle")]
    if missing:
        listed = ", ".join(f"{name} ({FIELDS[name]})" for name in missing)
        raise usage_error(f"the task is missing: {listed}", hint="give them as flags or in --file task.yaml")
    return task
