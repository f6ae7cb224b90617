"""`aipm login` / `aipm logout`: people sign in through Cognito managed login (or the local stand-in).

OAuth 2.0 authorization code flow with PKCE (RFC 7636, S256) for a native app with a loopback redirect
(RFC 8252 §7.3): the CLI listens on `http://localhost:<port>/callback` (127.0.0.1 only), opens the browser at
the managed-login authorize URL (or prints it when no browser can be opened), receives the code, checks
`state`, and exchanges the code with its verifier at `/oauth2/token`. Cognito matches callback URLs exactly
and allows plain http only for `localhost` (CreateUserPoolClient, CallbackURLs), so the port is fixed per
app client: `DEFAULT_PORT` unless `--port` names another registered one.

Tokens are cached per named profile in `~/.config/aipm/tokens/<profile>.json` (`$XDG_CONFIG_HOME` honoured;
the file is created with mode 0600, its directory 0700), with the sign-in settings they came from. The ID
token is what the API's Cognito authorizer checks; it is refreshed with the refresh token (grant_type
`refresh_token`; Cognito returns a new ID token and keeps the refresh token) once it is within
`REFRESH_MARGIN_S` of its `exp`, or when the API answers 401. `aipm logout` revokes the refresh token
(`/oauth2/revoke`) and deletes the cache.

Endpoints (Cognito developer guide, "User pool endpoints and managed login reference"), all under the
managed-login domain: `/oauth2/authorize`, `/oauth2/token`, `/oauth2/revoke`, `/logout`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from aipm.cli.errors import CliError, Exit, usage_error

OUT_SIGN_IN_DOMAIN = "SignInDomain"  # the CDK stack's output: the managed-login base URL
DEFAULT_PORT = 8976  # the CLI's registered callback: http://localhost:8976/callback
CALLBACK_PATH = "/callback"
SCOPES = "openid email profile"
REFRESH_MARGIN_S = 60.0
LOGIN_TIMEOUT_S = 300.0
HTTP_TIMEOUT_S = 30.0
PROFILE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def callback_url(port: int = DEFAULT_PORT) -> str:
    """The redirect URI the CLI registers and uses (`http://localhost:<port>/callback`)."""
    return f"http://localhost:{port}{CALLBACK_PATH}"


@dataclass(frozen=True)
class SignInSettings:
    """Where to sign in: the managed-login domain (base URL, no path) and the public app client's id."""

    domain: str
    client_id: str

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.domain)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or (parts.scheme == "http" and not loopback)
        ):
            raise usage_error(
                f"not a sign-in domain: {self.domain!r}",
                hint="the stack's managed-login domain, e.g. "
                "https://<prefix>.auth.<region>.amazoncognito.com (http only for the local stack)",
            )
        if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
            raise usage_error(f"the sign-in domain must be a bare base URL: {self.domain!r}")
        if not self.client_id or not self.client_id.isalnum():
            raise usage_error(f"not an app client id: {self.client_id!r}")

    @property
    def base(self) -> str:
        return self.domain.rstrip("/")


@dataclass(frozen=True)
class Tokens:
    """What `/oauth2/token` answered, with the ID token's `iat` and `exp` (seconds since the epoch)."""

    id_token: str
    access_token: str
    refresh_token: str
    issued_at: float
    expires_at: float

    def fresh(self) -> bool:
        """Whether the ID token is good for a while yet: `REFRESH_MARGIN_S`, or a quarter of its lifetime
        if that is shorter."""
        margin_s = min(REFRESH_MARGIN_S, (self.expires_at - self.issued_at) / 4)
        return time.time() < self.expires_at - margin_s


