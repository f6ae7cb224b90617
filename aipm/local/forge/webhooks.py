"""The forge's webhooks: deliveries sent as GitHub sends them, in the background, each kept for redelivery.

A delivery is a POST of the event's JSON payload to each registered hook's URL with GitHub's headers
(GitHub Docs, "Webhook events and payloads" → delivery headers): `X-GitHub-Event`, `X-GitHub-Delivery` (a
GUID; a redelivery repeats the GUID of the delivery it repeats, as GitHub's "Redeliver" does),
`X-GitHub-Hook-ID`, `X-Hub-Signature-256` (`sha256=` + HMAC-SHA256 hex of the body under the hook's secret,
"Validating webhook deliveries"), `User-Agent: GitHub-Hookshot/<id>`, `Content-Type: application/json`.
Deliveries go out one at a time, in order, from one thread, after the API call that caused them answered
(GitHub delivers asynchronously too). Every delivery and the status it got are kept (`deliveries`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_S = 10.0  # GitHub gives a receiver 10 s to answer


@dataclass(frozen=True)
class Hook:
    id: int
    url: str
    secret: str
    events: frozenset[str]  # empty: every event

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


@dataclass
class Delivery:
    """One POST to one hook: what was sent and what the receiver answered (`status` 0: no answer)."""

    guid: str
    hook_id: int
    event: str
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    response: str = ""
    redelivery: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class WebhookSender:
    """Hooks, the delivery queue and its thread. Start with `start()`, stop with `stop()`."""

    def __init__(self) -> None:
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.deliveries: list[Delivery] = []

    def add_hook(self, url: str, secret: str, events: frozenset[str] = frozenset()) -> Hook:
        with self._lock:
            hook = Hook(id=len(self._hooks) + 1, url=url, secret=secret, events=events)
            self._hooks.append(hook)
            return hook

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="forge-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=DELIVERY_TIMEOUT_S + 2)
            self._thread = None

    def emit(self, event: str, payload: dict[str, Any]) -> list[Delivery]:
        """Queue `payload` of `event` for every hook that wants it; returns the deliveries queued."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        queued: list[Delivery] = []
        with self._lock:
            hooks = [hook for hook in self._hooks if hook.wants(event)]
        for hook in hooks:
            guid = str(uuid.uuid4())
            delivery = Delivery(
                guid=guid, hook_id=hook.id, event=event, body=body, headers=_headers(hook, event, guid, body)
            )
            with self._lock:
                self.deliveries.append(delivery)
            self._queue.put(delivery)
            queued.append(delivery)
        return queued

    def redeliver(self, guid: str) -> Delivery:
        """Send delivery `guid` again: same GUID, body and signature (GitHub's "Redeliver"). KeyError."""
        with self._lock:
            original = next(d for d in self.deliveries if d.guid == guid and not d.redelivery)
            again = Delivery(
                guid=guid,
                hook_id=original.hook_id,
                event=original.event,
                body=original.body,
                headers=dict(original.headers),
                redelivery=True,
            )
            self.deliveries.append(again)
        self._queue.put(again)
        return again

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Whether every delivery queued so far was sent within `timeout_s`."""
        with self._lock:
            pending = [d for d in self.deliveries if not d.done.is_set()]
        return all(d.done.wait(timeout_s) for d in pending)

    def _run(self) -> None:
        while (delivery := self._queue.get()) is not None:
            self._send(delivery)

    def _send(self, delivery: Delivery) -> None:
        with self._lock:
            hook = next(h for h in self._hooks if h.id == delivery.hook_id)
        request = urllib.request.Request(  # noqa: S310 - a hook URL the test or stack registered
            hook.url, data=delivery.body, method="POST", headers=delivery.headers
        )
        try:
            with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_S) as resp:  # noqa: S310
                delivery.status, delivery.response = (
                    resp.status,
                    resp.read(64 * 1024).decode("utf-8", "replace"),
                )
        except urllib.error.HTTPError as err:
            delivery.status, delivery.response = err.code, err.read(64 * 1024).decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as err:
            delivery.status, delivery.response = 0, str(err)
            log.warning("webhook delivery %s to %s failed: %s", delivery.guid, hook.url, err)
        finally:
            delivery.done.set()


def _headers(hook: Hook, event: str, guid: str, body: bytes) -> dict[str, str]:
    signature = hmac.new(hook.secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": f"GitHub-Hookshot/forge{hook.id}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid,
        "X-GitHub-Hook-ID": str(hook.id),
        "X-Hub-Signature-256": f"sha256={signature}",
    }
