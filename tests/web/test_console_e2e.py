"""The web console in headless Chromium against the real local stack: a person fills the "Generate Code & PR"
form, submits it, and watches the job reach `completed`. The screenshot is kept as a test artifact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions
from tests.web.conftest import ARTIFACTS, Page

pytestmark = pytest.mark.e2e

HAPPY = ["queued", "claimed", "preparing", "generating", "committing", "pushed", "completed"]
SCREENSHOT = ARTIFACTS / "console.png"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("web-stack"), StackOptions(emulator_work_s=1.0)) as s:
        yield s


def test_a_person_delegates_a_task_and_watches_it_complete(stack: LocalStack, page: Page) -> None:
    assert stack.console is not None
    page.open(stack.console.url)
    # config.json (written by the local stack, as the CDK app writes it next to the console in S3)
    page.wait(lambda: page.element("#api-url").get_attribute("value") == stack.api_url, what="the API URL")
    page.connect(stack.api_token)

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

    page.wait(lambda: "local-agent-1" in page.text("#workers"), what="the worker pool")
    # the pool view follows the agent's heartbeats (every 5 s here): both slots idle after the job
    page.wait(lambda: page.text("#workers").count(": idle") == 2, timeout_s=20, what="idle slots")
    assert "1 of 1 agent(s) healthy" in page.text("#workers-summary")
    assert page.text("#connection") == "connected"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert page.driver.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
    assert page.severe_console_errors() == []


def test_the_token_never_leaves_the_tab(stack: LocalStack, page: Page) -> None:
    assert stack.console is not None
    page.open(stack.console.url)
    page.connect(stack.api_token)
    page.wait(lambda: page.text("#connection") == "connected", what="a connection")
    assert stack.api_token not in page.driver.current_url
    assert page.element("#api-token").get_attribute("value") == ""  # the field is emptied once saved
    assert page.driver.execute_script("return sessionStorage.getItem('aipm.token')") == stack.api_token
    assert page.driver.execute_script("return localStorage.length") == 0
