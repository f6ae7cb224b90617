"""The console in headless Chromium against a fake that speaks the API contract: every route the console
uses (list, workers, cancel, retry, delegate errors), and how it behaves when a route or the sign-in fails.
The person signs in through the local OIDC stand-in (over moto's user pool in the test run's moto server);
the fake verifies their ID tokens as API Gateway's Cognito authorizer does."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aipm.local.authorizer import CognitoAuthorizer
from aipm.local.console import ConsoleServer
from aipm.local.signin import LocalSignIn
from tests.cli.fake_api import HAPPY, FakeApi
from tests.web.conftest import ARTIFACTS, Page


@pytest.fixture
def fake(
    aws_client_factory: Any, aws_endpoint: str, request: pytest.FixtureRequest
) -> Iterator[tuple[FakeApi, ConsoleServer]]:
    """The fake API and the console, with a sign-in (pool, stand-in, demo person) in the run's moto server.
    `@pytest.mark.parametrize("fake", [N], indirect=True)` makes ID tokens live N seconds."""
    api = FakeApi()
    with api.running():
        console = ConsoleServer(api_url=api.url).start()
        api.allow_origin = console.origin  # CORS, as the deployed API allows only the console's origin
        sign_in = LocalSignIn(
            aws_client_factory("cognito-idp"),
            endpoint_url=aws_endpoint,
            region="us-east-1",
            app_origin=console.origin,
            id_token_s=getattr(request, "param", 3600),
        ).start()
        console.auth = sign_in.console_config()
        api.authorizer = CognitoAuthorizer(sign_in.issuer, [sign_in.client_id])
        api.person = sign_in.demo
        try:
            yield api, console
        finally:
            sign_in.stop()
            console.stop()


def sign_in(page: Page, api: FakeApi) -> None:
    person = api.person
    page.sign_in(person.email, person.password, totp_secret=person.totp_secret)


def fill_task(page: Page, branch: str = "feature/x") -> None:
    page.type("repo", "acme/tools")
    page.type("branchName", branch)
    page.type("taskTitle", "A task")
    page.type("objective", "Do it")
    page.type("prTitle", "feat: a task")


def test_jobs_workers_cancel_and_retry(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    api, console = fake
    running = api.add_job("Running one", status="generating", worker="agent-a/slot-1")
    failed = api.add_job("Failed one", status="failed", reason="the CLI exited with status 3", error="boom")
    done = api.add_job("Done one", status="completed", commitSha="c" * 40, changedFiles=["docs/a.md"])

    page.open(console.url)
    sign_in(page, api)
    page.wait(lambda: len(page.texts("li.job")) == 3, what="three jobs")
    assert page.texts("li.job .job-title") == ["Done one", "Failed one", "Running one"]  # newest first
    assert page.job_status(done["jobId"]) == "completed"
    assert "the CLI exited with status 3" in page.job_text(failed["jobId"])

    page.wait(lambda: "agent-a" in page.text("#workers"), what="the worker pool")
    assert page.text("#workers-summary") == "1 of 1 agent(s) healthy · 1 of 2 slot(s) busy"
    assert page.texts("#workers .slot") == [
        f"slot 1: busy {running['jobId']}",  # the job the list shows on it, not the heartbeat's older one
        "slot 2: idle · 1 reset(s)",  # planned, not a crash
    ]

    page.click(f'li.job[data-job-id="{running["jobId"]}"] button[data-action="cancel"]')
    page.wait(lambda: page.job_status(running["jobId"]) == "cancelled", what="the cancel")
    assert len(api.seen("POST", f"/api/jobs/{running['jobId']}/cancel")) == 1

    page.click(f'li.job[data-job-id="{failed["jobId"]}"] button[data-action="retry"]')
    page.wait(lambda: page.job_status(failed["jobId"]) == "completed", what="the retried job to complete")
    assert page.job_steps(failed["jobId"])[-7:] == ["retried", *HAPPY[1:]]

    page.element("#status-filter").send_keys("failed")
    page.wait(lambda: page.texts("li.job") == [], what="the filter")


def test_a_field_the_api_refuses_is_marked(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    api, console = fake
    page.open(console.url)
    sign_in(page, api)
    fill_task(page, branch="has space")
    page.click("#delegate-submit")

    page.wait(lambda: page.element("#branchName").get_attribute("aria-invalid") == "true", what="the mark")
    assert page.text("#branchName-error") == "Branch name: must not contain spaces"  # the label's words
    assert page.text("#delegate-result") == "Please correct the marked field."
    assert page.driver.switch_to.active_element.get_attribute("id") == "branchName"  # focus on it
    assert api.jobs == {}


def test_required_fields_are_checked_before_sending(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    api, console = fake
    page.open(console.url)
    sign_in(page, api)
    page.type("repo", "no-slash")
    page.click("#delegate-submit")
    assert page.element("#repo").get_attribute("aria-invalid") == "true"
    assert page.text("#objective-error") == "Enter the objective."
    assert page.text("#taskTitle-error") == "Enter the task title."
    assert page.text("#branchName-error") == ""  # optional: derived from the title, as in the CLI
    for field in ("repo", "objective", "taskTitle"):  # each error is bound to its input
        assert page.element(f"#{field}").get_attribute("aria-describedby") == f"{field}-error"
    assert page.driver.switch_to.active_element.get_attribute("id") == "repo"  # focus on the first
    assert api.seen("POST", "/api/personal-delegate") == []


def test_the_request_is_the_prototypes_with_an_idempotency_key(
    fake: tuple[FakeApi, ConsoleServer], page: Page
) -> None:
    api, console = fake
    page.open(console.url)
    sign_in(page, api)
    fill_task(page)
    page.type("constraints", "Keep it small")
    page.type("acceptanceCriteria", "- One\n\n* Two\n")
    page.click("#delegate-submit")
    job_id = page.wait(lambda: page.text("#delegate-job-id"), what="the answer")

    sent = api.seen("POST", "/api/personal-delegate")
    assert len(sent) == 1
    assert sent[0].body == {
        "owner": "acme",
        "repo": "tools",
        "branchName": "feature/x",
        "taskTitle": "A task",
        "objective": "Do it",
        "prTitle": "feat: a task",
        "constraints": "Keep it small",
        "acceptanceCriteria": ["One", "Two"],
    }
    assert len(sent[0].headers["Idempotency-Key"]) >= 32
    scheme, token = sent[0].headers["Authorization"].split(" ")
    assert scheme == "Bearer" and api.authorizer.claims(token)["email"] == api.person.email  # the ID token
    page.wait(lambda: page.job_status(job_id) == "completed", what="the job to complete")


def test_a_refused_sign_in_says_what_to_do(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    api, console = fake
    page.open(console.url)
    sign_in(page, api)
    api.authorizer = CognitoAuthorizer(api.authorizer.issuer, ["another-client"])  # the API refuses them
    page.wait(lambda: page.text("#connection") == "sign-in needed", what="the rejection")
    fill_task(page)
    page.click("#delegate-submit")
    page.wait(lambda: "wants you signed in" in page.text("#delegate-result"), what="the error")
    assert "aipm login" in page.text("#delegate-result")  # the API's message says how to sign in


def test_an_api_without_the_list_and_workers_routes(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    api, console = fake
    api.missing_routes.update({"list", "workers"})
    page.open(console.url)
    sign_in(page, api)
    page.wait(lambda: "does not report the worker pool" in page.text("#workers"), what="workers note")
    fill_task(page)
    page.click("#delegate-submit")
    job_id = page.wait(lambda: page.text("#delegate-job-id"), what="the answer")
    page.wait(lambda: page.job_status(job_id) == "completed", what="the job, followed by its id")
    assert "cannot list jobs" in page.text("#jobs-note")


@pytest.mark.parametrize("fake", [5], indirect=True)
def test_the_console_refreshes_an_expired_id_token(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    """ID tokens live 5 s here: the console keeps polling with fresh ones (refresh grant), no new sign-in."""
    from aipm.cli.login import jwt_claims

    api, console = fake
    page.open(console.url)
    sign_in(page, api)
    page.wait(lambda: api.seen("GET", "/api/workers"), what="the first poll")
    first = jwt_claims(api.seen("GET", "/api/workers")[0].headers["Authorization"].split(" ")[1])

    def refreshed() -> bool:
        latest = jwt_claims(api.requests[-1].headers.get("Authorization", "x y").split(" ")[1])
        return bool(latest.get("exp", 0) > first["exp"])

    page.wait(refreshed, timeout_s=30, what="a request with a refreshed ID token")
    latest = jwt_claims(api.requests[-1].headers["Authorization"].split(" ")[1])
    assert latest["auth_time"] == first["auth_time"]  # the same sign-in
    assert page.text("#connection") == "connected"
    assert page.text("#auth-status") == f"Signed in as {api.person.email}"


def test_focus_stays_on_cancel_across_refreshes_and_a_status_change_is_said_once(
    fake: tuple[FakeApi, ConsoleServer], page: Page
) -> None:
    api, console = fake
    running = api.add_job("Long one", status="generating")
    api.add_job("Other one", status="queued")
    page.open(console.url)
    sign_in(page, api)
    page.wait(
        lambda: page.css(f'li.job[data-job-id="{running["jobId"]}"] [data-action="cancel"]'), what="Cancel"
    )
    page.driver.execute_script(
        "document.querySelector(arguments[0]).focus()",
        f'li.job[data-job-id="{running["jobId"]}"] [data-action="cancel"]',
    )
    # Record what the polite live region says, and how often.
    page.driver.execute_script(
        "window.said = []; new MutationObserver(() => window.said.push(document.getElementById('announcer')"
        ".textContent)).observe(document.getElementById('announcer'), {childList: true, characterData: true,"
        " subtree: true});"
    )
    api.jobs[running["jobId"]]["updatedAt"] = "2026-01-01T00:01:00.000Z"  # the card changes: it is rebuilt
    time.sleep(4)  # two refreshes at least (1.5 s while a job runs)
    focused = page.driver.switch_to.active_element
    assert focused.get_attribute("data-action") == "cancel"
    assert (
        page.driver.execute_script("return document.activeElement.closest('li.job').dataset.jobId")
        == running["jobId"]
    )
    api.jobs[running["jobId"]]["status"] = "completed"
    page.wait(lambda: page.job_status(running["jobId"]) == "completed", what="completed")
    time.sleep(3.5)
    said = page.driver.execute_script("return window.said")
    assert [s for s in said if s] == ["Long one: completed"]  # once, and nothing for unchanged jobs
    assert page.element("#workers").get_attribute("aria-live") is None  # the pool is not read out


def test_keyboard_only_submission_with_derived_branch_and_pr_title(
    fake: tuple[FakeApi, ConsoleServer], page: Page
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    api, console = fake
    page.open(console.url)
    sign_in(page, api)
    page.element("#repo").click()  # the first field; from here on only the keyboard
    keys = ActionChains(page.driver)
    keys.send_keys("acme/tools", Keys.TAB, Keys.TAB, "Add export", Keys.TAB, Keys.TAB, "Users export data")
    keys.send_keys(Keys.TAB, Keys.TAB, Keys.TAB, Keys.TAB).perform()  # constraints, criteria, base, submit
    assert page.driver.switch_to.active_element.get_attribute("id") == "delegate-submit"
    ActionChains(page.driver).send_keys(Keys.ENTER).perform()
    page.wait(lambda: api.seen("POST", "/api/personal-delegate"), what="the request")
    sent = api.seen("POST", "/api/personal-delegate")[-1].body
    assert sent["branchName"] == "feature/add-export" and sent["prTitle"] == "Add export"
    assert sent["objective"] == "Users export data"


@pytest.mark.parametrize(("scheme", "width"), [("dark", 1400), ("light", 390)])
def test_dark_mode_and_phone_width(
    fake: tuple[FakeApi, ConsoleServer], page: Page, scheme: str, width: int
) -> None:
    api, console = fake
    api.add_job("A job", status="failed", reason="it failed")
    page.driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )
    page.driver.set_window_size(width, 1500)
    try:
        page.open(console.url)
        sign_in(page, api)
        page.wait(lambda: page.texts("li.job"), what="the job")
        background = page.driver.execute_script(
            "return getComputedStyle(document.documentElement).backgroundColor"
        )
        columns = page.driver.execute_script(
            "return getComputedStyle(document.querySelector('#delegate-form .grid')).gridTemplateColumns"
        )
        overflow = page.driver.execute_script(
            "return [...document.querySelectorAll('input, textarea')]"
            ".filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth)"
            ".map(e => e.id)"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.driver.save_screenshot(str(ARTIFACTS / f"console-{scheme}-{width}px.png"))
    finally:
        page.driver.set_window_size(1400, 1500)
        page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    if scheme == "dark":
        assert background == "rgb(15, 19, 25)"
    else:
        assert len(columns.split()) == 1, columns  # one column under 600 px
        assert overflow == []  # no input cut off


AXE_VERSION = "4.14.1"  # npm axe-core, pinned; cached in the git-ignored .cache/npm


def axe_source() -> str:
    root = Path(__file__).resolve().parents[2] / ".cache" / "npm"
    script = root / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: install Node.js (Debian: apt-get install npm)")
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(root),
                "--no-save",
                "--no-audit",
                "--no-fund",
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return script.read_text()


def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now, one line each (rule, help, elements)."""
    page.driver.execute_script(axe_source())  # through DevTools: the page's CSP does not apply
    return list(
        page.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag',"
            " values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
            ".then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' — '"
            " + v.nodes.map(n => n.target.join(' ')).join(', '))), e => done(['axe failed: ' + e]));"
        )
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_core_finds_no_wcag_21_a_or_aa_violation(
    fake: tuple[FakeApi, ConsoleServer], page: Page, scheme: str
) -> None:
    api, console = fake
    api.add_job("Running one", status="generating")
    api.add_job("Failed one", status="failed", reason="it failed", outputTail="some output\n")
    page.driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )
    try:
        page.open(console.url)
        sign_in(page, api)
        page.wait(lambda: len(page.texts("li.job")) == 2, what="the jobs")
        page.click("#delegate-submit")  # the error state of the form too
        result = axe_violations(page)
    finally:
        page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert result == []
