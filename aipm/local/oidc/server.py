"""The local stand-in for Cognito managed login: an OAuth 2.0 / OpenID Connect authorization server.

Built on Authlib's authorization server (authorization code grant with PKCE, refresh token grant, RFC 7009
revocation, OpenID Connect ID tokens) in a Flask app, over the user pool that moto emulates
(`aipm.local.oidc.userpool`). Paths and answers follow Cognito's, so the console's and the CLI's sign-in code
runs unchanged against both (sources: Cognito developer guide, "User pool endpoints and managed login
reference": /oauth2/authorize, /oauth2/token, /oauth2/revoke, /logout; "Understanding the ID token" and
"Understanding the access token" for the claims):

| path (domain = the stand-in's base URL)   | what                                                          |
|-------------------------------------------|---------------------------------------------------------------|
| GET  /oauth2/authorize                    | code flow only; PKCE S256 required; a signed-in browser gets  |
|                                           | its code at once, anyone else the sign-in page                |
| GET/POST /login                           | sign-in: password → new password (temporary one) → TOTP       |
|                                           | enrolment (otpauth URI) → TOTP code                           |
| POST /oauth2/token                        | authorization_code (+ code_verifier), refresh_token; public    |
|                                           | client (client_id, no secret); id_token RS256                 |
| POST /oauth2/revoke                       | revokes a refresh token (RFC 7009)                            |
| GET  /logout?client_id&logout_uri         | ends the sign-in session, redirects to a registered URL       |
| GET  /<pool id>/.well-known/jwks.json     | the signing key (the issuer is `<domain>/<pool id>`)          |
| GET  /<pool id>/.well-known/openid-configuration | discovery                                              |

Tokens: the ID token carries Cognito's claims (`sub`, `email`, `email_verified`, `cognito:username`,
`cognito:groups` when the person is in a group, `token_use: "id"`, `aud` = the app client id as a string,
`iss`, `auth_time`, `iat`, `exp`, `jti`, `origin_jti`, `at_hash`, `nonce` when asked). The access token is a
JWT with `token_use: "access"`, `client_id`, `scope`, `username`. Refresh tokens are opaque, are not rotated
(Cognito's default) and keep the original `auth_time`. Lifetimes come from the app client's
IdTokenValidity / AccessTokenValidity / RefreshTokenValidity, as in Cognito.

Differences from Cognito, on purpose: everything lives in this process's memory (a restart signs everyone
out and forgets TOTP enrolments); no userInfo endpoint, no hosted sign-up, no "forgot password".
"""

from __future__ import annotations

import html
import logging
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyotp
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import grants as oidc_grants
from flask import Flask, Response, current_app, g, redirect, request, session
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response as HttpResponse

from aipm.local.oidc.userpool import AppClient, PoolUser, SignInRefused, Step, UserPool

log = logging.getLogger(__name__)

AUTH_SESSION_S = 180  # Cognito's default AuthSessionValidity: 3 minutes to finish a sign-in
AUTHORIZATION_CODE_S = 300  # Cognito's authorization codes are valid for 5 minutes
MAX_CODE_ATTEMPTS = 5  # wrong TOTP codes before the sign-in must start again
TOTP_ISSUER = "AIPM local"
SESSION_COOKIE = "aipm-local-login"


# -- the models Authlib works on -------------------------------------------------------------------------


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]
    """A public app client (no secret) as the pool describes it."""

    app: AppClient

    def get_client_id(self) -> str:
        return self.app.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.app.callback_urls[0] if self.app.callback_urls else None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = self.app.scopes
        if not scope:
            return " ".join(allowed)
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.app.callback_urls  # exact match, as Cognito

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "code" in self.app.flows

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token") and "code" in self.app.flows


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    username: str
    auth_time: int
    code_challenge: str
    code_challenge_method: str
    nonce: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class RefreshToken:
    token: str
    client_id: str
    username: str
    scope: str
    auth_time: int
    origin_jti: str
    expires_at: float
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, int(self.expires_at - time.time()))

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked


@dataclass
class SignIn:
    """One sign-in in progress (the hidden `tx` of the pages), bound to the authorize request."""

    authorize_query: str
    client_id: str
    created: float = field(default_factory=time.monotonic)
    step: Step | None = None
    sub: str = ""
    pending_secret: str = ""
    wrong_codes: int = 0
    totp_passed: bool = False


# -- the server ------------------------------------------------------------------------------------------


