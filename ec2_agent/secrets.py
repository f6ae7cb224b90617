"""Reads the agent's secrets (GitHub token, agent API token) from Secrets Manager, with a short cache."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class SecretError(RuntimeError):
    pass


class TokenSecret:
    """The `token` field of a JSON secret; re-read at most every `max_age_s` (rotation-friendly)."""

    def __init__(
        self, secret_id: str, *, max_age_s: float = 300, client: SecretsManagerClient | None = None
    ) -> None:
        self._secret_id = secret_id
        self._max_age_s = max_age_s
        self._client = client or boto3.client("secretsmanager")
        self._lock = threading.Lock()
        self._value: str | None = None
        self._read_at = 0.0

    def __call__(self) -> str:
        """The current token. Raises SecretError (without the secret's content) if it cannot be read."""
        with self._lock:
            if self._value is None or time.monotonic() - self._read_at > self._max_age_s:
                self._value = self._read()
                self._read_at = time.monotonic()
            return self._value

    def _read(self) -> str:
        try:
            raw = self._client.get_secret_value(SecretId=self._secret_id)["SecretString"]
            return str(json.loads(raw)["token"])
        except (KeyError, ValueError) as err:
            raise SecretError(f"secret {self._secret_id} is not JSON with a 'token' field") from err
        except self._client.exceptions.ResourceNotFoundException as err:
            raise SecretError(f"secret {self._secret_id} does not exist") from err

    def __repr__(self) -> str:
        return f"TokenSecret({self._secret_id!r})"
