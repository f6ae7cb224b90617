"""Who is calling: the identity API Gateway's Cognito authorizer (or the local gateway) put on the request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Caller:
    """`id` is stable and unique (Cognito `sub`): idempotency keys are scoped to it. `name` is what records
    show as who asked (email, else user name, else `sub`)."""

    id: str
    name: str

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Caller | None:
        """The caller in the authorizer claims of an API Gateway REST proxy event; None if there is none."""
        context = event.get("requestContext") or {}
        authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
        claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
        if not isinstance(claims, Mapping):
            return None
        ident = _claim(claims, "sub") or _claim(claims, "cognito:username")
        if not ident:
            return None
        return cls(id=ident, name=_claim(claims, "email") or _claim(claims, "cognito:username") or ident)


def _claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    return value.strip() if isinstance(value, str) else ""
