"""The web console in headless Chromium against the real local stack: a person fills the "Generate Code & PR"
form, submits it, and watches the job reach `completed`. The screenshot is kept as a test artifact."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from aipm.local.signin import new_password
from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions
from tests.web.conftest import ARTIFACTS, Page

pytestmark = pytest.mark.e2e

HAPPY = ["queued", "claimed", "preparing", "generating", "committing", "pushed", "completed"]
SCREENSHOT = ARTIFACTS / "console.png"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("web-stack"), StackOptions(emulator_work_s=1.0)) as s:
        yield s


def test_a_new_person_signs_in_delegates_watches_the_job_complete_and_signs_out(
    stack: LocalStack, page: Page
) -> None:
    """First sign-in through the local OIDC stand-in (temporary password → new password → authenticator
    enrolment, a wrong code refused), then the "Generate Code & PR" form, the job to completed, sign-out."""
    assert stack.console is not None and stack.sign_in is not None
    email = "new.person@example.com"
    temporary = stack.sign_in.create_person(email)
    page.open(stack.console.url)
    # config.json (written by the local stack, as the CDK app writes it next to the console in S3)
    page.wait(lambda: page.element("#api-url").get_attribute("value") == stack.api_url, what="the API URL")
    assert page.text("#auth-status") == "Not signed in"
    totp_secret = page.sign_in(email, temporary, new_password=new_password(), wrong_code_first=True)
    assert totp_secret
    assert page.text("#auth-status") == f"Signed in as {email}"
    assert page.driver.current_url == stack.console.url  # ?code&state taken out of the address bar

    page.type("repo", f"{DEMO_OWNER}/{DEMO_REPO}")
    page.type("branchName", "feature/add-export")
    page.type("taskTitle", "Add export button")
    page.type("objective", "User can export data")
    page.type("prTitle", "feat: Add export button")
    page.type("constraints", "Use existing button patterns")
    page.type("acceptanceCriteria", "Button appears\nExport works")
    page.click("#delegate-submit")

    job_id = page.wait(lambda: page.text("#delegate-job-id"), what="the delegate answer")
    result = page.text("#delegate-result")
    assert "Pull request #" in result and "Confirmation: PR" in result

    page.wait(lambda: page.job_status(job_id) == "completed", timeout_s=90, what="the job to complete")
    assert page.job_steps(job_id) == HAPPY
    (href,) = page.attrs(f'li.job[data-job-id="{job_id}"] a.pr-link', "href")
    assert (href or "").startswith(f"{stack.forge.base_url}/{DEMO_OWNER}/{DEMO_REPO}/pull/")
    assert "docs/add-export-button.md" in page.job_text(job_id)
    job = stack.api("GET", f"/api/jobs/{job_id}")[1]
    assert email in json.dumps(job)  # the API saw who asked: the signed-in person

    page.wait(lambda: "local-agent-1" in page.text("#workers"), what="the worker pool")
    # the pool view follows the agent's heartbeats (every 5 s here): both slots idle after the job
    page.wait(lambda: page.text("#workers").count(": idle") == 2, timeout_s=20, what="idle slots")
    assert "1 of 1 agent(s) healthy" in page.text("#workers-summary")
    assert page.text("#connection") == "connected"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert page.driver.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
    assert page.severe_console_errors() == []

    page.click("#sign-out")
    page.wait(
        lambda: (
            "code=" not in page.driver.current_url
            and page.text("#auth-status") == "Not signed in"
            and page.css("#delegate-form") is not None
        ),
        what="the sign-out",
    )
    assert page.driver.execute_script("return sessionStorage.length") == 0 or not any(
        k.startswith("aipm.auth.") for k in page.driver.execute_script("return Object.keys(sessionStorage)")
    )
    # The managed-login session ended too: signing in again asks for the password.
    page.wait(lambda: page.driver.execute_script("return !document.querySelector('#sign-in').hidden"))
    page.click("#sign-in")
    page.wait(lambda: page.css("#password") is not None, what="the password page again")


def test_the_tokens_never_leave_the_tab(stack: LocalStack, page: Page) -> None:
    assert stack.console is not None and stack.sign_in is not None and stack.sign_in.demo is not None
    demo = stack.sign_in.demo
    page.open(stack.console.url)
    page.sign_in(demo.email, demo.password, totp_secret=demo.totp_secret)
    page.wait(lambda: page.text("#connection") == "connected", what="a connection")
    assert "code=" not in page.driver.current_url and "token" not in page.driver.current_url
    keys = page.driver.execute_script("return Object.keys(sessionStorage)")
    stored = json.loads(
        page.driver.execute_script(f"return sessionStorage.getItem('aipm.auth.{stack.sign_in.client_id}')")
    )
    assert set(stored) == {"idToken", "accessToken", "refreshToken"} and "aipm.auth.pending" not in keys
    assert page.driver.execute_script("return localStorage.length") == 0
    # Cookies ignore ports, so the stand-in's HttpOnly sign-in session (127.0.0.1 too) shows here; the
    # console sets none, and no cookie holds a token.
    cookies = page.driver.get_cookies()
    assert [c["name"] for c in cookies] == ["aipm-local-login"] and cookies[0]["httpOnly"]
    assert not any(stored["idToken"] in c["value"] or stored["refreshToken"] in c["value"] for c in cookies)
