"""Each extra alone installs what it promises, into a fresh venv from a clean copy of the sources (as from an
sdist): `.[cli]` gives a working `aipm` (every command's `--help`), and `.[local]` (what `make demo`
installs) runs the demo end to end without moto's every-service dependencies. Also: the build prints no
setuptools deprecation banner (`project.license`)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from aipm.cli.app import build_parser

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "aipm", "lambda_src", "ec2_agent")


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser: (), ("delegate",), ("jobs",), ("jobs", "list"), ..."""
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += command_paths(sub, (*prefix, name))
    return paths


def installed(where: Path, extra: str) -> Path:
    """A fresh venv under `where` with the project's `extra` installed from a copy of the sources."""
    source = where / "src"
    source.mkdir()
    for name in SOURCES:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(item, source / name)
    env_dir = where / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    built = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-v", f"{source}[{extra}]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    output = built.stdout + built.stderr
    assert "project.license" not in output and "License classifiers are deprecated" not in output
    return env_dir


def distributions(env_dir: Path) -> set[str]:
    """The names (lower case) of the distributions installed in the venv `env_dir`."""
    listed = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    return {line.split("==")[0] for line in listed.splitlines() if "==" in line}


@pytest.fixture(scope="module")
def cli_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed(tmp_path_factory.mktemp("cli-only"), "cli")


def test_the_cli_extra_alone_runs_every_help(cli_venv: Path) -> None:
    aipm = cli_venv / "bin" / "aipm"
    listed = distributions(cli_venv)
    assert "moto" not in listed and "graphql-core" not in listed  # the local extra was not pulled in
    paths = command_paths(build_parser())
    assert ("jobs", "list") in paths and ("ops", "status") in paths
    for path in paths:
        done = subprocess.run([str(aipm), *path, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (path, done.stderr)
        assert "usage: aipm" in done.stdout, path
    version = subprocess.run([str(aipm), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("aipm "), version
    bare = subprocess.run([str(aipm)], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and "usage: aipm" in bare.stdout


def test_aipm_local_without_the_local_extra_names_it(cli_venv: Path) -> None:
    done = subprocess.run(
        [str(cli_venv / "bin" / "aipm"), "local"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "pip install 'aipm-delegate[local]'" in done.stderr


def test_the_local_extra_alone_runs_the_demo(tmp_path: Path) -> None:
    """What `make demo` installs is enough for the demo, and none of moto[server]'s every-service extras
    (cfn-lint pulls sympy and networkx: 146 MB of the 309 MB venv) comes with it."""
    env_dir = installed(tmp_path, "local")
    listed = distributions(env_dir)
    assert {"moto", "flask", "flask-cors", "graphql-core"} <= listed
    assert not listed & {"cfn-lint", "sympy", "networkx", "openapi-spec-validator", "aws-cdk-lib", "pytest"}
    demo = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "aipm.local.demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "completed" in demo.stdout.splitlines()[-1], demo.stdout[-2000:]