# -- the protocol ---------------------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for PKCE S256: a 43-character verifier from 32 random bytes and
    BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.1-4.2)."""
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(settings: SignInSettings, *, redirect_uri: str, state: str, challenge: str) -> str:
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPES,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{settings.base}/oauth2/authorize?{query}"


def exchange_code(settings: SignInSettings, *, code: str, redirect_uri: str, verifier: str) -> Tokens:
    """POST /oauth2/token with grant_type=authorization_code. Raises CliError naming the refusal."""
    answer = _post_form(
        f"{settings.base}/oauth2/token",
        {
            "grant_type": "authorization_code",
            "client_id": settings.client_id,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )
    return _tokens(answer, refresh_token=None)


def refresh_tokens(settings: SignInSettings, refresh_token: str) -> Tokens:
    """POST /oauth2/token with grant_type=refresh_token; the refresh token is kept (not rotated)."""
    answer = _post_form(
        f"{settings.base}/oauth2/token",
        {"grant_type": "refresh_token", "client_id": settings.client_id, "refresh_token": refresh_token},
    )
    return _tokens(answer, refresh_token=refresh_token)


def revoke(settings: SignInSettings, refresh_token: str) -> None:
    """POST /oauth2/revoke (RFC 7009): the refresh token, and what was issued from it, stop working."""
    _post_form(f"{settings.base}/oauth2/revoke", {"client_id": settings.client_id, "token": refresh_token})


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, NOT verified (the API verifies; the CLI only reads `exp` and names)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as err:
        raise CliError("the sign-in answered a malformed ID token", Exit.API) from err
    if not isinstance(data, dict):
        raise CliError("the sign-in answered a malformed ID token", Exit.API)
    return data


def _tokens(answer: Mapping[str, Any], *, refresh_token: str | None) -> Tokens:
    id_token = answer.get("id_token")
    refresh = answer.get("refresh_token") or refresh_token
    if not isinstance(id_token, str) or not isinstance(refresh, str):
        raise CliError("the sign-in answered without an ID token or refresh token", Exit.API)
    claims = jwt_claims(id_token)
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise CliError("the ID token has no expiry", Exit.API)
    return Tokens(id_token, str(answer.get("access_token", "")), refresh, float(iat), float(exp))


def _post_form(url: str, fields: Mapping[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the domain's scheme was checked
        url,
        data=urllib.parse.urlencode(fields).encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as resp:  # noqa: S310
            body = resp.read()
    except urllib.error.HTTPError as err:
        detail = _json_or_empty(err.read())
        reason = detail.get("error_description") or detail.get("error") or f"HTTP {err.code}"
        raise SignInRefusedError(str(detail.get("error", "")), f"the sign-in refused: {reason}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        raise CliError(
            f"cannot reach the sign-in at {url}: {getattr(err, 'reason', err)}",
            Exit.API,
            hint="check the sign-in domain (aipm login --domain); for local mode, is `aipm local` running?",
        ) from None
    return _json_or_empty(body)


def _json_or_empty(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class SignInRefusedError(CliError):
    """The token or revocation endpoint refused (`error` is the OAuth error code, e.g. invalid_grant)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message, Exit.API, hint="sign in again: aipm login")
        self.error = error


# -- the loopback redirect ------------------------------------------------------------------------------


class _Callback:
    """One-shot HTTP listener on 127.0.0.1:<port> for the browser's redirect to /callback."""

    def __init__(self, port: int, state: str) -> None:
        self.state = state
        self.code: str | None = None
        self.error: str | None = None
        self.done = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            server_version = "aipm-login"
            sys_version = ""

            def do_GET(self) -> None:
                owner._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        try:
            self._httpd = http.server.HTTPServer(("127.0.0.1", port), Handler)
        except OSError as err:
            raise usage_error(
                f"cannot listen on 127.0.0.1:{port} for the sign-in redirect: {err.strerror}",
                hint="close what uses the port, or use another port registered as a callback URL "
                "(aipm login --port N)",
            ) from None
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,), daemon=True)

    def __enter__(self) -> _Callback:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(req.path)
        if parts.path != CALLBACK_PATH:
            self._reply(req, 404, "Not the sign-in callback.")
            return
        query = urllib.parse.parse_qs(parts.query)
        if query.get("state", [""])[0] != self.state:
            self._reply(req, 400, "This sign-in answer does not belong to the sign-in in progress.")
            return
        if "error" in query:
            self.error = query.get("error_description", query["error"])[0]
            self._reply(req, 400, f"Sign-in failed: {self.error}. You can close this tab.")
        else:
            self.code = query.get("code", [""])[0] or None
            self._reply(req, 200, "Signed in to aipm. You can close this tab and return to the terminal.")
        self.done.set()

    @staticmethod
    def _reply(req: http.server.BaseHTTPRequestHandler, status: int, text: str) -> None:
        data = f"<!doctype html><title>aipm login</title><p>{text}</p>".encode()
        req.send_response(status)
        req.send_header("Content-Type", "text/html; charset=utf-8")
        req.send_header("Content-Length", str(len(data)))
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        req.wfile.write(data)