class OidcStandIn:
    """The stand-in for one user pool. `start()` serves it on 127.0.0.1 from a daemon thread."""

    def __init__(self, pool: UserPool, *, port: int = 0) -> None:
        self.pool = pool
        self.key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, private=True, auto_kid=True)
        self._lock = threading.Lock()
        self._codes: dict[str, AuthorizationCode] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._sign_ins: dict[str, SignIn] = {}
        self._totp: dict[str, str] = {}  # sub -> base32 secret of the enrolled authenticator
        self.app = self._build_app()
        self._httpd: BaseWSGIServer = make_server(
            "127.0.0.1", port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._thread: threading.Thread | None = None

    # -- addresses -------------------------------------------------------------------------------------

    @property
    def domain(self) -> str:
        """The managed-login base URL (Cognito: `https://<prefix>.auth.<region>.amazoncognito.com`)."""
        return f"http://127.0.0.1:{self._httpd.server_port}"

    @property
    def issuer(self) -> str:
        """The `iss` of every token (Cognito: `https://cognito-idp.<region>.amazonaws.com/<pool id>`)."""
        return f"{self.domain}/{self.pool.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/.well-known/jwks.json"

    def start(self) -> OidcStandIn:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="oidc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def enrolled_secret(self, sub: str) -> str | None:
        """The TOTP secret the person `sub` enrolled (what their authenticator app holds); for the local
        stack's scripted demo sign-in."""
        with self._lock:
            return self._totp.get(sub)

    # -- the Flask app ---------------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("aipm-local-oidc")
        app.secret_key = secrets.token_bytes(32)
        app.config.update(
            SESSION_COOKIE_NAME=SESSION_COOKIE,
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Lax",
            MAX_CONTENT_LENGTH=64 * 1024,
        )
        server = AuthorizationServer(app, query_client=self._client, save_token=self._save_token)
        server.register_token_generator("default", self._generate_token)
        server.register_grant(_CodeGrant, [_PkceS256(required=True), _OpenIdCode(self)])
        server.register_grant(_RefreshGrant, [_OpenIdToken(self)])
        server.register_endpoint(_Revocation)
        app.extensions["aipm_oidc"] = self
        self.server = server

        app.add_url_rule("/oauth2/authorize", view_func=self._authorize, methods=["GET"])
        app.add_url_rule("/login", view_func=self._login, methods=["POST"])
        app.add_url_rule("/oauth2/token", view_func=self._token, methods=["POST"])
        app.add_url_rule("/oauth2/revoke", view_func=self._revoke, methods=["POST"])
        app.add_url_rule("/logout", view_func=self._logout, methods=["GET"])
        pool = self.pool.user_pool_id
        app.add_url_rule(f"/{pool}/.well-known/jwks.json", view_func=self._jwks, methods=["GET"])
        app.add_url_rule(
            f"/{pool}/.well-known/openid-configuration", view_func=self._discovery, methods=["GET"]
        )
        app.after_request(_security_headers)
        return app

    # -- models for Authlib ----------------------------------------------------------------------------

    def _client(self, client_id: str) -> Client | None:
        app = self.pool.app_client(client_id) if client_id else None
        return Client(app) if app is not None else None

    def user(self, username: str) -> PoolUser | None:
        return self.pool.user(username)

    def save_code(self, code: AuthorizationCode) -> None:
        with self._lock:
            self._codes[code.code] = code

    def take_code(self, code: str, client_id: str) -> AuthorizationCode | None:
        with self._lock:
            found = self._codes.get(code)
        if found is None or found.client_id != client_id or time.time() >= found.expires_at:
            return None
        return found

    def delete_code(self, code: str) -> None:
        with self._lock:
            self._codes.pop(code, None)

    def refresh_token(self, token: str) -> RefreshToken | None:
        with self._lock:
            found = self._refresh.get(token)
        if found is None or found.is_expired() or found.is_revoked():
            return None
        return found

    def revoke(self, token: RefreshToken) -> None:
        with self._lock:
            token.revoked = True

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        refresh = token.get("refresh_token")
        if not refresh:
            return
        client: Client = req.client
        with self._lock:
            self._refresh[refresh] = RefreshToken(
                token=refresh,
                client_id=client.get_client_id(),
                username=req.user.username,
                scope=token.get("scope", ""),
                auth_time=g.auth_time,
                origin_jti=g.origin_jti,
                expires_at=time.time() + client.app.refresh_token_s,
            )

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: PoolUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        assert user is not None
        now = int(time.time())
        lifetime = expires_in or client.app.access_token_s
        claims: dict[str, Any] = {
            "sub": user.sub,
            "iss": self.issuer,
            "version": 2,
            "client_id": client.get_client_id(),
            "origin_jti": g.origin_jti,
            "event_id": secrets.token_hex(16),
            "token_use": "access",
            "scope": scope or "",
            "auth_time": g.auth_time,
            "exp": now + lifetime,
            "iat": now,
            "jti": secrets.token_hex(16),
            "username": user.username,
        }
        if user.groups:
            claims["cognito:groups"] = list(user.groups)
        token = {
            "access_token": self.sign(claims),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope or "",
        }
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(48)
        return token

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key, algorithms=["RS256"])

    def id_claims(self, user: PoolUser, client: Client) -> dict[str, Any]:
        """Cognito's ID-token claims for `user` (the standard ones are added by Authlib)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client.get_client_id(),
            "iat": now,
            "exp": now + client.app.id_token_s,
            "auth_time": g.auth_time,
            "sub": user.sub,
            "email": user.email,
            "email_verified": user.email_verified,
            "cognito:username": user.username,
            "origin_jti": g.origin_jti,
            "event_id": secrets.token_hex(16),
            "token_use": "id",
            "jti": secrets.token_hex(16),
        }
        if user.groups:
            claims["cognito:groups"] = list(user.groups)
        return claims

    # -- routes ----------------------------------------------------------------------------------------

    def _authorize(self) -> HttpResponse:
        try:
            grant = self.server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            # No valid client/redirect_uri: say so here, never redirect to an unregistered URL.
            if error.redirect_uri:
                resp: HttpResponse = self.server.handle_error_response(None, error)
                return resp
            return _page("Sign-in request refused", _error(str(error.get_error_description())), 400)
        user = self._session_user()
        if user is not None:
            g.auth_time = session["auth_time"]
            resp = self.server.create_authorization_response(grant_user=user, grant=grant)
            return resp
        tx = secrets.token_urlsafe(24)
        with self._lock:
            self._expire_sign_ins()
            self._sign_ins[tx] = SignIn(request.query_string.decode(), grant.client.get_client_id())
        return _password_page(tx)

    def _session_user(self) -> PoolUser | None:
        username = session.get("username")
        if not isinstance(username, str):
            return None
        user = self.pool.user(username)
        if user is None:
            session.clear()
        return user

    def _login(self) -> HttpResponse:
        tx = request.form.get("tx", "")
        with self._lock:
            self._expire_sign_ins()
            sign_in = self._sign_ins.get(tx)
        if sign_in is None:
            return _page(
                "Sign-in expired",
                "<p id='error'>This sign-in has expired. Go back to the application and sign in again.</p>",
                400,
            )
        action = request.form.get("action", "")
        handlers: dict[str, Callable[[str, SignIn], HttpResponse]] = {
            "password": self._on_password,
            "new_password": self._on_new_password,
            "totp_setup": self._on_totp_setup,
            "totp": self._on_totp,
        }
        handler = handlers.get(action)
        if handler is None:
            return _page("Bad request", "<p id='error'>Unknown sign-in step.</p>", 400)
        try:
            return handler(tx, sign_in)
        except SignInRefused as refused:
            return self._again(tx, sign_in, refused.message)

    def _again(self, tx: str, sign_in: SignIn, message: str) -> HttpResponse:
        """The page of the current step again, with `message`."""
        step = sign_in.step
        if step is None:
            return _password_page(tx, message)
        if step.challenge == "NEW_PASSWORD_REQUIRED":
            return _new_password_page(tx, message)
        if step.challenge == "MFA_SETUP":
            return _totp_setup_page(tx, self._otpauth(sign_in), sign_in.pending_secret, message)
        return _totp_page(tx, message)

    def _on_password(self, tx: str, sign_in: SignIn) -> HttpResponse:
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username or not password:
            raise SignInRefused("Enter your username and password.")
        step = self.pool.start(sign_in.client_id, username, password)
        user = self.pool.user(step.username)
        if user is None:
            raise SignInRefused("Incorrect username or password.")
        sign_in.sub = user.sub
        return self._advance(tx, sign_in, step)

    def _on_new_password(self, tx: str, sign_in: SignIn) -> HttpResponse:
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            raise SignInRefused("The passwords do not match.")
        assert sign_in.step is not None
        return self._advance(tx, sign_in, self.pool.new_password(sign_in.client_id, sign_in.step, new))

    def _on_totp_setup(self, tx: str, sign_in: SignIn) -> HttpResponse:
        assert sign_in.step is not None
        code = self._checked_code(sign_in, sign_in.pending_secret)
        if sign_in.step.session:
            step = self.pool.finish_totp_setup(sign_in.client_id, sign_in.step, code)
        else:  # enrolment the pool did not ask for (see _advance)
            step = Step("DONE", "", sign_in.step.username)
        with self._lock:
            self._totp[sign_in.sub] = sign_in.pending_secret
        sign_in.totp_passed = True
        return self._advance(tx, sign_in, step)

    def _on_totp(self, tx: str, sign_in: SignIn) -> HttpResponse:
        assert sign_in.step is not None
        with self._lock:
            secret = self._totp.get(sign_in.sub, "")
        if not secret:
            raise SignInRefused(
                "This authenticator is unknown to the local sign-in (it keeps enrolments in memory): "
                "reset the user's MFA (admin-set-user-mfa-preference) or create the user again."
            )
        code = self._checked_code(sign_in, secret)
        sign_in.totp_passed = True
        if not sign_in.step.session:  # a code the pool did not ask for (see _advance)
            return self._advance(tx, sign_in, Step("DONE", "", sign_in.step.username))
        return self._advance(tx, sign_in, self.pool.answer_totp(sign_in.client_id, sign_in.step, code))

    def _checked_code(self, sign_in: SignIn, secret: str) -> str:
        """The TOTP code of the form if it matches `secret` now (±1 step of 30 s); else SignInRefused."""
        code = request.form.get("code", "").strip().replace(" ", "")
        if len(code) == 6 and code.isdigit() and pyotp.TOTP(secret).verify(code, valid_window=1):
            return code
        sign_in.wrong_codes += 1
        if sign_in.wrong_codes >= MAX_CODE_ATTEMPTS:
            with self._lock:
                self._sign_ins = {k: v for k, v in self._sign_ins.items() if v is not sign_in}
            raise SignInRefused("Too many wrong codes: go back to the application and sign in again.")
        raise SignInRefused("Invalid code received for user")  # Cognito's CodeMismatchException text

    def _advance(self, tx: str, sign_in: SignIn, step: Step) -> HttpResponse:
        sign_in.step = step
        if step.challenge == "NEW_PASSWORD_REQUIRED":
            return _new_password_page(tx)
        if step.challenge == "MFA_SETUP":
            sign_in.step = self.pool.associate_totp(step)
            sign_in.pending_secret = pyotp.random_base32()
            return _totp_setup_page(tx, self._otpauth(sign_in), sign_in.pending_secret)
        if step.challenge == "SOFTWARE_TOKEN_MFA":
            return _totp_page(tx)
        if step.challenge != "DONE":
            raise SignInRefused(f"The sign-in step {step.challenge} is not supported here.")
        with self._lock:
            enrolled = sign_in.sub in self._totp
        if not enrolled and self.pool.totp_required():
            # moto lets a person in without MFA_SETUP when it did not see the enrolment (a password an
            # admin set as permanent, an enrolment cut short); Cognito asks them to enrol an authenticator
            # first, and so does the stand-in.
            sign_in.step = Step("MFA_SETUP", "", step.username)
            sign_in.pending_secret = pyotp.random_base32()
            return _totp_setup_page(tx, self._otpauth(sign_in), sign_in.pending_secret)
        if enrolled and not sign_in.totp_passed:
            # Enrolled here but moto did not ask for a code (it only asks once it verified an enrolment).
            sign_in.step = Step("SOFTWARE_TOKEN_MFA", "", step.username)
            return _totp_page(tx)
        with self._lock:
            self._sign_ins.pop(tx, None)
        user = self.pool.user(step.username)
        if user is None:
            raise SignInRefused("Incorrect username or password.")
        session.clear()
        session["username"] = user.username
        session["auth_time"] = int(time.time())
        # Back to the authorize endpoint, which now finds the signed-in session (as managed login does).
        return redirect(f"/oauth2/authorize?{sign_in.authorize_query}", code=302)

    def _otpauth(self, sign_in: SignIn) -> str:
        user = self.pool.user(sign_in.step.username) if sign_in.step else None
        name = (user.email or user.username) if user else "user"
        return pyotp.TOTP(sign_in.pending_secret).provisioning_uri(name=name, issuer_name=TOTP_ISSUER)

    def _expire_sign_ins(self) -> None:
        now = time.monotonic()
        self._sign_ins = {k: v for k, v in self._sign_ins.items() if now - v.created < AUTH_SESSION_S}

    def _token(self) -> HttpResponse:
        resp: HttpResponse = self.server.create_token_response()
        return self._cors(resp)

    def _revoke(self) -> HttpResponse:
        resp: HttpResponse = self.server.create_endpoint_response("revocation")
        return self._cors(resp)

    def _cors(self, resp: HttpResponse) -> HttpResponse:
        """Browsers call the token and revocation endpoints from the app's origin (a simple POST, no
        preflight): allow the origins of the app client's callback URLs."""
        origin = request.headers.get("Origin", "")
        client = self._client(request.form.get("client_id", ""))
        if origin and client is not None and origin in {_origin(u) for u in client.app.callback_urls}:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
        return resp

    def _logout(self) -> HttpResponse:
        client = self._client(request.args.get("client_id", ""))
        logout_uri = request.args.get("logout_uri", "")
        if client is None or logout_uri not in client.app.logout_urls:
            return _page(
                "Sign-out refused",
                "<p id='error'>Unknown client_id, or a logout_uri that is not one of the app client's "
                "sign-out URLs.</p>",
                400,
            )
        session.clear()
        return redirect(logout_uri, code=302)

    def _jwks(self) -> HttpResponse:
        resp = _json({"keys": [self.key.as_dict(private=False)]})
        resp.headers["Access-Control-Allow-Origin"] = "*"
        return resp

    def _discovery(self) -> HttpResponse:
        resp = _json(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.domain}/oauth2/authorize",
                "token_endpoint": f"{self.domain}/oauth2/token",
                "revocation_endpoint": f"{self.domain}/oauth2/revoke",
                "end_session_endpoint": f"{self.domain}/logout",
                "jwks_uri": self.jwks_url,
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["none"],
            }
        )
        resp.headers["Access-Control-Allow-Origin"] = "*"
        return resp


