"""The local stand-in for Cognito managed login, over moto's user pool in the real moto server, driven through
its real HTTP endpoints: first sign-in with a temporary password and TOTP enrolment, wrong TOTP codes, PKCE,
refresh, revocation, sign-out, and the ID token's claims and signature."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pyotp
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from aipm.cli import login
from aipm.cli.login import callback_url
from aipm.local.oidc.scripted import ScriptedBrowser, ScriptedSignInError
from tests.auth.conftest import APP_ORIGIN, NEW_PASSWORD, TEMPORARY_PASSWORD, Pool, code_flow, first_sign_in


def _email() -> str:
    return f"person-{secrets.token_hex(4)}@example.com"


def _post(
    url: str, fields: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(fields).encode(), method="POST", headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}"), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), err.headers


def test_first_sign_in_changes_the_temporary_password_enrols_totp_and_gets_cognito_shaped_tokens(
    pool: Pool,
) -> None:
    email = _email()
    browser, tokens = first_sign_in(pool, email, groups=("admin",))
    assert browser.totp_secret and len(browser.totp_secret) >= 16

    with urllib.request.urlopen(pool.stand_in.jwks_url, timeout=10) as resp:
        keys = KeySet.import_key_set(json.load(resp))
    claims = jwt.decode(tokens.id_token, keys, algorithms=["RS256"]).claims
    user = pool.idp.admin_get_user(UserPoolId=pool.pool_id, Username=email)
    sub = next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")
    assert claims["sub"] == sub
    assert claims["email"] == email and claims["email_verified"] is True
    assert claims["cognito:username"] == user["Username"]
    assert claims["cognito:groups"] == ["admin"]
    assert claims["token_use"] == "id"
    assert claims["aud"] == pool.client_id  # a string, as Cognito's
    assert claims["iss"] == f"{pool.stand_in.domain}/{pool.pool_id}"
    assert 3590 <= claims["exp"] - claims["iat"] <= 3600
    access = jwt.decode(tokens.access_token, keys, algorithms=["RS256"]).claims
    assert access["token_use"] == "access" and access["client_id"] == pool.client_id and "aud" not in access
    assert user["UserStatus"] == "CONFIRMED"  # moto saw the new password

    # The second sign-in asks for the password and the code from the enrolled authenticator.
    again = ScriptedBrowser(email, NEW_PASSWORD, totp_secret=browser.totp_secret)
    query, _ = code_flow(pool, again)
    assert "code" in query


def test_a_wrong_totp_code_is_refused_at_enrolment_and_at_sign_in(pool: Pool) -> None:
    email = _email()
    pool.create_user(email)
    wrong_at_enrolment = ScriptedBrowser(
        email, TEMPORARY_PASSWORD, new_password=NEW_PASSWORD, codes=["000000"]
    )
    with pytest.raises(ScriptedSignInError, match="Invalid code received for user"):
        code_flow(pool, wrong_at_enrolment)

    # The password changed on the way; enrol properly, then try a wrong code at the next sign-in.
    enrol = ScriptedBrowser(email, NEW_PASSWORD)
    code_flow(pool, enrol)
    assert enrol.totp_secret
    right_now = pyotp.TOTP(enrol.totp_secret)
    wrong = next(c for c in ("123456", "654321", "111111") if not right_now.verify(c, valid_window=1))
    refused = ScriptedBrowser(email, NEW_PASSWORD, totp_secret=enrol.totp_secret, codes=[wrong])
    with pytest.raises(ScriptedSignInError, match="Invalid code received for user"):
        code_flow(pool, refused)
    other_key = ScriptedBrowser(email, NEW_PASSWORD, totp_secret=pyotp.random_base32())
    with pytest.raises(ScriptedSignInError, match="Invalid code received for user"):
        code_flow(pool, other_key)


def test_a_wrong_password_or_unknown_person_gets_one_message(pool: Pool) -> None:
    email = _email()
    first_sign_in(pool, email)
    for who, password in ((email, "Wrong-Passw0rd!x"), ("nobody@example.com", NEW_PASSWORD)):
        with pytest.raises(ScriptedSignInError, match=r"^Incorrect username or password\.$"):
            code_flow(pool, ScriptedBrowser(who, password, totp_secret=pyotp.random_base32()))


def test_a_new_password_that_breaks_the_policy_is_refused_naming_the_policy(pool: Pool) -> None:
    email = _email()
    pool.create_user(email)
    with pytest.raises(ScriptedSignInError, match="password policy"):
        code_flow(pool, ScriptedBrowser(email, TEMPORARY_PASSWORD, new_password="short"))


def test_pkce_s256_is_required_and_checked(pool: Pool) -> None:
    _, challenge = login.pkce_pair()
    base = {
        "response_type": "code",
        "client_id": pool.client_id,
        "redirect_uri": callback_url(),
        "scope": "openid",
    }
    for extra in (
        {},
        {"code_challenge": challenge, "code_challenge_method": "plain"},
        {"code_challenge": challenge},
    ):
        url = f"{pool.stand_in.domain}/oauth2/authorize?" + urllib.parse.urlencode({**base, **extra})
        landed = ScriptedBrowser("x@example.com", "x").sign_in(url)  # the error goes back to the app
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(landed).query)
        assert query["error"] == ["invalid_request"], (extra, query)

    email = _email()
    browser, _ = first_sign_in(pool, email)
    query, verifier = code_flow(pool, ScriptedBrowser(email, NEW_PASSWORD, totp_secret=browser.totp_secret))
    token_url = f"{pool.stand_in.domain}/oauth2/token"
    form = {
        "grant_type": "authorization_code",
        "client_id": pool.client_id,
        "code": query["code"][0],
        "redirect_uri": callback_url(),
    }
    assert _post(token_url, {**form, "code_verifier": login.pkce_pair()[0]})[:2] == (
        400,
        {"error": "invalid_grant", "error_description": "Code challenge failed."},
    )
    assert _post(token_url, form)[1]["error"] == "invalid_request"  # no verifier at all
    status, body, _ = _post(token_url, {**form, "code_verifier": verifier})
    assert status == 200 and body["token_type"] == "Bearer" and body["id_token"]
    assert _post(token_url, {**form, "code_verifier": verifier})[1]["error"] == "invalid_grant"  # single use


def test_an_unregistered_redirect_uri_is_refused_on_the_page_not_redirected_to(pool: Pool) -> None:
    _, challenge = login.pkce_pair()
    query = {
        "response_type": "code",
        "client_id": pool.client_id,
        "redirect_uri": "https://evil.example/cb",
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    request = urllib.request.Request(
        f"{pool.stand_in.domain}/oauth2/authorize?" + urllib.parse.urlencode(query)
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and "Location" not in refused.value.headers


def test_refresh_keeps_auth_time_and_revocation_ends_it(pool: Pool) -> None:
    email = _email()
    _, tokens = first_sign_in(pool, email)
    first = login.jwt_claims(tokens.id_token)
    time.sleep(1.1)
    refreshed = login.refresh_tokens(pool.settings, tokens.refresh_token)
    again = login.jwt_claims(refreshed.id_token)
    assert again["auth_time"] == first["auth_time"] and again["iat"] > first["iat"]
    assert again["origin_jti"] == first["origin_jti"] and refreshed.refresh_token == tokens.refresh_token

    # CORS for the console's origin on the token endpoint; none for another origin.
    fields = {
        "grant_type": "refresh_token",
        "client_id": pool.client_id,
        "refresh_token": tokens.refresh_token,
    }
    _, _, headers = _post(f"{pool.stand_in.domain}/oauth2/token", fields, {"Origin": APP_ORIGIN})
    assert headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    _, _, headers = _post(f"{pool.stand_in.domain}/oauth2/token", fields, {"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers

    login.revoke(pool.settings, tokens.refresh_token)
    with pytest.raises(login.SignInRefusedError) as refused:
        login.refresh_tokens(pool.settings, tokens.refresh_token)
    assert refused.value.error == "invalid_grant"


def test_a_disabled_person_cannot_refresh(pool: Pool) -> None:
    email = _email()
    _, tokens = first_sign_in(pool, email)
    pool.idp.admin_disable_user(UserPoolId=pool.pool_id, Username=email)
    with pytest.raises(login.SignInRefusedError):
        login.refresh_tokens(pool.settings, tokens.refresh_token)


def test_the_sign_in_session_lasts_until_logout(pool: Pool) -> None:
    email = _email()
    browser, _ = first_sign_in(pool, email)
    # Signed in: the next authorize answers at once (no pages), as managed login does with its cookie.
    _, challenge = login.pkce_pair()
    url = login.authorize_url(pool.settings, redirect_uri=callback_url(), state="s2", challenge=challenge)
    status, location, _ = browser._get(url)
    assert status == 302 and location.startswith(callback_url())

    refused, _, _ = browser._get(
        f"{pool.stand_in.domain}/logout?"
        + urllib.parse.urlencode({"client_id": pool.client_id, "logout_uri": "https://evil.example/"})
    )
    assert refused == 400
    status, location, _ = browser._get(
        f"{pool.stand_in.domain}/logout?"
        + urllib.parse.urlencode({"client_id": pool.client_id, "logout_uri": f"{APP_ORIGIN}/"})
    )
    assert (status, location) == (302, f"{APP_ORIGIN}/")
    status, _, page = browser._get(url)
    assert status == 200 and "name='password'" in page  # the sign-in page again


def test_discovery_names_the_endpoints(pool: Pool) -> None:
    with urllib.request.urlopen(
        f"{pool.stand_in.issuer}/.well-known/openid-configuration", timeout=10
    ) as resp:
        doc = json.load(resp)
    domain = pool.stand_in.domain
    assert doc["issuer"] == pool.stand_in.issuer
    assert doc["authorization_endpoint"] == f"{domain}/oauth2/authorize"
    assert doc["token_endpoint"] == f"{domain}/oauth2/token"
    assert doc["revocation_endpoint"] == f"{domain}/oauth2/revoke"
    assert doc["jwks_uri"] == f"{pool.stand_in.issuer}/.well-known/jwks.json"
    assert doc["code_challenge_methods_supported"] == ["S256"]
