"""The CLI's configuration: named profiles in a TOML file, environment variables, then flags (flags win).

The file is `$AIPM_CONFIG`, else `$XDG_CONFIG_HOME/aipm/config.toml` (default `~/.config/aipm/config.toml`):

    default_profile = "prod"          # optional

    [profiles.local]                  # written by `aipm local`
    api_url = "http://127.0.0.1:8765"
    token = "..."

    [profiles.prod]
    api_url = "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    region = "eu-west-1"
    stack = "Aipm-prod"
    output = "table"

The profile used is `--profile`, else `AIPM_PROFILE`, else `default_profile`, else `local` when the file has
one. The same name is the sign-in profile of `aipm login` (its tokens are kept apart, see aipm.cli.login); a
name the file does not hold has no settings of its own. Environment variables (`AIPM_API_URL`,
`AIPM_API_TOKEN`, `AIPM_OUTPUT`, `AIPM_STACK`, `AWS_REGION`) win over the profile. Loaded once per command
through pydantic-settings; an unknown key or a bad value is an error naming the file and the key. A file
holding a token must not be readable by others (it is written 0600).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aipm.cli.errors import usage_error

OutputFormat = Literal["table", "json", "yaml"]
LOCAL_PROFILE = "local"


def config_path() -> Path:
    """Where the configuration file is (it need not exist)."""
    explicit = os.environ.get("AIPM_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aipm" / "config.toml"


class Profile(BaseModel):
    """One named profile of the configuration file."""

    model_config = ConfigDict(extra="forbid")

    api_url: str | None = None
    token: str | None = None
    output: OutputFormat | None = None
    stack: str | None = None
    region: str | None = None
    aws_profile: str | None = None


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_profile: str | None = None
    profiles: dict[str, Profile] = Field(default_factory=dict)


def read_config(path: Path | None = None) -> ConfigFile:
    """The configuration file, validated (an absent file is an empty configuration). Raises CliError."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ConfigFile()
    except OSError as err:
        raise usage_error(f"cannot read the configuration file {path}: {err.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise usage_error(f"the configuration file {path} is not valid TOML: {err}") from None
    try:
        config = ConfigFile.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise usage_error(f"the configuration file {path} is invalid: {problems}") from None
    if any(p.token for p in config.profiles.values()) and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise usage_error(
            f"the configuration file {path} holds a token but others can read it",
            hint=f"chmod 600 {path}",
        )
    return config


def choose_profile(config: ConfigFile, requested: str | None) -> tuple[str | None, Profile]:
    """The profile's name and content: `requested` (flag or AIPM_PROFILE), the default, or `local`."""
    name = requested or os.environ.get("AIPM_PROFILE") or config.default_profile
    if name is None:
        name = LOCAL_PROFILE if LOCAL_PROFILE in config.profiles else None
    if name is None:
        return None, Profile()
    # A name the file does not hold is still a profile: a sign-in of `aipm login --profile NAME` alone.
    return name, config.profiles.get(name, Profile())


class Settings(BaseSettings):
    """Effective settings: environment first, then the chosen profile, then defaults."""

    model_config = SettingsConfigDict(env_prefix="AIPM_", extra="ignore", populate_by_name=True)

    api_url: str | None = None
    token: str | None = Field(default=None, validation_alias=AliasChoices("AIPM_API_TOKEN"))
    output: OutputFormat = "table"
    stack: str = "Aipm-prod"
    region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_profile: str | None = Field(default=None, validation_alias=AliasChoices("AWS_PROFILE"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The profile arrives as init kwargs but must lose to the environment.
        return (env_settings, init_settings)


def load_settings(profile: str | None) -> tuple[str | None, Settings]:
    """(profile name, settings) for this command. Raises CliError naming the file and key at fault."""
    name, chosen = choose_profile(read_config(), profile)
    values = {k: v for k, v in chosen.model_dump().items() if v is not None}
    try:
        return name, Settings(**values)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise usage_error(f"invalid setting: {problems}") from None


def save_profile(name: str, values: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write (or replace) profile `name` in the configuration file, keeping the rest; the file is 0600."""
    import tomli_w

    path = path or config_path()
    config = read_config(path)
    config.profiles[name] = Profile.model_validate(dict(values))
    data = config.model_dump(exclude_none=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump(data, f)
    tmp.replace(path)
    return path