def sign_in(
    settings: SignInSettings,
    *,
    port: int = DEFAULT_PORT,
    open_browser: Callable[[str], bool] = webbrowser.open,
    out: TextIO,
    timeout_s: float = LOGIN_TIMEOUT_S,
) -> Tokens:
    """The whole browser sign-in; returns the tokens. The URL is printed on `out` when no browser opens."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    redirect_uri = callback_url(port)
    url = authorize_url(settings, redirect_uri=redirect_uri, state=state, challenge=challenge)
    with _Callback(port, state) as callback:
        opened = False
        with contextlib.suppress(webbrowser.Error):
            opened = bool(open_browser(url))
        if opened:
            out.write("Signing in through your browser (waiting for it to come back)…\n")
        else:
            out.write(f"Open this URL in a browser on this machine to sign in:\n\n  {url}\n\n")
        out.flush()
        if not callback.done.wait(timeout_s):
            raise CliError(f"no sign-in came back within {timeout_s:.0f} s", Exit.API, hint="aipm login")
    if callback.error or not callback.code:
        raise CliError(f"the sign-in failed: {callback.error or 'no code'}", Exit.API, hint="aipm login")
    return exchange_code(settings, code=callback.code, redirect_uri=redirect_uri, verifier=verifier)


# -- the token cache ------------------------------------------------------------------------------------


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/aipm`, else `~/.config/aipm`."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aipm"


def check_profile(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= PROFILE_NAME_CHARS or name.startswith("."):
        raise usage_error(f"not a profile name: {name!r}", hint="letters, digits, '-', '_' and '.'")
    return name


@dataclass(frozen=True)
class Session:
    """A profile's signed-in state: where it signed in, and its tokens."""

    settings: SignInSettings
    tokens: Tokens


