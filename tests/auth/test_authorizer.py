"""The local gateway's Cognito authorizer against tokens of the OIDC stand-in (keys from its JWKS)."""

from __future__ import annotations

import base64
import json
import secrets
import time

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from aipm.local.authorizer import CognitoAuthorizer, NotAuthorized, api_gateway_claims
from tests.auth.conftest import Pool, first_sign_in


@pytest.fixture(scope="module")
def id_token(pool: Pool) -> str:
    """A real ID token of a person in two groups who signed in through the pages."""
    return first_sign_in(pool, f"auth-{secrets.token_hex(4)}@example.com", groups=("admin", "ops"))[
        1
    ].id_token


def _forged(pool: Pool, id_token: str, **changes: object) -> str:
    """The token's claims changed, signed with the stand-in's own key (only the claim checks can refuse)."""
    return pool.stand_in.sign({**jwt.decode(id_token, pool.stand_in.key).claims, **changes})


def test_a_valid_id_token_gives_api_gateway_shaped_claims(pool: Pool, id_token: str) -> None:
    authorizer = CognitoAuthorizer(pool.stand_in.issuer, [pool.client_id])
    claims = authorizer.claims(f"Bearer {id_token}")
    assert authorizer.claims(id_token) == claims  # a bare token too, as API Gateway takes it
    assert all(isinstance(v, str) for v in claims.values())
    assert claims["cognito:groups"] == "admin,ops"
    assert claims["email_verified"] == "true"
    assert claims["token_use"] == "id" and claims["aud"] == pool.client_id
    assert time.strptime(claims["exp"], "%a %b %d %H:%M:%S UTC %Y")
    assert claims["auth_time"].isdigit()


def test_tokens_the_cloud_authorizer_refuses_are_refused(pool: Pool, id_token: str) -> None:
    authorizer = CognitoAuthorizer(pool.stand_in.issuer, [pool.client_id])
    now = int(time.time())
    refused = {
        "no header": None,
        "empty bearer": "Bearer ",
        "not a JWT": "Bearer not.a.jwt",
        "access token": f"Bearer {_forged(pool, id_token, token_use='access')}",
        "other audience": f"Bearer {_forged(pool, id_token, aud='someone-else')}",
        "other issuer": f"Bearer {_forged(pool, id_token, iss='https://cognito-idp.us-east-1.amazonaws.com/x')}",
        "tampered": "Bearer " + _tamper(id_token),
    }
    other_key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, private=True, auto_kid=True)
    claims = jwt.decode(id_token, pool.stand_in.key).claims
    refused["unknown key"] = "Bearer " + jwt.encode({"alg": "RS256", "kid": other_key.kid}, claims, other_key)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=").decode()
    refused["alg none"] = f"Bearer {header}.{id_token.split('.')[1]}."
    for what, value in refused.items():
        with pytest.raises(NotAuthorized) as caught:
            authorizer.claims(value)
        assert caught.value.message == "Unauthorized", what
    with pytest.raises(NotAuthorized) as caught:
        authorizer.claims(f"Bearer {_forged(pool, id_token, exp=now - 1)}")
    assert caught.value.message == "The incoming token has expired"


def test_claims_are_strings_as_api_gateway_passes_them() -> None:
    out = api_gateway_claims({"exp": 0, "email_verified": False, "cognito:groups": ["a"], "n": 5})
    assert out == {
        "exp": "Thu Jan 01 00:00:00 UTC 1970",
        "email_verified": "false",
        "cognito:groups": "a",
        "n": "5",
    }


def _tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


def test_the_local_401_is_the_clouds_gateway_response() -> None:
    """The local gateway's 401 message is the CDK app's UNAUTHORIZED gateway response's, word for word."""
    from cdk.aipm_cdk.api import GATEWAY_ERRORS, gateway_template
    from lambda_src.errors import SIGN_IN_HINT

    _, code, message = GATEWAY_ERRORS["Unauthorized"]
    cloud = json.loads(gateway_template(code, message))
    assert cloud == {"error": "unauthenticated", "message": SIGN_IN_HINT}
