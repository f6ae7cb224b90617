"""A small client for the AIPM API (local or deployed): JSON over HTTPS, bearer token, actionable errors.

Retries use urllib3's `Retry` (a maintained implementation of exponential backoff and of `Retry-After`,
RFC 9110 §10.2.3): transport errors and 429/502/503/504 are retried for reads and for the delegate request
(which carries an Idempotency-Key), and so is `409 idempotency_in_progress` — the only 409 the API sends with
`Retry-After` (lambda_src/errors.py) — waiting as long as the header says.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from urllib3.util import Retry

from aipm.cli.errors import CliError, Exit, usage_error

USER_AGENT = "aipm-cli/0.1"
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER_S = 60  # a longer Retry-After is not waited for: the error is shown instead


class ApiRetry(Retry):
    """urllib3's Retry, also honouring `Retry-After` on 409 (idempotency_in_progress) and capping the wait."""

    RETRY_AFTER_STATUS_CODES = frozenset({409, 413, 429, 503})

    def get_retry_after(self, response: Any) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, MAX_RETRY_AFTER_S)


LOCAL_HOSTS = frozenset({"localhost", "localhost.localdomain"})


def normalise_base_url(raw: str) -> str:
    """The API base URL without a trailing `/` or `/api` (both forms are accepted).

    Refuses URLs that would leak the token: credentials in the URL, or plain http to a non-loopback host.
    """
    url = raw.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise usage_error(
            f"not an API URL: {raw!r}",
            hint="use the stack's ApiUrl output (https://…/prod/) or the URL `aipm local` prints",
        )
    if parts.username or parts.password:
        raise usage_error("the API URL must not contain credentials", hint="pass the token with --token")
    if parts.query or parts.fragment:
        raise usage_error("the API URL must not have a query or fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise usage_error(
            f"refusing to send the token over plain http to {parts.hostname}",
            hint="use https (http is allowed only for the local stack on 127.0.0.1)",
        )
    path = parts.path.rstrip("/").removesuffix("/api").rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _is_loopback(host: str) -> bool:
    if host.lower() in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: Any


class TokenSource(Protocol):
    """Gives the bearer token for each call; `force_refresh` after the API answered 401 (expired)."""

    def __call__(self, *, force_refresh: bool = False) -> str: ...


class ApiClient:
    """Calls `<base>/api/...` with `Authorization: Bearer <token>`; raises CliError for anything but 2xx.

    `token` is a fixed token, or a TokenSource (the signed-in profile's ID token): then a 401 gets one fresh
    token and one more try."""

    def __init__(
        self,
        base_url: str,
        token: str | TokenSource | None,
        *,
        timeout_s: float = 30.0,
        retries: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self._token = token
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout_s))

    def __repr__(self) -> str:  # never show the token
        return f"ApiClient({self.base_url!r})"

    # -- routes of the API contract ----------------------------------------------------------------

    def delegate(self, task: Mapping[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /api/personal-delegate. Retried on transport errors with the same Idempotency-Key."""
        key = idempotency_key or uuid.uuid4().hex
        return dict(
            self.call("POST", "/api/personal-delegate", task, headers={"Idempotency-Key": key}, retry=True)
        )

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/jobs/{_segment(job_id)}", retry=True))

    def jobs(
        self,
        *,
        status: str | None = None,
        repo: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        mine: bool = False,
    ) -> dict[str, Any]:
        query = {"status": status, "repo": repo, "limit": limit, "cursor": cursor, "mine": mine or None}
        return dict(self.call("GET", "/api/jobs", query=query, retry=True))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/api/jobs/{_segment(job_id)}/cancel"))

    def retry(self, job_id: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/api/jobs/{_segment(job_id)}/retry"))

    def workers(self) -> dict[str, Any]:
        return dict(self.call("GET", "/api/workers", retry=True))

    def health(self) -> dict[str, Any]:
        return dict(self.call("GET", "/api/health", retry=True))

    # -- transport ----------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = False,
    ) -> Any:
        """One API call; returns the JSON body of a 2xx answer. `retry` repeats transient failures."""
        if self._token is None and path != "/api/health":
            raise CliError(
                "no API token",
                Exit.API,
                hint="sign in: aipm login (or set AIPM_API_TOKEN to an ID token)",
            )
        url = self.base_url + path
        params = {
            k: ("true" if v is True else str(v))
            for k, v in (query or {}).items()
            if v is not None and v != ""
        }
        if params:
            url += "?" + urllib.parse.urlencode(params)
        policy = ApiRetry(
            total=self._retries if retry else 0,
            backoff_factor=self._backoff_s,
            status_forcelist=TRANSIENT_STATUSES,
            allowed_methods=None,  # callers pass retry=True only where a repeat is safe
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
            redirect=0,
        )
        answer = self._send(method, url, body, headers or {}, policy)
        if answer.status == 401 and callable(self._token):
            # The ID token expired between two calls: one fresh one, one more try.
            answer = self._send(method, url, body, headers or {}, policy, force_refresh=True)
        if 200 <= answer.status < 300:
            return answer.body
        raise self._refusal(method, path, answer)

    def _send(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        extra: Mapping[str, str],
        policy: Retry,
        *,
        force_refresh: bool = False,
    ) -> ApiAnswer:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **extra}
        if callable(self._token):
            headers["Authorization"] = f"Bearer {self._token(force_refresh=force_refresh)}"
        elif self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            resp = self._http.request(method, url, body=data, headers=headers, retries=policy)
        except urllib3.exceptions.HTTPError as err:
            reason = getattr(err, "reason", None) or err
            raise CliError(
                f"cannot reach the API at {self.base_url}: {reason}",
                Exit.API,
                hint="check --api-url / AIPM_API_URL; for local mode, is `aipm local` still running?",
            ) from None
        return ApiAnswer(resp.status, _json(resp.data))

    def _refusal(self, method: str, path: str, answer: ApiAnswer) -> CliError:
        body = answer.body if isinstance(answer.body, dict) else {}
        message = str(body.get("message") or body.get("error") or f"HTTP {answer.status}")
        field = body.get("field")
        where = f" (field {field})" if field else ""
        if answer.status == 401 or (answer.status == 403 and "error" not in body):
            return CliError(
                f"the API rejected the credentials ({answer.status}: {message})",
                Exit.API,
                hint=str(body.get("hint") or "sign in again: aipm login"),
            )
        if answer.status == 404 and body.get("error", "not_found") == "not_found":
            return CliError(
                f"the API has no route {method} {path.split('?')[0]}",
                Exit.API,
                hint="is the API URL right, and is the deployed API up to date?",
            )
        if 400 <= answer.status < 500:
            code = body.get("error", "refused")
            return CliError(f"{code}: {message}{where}", Exit.USAGE)
        return CliError(f"the API failed ({answer.status}): {message}", Exit.API, hint="try again shortly")


def _segment(value: str) -> str:
    """A path segment, checked: job ids are 32 hex characters; anything else is refused before sending."""
    if not value or any(not (c.isalnum() or c in "-_") for c in value) or len(value) > 64:
        raise usage_error(
            f"not a job id: {value!r}", hint="job ids are 32 hex characters, e.g. from `aipm jobs list`"
        )
    return value


def _json(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return {"message": raw[:200].decode(errors="replace").strip()}
