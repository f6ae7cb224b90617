"""HTTP transport of the GitHub client: headers, timeouts, retries with exponential backoff and full jitter.

Every attempt is one HTTP round trip and is counted. The token is fetched from the provider per attempt (so a
rotated secret is picked up), sent only in the Authorization header, and scrubbed from every message.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError

from lambda_src.github.errors import GitHubRateLimited, GitHubUnavailable

log = logging.getLogger(__name__)

USER_AGENT = "aipm-delegate-github-client/1.0"
API_VERSION = "2022-11-28"
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. Delays grow exponentially and are drawn with full jitter.

    `total_budget_s` bounds the whole call, waits included: a wait that would overrun it is not started.
    """

    max_attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    total_budget_s: float = 12.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay_s, self.max_delay_s, self.total_budget_s) < 0:
            raise ValueError("delays and budget must not be negative")

    def backoff_s(self, attempt: int) -> float:
        """Full-jitter delay before retry `attempt` (1-based): uniform in [0, min(max, base * 2^(n-1))]."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not a secret


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True)
class Response:
    """One answer from GitHub: `data` is the parsed JSON body (None if empty or not JSON), `message`
    GitHub's error message (empty for successes). The token is scrubbed from both."""

    status: int
    data: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str = ""


class MaybeLanded(GitHubUnavailable):
    """A request that is not safe to repeat failed in a way that leaves open whether GitHub applied it."""


class Transport:
    """Sends requests to GitHub with authentication, a per-request timeout and the retry policy."""

    def __init__(
        self,
        token_provider: Callable[[], str],
        *,
        timeout_s: float,
        retry: RetryPolicy,
        http: urllib3.PoolManager | None,
        sleep: Callable[[float], None],
    ) -> None:
        self._token_provider = token_provider
        self._timeout = urllib3.Timeout(total=timeout_s)
        self._retry = retry
        self._http = http if http is not None else urllib3.PoolManager(num_pools=4, maxsize=4)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._round_trips = 0

    @property
    def round_trips(self) -> int:
        """HTTP requests sent so far (every attempt counts; calls are sequential: these are round trips)."""
        with self._lock:
            return self._round_trips

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        idempotent: bool = True,
        reconcile: Callable[[], Response | None] | None = None,
    ) -> Response:
        """Send one request and return GitHub's answer (any status below 500 that is not a rate limit).

        Idempotent requests are retried on 5xx, rate limits and network errors. Others are retried only
        when GitHub surely did not apply them (rate limits, no connection); when they may have landed (5xx,
        connection lost after sending) `reconcile` is asked: it returns the resource if the request did
        land, None if not (then the request is retried). Without `reconcile`, MaybeLanded is raised.

        Raises GitHubRateLimited / GitHubUnavailable once the policy's attempts or time budget are spent.
        """
        what = f"{method} {urlsplit(url).path}"
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            token = self._token_provider()
            failure: GitHubRateLimited | GitHubUnavailable
            server_delay: float | None = None
            try:
                response = self._send(method, url, body, token)
            except urllib3.exceptions.HTTPError as exc:
                detail = _scrub(f"{what}: could not reach GitHub ({type(exc).__name__}: {exc})", token)
                # NewConnectionError is a ConnectTimeoutError too: in both cases nothing was sent.
                never_sent = isinstance(exc, ConnectTimeoutError)
                if not idempotent and not never_sent:
                    landed = self._ask_reconcile(reconcile, detail, None)
                    if landed is not None:
                        return landed
                failure = GitHubUnavailable(detail, status=None)
            else:
                server_delay = _server_delay(response.headers)
                if _is_rate_limited(response):
                    failure = GitHubRateLimited(
                        f"{what}: rate limited by GitHub ({response.status}): {response.message}",
                        status=response.status,
                        retry_after_s=server_delay,
                    )
                elif response.status >= 500:
                    detail = f"{what}: GitHub answered {response.status}: {response.message}"
                    if not idempotent:
                        landed = self._ask_reconcile(reconcile, detail, response.status)
                        if landed is not None:
                            return landed
                    failure = GitHubUnavailable(detail, status=response.status, retry_after_s=server_delay)
                else:
                    return response
            delay = server_delay if server_delay is not None else self._retry.backoff_s(attempt)
            if attempt >= self._retry.max_attempts:
                raise failure
            if time.monotonic() - started + delay > self._retry.total_budget_s:
                log.warning("GitHub %s failed; a retry in %.1fs would overrun the time budget", what, delay)
                raise failure
            log.warning("GitHub %s failed (%s); retry %d in %.2fs", what, failure.message, attempt, delay)
            self._sleep(delay)

    def _ask_reconcile(
        self, reconcile: Callable[[], Response | None] | None, detail: str, status: int | None
    ) -> Response | None:
        if reconcile is None:
            raise MaybeLanded(detail, status=status)
        landed = reconcile()
        if landed is not None:
            log.warning("GitHub request failed after it was applied; using the applied result (%s)", detail)
        return landed

    def _send(self, method: str, url: str, body: Any, token: str) -> Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        payload: bytes | None = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        with self._lock:
            self._round_trips += 1
        raw = self._http.request(
            method,
            url,
            body=payload,
            headers=headers,
            timeout=self._timeout,
            retries=False,
            redirect=False,
        )
        response_headers = {name.lower(): value for name, value in raw.headers.items()}
        # Nothing GitHub sends back may carry the token further: scrub the body before it is parsed.
        data = _parse_json(raw.data.replace(token.encode(), _REDACTED.encode()) if token else raw.data)
        message = ""
        if raw.status >= 400:
            found = data.get("message") if isinstance(data, dict) else None
            message = str(found) if found else (raw.reason or f"HTTP {raw.status}")
        log.debug("GitHub %s %s -> %d", method, urlsplit(url).path, raw.status)
        return Response(status=raw.status, data=data, headers=response_headers, message=message)


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _scrub(text: str, token: str) -> str:
    return text.replace(token, _REDACTED) if token else text


def _is_rate_limited(response: Response) -> bool:
    """429; or 403 that carries Retry-After, an exhausted quota, or GitHub's "rate limit" message."""
    if response.status == 429:
        return True
    if response.status != 403:
        return False
    headers = response.headers
    return (
        "retry-after" in headers
        or headers.get("x-ratelimit-remaining") == "0"
        or "rate limit" in response.message.lower()
    )


def _server_delay(headers: Mapping[str, str]) -> float | None:
    """The wait GitHub asks for: Retry-After (seconds or HTTP date), else the quota reset time, else None."""
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        value = retry_after.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    reset = headers.get("x-ratelimit-reset")
    if headers.get("x-ratelimit-remaining") == "0" and reset is not None and reset.strip().isdigit():
        return max(0.0, int(reset) - time.time())
    return None
