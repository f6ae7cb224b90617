"""The console's attach terminal (terminal.html: xterm.js vendored by `make web-vendor`) in headless Chromium,
against the real local stack: from a finished job's card to a CLI session on its branch through the agent's
real attach server (its token and Origin check), typing into the session, seeing its output, and Finish
pushing the session's commit to the branch."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.keys import Keys

from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions
from tests.e2e.test_agent_interactive import _commit_task, job_branch
from tests.web.conftest import ARTIFACTS, Page
from tests.web.test_console_contract import axe_violations

pytestmark = pytest.mark.e2e

VENDOR = Path(__file__).resolve().parents[2] / "aipm" / "web" / "vendor" / "xterm.js"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if not VENDOR.exists():
        pytest.fail("the console's xterm.js is missing: run `make web-vendor`")
    with LocalStack(tmp_path_factory.mktemp("attach-stack"), StackOptions(emulator_work_s=0.1)) as s:
        yield s


def screen(page: Page) -> str:
    """What the terminal shows (xterm.js's rows, as text)."""
    return page.text("#terminal .xterm-rows")


def type_keys(page: Page, *keys: str) -> None:
    """Keys as a person types them, into whatever has focus (xterm.js's input element once connected)."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(page.driver).send_keys(*keys).perform()


def open_terminal(stack: LocalStack, page: Page, branch: str) -> None:
    """Sign in to the console, find the job's card and follow its "Attach terminal" link."""
    assert stack.console is not None and stack.sign_in is not None and stack.sign_in.demo is not None
    demo = stack.sign_in.demo
    page.open(stack.console.url)
    page.sign_in(demo.email, demo.password, totp_secret=demo.totp_secret)
    link = f'li.job[data-branch="{branch}"] a[data-action="attach"]'
    page.wait(lambda: page.css(link), what="the Attach terminal link")
    href = page.driver.execute_script("return document.querySelector(arguments[0]).href", link)
    assert href.startswith(stack.console.url + "terminal.html?")
    query = parse_qs(urlsplit(href).query)
    assert query == {"repo": [f"{DEMO_OWNER}/{DEMO_REPO}"], "branch": [branch]}
    page.driver.get(href)
    page.wait(lambda: page.css("#attach-token") is not None, what="the terminal page")
    page.wait(lambda: page.element("#attach-url").get_attribute("value"), what="the attach address")


def test_typing_into_a_session_on_the_jobs_branch_and_finishing_pushes(stack: LocalStack, page: Page) -> None:
    branch = job_branch(stack, "Console attach")
    task_md = (
        "# Refine from the console\n\n## Objective\n\nAdd a section\n\n## Acceptance criteria\n\n- [ ] Done\n"
    )
    tip = _commit_task(stack, branch, task_md)
    git = ["git", "--git-dir", str(stack.demo_repo)]
    subprocess.run([*git, "update-ref", f"refs/heads/{branch}", tip], check=True)

    open_terminal(stack, page, branch)
    assert page.element("#attach-url").get_attribute("value") == (
        f"ws://127.0.0.1:{stack.agents[0].attach_port}/attach"
    )
    assert page.element("#attach-branch").get_attribute("value") == branch
    page.type("attach-token", stack.agent_token)
    page.click("#attach-connect")
    page.wait(lambda: page.text("#attach-state") == "connected", what="the session")

    type_keys(page, "Read TASK.md and implement it", Keys.ENTER)
    page.wait(lambda: "[y/n/t]" in screen(page), timeout_s=40, what="the CLI's permission question")
    # The keys reached the CLI: it echoed them on its prompt line and acted on the request.
    assert "> Read TASK" in screen(page) and "Reading TASK.md" in screen(page)
    # A person answers once the CLI reads keys again: its prompt is back under the question.
    page.wait(lambda: re.search(r"\[y/n/t\]:\s+\S*%\s*>", screen(page)), what="the prompt under the question")
    type_keys(page, "y", Keys.ENTER)
    page.wait(lambda: "Done: Refine from the console" in screen(page), timeout_s=40, what="the CLI's work")
    ARTIFACTS.mkdir(exist_ok=True)
    page.driver.save_screenshot(str(ARTIFACTS / "attach-terminal.png"))
    assert axe_violations(page) == []  # WCAG 2.1 A/AA, with the live terminal on the page

    page.click("#attach-finish")
    page.wait(lambda: page.text("#attach-message").startswith("Pushed commit "), what="the push")
    commit = page.attrs("#attach-message", "data-commit")[0]
    pushed = subprocess.run([*git, "rev-parse", branch], capture_output=True, text=True, check=True)
    assert pushed.stdout.strip() == commit
    files = subprocess.run(
        [*git, "show", "--name-only", "--format=", pushed.stdout.strip()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert files == ["docs/refine-from-the-console.md"]
    page.wait(lambda: page.text("#attach-state") == "not connected", what="the session to close")
    assert page.severe_console_errors() == []  # no CSP refusal, no script error


def test_a_wrong_token_is_refused_with_the_agents_words(stack: LocalStack, page: Page) -> None:
    branch = job_branch(stack, "Console refused")
    open_terminal(stack, page, branch)
    page.type("attach-token", "not-the-token")
    page.click("#attach-connect")
    page.wait(lambda: "The agent refused" in page.text("#attach-message"), what="the refusal")
    said = page.text("#attach-message")
    assert said == "The agent refused: unauthorized", said
    page.wait(lambda: page.text("#attach-state") == "not connected", what="the closed socket")
    assert not page.element("#attach-connect").get_attribute("hidden")  # ready to try again


def test_missing_fields_are_marked_before_connecting(stack: LocalStack, page: Page) -> None:
    assert stack.console is not None
    page.driver.get(stack.console.url + "terminal.html")
    page.wait(lambda: page.element("#attach-url").get_attribute("value"), what="the attach address")
    page.click("#attach-connect")
    for field in ("attach-repo", "attach-branch", "attach-token"):
        assert page.element(f"#{field}").get_attribute("aria-invalid") == "true"
    assert page.text("#attach-token-error") == "Enter the agent's token."
    assert page.driver.switch_to.active_element.get_attribute("id") == "attach-repo"
    assert axe_violations(page) == []  # WCAG 2.1 A/AA, with the errors shown
