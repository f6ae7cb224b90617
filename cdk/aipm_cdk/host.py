"""The agent host's boot files, rendered from stack values: env files, CloudWatch agent config, user-data.

User-data writes the files under `${BOOTSTRAP_ROOT}` (empty on a host, a scratch directory in tests) and
runs `cdk/host/bootstrap.sh`. Every `BOOTSTRAP_*` value is a default the caller's environment overrides,
which is how tests stub the network-dependent steps.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Mapping

from cdk.aipm_cdk import constants as c

HEREDOC_MARK = "AIPM_EOF"
CLOUDWATCH_CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/aipm.json"
# Values go inside quotes in env files and `${VAR-default}` expansions: keep them to a plain alphabet.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9 _./:=|&;@%+,~*#-]*$")


def _check(name: str, value: str) -> str:
    plain = re.sub(r"\$\{Token\[[A-Za-z0-9._-]+\]\}", "", value)  # unresolved CDK tokens are safe
    if not _SAFE_VALUE.match(plain):
        raise ValueError(f"{name}: value has characters not allowed in the host's env files: {value!r}")
    return value


def env_file(values: Mapping[str, str]) -> str:
    """A systemd EnvironmentFile (also valid shell): one `KEY='value'` line per item."""
    return "".join(f"{key}='{_check(key, value)}'\n" for key, value in values.items())


def defaults_file(values: Mapping[str, str]) -> str:
    """Shell assignments that keep a value already in the environment: `KEY="${KEY-default}"`."""
    return "".join(f'{key}="${{{key}-{_check(key, value)}}}"\n' for key, value in values.items())


def cloudwatch_agent_config(log_group_name: str) -> str:
    """CloudWatch agent config shipping the agent's log and the boot log to one log group."""
    files = [
        (c.AGENT_LOG_FILE, "agent"),
        ("/var/log/cloud-init-output.log", "boot"),
    ]
    config = {
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": path,
                            "log_group_name": log_group_name,
                            "log_stream_name": "{instance_id}/" + stream,
                        }
                        for path, stream in files
                    ]
                }
            }
        }
    }
    return json.dumps(config, separators=(",", ":")) + "\n"


def _without_comments(text: str) -> str:
    """Drop whole-line comments (not the shebang) to keep user-data under EC2's 16 KiB limit."""
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if line.startswith("#!") or not line.lstrip().startswith("#")
    )


def _write(path: str, content: str) -> list[str]:
    if any(line == HEREDOC_MARK for line in content.splitlines()):
        raise ValueError(f"{path} contains the heredoc marker {HEREDOC_MARK}")
    return [f"cat >\"${{root}}{path}\" <<'{HEREDOC_MARK}'", content.rstrip("\n"), HEREDOC_MARK]


def _write_packed(path: str, content: str) -> list[str]:
    """Write `content` to `path` from gzip + base64 (the host files would not fit EC2's 16 KiB otherwise)."""
    packed = base64.b64encode(gzip.compress(content.encode(), mtime=0)).decode()
    return [f"base64 -d <<'{HEREDOC_MARK}' | gunzip >\"${{root}}{path}\"", packed, HEREDOC_MARK]


def user_data_commands(
    agent_env: Mapping[str, str], bootstrap_env: Mapping[str, str], cloudwatch_config: str
) -> list[str]:
    """The user-data script body: write the env files, host files and CloudWatch config, run bootstrap."""
    host_files = {name: _without_comments((c.HOST_FILES_DIR / name).read_text()) for name in c.HOST_FILES}
    lines = [
        "set -euo pipefail",
        "umask 022",
        'root="${BOOTSTRAP_ROOT:-}"',
        f'install -d -m 0755 "${{root}}/etc/aipm" "${{root}}{c.HOST_FILES_TARGET}" '
        f'"${{root}}{CLOUDWATCH_CONFIG.rsplit("/", 1)[0]}"',
    ]
    lines += _write(c.AGENT_ENV_FILE, env_file(agent_env))
    lines += _write(c.BOOTSTRAP_ENV_FILE, defaults_file(bootstrap_env))
    lines += _write(CLOUDWATCH_CONFIG, cloudwatch_config)
    for name, content in host_files.items():
        lines += _write_packed(f"{c.HOST_FILES_TARGET}/{name}", content)
    lines += [
        "set -a",
        f'. "${{root}}{c.BOOTSTRAP_ENV_FILE}"',
        "set +a",
        f'exec bash "${{root}}{c.HOST_FILES_TARGET}/bootstrap.sh"',
    ]
    return lines


# cloud-init runs the shell part on every boot, so a stack update that changes user-data (CloudFormation
# stops the instance, updates it and starts it) re-installs the agent with the new code and settings while
# the host keeps its disk (and the Kiro CLI login in the service user's home).
CLOUD_CONFIG_EVERY_BOOT = "#cloud-config\ncloud_final_modules:\n- [scripts-user, always]\n"
