"""The Lambdas' configuration: one validated model, read from the environment once per container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigurationError(RuntimeError):
    """The function was deployed with missing or invalid settings."""


class ApiSettings(BaseModel):
    """The API Lambda's environment (names upper-cased): see docs/architecture.md."""

    model_config = ConfigDict(frozen=True)

    records_table: str = Field(min_length=3)
    idempotency_table: str = Field(min_length=3)
    github_secret_id: str = Field(min_length=1)
    github_api_url: str = "https://api.github.com"
    # "graphql": 2 round trips per delegation; "rest": the prototype's 4 calls (GitHub Enterprise Server
    # releases without createCommitOnBranch, and the benchmark's baseline).
    github_protocol: Literal["graphql", "rest"] = "graphql"
    allowed_owners: frozenset[str] = frozenset()
    job_max_attempts: int = Field(default=3, ge=1, le=10)
    record_ttl_days: int = Field(default=90, ge=1)
    github_timeout_s: float = Field(default=8.0, gt=0)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    worker_stale_s: float = Field(default=60.0, gt=0)
    # GitHub webhooks (POST /api/github/webhook): the secret (JSON {"secret": ...}; unset: the route answers
    # 503), the handle a comment mentions, the label that delegates an issue, who may trigger a job (the
    # comment's `author_association`), and how long a delivery id is remembered.
    github_webhook_secret_id: str | None = None
    webhook_handle: str = Field(default="@aipm", pattern=r"^@[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
    webhook_label: str = Field(default="aipm", min_length=1, max_length=50)
    webhook_associations: frozenset[str] = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
    webhook_delivery_ttl_s: int = Field(default=7 * 86_400, ge=3600)
    webhook_repo_jobs_per_hour: int = Field(default=60, ge=1, le=10_000)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ApiSettings:
        """Read RECORDS_TABLE, GITHUB_SECRET_ID, … Raises ConfigurationError naming what is wrong."""
        raw: dict[str, object] = {
            name.lower(): value
            for name, value in environ.items()
            if name.lower() in cls.model_fields and value != ""
        }
        if isinstance(raw.get("allowed_owners"), str):
            raw["allowed_owners"] = frozenset(
                o.strip().lower() for o in str(raw["allowed_owners"]).split(",") if o.strip()
            )
        if isinstance(raw.get("webhook_associations"), str):
            raw["webhook_associations"] = frozenset(
                a.strip().upper() for a in str(raw["webhook_associations"]).split(",") if a.strip()
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            fields = ", ".join(str(e["loc"][0]).upper() for e in err.errors())
            raise ConfigurationError(f"invalid or missing settings: {fields}") from err


class ReconcileSettings(BaseModel):
    """The reconciler Lambda's environment: the records table and GitHub as the API Lambda has them, and
    RECONCILE_GRACE_S: how old a pending intent must be before it is settled (longer than the API Lambda's
    timeout, so no request that could still finish it is running)."""

    model_config = ConfigDict(frozen=True)

    records_table: str = Field(min_length=3)
    github_secret_id: str = Field(min_length=1)
    github_api_url: str = "https://api.github.com"
    github_timeout_s: float = Field(default=8.0, gt=0)
    job_max_attempts: int = Field(default=3, ge=1, le=10)
    record_ttl_days: int = Field(default=90, ge=1)
    reconcile_grace_s: float = Field(default=300.0, ge=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ReconcileSettings:
        raw = {
            name.lower(): value
            for name, value in environ.items()
            if name.lower() in cls.model_fields and value != ""
        }
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            fields = ", ".join(str(e["loc"][0]).upper() for e in err.errors())
            raise ConfigurationError(f"invalid or missing settings: {fields}") from err

    def api_settings(self) -> ApiSettings:
        """The settings the delegation service reads (the idempotency table is not used when settling)."""
        return ApiSettings(
            records_table=self.records_table,
            idempotency_table="unused-by-the-reconciler",
            github_secret_id=self.github_secret_id,
            github_api_url=self.github_api_url,
            github_timeout_s=self.github_timeout_s,
            job_max_attempts=self.job_max_attempts,
            record_ttl_days=self.record_ttl_days,
        )


class DispatchSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    agent_endpoint_param: str = Field(min_length=1)
    agent_token_secret_id: str = Field(min_length=1)
    nudge_timeout_s: float = Field(default=2.0, gt=0)
    records_table: str | None = None  # when set, nudge the agents whose heartbeats show a free slot
    worker_stale_s: float = Field(default=60, gt=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DispatchSettings:
        raw = {name.lower(): value for name, value in environ.items() if name.lower() in cls.model_fields}
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            fields = ", ".join(str(e["loc"][0]).upper() for e in err.errors())
            raise ConfigurationError(f"invalid or missing settings: {fields}") from err
