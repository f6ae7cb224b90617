"""Sign-in for the local stack: the user pool in moto, the OIDC stand-in in front of it, and a demo person.

What the CDK app creates in the cloud (a user pool with TOTP MFA required, a public app client with the
authorization-code flow whose callback URLs are the console's origin and the CLI's loopback URL), created
in the local emulator; the stand-in (`aipm.local.oidc`) serves managed login for it. The demo person is
created as ops create people (AdminCreateUser with a temporary password) and signs in for the first time
through the real pages (new password, authenticator enrolment) with a scripted browser, so tests, CI and
`make demo` get ID tokens without anyone at a keyboard; `id_token()` refreshes theirs when it is due.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

from aipm.cli.login import (
    DEFAULT_PORT,
    SignInSettings,
    Tokens,
    authorize_url,
    callback_url,
    exchange_code,
    pkce_pair,
    refresh_tokens,
)
from aipm.local.oidc import OidcStandIn, UserPool, create_pool
from aipm.local.oidc.scripted import ScriptedBrowser
from lambda_src.identity import ADMIN_GROUP

DEMO_EMAIL = "demo@example.com"
POOL_NAME = "aipm-local"


def new_password() -> str:
    """A password that meets the pool's policy (12+ characters, upper, lower, digit, symbol)."""
    return f"{secrets.token_urlsafe(12)}Aa1!"


@dataclass(frozen=True)
class Person:
    """Someone who can sign in: e-mail, password, and the key of their authenticator app."""

    email: str
    password: str
    totp_secret: str

    @property
    def otpauth_uri(self) -> str:
        import pyotp

        return pyotp.TOTP(self.totp_secret).provisioning_uri(name=self.email, issuer_name="AIPM local")


class LocalSignIn:
    """The local stack's sign-in. `start()` creates the pool and the demo person and signs them in."""

    def __init__(
        self,
        idp: Any,
        *,
        endpoint_url: str,
        region: str,
        app_origin: str,
        id_token_s: int = 3600,
        cli_port: int = DEFAULT_PORT,
    ) -> None:
        self._idp = idp
        self._endpoint_url = endpoint_url
        self._region = region
        self.app_origin = app_origin
        self._id_token_s = id_token_s
        self.cli_port = cli_port
        self.stand_in: OidcStandIn | None = None
        self.client_id = ""
        self.demo: Person | None = None
        self._tokens: Tokens | None = None
        self._lock = threading.Lock()

    def start(self) -> LocalSignIn:
        pool_id, self.client_id = create_pool(
            self._idp,
            POOL_NAME,
            callback_urls=[f"{self.app_origin}/", callback_url(self.cli_port)],
            logout_urls=[f"{self.app_origin}/"],
            id_token_s=self._id_token_s,
        )
        pool = UserPool(pool_id, endpoint_url=self._endpoint_url, region=self._region)
        self.stand_in = OidcStandIn(pool).start()
        self.demo, self._tokens = self.first_sign_in(DEMO_EMAIL, groups=(ADMIN_GROUP,))
        return self

    def stop(self) -> None:
        if self.stand_in is not None:
            self.stand_in.stop()
            self.stand_in = None

    @property
    def settings(self) -> SignInSettings:
        assert self.stand_in is not None
        return SignInSettings(self.stand_in.domain, self.client_id)

    @property
    def issuer(self) -> str:
        assert self.stand_in is not None
        return self.stand_in.issuer

    def console_config(self) -> dict[str, str]:
        """The `auth` part of the console's config.json (what the CDK app writes for Cognito)."""
        assert self.stand_in is not None
        return {"domain": self.stand_in.domain, "issuer": self.issuer, "clientId": self.client_id}

    def create_person(self, email: str, *, groups: tuple[str, ...] = ()) -> str:
        """AdminCreateUser with a temporary password (e-mail delivery, as in the cloud); returns it."""
        assert self.stand_in is not None
        pool_id = self.stand_in.pool.user_pool_id
        temporary = new_password()
        self._idp.admin_create_user(
            UserPoolId=pool_id,
            Username=email,
            TemporaryPassword=temporary,
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
            DesiredDeliveryMediums=["EMAIL"],
        )
        for group in groups:
            with contextlib.suppress(self._idp.exceptions.GroupExistsException):
                self._idp.create_group(UserPoolId=pool_id, GroupName=group)
            self._idp.admin_add_user_to_group(UserPoolId=pool_id, Username=email, GroupName=group)
        return temporary

    def first_sign_in(self, email: str, *, groups: tuple[str, ...] = ()) -> tuple[Person, Tokens]:
        """Create `email` and sign them in for the first time through the pages (new password, TOTP
        enrolment); returns the person (with their authenticator key) and their tokens."""
        temporary = self.create_person(email, groups=groups)
        browser = ScriptedBrowser(email, temporary, new_password=new_password())
        tokens = self.sign_in(browser)
        assert browser.totp_secret is not None
        return Person(email, browser.password, browser.totp_secret), tokens

    def sign_in(self, browser: ScriptedBrowser) -> Tokens:
        """The authorization-code flow with PKCE, the pages walked by `browser`; returns the tokens."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        redirect = callback_url(self.cli_port)
        landed = browser.sign_in(
            authorize_url(self.settings, redirect_uri=redirect, state=state, challenge=challenge)
        )
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(landed).query)
        if query.get("state") != [state] or "code" not in query:
            raise RuntimeError(f"the sign-in came back without a code: {landed}")
        return exchange_code(self.settings, code=query["code"][0], redirect_uri=redirect, verifier=verifier)

    def id_token(self) -> str:
        """A valid ID token of the demo person, refreshed with their refresh token when it is due."""
        return self.tokens().id_token

    def tokens(self) -> Tokens:
        """The demo person's tokens (ID, access, refresh), refreshed when due (what `aipm login` caches)."""
        with self._lock:
            assert self._tokens is not None
            if not self._tokens.fresh():
                self._tokens = refresh_tokens(self.settings, self._tokens.refresh_token)
            return self._tokens
