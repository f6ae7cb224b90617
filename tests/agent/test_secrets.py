"""The agent reads its GitHub secret in both formats the Lambda takes (moto Secrets Manager): a token,
or a GitHub App whose installation token it mints against the App-token endpoint stand-in (it checks the
RS256 JWT as GitHub does, see tests/github/test_credentials.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ec2_agent.secrets import SecretError, TokenSecret, github_credentials
from tests.github.test_credentials import AppTokenEndpoint, app_secret


@pytest.fixture
def secrets(aws_client_factory: Any) -> Any:
    return aws_client_factory("secretsmanager")


def put(secrets: Any, value: object) -> str:
    name = f"aipm/test/{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=name, SecretString=json.dumps(value))
    return name


@pytest.fixture
def app_endpoint() -> Iterator[tuple[rsa.RSAPrivateKey, AppTokenEndpoint]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    served = AppTokenEndpoint(key.public_key(), "ghs_installation_token", timedelta(hours=1))
    yield key, served
    served.server.shutdown()


def test_a_github_app_secret_gives_the_agent_an_installation_token(
    secrets: Any, app_endpoint: tuple[rsa.RSAPrivateKey, AppTokenEndpoint]
) -> None:
    key, endpoint = app_endpoint
    provider = github_credentials(endpoint.url, put(secrets, app_secret(key)), client=secrets)
    assert provider() == "ghs_installation_token"
    assert provider() == "ghs_installation_token"
    assert endpoint.minted == 1  # cached until shortly before it expires


def test_a_token_secret_is_used_as_is(secrets: Any) -> None:
    provider = github_credentials("http://unused.invalid", put(secrets, {"token": "ghp_x"}), client=secrets)
    assert provider() == "ghp_x"


def test_the_agent_token_secret_needs_its_token_field(secrets: Any) -> None:
    assert TokenSecret(put(secrets, {"token": "t"}), client=secrets)() == "t"
    with pytest.raises(SecretError, match="has no 'token' field"):
        TokenSecret(put(secrets, {"appId": 1}), client=secrets)()
    with pytest.raises(SecretError, match="not a JSON object"):
        TokenSecret(put(secrets, ["token"]), client=secrets)()
    with pytest.raises(SecretError, match="does not exist"):
        TokenSecret("aipm/test/missing", client=secrets)()
