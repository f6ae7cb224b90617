"""`aipm login` / `aipm logout` against the real local stack, as separate processes: the browser is a scripted
person at the stand-in's sign-in pages (`BROWSER=python -m aipm.local.oidc.scripted %s`, which Python's
`webbrowser` runs), who follows the redirect to the CLI's loopback listener. ID tokens live 6 s on this
stack's app client, so the cached token expires during the test and must be refreshed."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from aipm.cli.login import jwt_claims
from aipm.local.moto_server import free_port
from aipm.local.oidc.scripted import ScriptedBrowser
from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions

pytestmark = pytest.mark.e2e

ID_TOKEN_S = 6


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    options = StackOptions(emulator_work_s=0.2, id_token_s=ID_TOKEN_S, cli_port=free_port())
    with LocalStack(tmp_path_factory.mktemp("login-stack"), options) as s:
        yield s


@pytest.fixture
def env(stack: LocalStack, tmp_path: Path) -> dict[str, str]:
    assert stack.sign_in is not None and stack.sign_in.demo is not None
    demo = stack.sign_in.demo
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH", "TMPDIR")}
    return {
        **keep,
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "AIPM_API_URL": stack.api_url,
        "BROWSER": f"{sys.executable} -m aipm.local.oidc.scripted %s",
        "AIPM_SIGNIN_USERNAME": demo.email,
        "AIPM_SIGNIN_PASSWORD": demo.password,
        "AIPM_SIGNIN_TOTP_SECRET": demo.totp_secret,
    }


def aipm(env: dict[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aipm.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def login_args(stack: LocalStack) -> list[str]:
    assert stack.sign_in is not None
    settings = stack.sign_in.settings
    return [
        "login",
        "--domain",
        settings.domain,
        "--client-id",
        settings.client_id,
        "--port",
        str(stack.options.cli_port),
    ]


def test_login_then_delegate_with_the_cached_token_refreshed_after_expiry(
    stack: LocalStack, env: dict[str, str], tmp_path: Path
) -> None:
    signed_in = aipm(env, *login_args(stack))
    assert signed_in.returncode == 0, signed_in.stderr
    assert "signed in as demo@example.com (profile default)" in signed_in.stderr
    cache = tmp_path / "config" / "aipm" / "tokens" / "default.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    first = json.loads(cache.read_text())["tokens"]["id_token"]

    delegated = aipm(
        env,
        "delegate",
        "--repo",
        f"{DEMO_OWNER}/{DEMO_REPO}",
        "--title",
        "Add login check",
        "--objective",
        "Signed-in delegation works",
        "--criterion",
        "It runs",
    )
    assert delegated.returncode == 0, delegated.stderr  # the job completed
    assert "completed" in delegated.stdout

    stale = json.loads(cache.read_text())["tokens"]["id_token"]
    time.sleep(max(0.0, jwt_claims(stale)["exp"] - time.time()) + 0.5)  # the cached ID token has expired
    listed = aipm(env, "--json", "jobs", "list")
    assert listed.returncode == 0, listed.stderr
    assert any(j["taskTitle"] == "Add login check" for j in json.loads(listed.stdout)["jobs"])
    fresh = json.loads(cache.read_text())["tokens"]["id_token"]
    assert fresh != stale and jwt_claims(fresh)["exp"] > time.time()
    assert jwt_claims(fresh)["auth_time"] == jwt_claims(first)["auth_time"]  # refreshed, not a new sign-in


def test_without_a_browser_the_url_is_printed_and_the_sign_in_completes(
    stack: LocalStack, env: dict[str, str]
) -> None:
    env = {**env, "BROWSER": "", "AIPM_PROFILE": "other"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aipm.cli", *login_args(stack), "--no-browser"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if re.search(r"https?://\S+/oauth2/authorize\?\S+", line):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(30), "".join(lines)
        url = next(
            m.group(0) for line in lines if (m := re.search(r"https?://\S+/oauth2/authorize\?\S+", line))
        )
        demo = stack.sign_in.demo if stack.sign_in else None
        assert demo is not None
        ScriptedBrowser(demo.email, demo.password, totp_secret=demo.totp_secret).sign_in(
            url, follow_callback=True
        )
        assert proc.wait(timeout=30) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "signed in as demo@example.com (profile other)" in "".join(lines)
    assert aipm(env, "workers").returncode == 0


def test_logout_revokes_and_forgets_and_the_cli_then_says_to_sign_in(
    stack: LocalStack, env: dict[str, str], tmp_path: Path
) -> None:
    assert aipm(env, *login_args(stack)).returncode == 0
    cache = tmp_path / "config" / "aipm" / "tokens" / "default.json"
    refresh_token = json.loads(cache.read_text())["tokens"]["refresh_token"]

    out = aipm(env, "logout")
    assert out.returncode == 0 and "the refresh token is revoked" in out.stderr
    assert not cache.exists()
    from aipm.cli.login import SignInRefusedError, refresh_tokens

    assert stack.sign_in is not None
    with pytest.raises(SignInRefusedError):
        refresh_tokens(stack.sign_in.settings, refresh_token)

    refused = aipm(env, "jobs", "list")
    assert refused.returncode == 3
    assert "not signed in" in refused.stderr and "aipm login" in refused.stderr


def test_the_api_401_says_how_to_sign_in(stack: LocalStack) -> None:
    """The gateway's 401 (as API Gateway's UNAUTHORIZED gateway response) carries the sign-in hint and the
    CORS header, so the console and other frontends can show it; an expired token says so."""
    from lambda_src.errors import SIGN_IN_HINT

    assert stack.console is not None
    expired = stack.api_token
    time.sleep(max(0.0, jwt_claims(expired)["exp"] - time.time()) + 0.5)
    for headers, message in (
        ({}, "Unauthorized"),
        ({"Authorization": "Bearer not-a-token"}, "Unauthorized"),
        ({"Authorization": f"Bearer {expired}"}, "The incoming token has expired"),
    ):
        request = urllib.request.Request(
            f"{stack.api_url}/api/jobs", headers={"Origin": stack.console.origin, **headers}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        assert refused.value.headers["Access-Control-Allow-Origin"] == stack.console.origin
        # The cloud's UNAUTHORIZED gateway response has one fixed message, whatever the reason (`message`
        # here is API Gateway's own, which the local gateway logs).
        assert json.load(refused.value) == {"error": "unauthenticated", "message": SIGN_IN_HINT}, message
    assert "aipm login" in SIGN_IN_HINT and "sign in" in SIGN_IN_HINT


def test_login_reads_where_to_sign_in_from_the_stacks_outputs(stack: LocalStack, env: dict[str, str]) -> None:
    """`aipm login --stack NAME`: SignInDomain and UserPoolClientId from CloudFormation (moto here)."""
    from tests.cli.ops_support import create_stack

    assert stack.sign_in is not None
    settings = stack.sign_in.settings
    name = create_stack(
        stack.client, {"SignInDomain": settings.domain, "UserPoolClientId": settings.client_id}
    )
    env = {**env, **stack.aws_env(), "AIPM_PROFILE": "from-stack"}
    signed_in = aipm(env, "login", "--stack", name, "--port", str(stack.options.cli_port))
    assert signed_in.returncode == 0, signed_in.stderr
    assert "signed in as demo@example.com (profile from-stack)" in signed_in.stderr

    missing = aipm({**env, "AIPM_PROFILE": "nowhere"}, "login", "--stack", create_stack(stack.client, {}))
    assert missing.returncode == 4 and "has no output SignInDomain" in missing.stderr
