"""The agent host's user-data, rendered from a synthesized AgentHost and run by bash against a scratch root.

The network-dependent steps are stubbed through the script's own BOOTSTRAP_* settings: no dnf, no useradd,
no instance metadata, no aws CLI, no systemctl; the agent source is the asset directory the stack stages,
installed with pip (--no-deps: the build backend comes from PyPI) into the venv; the Kiro install command
is a stub. Then `systemd-analyze verify` checks the installed unit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack, Stage

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.agent_host import AgentHost
from tests.cdk.builders import parts

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the script installs files owned by its service user"
)

SYSTEMD_UNITS = Path("/lib/systemd/system")
KIRO_STUB = (
    "mkdir -p .local/bin && printf '#!/bin/sh\\n' > .local/bin/kiro-cli && chmod +x .local/bin/kiro-cli"
    " && echo x >> kiro-installs"
)


def flatten(value: Any) -> str:
    """A resolved Fn::Join as text, with every unresolved reference replaced by a placeholder."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, items = value["Fn::Join"]
        return str(separator).join(flatten(item) for item in items)
    return "unresolved-reference"


@pytest.fixture(scope="module")
def host() -> AgentHost:
    return parts().agent_host()


@pytest.fixture(scope="module")
def user_data(host: AgentHost) -> str:
    return flatten(Stack.of(host).resolve(host.shell_user_data.render()))


@pytest.fixture(scope="module")
def installed(host: AgentHost, user_data: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the user-data twice (it runs on every boot) into a scratch root; return the root."""
    work = tmp_path_factory.mktemp("user-data")
    root = work / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEMD_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    script = work / "user-data.sh"
    script.write_text(user_data)
    source = Path(Stage.of(host).outdir) / host.source.asset_path  # type: ignore[union-attr]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        "BOOTSTRAP_ROOT": str(root),
        "BOOTSTRAP_SOURCE": str(source),
        "BOOTSTRAP_PACKAGES": "",
        "BOOTSTRAP_PYTHON": sys.executable,
        "BOOTSTRAP_PIP_ARGS": "--no-deps",
        "BOOTSTRAP_CREATE_USER": "0",
        "BOOTSTRAP_USER": pwd.getpwuid(os.geteuid()).pw_name,
        "BOOTSTRAP_START": "0",
        "BOOTSTRAP_INSTANCE_ID": "i-0123456789abcdef0",
        "BOOTSTRAP_PRIVATE_IP": "10.0.0.10",
        "BOOTSTRAP_KIRO_INSTALL_COMMAND": KIRO_STUB,
        "BOOTSTRAP_CLOUDWATCH_CONFIG": "",
        "BOOTSTRAP_ENDPOINT_PARAM": "",
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PIP_", "SSL_", "REQUESTS_CA"))})
    for _ in range(2):
        result = subprocess.run(
            ["bash", str(script)], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return root


def test_user_data_fits_the_ec2_limit(user_data: str) -> None:
    # Multipart framing and base64 of the shell part: about 4/3 of the script plus a few hundred bytes.
    assert len(user_data.encode()) * 4 / 3 + 1024 < c.USER_DATA_LIMIT_BYTES


def test_agent_installed_into_its_venv(installed: Path) -> None:
    venv = installed / "opt/aipm/venv"
    agent = venv / "bin/aipm-agent"
    assert agent.is_file() and os.access(agent, os.X_OK)
    entry_points = list(venv.glob("lib/python3*/site-packages/aipm_delegate-*.dist-info/entry_points.txt"))
    assert entry_points and "aipm-agent = ec2_agent.__main__:main" in entry_points[0].read_text()
    check = subprocess.run(
        [str(venv / "bin/python"), "-c", "import ec2_agent, lambda_src"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_agent_environment_file(installed: Path) -> None:
    env_file = installed / "etc/aipm/agent.env"
    lines = env_file.read_text().splitlines()
    assert "AIPM_AGENT_ID='i-0123456789abcdef0'" in lines
    assert "AIPM_BIND_HOST='10.0.0.10'" in lines
    assert "AIPM_POOL_PORT='8081'" in lines and "AIPM_PROCESSOR_PORT='8082'" in lines
    assert "AIPM_CLI_PROFILE='kiro-acp'" in lines
    assert sum(line.startswith("AIPM_BIND_HOST=") for line in lines) == 1  # re-runs replace, not append
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"


def test_kiro_cli_installed_once_as_the_service_user(installed: Path) -> None:
    home = installed / c.AGENT_HOME.lstrip("/")
    assert (home / ".local/bin/kiro-cli").is_file()
    assert (home / "kiro-installs").read_text() == "x\n"  # the second boot kept it (and its login)


def test_systemd_accepts_the_units(installed: Path) -> None:
    unit = installed / "etc/systemd/system" / c.AGENT_SERVICE
    assert unit.is_file() and (installed / "etc/logrotate.d/aipm-agent").is_file()
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make systemd-analyze` installs it"
    result = subprocess.run(
        [analyze, "verify", f"--root={installed}", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr
