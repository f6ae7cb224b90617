"""GitHub credentials from a secret: a token, or a GitHub App whose installation tokens are minted and cached.

The secret is JSON, either `{"token": "..."}` (a fine-grained or classic token, or an installation token
kept fresh elsewhere) or `{"appId": ..., "installationId": ..., "privateKey": "<PEM>"}`.
An App's installation token lives an hour; it is cached in the container and renewed `refresh_margin_s` before
it expires, so a warm Lambda mints one about once an hour. Tokens are never logged.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import urllib3

from lambda_src.github.errors import GitHubAuthError, GitHubError
from lambda_src.github.transport import DEFAULT_RETRY_POLICY, RetryPolicy, Transport

JWT_LIFETIME_S = 540  # GitHub accepts at most 10 minutes
JWT_BACKDATE_S = 60  # GitHub's advice for clock drift


class GitHubCredentialsInvalid(GitHubError):
    """The secret holds neither a token nor complete GitHub App credentials."""


@dataclass(frozen=True)
class AppCredentials:
    app_id: str
    installation_id: str
    private_key_pem: str

    @classmethod
    def from_secret(cls, fields: Mapping[str, Any]) -> AppCredentials:
        values = [fields.get(name) for name in ("appId", "installationId", "privateKey")]
        if not all(isinstance(v, str | int) and str(v).strip() for v in values):
            raise GitHubCredentialsInvalid(
                "the GitHub secret has neither 'token' nor appId/installationId/privateKey"
            )
        app_id, installation_id, key = (str(v).strip() for v in values)
        return cls(app_id=app_id, installation_id=installation_id, private_key_pem=key)


@dataclass(frozen=True)
class _CachedToken:
    app: AppCredentials
    token: str
    expires_at: float


class GitHubCredentials:
    """A token provider for GitHubClient (call it for the current token). Thread-safe.

    `read_secret` returns the secret's fields (it does its own caching, e.g. Powertools parameters); its
    errors propagate. Minting an App token raises GitHubAuthError (rejected), GitHubUnavailable, or
    GitHubCredentialsInvalid (a malformed secret or key).
    """

    def __init__(
        self,
        api_url: str,
        read_secret: Callable[[], Mapping[str, Any]],
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        refresh_margin_s: float = 300.0,
        http: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._read_secret = read_secret
        self._timeout_s = timeout_s
        self._retry = retry
        self._refresh_margin_s = refresh_margin_s
        self._http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: _CachedToken | None = None

    def __repr__(self) -> str:
        return f"GitHubCredentials(api_url={self._api_url!r})"

    def __call__(self) -> str:
        fields = self._read_secret()
        token = fields.get("token")
        if isinstance(token, str) and token:
            return token
        app = AppCredentials.from_secret(fields)
        with self._lock:
            cached = self._cached
            if (
                cached is None
                or cached.app != app
                or cached.expires_at - self._refresh_margin_s <= self._clock()
            ):
                cached = self._cached = self._mint(app)
            return cached.token

    def _mint(self, app: AppCredentials) -> _CachedToken:
        """POST /app/installations/{id}/access_tokens, authenticated as the App by a short-lived JWT."""
        jwt = app_jwt(app, now=self._clock())
        transport = Transport(
            lambda: jwt, timeout_s=self._timeout_s, retry=self._retry, http=self._http, sleep=time.sleep
        )
        url = f"{self._api_url}/app/installations/{app.installation_id}/access_tokens"
        response = transport.request("POST", url, {})
        if response.status != 201 or not isinstance(response.data, dict):
            raise GitHubAuthError(
                f"GitHub refused an installation token for app {app.app_id}: "
                f"{response.status} {response.message}",
                status=response.status,
            )
        token, expires = response.data.get("token"), response.data.get("expires_at")
        if not isinstance(token, str) or not isinstance(expires, str):
            raise GitHubAuthError("GitHub's installation token answer has no token or expiry", status=201)
        expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
        return _CachedToken(app=app, token=token, expires_at=expires_at)


def app_jwt(app: AppCredentials, *, now: float) -> str:
    """The RS256 JSON Web Token that authenticates as the App (issued `JWT_BACKDATE_S` in the past)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        key = serialization.load_pem_private_key(app.private_key_pem.encode(), password=None)
    except (ValueError, TypeError) as err:
        raise GitHubCredentialsInvalid("the GitHub App private key is not a PEM private key") from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GitHubCredentialsInvalid("the GitHub App private key is not an RSA key")
    issued = int(now) - JWT_BACKDATE_S
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"iat": issued, "exp": issued + JWT_LIFETIME_S, "iss": app.app_id}
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64url(signature)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
