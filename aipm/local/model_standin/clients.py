"""How each real CLI is pointed at the model stand-in: its environment and the files its home needs to run
offline (no onboarding, no telemetry, API-key auth). Sources: /work/shared/COUNTERPARTS.md (each switch was
needed by the real program here) and the CLIs' documentation.

:func:`client_env` gives the variables; :func:`seed_home` writes the home files. Both are keyed by the CLI's
command name (``gemini``, ``qwen``, ``claude``, ``codex``, ``codex-acp-linux-x64``, ``aider``); ``ValueError``
for another.
"""

from __future__ import annotations

import json
from pathlib import Path

from aipm.local.clis import path_with_clis
from ec2_agent.profiles import CliProfile
from ec2_agent.profiles import seed_home as seed_profile_home

__all__ = ["REAL_CLIS", "STANDIN_API_KEY", "client_env", "seed_home", "standin_profile"]

REAL_CLIS = (
    "gemini",
    "qwen",
    "claude",
    "codex",
    "codex-acp-linux-x64",
    "aider",
)  # the commands the stand-in has settings for

STANDIN_API_KEY = "sk-ant-aipm-standin-0123456789abcdefghij"  # not a secret: the stand-in accepts any key


def client_env(cli: str, base_url: str) -> dict[str, str]:
    """The environment that makes ``cli`` call the stand-in at ``base_url`` (``http://127.0.0.1:<port>``)."""
    if cli == "gemini":
        return {
            "GEMINI_API_KEY": STANDIN_API_KEY,
            "GOOGLE_GEMINI_BASE_URL": base_url,
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
            "GEMINI_CLI_NO_RELAUNCH": "true",
        }
    if cli == "qwen":
        return {
            "OPENAI_API_KEY": STANDIN_API_KEY,
            "OPENAI_BASE_URL": base_url + "/v1",
            "OPENAI_MODEL": "standin",
        }
    if cli in ("codex", "codex-acp-linux-x64"):
        return {"OPENAI_API_KEY": STANDIN_API_KEY}  # the base URL is in its config (seed_home)
    if cli == "aider":
        return {
            "OPENAI_API_KEY": STANDIN_API_KEY,
            "OPENAI_API_BASE": base_url + "/v1",
            "AIDER_MODEL": "openai/standin",
            # litellm's model price map from its package, not fetched from the network at import
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
    if cli == "claude":
        return {
            "ANTHROPIC_API_KEY": STANDIN_API_KEY,
            "ANTHROPIC_BASE_URL": base_url,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
    raise ValueError(f"no stand-in settings for the CLI {cli!r} (known: {', '.join(REAL_CLIS)})")


def seed_home(cli: str, home: Path, base_url: str = "") -> None:
    """Write the files ``cli`` needs in ``home`` to start offline without questions (``base_url``: the
    stand-in's, for a CLI that reads it from a file)."""
    if cli == "gemini":
        settings = {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        }
        _write(home / ".gemini" / "settings.json", settings)
    elif cli == "qwen":
        settings = {
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            # No memory sub-agent after each turn (it would write .qwen/memories for the next job to read).
            "memory": {"enableManagedAutoMemory": False, "enableManagedAutoDream": False},
        }
        _write(home / ".qwen" / "settings.json", settings)
    elif cli in ("codex", "codex-acp-linux-x64"):
        if not base_url:
            raise ValueError(f"{cli} reads the stand-in's URL from its config: give base_url")
        target = home / ".codex" / "config.toml"
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.write_text(codex_config(base_url, asks=cli == "codex-acp-linux-x64"))
    elif cli == "aider":
        # The stand-in's model is unknown to litellm: its context window, so aider neither warns nor asks.
        model: dict[str, object] = {
            "max_input_tokens": 128000,
            "max_output_tokens": 8192,
            "input_cost_per_token": 0,
            "output_cost_per_token": 0,
            "litellm_provider": "openai",
            "mode": "chat",
        }
        metadata: dict[str, object] = {"openai/standin": model}
        _write(home / ".aider.model.metadata.json", metadata)
    elif cli == "claude":
        # Onboarding done, the stand-in's key approved (its last 20 characters), as Claude Code records them.
        state = {
            "hasCompletedOnboarding": True,
            "customApiKeyResponses": {"approved": [STANDIN_API_KEY[-20:]], "rejected": []},
        }
        _write(home / ".claude.json", state)
    else:
        raise ValueError(f"no stand-in settings for the CLI {cli!r} (known: {', '.join(REAL_CLIS)})")


def codex_config(base_url: str, *, asks: bool) -> str:
    """Codex's ``config.toml`` pointing it at the stand-in at ``base_url``: a Responses-API provider (Codex
    refuses the chat API), no analytics, its own sandbox off (it cannot nest in the slot's bubblewrap sandbox,
    which contains it). ``asks`` (codex-acp): every command not known to be safe asks
    (``approval_policy = "untrusted"``), so the ACP permission policy decides; Codex 0.171 itself refuses that
    value, and its profiles choose their approval mode on the command line."""
    approval = 'approval_policy = "untrusted"\n' if asks else ""
    return (
        f'model = "standin"\nmodel_provider = "standin"\n{approval}'
        'sandbox_mode = "danger-full-access"\n\n[model_providers.standin]\nname = "AIPM model stand-in"\n'
        f'base_url = "{base_url}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n\n'
        "[analytics]\nenabled = false\n"
    )


def _write(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(data, indent=2) + "\n")


def standin_profile(
    profile: CliProfile,
    base_url: str,
    home: Path,
    cache: Path | None = None,
    *,
    workspace: Path | None = None,
) -> CliProfile:
    """``profile`` run unsandboxed against the stand-in: its CLI's variables, ``home`` seeded and used as
    ``HOME``, the pinned CLIs (under ``cache``, default the repository's) first on ``PATH``. With
    ``workspace`` (the CLI's working directory) the profile's own ``home_files`` are written over the
    stand-in's files as the agent does (JSON settings merged). ``ValueError`` for a CLI the stand-in has no
    settings for."""
    cli = Path(profile.argv[0]).name
    seed_home(cli, home, base_url)
    if workspace is not None:
        seed_profile_home(profile, home, workspace=str(workspace))
    env = (
        dict(profile.env)
        | client_env(cli, base_url)
        | {"HOME": str(home), "PATH": path_with_clis(cache=cache)}
    )
    return profile.model_copy(update={"env": env})