def _stand_in() -> OidcStandIn:
    """The stand-in serving the current request (Authlib calls the grants without it)."""
    found: OidcStandIn = current_app.extensions["aipm_oidc"]
    return found


class _QuietHandler(WSGIRequestHandler):
    """Request lines at debug level (werkzeug prints each one to stderr otherwise)."""

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("oidc " + message, *args)


# -- grants ----------------------------------------------------------------------------------------------


class _CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    def save_authorization_code(self, code: str, req: Any) -> None:
        data = req.payload.data
        _stand_in().save_code(
            AuthorizationCode(
                code=code,
                client_id=req.client.get_client_id(),
                redirect_uri=req.payload.redirect_uri or "",
                scope=req.payload.scope or "",
                username=req.user.username,
                auth_time=g.auth_time,
                code_challenge=data.get("code_challenge", ""),
                code_challenge_method=data.get("code_challenge_method", ""),
                nonce=data.get("nonce"),
                expires_at=time.time() + AUTHORIZATION_CODE_S,
            )
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        return _stand_in().take_code(code, client.get_client_id())

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        _stand_in().delete_code(authorization_code.code)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> PoolUser | None:
        g.auth_time = authorization_code.auth_time
        g.origin_jti = secrets.token_hex(16)
        return _stand_in().user(authorization_code.username)


class _RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    INCLUDE_NEW_REFRESH_TOKEN = False  # Cognito does not rotate refresh tokens by default

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        return _stand_in().refresh_token(refresh_token)

    def authenticate_user(self, refresh_token: RefreshToken) -> PoolUser | None:
        g.auth_time = refresh_token.auth_time
        g.origin_jti = refresh_token.origin_jti
        return _stand_in().user(refresh_token.username)  # None for a deleted or disabled person

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Refresh tokens are not rotated: the old one stays valid."""


class _PkceS256(CodeChallenge):  # type: ignore[misc]
    """PKCE is required on every authorization request, and only with S256 (no `plain`)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            from authlib.oauth2.rfc6749 import InvalidRequestError

            raise InvalidRequestError(
                "PKCE is required: code_challenge with code_challenge_method=S256",
                redirect_uri=redirect_uri,
            )
        super().validate_code_challenge(grant, redirect_uri)


class _OpenIdToken(oidc_grants.OpenIDToken):  # type: ignore[misc]
    """ID tokens on the refresh grant too (Cognito returns a new ID token on every refresh)."""

    def __init__(self, stand_in: OidcStandIn) -> None:
        self._stand_in = stand_in

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self._stand_in.key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": self._stand_in.key.kid or ""}

    def get_compatible_claims(self, req: Any) -> dict[str, Any]:
        return self._stand_in.id_claims(req.user, req.client)

    def get_authorization_code_claims(self, authorization_code: AuthorizationCode) -> dict[str, Any]:
        return {"nonce": authorization_code.nonce} if authorization_code.nonce else {}

    def generate_user_info(self, user: PoolUser, scope: str) -> dict[str, Any]:
        return {}


class _OpenIdCode(_OpenIdToken, oidc_grants.OpenIDCode):  # type: ignore[misc]
    def __init__(self, stand_in: OidcStandIn) -> None:
        _OpenIdToken.__init__(self, stand_in)
        oidc_grants.OpenIDCode.__init__(self, require_nonce=False)

    def exists_nonce(self, nonce: str, req: Any) -> bool:
        return False  # nonces are the client's to check in the ID token; codes are single-use anyway


class _Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> RefreshToken | None:
        return _stand_in().refresh_token(token_string)

    def revoke_token(self, token: RefreshToken, req: Any) -> None:
        _stand_in().revoke(token)


# -- pages -----------------------------------------------------------------------------------------------


def _security_headers(resp: Response) -> HttpResponse:
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    # No form-action: browsers apply it to the redirects after a form post too, and the last sign-in step
    # redirects to the app's origin (any registered callback URL).
    resp.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
    return resp


def _json(value: Any) -> HttpResponse:
    import json

    return Response(json.dumps(value), mimetype="application/json")


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _page(title: str, body: str, status: int = 200) -> HttpResponse:
    text = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
        f"{body}</main></body></html>"
    )
    return Response(text, status=status, mimetype="text/html")


