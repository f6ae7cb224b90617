"""The CLI's sign-in pieces at the cheapest layer: PKCE, the token cache's file and modes, the loopback
listener's checks, settings validation, and a 401 answered by one refresh (against the contract fake API)."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aipm.cli.api import ApiClient
from aipm.cli.errors import CliError
from aipm.cli.login import (
    CachedToken,
    Session,
    SignInSettings,
    TokenCache,
    Tokens,
    _Callback,
    check_profile,
    pkce_pair,
)
from aipm.local.moto_server import free_port
from tests.cli.fake_api import TOKEN, FakeApi


def test_pkce_pair_is_s256_of_a_43_character_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert len(verifier) == 43 and set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == digest
    assert pkce_pair()[0] != verifier


def _session(expires_in_s: float = 3600) -> Session:
    now = time.time()
    return Session(
        SignInSettings("http://127.0.0.1:1", "abc123"), Tokens("id", "acc", "ref", now, now + expires_in_s)
    )


def test_the_cache_is_one_0600_file_per_profile_in_a_0700_directory(tmp_path: Path) -> None:
    cache = TokenCache("prod", directory=tmp_path / "tokens")
    assert cache.load() is None
    saved = _session()
    cache.save(saved)
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700
    assert cache.load() == saved
    assert json.loads(cache.path.read_text())["settings"] == {
        "domain": "http://127.0.0.1:1",
        "client_id": "abc123",
    }
    assert TokenCache("other", directory=tmp_path / "tokens").load() is None
    assert [p.name for p in (tmp_path / "tokens").iterdir()] == ["prod.json"]  # no temporary file left
    cache.path.write_text("{not json")
    assert cache.load() is None  # unreadable: as if signed out
    assert cache.delete() and not cache.delete()


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b", "x" * 65, "sp ace"])
def test_profile_names_cannot_escape_the_directory(name: str) -> None:
    with pytest.raises(CliError):
        check_profile(name)


@pytest.mark.parametrize(
    ("domain", "client_id"),
    [
        ("http://auth.example.com", "abc"),  # plain http off loopback
        ("https://auth.example.com/path", "abc"),
        ("ftp://auth.example.com", "abc"),
        ("https://user:pw@auth.example.com", "abc"),
        ("https://auth.example.com", "a b"),
        ("https://auth.example.com", ""),
    ],
)
def test_sign_in_settings_refuse_what_could_leak_or_cannot_work(domain: str, client_id: str) -> None:
    with pytest.raises(CliError):
        SignInSettings(domain, client_id)


def test_the_loopback_listener_takes_only_its_own_state_on_its_own_path() -> None:
    port = free_port()
    with _Callback(port, "the-state") as callback:
        for path, status in (("/other?code=x&state=the-state", 404), ("/callback?code=x&state=forged", 400)):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert refused.value.code == status
        assert not callback.done.is_set()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/callback?code=c0de&state=the-state", timeout=5
        ) as ok:
            assert ok.status == 200
        assert callback.done.wait(timeout=5) and callback.code == "c0de"  # set after the reply is sent


def test_not_signed_in_says_how_to_sign_in(tmp_path: Path) -> None:
    with pytest.raises(CliError) as caught:
        CachedToken(TokenCache("prod", directory=tmp_path))()
    assert caught.value.message == "not signed in"
    assert caught.value.hint == "aipm login --profile prod (or set AIPM_API_TOKEN)"


def test_a_401_gets_one_refreshed_token_and_one_more_try() -> None:
    calls: list[bool] = []

    def source(*, force_refresh: bool = False) -> str:
        calls.append(force_refresh)
        return TOKEN if force_refresh else "expired-token"

    with FakeApi().running() as api:
        assert ApiClient(api.url, source).workers()["totalSlots"] == 2
        assert calls == [False, True]

        def always_wrong(*, force_refresh: bool = False) -> str:
            return "still-wrong"

        with pytest.raises(CliError) as caught:
            ApiClient(api.url, always_wrong).workers()
        assert "rejected the credentials" in caught.value.message


def test_cached_token_refreshes_only_when_due(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = TokenCache(directory=tmp_path)
    cache.save(_session(expires_in_s=3600))
    refreshed: list[str] = []

    def fake_refresh(settings: SignInSettings, refresh_token: str) -> Tokens:
        refreshed.append(refresh_token)
        now = time.time()
        return Tokens("new-id", "acc", refresh_token, now, now + 3600)

    # The network call is replaced here only to count it; the real refresh runs in tests/cli/test_login.py.
    monkeypatch.setattr("aipm.cli.login.refresh_tokens", fake_refresh)
    assert CachedToken(cache)() == "id" and refreshed == []
    assert CachedToken(cache)(force_refresh=True) == "new-id" and refreshed == ["ref"]
    cache.save(_session(expires_in_s=10))  # within the margin (a quarter of its 10 s life is 2.5 s: not yet)
    assert CachedToken(cache)() == "id"
    cache.save(_session(expires_in_s=-1))  # expired a second ago
    assert CachedToken(cache)() == "new-id"
