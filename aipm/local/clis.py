"""The real coding-agent CLIs, installed from their registries into the repository's git-ignored cache.

``clis.toml`` (beside this module) pins each CLI: ``[npm]`` packages with exact versions, installed with
``npm install --prefix .cache/clis/npm``; ``[pypi]`` packages, each into a virtual environment of its own
(``.cache/clis/venvs/<name>``). Every command they provide (a Python package: its own console scripts, not its
dependencies') is linked into ``.cache/clis/bin`` — the one
folder to put first on ``PATH`` (it holds Node 22 as ``node``, so the CLIs' ``#!/usr/bin/env node`` finds
it). ``install`` is idempotent: a stamp holding the manifest's hash skips everything when nothing changed.

``python -m aipm.local.clis install`` (what ``make clis`` runs), ``python -m aipm.local.clis bin-dir``.
The cache folder is ``$AIPM_CLI_CACHE`` when set, else ``.cache/clis`` at the repository's root.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CliManifest",
    "InstallError",
    "bin_dir",
    "cache_dir",
    "console_scripts",
    "install",
    "load_manifest",
    "path_with_clis",
]

MANIFEST = Path(__file__).with_name("clis.toml")
_REPO_ROOT = Path(__file__).resolve().parents[2]
_VERSION_CHARS = set("0123456789.abcdefghijklmnopqrstuvwxyz-+")


class InstallError(RuntimeError):
    """A registry client failed; the message names the package and quotes the client's output."""


class CliManifest(BaseModel):
    """The pinned CLIs: package name → exact version, per registry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    npm: Mapping[str, str] = Field(default_factory=dict)
    pypi: Mapping[str, str] = Field(default_factory=dict)

    @field_validator("npm", "pypi")
    @classmethod
    def _exact_versions(cls, packages: Mapping[str, str]) -> Mapping[str, str]:
        for name, version in packages.items():
            if not name or name.startswith("-") or any(c.isspace() for c in name):
                raise ValueError(f"not a package name: {name!r}")
            if not version or not set(version.lower()) <= _VERSION_CHARS or version[0] in "<>=~^":
                raise ValueError(f"{name}: pin an exact version, not {version!r}")
        return packages


def load_manifest(path: Path = MANIFEST) -> CliManifest:
    """Read and validate a manifest. Raises ``ValueError`` naming what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: {err}") from err
    return CliManifest.model_validate(data)


def cache_dir() -> Path:
    """Where the CLIs are installed (``$AIPM_CLI_CACHE``, else ``<repository>/.cache/clis``)."""
    configured = os.environ.get("AIPM_CLI_CACHE")
    return Path(configured) if configured else _REPO_ROOT / ".cache" / "clis"


def bin_dir(cache: Path | None = None) -> Path:
    """The folder holding every installed CLI command (and ``node``)."""
    return (cache or cache_dir()) / "bin"


def path_with_clis(path: str | None = None, cache: Path | None = None) -> str:
    """``PATH`` (default: this process's) with the CLI folder first."""
    rest = os.environ.get("PATH", "/usr/bin:/bin") if path is None else path
    return f"{bin_dir(cache)}{os.pathsep}{rest}"


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise InstallError(f"installing {what} failed (exit {result.returncode}): {output}")


def console_scripts(python: Path, distribution: str) -> list[str]:
    """The commands ``distribution`` itself declares (its ``console_scripts`` entry points), as installed
    for the interpreter ``python`` — not those of its dependencies (aider-chat pulls in litellm, openai,
    flake8…, which must not shadow other commands on the CLIs' ``PATH``). Raises :class:`InstallError`."""
    query = (
        "import importlib.metadata as m, sys\n"
        "for e in m.distribution(sys.argv[1]).entry_points:\n"
        "    if e.group == 'console_scripts': print(e.name)\n"
    )
    result = subprocess.run(
        [str(python), "-c", query, distribution], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise InstallError(f"cannot list the commands of {distribution}: {result.stderr.strip()[-2000:]}")
    return sorted(set(result.stdout.split()))


def install(manifest: CliManifest | None = None, cache: Path | None = None, *, npm: str = "npm") -> Path:
    """Install the manifest's CLIs into ``cache`` (default :func:`cache_dir`) unless the stamp says they are
    there already. Returns the bin folder. Raises :class:`InstallError` if a registry client fails (nothing
    half-installed is stamped: the next run tries again)."""
    manifest = manifest or load_manifest()
    cache = cache or cache_dir()
    digest = hashlib.sha256(manifest.model_dump_json().encode()).hexdigest()
    stamp = cache / "installed.json"
    bins = bin_dir(cache)
    try:
        if json.loads(stamp.read_text())["manifest_sha256"] == digest and bins.is_dir():
            return bins
    except (OSError, ValueError, KeyError, TypeError):
        pass
    cache.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    links: dict[str, Path] = {}
    if manifest.npm:
        prefix = cache / "npm"
        prefix.mkdir(exist_ok=True)
        package = {
            "private": True,
            "description": "pinned by aipm/local/clis.toml",
            "dependencies": dict(manifest.npm),
        }
        (prefix / "package.json").write_text(json.dumps(package, indent=2) + "\n")
        _run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--save-exact",
            ],
            "the npm CLIs " + ", ".join(f"{k}@{v}" for k, v in manifest.npm.items()),
        )
        links |= {p.name: p for p in (prefix / "node_modules" / ".bin").iterdir()}
    for name, version in manifest.pypi.items():
        venv = cache / "venvs" / name
        if not (venv / "bin" / "python").exists():
            _run([sys.executable, "-m", "venv", str(venv)], f"a virtual environment for {name}")
        _run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"{name}=={version}"],
            f"{name}=={version}",
        )  # fmt: skip
        links |= {script: venv / "bin" / script for script in console_scripts(venv / "bin" / "python", name)}
    if bins.exists():
        shutil.rmtree(bins)
    bins.mkdir()
    for name, target in sorted(links.items()):
        (bins / name).symlink_to(target)
    stamp.write_text(
        json.dumps({"manifest_sha256": digest, "npm": dict(manifest.npm), "pypi": dict(manifest.pypi)})
    )
    return bins


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aipm.local.clis", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("install", "bin-dir"))
    args = parser.parse_args(argv)
    if args.command == "bin-dir":
        print(bin_dir())
        return 0
    try:
        print(install())
    except (InstallError, ValueError) as err:
        print(f"aipm.local.clis: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
