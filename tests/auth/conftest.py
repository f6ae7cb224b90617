"""Fixtures of the sign-in tests: the OIDC stand-in over a user pool in the real moto server."""

from __future__ import annotations

import contextlib
import secrets
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aipm.cli import login
from aipm.cli.login import SignInSettings, Tokens, callback_url
from aipm.local.oidc import OidcStandIn, UserPool, create_pool
from aipm.local.oidc.scripted import ScriptedBrowser

APP_ORIGIN = "http://127.0.0.1:9"  # the console's origin as registered on the app client (nothing listens)
TEMPORARY_PASSWORD = "Temp-Passw0rd!x1"
NEW_PASSWORD = "New-Passw0rd!xyz9"


@dataclass
class Pool:
    stand_in: OidcStandIn
    idp: Any
    client_id: str

    @property
    def settings(self) -> SignInSettings:
        return SignInSettings(self.stand_in.domain, self.client_id)

    @property
    def pool_id(self) -> str:
        return self.stand_in.pool.user_pool_id

    def create_user(self, email: str, *, groups: tuple[str, ...] = ()) -> None:
        """AdminCreateUser with a temporary password, e-mail delivery, as the README's runbook does."""
        self.idp.admin_create_user(
            UserPoolId=self.pool_id,
            Username=email,
            TemporaryPassword=TEMPORARY_PASSWORD,
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
            DesiredDeliveryMediums=["EMAIL"],
        )
        for group in groups:
            with contextlib.suppress(self.idp.exceptions.GroupExistsException):
                self.idp.create_group(UserPoolId=self.pool_id, GroupName=group)
            self.idp.admin_add_user_to_group(UserPoolId=self.pool_id, Username=email, GroupName=group)


@pytest.fixture(scope="package")
def pool(aws_client_factory: Callable[[str], Any], aws_endpoint: str) -> Iterator[Pool]:
    idp = aws_client_factory("cognito-idp")
    pool_id, client_id = create_pool(
        idp,
        f"auth-{secrets.token_hex(3)}",
        callback_urls=[f"{APP_ORIGIN}/", callback_url()],
        logout_urls=[f"{APP_ORIGIN}/"],
        id_token_s=3600,
    )
    stand_in = OidcStandIn(UserPool(pool_id, endpoint_url=aws_endpoint, region="us-east-1")).start()
    try:
        yield Pool(stand_in, idp, client_id)
    finally:
        stand_in.stop()


def code_flow(pool: Pool, browser: ScriptedBrowser, **extra: str) -> tuple[dict[str, list[str]], str]:
    """Walk the sign-in pages with `browser`; returns (the callback's query, the PKCE verifier)."""
    verifier, challenge = login.pkce_pair()
    url = login.authorize_url(pool.settings, redirect_uri=callback_url(), state="st", challenge=challenge)
    if extra:
        url += "&" + urllib.parse.urlencode(extra)
    landed = browser.sign_in(url)
    assert landed.startswith(callback_url() + "?"), landed
    return urllib.parse.parse_qs(urllib.parse.urlsplit(landed).query), verifier


def first_sign_in(pool: Pool, email: str, groups: tuple[str, ...] = ()) -> tuple[ScriptedBrowser, Tokens]:
    """Create `email` with a temporary password and sign them in for the first time; (browser, tokens)."""
    pool.create_user(email, groups=groups)
    browser = ScriptedBrowser(email, TEMPORARY_PASSWORD, new_password=NEW_PASSWORD)
    query, verifier = code_flow(pool, browser)
    assert query["state"] == ["st"]
    code = query["code"][0]
    return browser, login.exchange_code(
        pool.settings, code=code, redirect_uri=callback_url(), verifier=verifier
    )
