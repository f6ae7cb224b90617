"""GitHub credentials from the secret: a token as is, or a GitHub App's installation token, minted and cached.

The forge does not implement GitHub Apps, so the installation-token endpoint here is a small HTTP server that
does what GitHub does with the request: it checks the RS256 JWT against the App's public key and answers
`{token, expires_at}`; the minted token is then used against the real forge.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from aipm.local.forge import Forge
from lambda_src.github import GitHubClient
from lambda_src.github.credentials import GitHubCredentials, GitHubCredentialsInvalid
from lambda_src.github.errors import GitHubAuthError
from tests.forge.support import OWNER, TOKEN, Repo
from tests.github.conftest import FAST_RETRY

APP_ID = "424242"
INSTALLATION = "99"


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class AppTokenEndpoint:
    """POST /app/installations/{id}/access_tokens, checking the JWT as GitHub does."""

    def __init__(self, public_key: rsa.RSAPublicKey, token: str, lifetime: timedelta) -> None:
        self.minted = 0
        self.claims: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                jwt = self.headers.get("Authorization", "").removeprefix("Bearer ")
                try:
                    header, claims, signature = jwt.split(".")
                    public_key.verify(
                        _b64decode(signature),
                        f"{header}.{claims}".encode(),
                        padding.PKCS1v15(),
                        hashes.SHA256(),
                    )
                except (ValueError, InvalidSignature):
                    self._send(401, {"message": "A JSON web token could not be decoded"})
                    return
                if self.path != f"/app/installations/{INSTALLATION}/access_tokens":
                    self._send(404, {"message": "Not Found"})
                    return
                endpoint.minted += 1
                endpoint.claims.append(json.loads(_b64decode(claims)))
                expires = (datetime.now(UTC) + lifetime).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._send(201, {"token": token, "expires_at": expires})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def endpoint(app_key: rsa.RSAPrivateKey) -> Iterator[AppTokenEndpoint]:
    served = AppTokenEndpoint(app_key.public_key(), TOKEN, timedelta(hours=1))
    yield served
    served.server.shutdown()


def app_secret(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {"appId": int(APP_ID), "installationId": INSTALLATION, "privateKey": _pem(key)}


def test_a_token_secret_is_used_as_is() -> None:
    credentials = GitHubCredentials("http://unused.invalid", lambda: {"token": "ghp_plain"})
    assert credentials() == "ghp_plain"


def test_an_app_installation_token_is_minted_once_and_works_against_github(
    forge: Forge, repo: Repo, endpoint: AppTokenEndpoint, app_key: rsa.RSAPrivateKey
) -> None:
    credentials = GitHubCredentials(endpoint.url, lambda: app_secret(app_key), retry=FAST_RETRY)
    client = GitHubClient(forge.api_url, credentials, retry=FAST_RETRY)

    assert client.get_default_branch(OWNER, repo.name) == "main"
    assert client.get_default_branch(OWNER, repo.name) == "main"

    assert endpoint.minted == 1
    [claims] = endpoint.claims
    assert claims["iss"] == APP_ID and 0 < claims["exp"] - claims["iat"] <= 600


def test_an_expiring_token_is_renewed(app_key: rsa.RSAPrivateKey) -> None:
    endpoint = AppTokenEndpoint(app_key.public_key(), "ghs_short", timedelta(minutes=4))
    try:
        credentials = GitHubCredentials(endpoint.url, lambda: app_secret(app_key), refresh_margin_s=300)
        assert credentials() == credentials() == "ghs_short"
        assert endpoint.minted == 2  # four minutes left is inside the five-minute margin
    finally:
        endpoint.server.shutdown()


def test_a_token_github_refuses_is_an_auth_error(endpoint: AppTokenEndpoint) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    credentials = GitHubCredentials(endpoint.url, lambda: app_secret(other_key), retry=FAST_RETRY)

    with pytest.raises(GitHubAuthError):
        credentials()


@pytest.mark.parametrize(
    "secret",
    [{}, {"appId": 1, "installationId": 2}, {"appId": 1, "installationId": 2, "privateKey": "not a key"}],
    ids=["empty", "no-key", "bad-key"],
)
def test_an_unusable_secret_is_reported_as_such(secret: dict[str, Any]) -> None:
    with pytest.raises(GitHubCredentialsInvalid):
        GitHubCredentials("http://unused.invalid", lambda: secret)()
