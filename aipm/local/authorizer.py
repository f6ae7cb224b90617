"""The local stand-in for API Gateway's Cognito user-pool authorizer (REST API, COGNITO_USER_POOLS).

What the cloud authorizer does, done here on the local gateway: take `Authorization: Bearer <ID token>` (a
bare token is accepted too, as API Gateway does), verify the RS256 signature with the key from the issuer's
JWKS (`<iss>/.well-known/jwks.json`, fetched once and again for an unknown `kid`), check `iss`, `aud` (one of
the pool's app clients), `exp`, `token_use == "id"`, and hand the claims to the Lambda handler in
`requestContext.authorizer.claims` shaped as API Gateway shapes them: every value a string, `exp`/`iat` as
`Sun Nov 29 19:10:29 UTC 2026`, `cognito:groups` comma-separated, booleans `"true"`/`"false"`.

Sources: API Gateway developer guide, "Control access to REST APIs using Amazon Cognito user pools as the
authorizer"; the claim shapes as logged by users of the real service (amazon-cognito-identity-js issue 92,
awsdocs/amazon-api-gateway-developer-guide issue 158; the comma-separated groups are third-party reports).
The messages are API Gateway's: `Unauthorized`, `The incoming token has expired`.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

JWKS_TIMEOUT_S = 5.0
JWKS_MIN_REFETCH_S = 5.0  # an unknown kid refetches the JWKS at most this often


class NotAuthorized(Exception):
    """The request carries no valid ID token; `message` is API Gateway's 401 message."""

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)
        self.message = message


class CognitoAuthorizer:
    """Verifies ID tokens of one issuer (a user pool, or the local stand-in for one) for `audiences`."""

    def __init__(self, issuer: str, audiences: Iterable[str]) -> None:
        self.issuer = issuer.rstrip("/")
        self.audiences = frozenset(audiences)
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def claims(self, authorization: str | None) -> dict[str, str]:
        """The authorizer claims for this Authorization header value; raises NotAuthorized."""
        value = (authorization or "").strip()
        scheme, _, rest = value.partition(" ")
        token = rest.strip() if scheme.lower() == "bearer" else value
        if not token or token.count(".") != 2:
            raise NotAuthorized()
        try:
            header = jws.extract_compact(token.encode()).headers()  # unverified: only to pick the key
        except (JoseError, ValueError):
            raise NotAuthorized() from None
        if header.get("alg") != "RS256":
            raise NotAuthorized()
        keys = self._key_set(str(header.get("kid", "")))
        try:
            decoded = jwt.decode(token, keys, algorithms=["RS256"])
        except (JoseError, ValueError):
            raise NotAuthorized() from None
        claims = decoded.claims
        if claims.get("iss") != self.issuer or claims.get("token_use") != "id":
            raise NotAuthorized()
        if claims.get("aud") not in self.audiences:
            raise NotAuthorized()
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or time.time() >= exp:
            raise NotAuthorized("The incoming token has expired")
        return api_gateway_claims(claims)

    def _key_set(self, kid: str) -> KeySet:
        with self._lock:
            known = self._keys is not None and any(k.kid == kid for k in self._keys.keys)
            if not known and time.monotonic() - self._fetched_at >= JWKS_MIN_REFETCH_S:
                self._keys = self._fetch()
                self._fetched_at = time.monotonic()
            if self._keys is None:
                raise NotAuthorized()
            return self._keys

    def _fetch(self) -> KeySet | None:
        url = f"{self.issuer}/.well-known/jwks.json"
        try:
            with urllib.request.urlopen(url, timeout=JWKS_TIMEOUT_S) as resp:  # noqa: S310 - our issuer
                return KeySet.import_key_set(json.load(resp))
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, JoseError):
            return self._keys


def api_gateway_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """A token's claims as API Gateway passes them to the integration: all strings."""
    out: dict[str, str] = {}
    for name, value in claims.items():
        if name in ("exp", "iat") and isinstance(value, int | float):
            out[name] = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(value))
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, list):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out