class TokenCache:
    """The signed-in state of one named profile, in `<config dir>/tokens/<profile>.json` (mode 0600)."""

    def __init__(self, profile: str = "default", *, directory: Path | None = None) -> None:
        self.profile = check_profile(profile)
        self.path = (directory or config_dir() / "tokens") / f"{self.profile}.json"

    def load(self) -> Session | None:
        try:
            data = json.loads(self.path.read_text())
            return Session(SignInSettings(**data["settings"]), Tokens(**data["tokens"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, CliError):
            return None  # unreadable or from another version: as if signed out

    def save(self, session: Session) -> None:
        """Write atomically: a new 0600 file beside the old one, then rename over it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        data = json.dumps({"settings": asdict(session.settings), "tokens": asdict(session.tokens)})
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
            tmp.replace(self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def delete(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


class CachedToken:
    """The ID token of a profile for API calls: refreshed when it is about to expire, or on demand after a
    401. Raises CliError with `aipm login` as the hint when the profile is not signed in."""

    def __init__(self, cache: TokenCache) -> None:
        self.cache = cache

    def __call__(self, *, force_refresh: bool = False) -> str:
        session = self.cache.load()
        if session is None:
            raise CliError(
                "not signed in",
                Exit.API,
                hint=f"aipm login{_profile_flag(self.cache.profile)} (or set AIPM_API_TOKEN)",
            )
        if force_refresh or not session.tokens.fresh():
            try:
                tokens = refresh_tokens(session.settings, session.tokens.refresh_token)
            except SignInRefusedError as refused:
                raise CliError(
                    f"the sign-in has ended ({refused.error or refused.message})",
                    Exit.API,
                    hint=f"sign in again: aipm login{_profile_flag(self.cache.profile)}",
                ) from None
            session = Session(session.settings, tokens)
            self.cache.save(session)
        return session.tokens.id_token


def _profile_flag(profile: str) -> str:
    return "" if profile == "default" else f" --profile {profile}"


# -- the commands ---------------------------------------------------------------------------------------


def profile_name(args: Any) -> str:
    """The sign-in profile: `--profile` of login/logout, else AIPM_PROFILE, else "default"."""
    name = getattr(args, "sign_in_profile", None) or os.environ.get("AIPM_PROFILE") or "default"
    return check_profile(name)


def add_login_arguments(parser: Any) -> None:
    """The options of `aipm login` and `aipm logout` (argparse)."""
    parser.add_argument(
        "--profile",
        dest="sign_in_profile",
        help="keep this sign-in under a name, one per stack (AIPM_PROFILE; default: default)",
    )
    if parser.prog.endswith("logout"):
        return
    parser.add_argument(
        "--domain",
        help="the managed-login domain: the stack's SignInDomain output, or the Sign-in URL "
        "`aipm local` prints (remembered per profile)",
    )
    parser.add_argument("--client-id", help="the app client id: the stack's UserPoolClientId output")
    parser.add_argument(
        "--stack",
        dest="sign_in_stack",
        help="read --domain and --client-id from this CloudFormation stack's outputs (needs AWS credentials)",
    )
    parser.add_argument("--region", dest="sign_in_region", help="with --stack: its AWS region")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"loopback port of the redirect, registered on the app client (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="print the sign-in URL instead of opening a browser"
    )


def login_command(args: Any, out: TextIO) -> int:
    """`aipm login`: sign in through the browser and cache the tokens for the profile."""
    cache = TokenCache(profile_name(args))
    known = cache.load()
    domain = args.domain or (known.settings.domain if known else None)
    client_id = args.client_id or (known.settings.client_id if known else None)
    if args.sign_in_stack:
        from aipm.cli.ops import OUT_USER_POOL_CLIENT, Ops

        ops = Ops(args.sign_in_stack, region=args.sign_in_region)
        domain = args.domain or ops.output(OUT_SIGN_IN_DOMAIN)
        client_id = args.client_id or ops.output(OUT_USER_POOL_CLIENT)
    if not domain or not client_id:
        raise usage_error(
            "where to sign in is not known yet for this profile",
            hint="aipm login --stack <stack name>, or --domain <its SignInDomain output> --client-id "
            "<its UserPoolClientId output> (local: the line `aipm local` printed)",
        )
    if not 0 < args.port < 65536:
        raise usage_error(f"not a port: {args.port}")
    settings = SignInSettings(domain.rstrip("/"), client_id)
    opener: Callable[[str], bool] = (lambda url: False) if args.no_browser else webbrowser.open
    tokens = sign_in(settings, port=args.port, open_browser=opener, out=out)
    cache.save(Session(settings, tokens))
    who = jwt_claims(tokens.id_token)
    out.write(f"signed in as {who.get('email') or who.get('cognito:username')} (profile {cache.profile})\n")
    out.flush()
    return Exit.OK


def logout_command(args: Any, out: TextIO) -> int:
    """`aipm logout`: revoke the profile's refresh token and delete its cached tokens."""
    cache = TokenCache(profile_name(args))
    session = cache.load()
    if session is None:
        removed = cache.delete()
        out.write("not signed in\n" if not removed else "removed an unreadable token cache\n")
        return Exit.OK
    try:
        revoke(session.settings, session.tokens.refresh_token)
        revoked = "the refresh token is revoked"
    except CliError as err:
        revoked = f"the refresh token could not be revoked ({err.message}); it ends on its own"
    cache.delete()
    out.write(f"signed out (profile {cache.profile}): {revoked}\n")
    out.flush()
    return Exit.OK
