"""Who is calling: the identity API Gateway's Cognito authorizer (or the local gateway) put on the request."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ADMIN_GROUP = "aipm-admins"
_GROUP_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Caller:
    """`id` is stable and unique (Cognito `sub`): jobs and idempotency keys are scoped to it. `name` is what
    records show as who asked (email, else user name, else `sub`). `groups`: the `cognito:groups` claim."""

    id: str
    name: str
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        """Members of the `aipm-admins` group see and act on every job."""
        return ADMIN_GROUP in self.groups

    def owns(self, requester_id: str | None, requested_by: str | None = None) -> bool:
        """True if a job with this owner is this caller's to see (admins: every job).

        Records written before jobs carried `requesterId` are matched by `requestedBy`.
        """
        if self.is_admin:
            return True
        if requester_id is not None:
            return requester_id == self.id
        return requested_by is not None and requested_by == self.name

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Caller | None:
        """The caller in the authorizer claims of an API Gateway REST proxy event; None if there is none.

        Claims: `sub`, `email`, `cognito:username`, `cognito:groups`. API Gateway's Cognito authorizer
        passes a list claim as one string (`"[a, b]"` or `"a b"`, depending on the path), the local gateway
        as a list; both are read.
        """
        context = event.get("requestContext") or {}
        authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
        claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
        if not isinstance(claims, Mapping):
            return None
        ident = _claim(claims, "sub") or _claim(claims, "cognito:username")
        if not ident:
            return None
        return cls(
            id=ident,
            name=_claim(claims, "email") or _claim(claims, "cognito:username") or ident,
            groups=_groups(claims.get("cognito:groups")),
        )


def service_caller(service: str) -> Caller:
    """The identity of a job started without a signed-in person (`service:<name>`)."""
    return Caller(id=f"service:{service}", name=service)


def _claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    return value.strip() if isinstance(value, str) else ""


def _groups(value: object) -> frozenset[str]:
    if isinstance(value, list | tuple):
        return frozenset(str(v).strip() for v in value if str(v).strip())
    if isinstance(value, str):
        return frozenset(p for p in _GROUP_SEPARATORS.split(value.strip().strip("[]")) if p)
    return frozenset()