def _error(message: str) -> str:
    return f"<p id='error' role='alert'>{html.escape(message)}</p>" if message else ""


def _form(tx: str, action: str, fields: str, button: str) -> str:
    return (
        f"<form id='signin' method='post' action='/login'>"
        f"<input type='hidden' name='tx' value='{html.escape(tx)}'>"
        f"<input type='hidden' name='action' value='{action}'>{fields}"
        f"<button id='submit' type='submit'>{html.escape(button)}</button></form>"
    )


def _password_page(tx: str, message: str = "") -> HttpResponse:
    fields = (
        "<p><label for='username'>Email</label> "
        "<input id='username' name='username' autocomplete='username' required></p>"
        "<p><label for='password'>Password</label> "
        "<input id='password' name='password' type='password' autocomplete='current-password' required></p>"
    )
    return _page("Sign in", _error(message) + _form(tx, "password", fields, "Sign in"))


def _new_password_page(tx: str, message: str = "") -> HttpResponse:
    fields = (
        "<p>Your password is temporary: choose a new one (12+ characters with upper and lower case, "
        "a digit and a symbol).</p>"
        "<p><label for='new_password'>New password</label> "
        "<input id='new_password' name='new_password' type='password' autocomplete='new-password' "
        "required></p>"
        "<p><label for='confirm_password'>Repeat it</label> "
        "<input id='confirm_password' name='confirm_password' type='password' autocomplete='new-password' "
        "required></p>"
    )
    return _page("Change password", _error(message) + _form(tx, "new_password", fields, "Change password"))


def _totp_setup_page(tx: str, otpauth: str, secret: str, message: str = "") -> HttpResponse:
    fields = (
        "<p>Multi-factor authentication is required. Add this key to your authenticator app, then enter "
        "the 6-digit code it shows.</p>"
        f"<p>Key: <code id='secret'>{html.escape(secret)}</code></p>"
        f"<p>Or as a link: <code id='otpauth'>{html.escape(otpauth)}</code></p>"
        "<p><label for='code'>Code</label> "
        "<input id='code' name='code' inputmode='numeric' autocomplete='one-time-code' required></p>"
    )
    return _page("Set up your authenticator", _error(message) + _form(tx, "totp_setup", fields, "Verify"))


def _totp_page(tx: str, message: str = "") -> HttpResponse:
    fields = (
        "<p><label for='code'>Code from your authenticator app</label> "
        "<input id='code' name='code' inputmode='numeric' autocomplete='one-time-code' required></p>"
    )
    return _page("Enter your code", _error(message) + _form(tx, "totp", fields, "Sign in"))
