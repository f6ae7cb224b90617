"""A scripted person at the sign-in pages: signs in through the real OAuth flow without a browser.

For what must sign in without anyone at a keyboard: the local stack's demo user (tests, CI, `make demo`),
and the CLI tests, which set `BROWSER` to `python -m aipm.local.oidc.scripted %s` so `aipm login` opens this
instead of a browser. It does what a person does in a browser: GET the authorize URL, fill the sign-in form
(password; a new password for a temporary one; enrol the authenticator from the key the page shows; the TOTP
code), follow redirects with the session cookie, and stop at the app's redirect URI (following it only when
asked, as a browser would: the CLI's loopback listener is there).

Only for the local stand-in's pages (`aipm.local.oidc.server`), whose form fields it knows.
"""

from __future__ import annotations

import http.cookiejar
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pyotp

MAX_STEPS = 12


class ScriptedSignInError(RuntimeError):
    """The sign-in pages refused (the message is what the page said) or answered something unexpected."""


@dataclass
class _Page:
    hidden: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # element id -> its text (error, secret)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = _Page()
        self._capture: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("type") == "hidden":
            self.page.hidden[a.get("name", "")] = a.get("value", "")
        if a.get("id") in ("error", "secret"):
            self._capture = a["id"]
            self.page.texts[self._capture] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "code"):
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture:
            self.page.texts[self._capture] += data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class ScriptedBrowser:
    """Signs in as `username`. `new_password` answers a temporary password; `totp_secret` is the enrolled
    authenticator's key, or is learned from the enrolment page (read it back after `sign_in`)."""

    username: str
    password: str
    new_password: str | None = None
    totp_secret: str | None = None
    codes: list[str] = field(default_factory=list)  # codes to type instead of the right one (tests)

    def __post_init__(self) -> None:
        self._jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self._jar), _NoRedirect)

    def sign_in(self, authorize_url: str, *, follow_callback: bool = False) -> str:
        """Walk the pages from `authorize_url`; returns the URL the sign-in redirected the browser to (the
        app's redirect URI with `code` and `state`). Raises ScriptedSignInError."""
        domain = _origin(authorize_url)
        status, location, body = self._get(authorize_url)
        for _ in range(MAX_STEPS):
            if status in (301, 302, 303, 307, 308):
                target = urllib.parse.urljoin(domain + "/", location)
                if _origin(target) != domain:
                    if follow_callback:
                        self._get(target)
                    return target
                status, location, body = self._get(target)
                continue
            if status != 200:
                raise ScriptedSignInError(f"the sign-in page answered {status}: {_said(body)}")
            status, location, body = self._submit(domain, body)
        raise ScriptedSignInError(f"the sign-in did not finish within {MAX_STEPS} pages")

    def _submit(self, domain: str, body: str) -> tuple[int, str, str]:
        parser = _Parser()
        parser.feed(body)
        page = parser.page
        action = page.hidden.get("action")
        fields = {"tx": page.hidden.get("tx", ""), "action": action or ""}
        if getattr(self, "_last_action", None) == action and "error" in page.texts:
            raise ScriptedSignInError(page.texts["error"].strip())
        self._last_action = action
        if action == "password":
            fields.update(username=self.username, password=self.password)
        elif action == "new_password":
            if self.new_password is None:
                raise ScriptedSignInError("the password is temporary and no new password was given")
            fields.update(new_password=self.new_password, confirm_password=self.new_password)
            self.password = self.new_password
        elif action in ("totp_setup", "totp"):
            if action == "totp_setup":
                self.totp_secret = page.texts.get("secret", "").strip()
            if not self.totp_secret:
                raise ScriptedSignInError("a TOTP code is asked for and no authenticator key is known")
            fields["code"] = self.codes.pop(0) if self.codes else pyotp.TOTP(self.totp_secret).now()
        else:
            raise ScriptedSignInError(f"not a sign-in page: {_said(body)}")
        data = urllib.parse.urlencode(fields).encode()
        return self._open(urllib.request.Request(f"{domain}/login", data=data, method="POST"))  # noqa: S310

    def _get(self, url: str) -> tuple[int, str, str]:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ScriptedSignInError(f"not an http(s) URL: {url[:100]!r}")
        return self._open(urllib.request.Request(url))  # noqa: S310 - scheme checked above

    def _open(self, request: urllib.request.Request) -> tuple[int, str, str]:
        try:
            with self._opener.open(request, timeout=30) as resp:
                return resp.status, resp.headers.get("Location", ""), resp.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Location", ""), err.read().decode(errors="replace")


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _said(body: str) -> str:
    parser = _Parser()
    parser.feed(body)
    return parser.page.texts.get("error", "").strip() or body[:200]


def main(argv: list[str] | None = None) -> int:
    """`python -m aipm.local.oidc.scripted URL`: sign in at URL as AIPM_SIGNIN_USERNAME with
    AIPM_SIGNIN_PASSWORD and AIPM_SIGNIN_TOTP_SECRET, following the final redirect (a `BROWSER` for
    `aipm login` in tests)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m aipm.local.oidc.scripted AUTHORIZE_URL", file=sys.stderr)
        return 2
    browser = ScriptedBrowser(
        os.environ["AIPM_SIGNIN_USERNAME"],
        os.environ["AIPM_SIGNIN_PASSWORD"],
        totp_secret=os.environ.get("AIPM_SIGNIN_TOTP_SECRET"),
    )
    try:
        browser.sign_in(args[0], follow_callback=True)
    except ScriptedSignInError as err:
        print(f"scripted sign-in failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
