"""The agent's secrets (GitHub credentials, agent API token) from Secrets Manager, with a short cache."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import boto3

from lambda_src.github.credentials import GitHubCredentials

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class SecretError(RuntimeError):
    pass


class JsonSecret:
    """The fields of a JSON-object secret; re-read at most every `max_age_s` (rotation-friendly)."""

    def __init__(
        self, secret_id: str, *, max_age_s: float = 300, client: SecretsManagerClient | None = None
    ) -> None:
        self._secret_id = secret_id
        self._max_age_s = max_age_s
        self._client = client or boto3.client("secretsmanager")
        self._lock = threading.Lock()
        self._fields: dict[str, Any] | None = None
        self._read_at = 0.0

    def __call__(self) -> dict[str, Any]:
        """The secret's fields. Raises SecretError (without the secret's content) if it cannot be read."""
        with self._lock:
            if self._fields is None or time.monotonic() - self._read_at > self._max_age_s:
                self._fields = self._read()
                self._read_at = time.monotonic()
            return self._fields

    def _read(self) -> dict[str, Any]:
        try:
            raw = self._client.get_secret_value(SecretId=self._secret_id)["SecretString"]
            fields = json.loads(raw)
        except (KeyError, ValueError) as err:
            raise SecretError(f"secret {self._secret_id} is not a JSON object") from err
        except self._client.exceptions.ResourceNotFoundException as err:
            raise SecretError(f"secret {self._secret_id} does not exist") from err
        if not isinstance(fields, dict):
            raise SecretError(f"secret {self._secret_id} is not a JSON object")
        return fields

    def __repr__(self) -> str:
        return f"JsonSecret({self._secret_id!r})"


class TokenSecret:
    """The `token` field of a JSON secret (the agent API token), cached like JsonSecret."""

    def __init__(
        self, secret_id: str, *, max_age_s: float = 300, client: SecretsManagerClient | None = None
    ) -> None:
        self._secret = JsonSecret(secret_id, max_age_s=max_age_s, client=client)

    def __call__(self) -> str:
        """The current token. Raises SecretError (without the secret's content) if it cannot be read."""
        token = self._secret().get("token")
        if not isinstance(token, str) or not token:
            raise SecretError(f"{self._secret!r} has no 'token' field")
        return token

    def __repr__(self) -> str:
        return f"TokenSecret({self._secret!r})"


def github_credentials(
    api_url: str, secret_id: str, *, client: SecretsManagerClient | None = None
) -> GitHubCredentials:
    """The GitHub token provider for the agent's API calls and git, in both secret formats the Lambda takes:
    `{"token": ...}`, or a GitHub App `{"appId", "installationId", "privateKey"}` whose installation tokens
    are minted and renewed before they expire (needs `cryptography`, in the `agent` extra)."""
    return GitHubCredentials(api_url, JsonSecret(secret_id, client=client))
