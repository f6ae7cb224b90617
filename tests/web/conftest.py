"""A headless Chromium (Debian's chromium + chromedriver) driven through Selenium WebDriver."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1500",
)
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _require(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is missing: run `make sysdeps` (installs Debian's chromium and chromium-driver)")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: run `make install` (it is in the dev extra)")
    chromium, driver = _require("chromium"), _require("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    session.set_page_load_timeout(30)
    try:
        yield session
    finally:
        session.quit()


class Page:
    """What a person does on the console: open it, type into fields, click, wait to see something."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def open(self, url: str) -> None:
        self.driver.delete_all_cookies()
        self.driver.get("about:blank")
        self.driver.get(url)
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get(url)
        self.wait(lambda: self.css("#api-url") is not None)

    def css(self, selector: str) -> WebElement | None:
        from selenium.webdriver.common.by import By

        found = self.driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0] if found else None

    def all(self, selector: str) -> list[WebElement]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def element(self, selector: str) -> WebElement:
        found = self.css(selector)
        assert found is not None, f"no {selector} on the page"
        return found

    def type(self, field_id: str, text: str) -> None:
        field = self.element(f"#{field_id}")
        field.clear()
        field.send_keys(text)

    def click(self, selector: str) -> None:
        """Click at once, in the page (the job list re-renders while it refreshes)."""
        clicked = self.driver.execute_script(
            "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e;", selector
        )
        assert clicked, f"no {selector} to click"

    def texts(self, selector: str) -> list[str]:
        """The visible text of every match, read in one step (no stale elements)."""
        return list(
            self.driver.execute_script(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);", selector
            )
        )

    def attrs(self, selector: str, name: str) -> list[str | None]:
        return list(
            self.driver.execute_script(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]));",
                selector,
                name,
            )
        )

    def text(self, selector: str) -> str:
        found = self.texts(selector)
        return found[0] if found else ""

    def sign_in(
        self,
        email: str,
        password: str,
        *,
        totp_secret: str | None = None,
        new_password: str | None = None,
        wrong_code_first: bool = False,
        click: bool = True,
        signed_in: Callable[[], bool] | None = None,
    ) -> str | None:
        """Click "Sign in" and go through the sign-in pages as a person does: password, a new password for a
        temporary one, authenticator enrolment (the key read off the page), the TOTP code. Returns the
        authenticator key (learned at enrolment, or the one given). `wrong_code_first` types a wrong code
        once and checks that the page refuses it. `click=False` when the page went to sign in by itself;
        `signed_in` tells when the app is back and signed in (default: the console's status line)."""
        import pyotp

        self._signed_in = signed_in or (
            lambda: (
                self.css("#auth-status") is not None and self.text("#auth-status").startswith("Signed in as")
            )
        )
        if click:  # once the console knows its sign-in (config.json read, auth.js loaded), the button shows
            self.wait(lambda: self.driver.execute_script("return !document.querySelector('#sign-in').hidden"))
            self.click("#sign-in")
        self.wait(lambda: self.css("#username"), what="the sign-in page")
        self.type("username", email)
        self.type("password", password)
        self._submit()
        while True:
            step = self.wait(self._sign_in_step, what="the next sign-in step")
            if step == "done":
                return totp_secret
            if step == "new_password":
                assert new_password is not None, "the password is temporary: pass new_password"
                self.type("new_password", new_password)
                self.type("confirm_password", new_password)
            else:
                if step == "enrol":
                    totp_secret = self.text("#secret").strip()
                assert totp_secret, "a TOTP code is asked for: pass totp_secret"
                if wrong_code_first:
                    wrong_code_first = False
                    right = pyotp.TOTP(totp_secret)
                    self.type(
                        "code", next(c for c in ("000000", "999999") if not right.verify(c, valid_window=1))
                    )
                    self._submit()
                    assert self.text("#error") == "Invalid code received for user"
                self.type("code", pyotp.TOTP(totp_secret).now())
            self._submit()

    def _submit(self) -> None:
        """Submit the sign-in form and wait until the next document has loaded."""
        self.driver.execute_script(
            "document.documentElement.dataset.submitted = '1'; document.querySelector('#submit').click();"
        )
        self.wait(
            lambda: self.driver.execute_script(
                "return document.readyState === 'complete' && !document.documentElement.dataset.submitted"
            ),
            what="the next page",
        )

    def _sign_in_step(self) -> str | None:
        if self._signed_in():
            return "done"
        if self.css("#new_password") is not None:
            return "new_password"
        if self.css("#secret") is not None and self.css("#code") is not None:
            return "enrol"
        if self.css("#code") is not None:
            return "code"
        return None

    def wait(self, condition: Callable[[], Any], timeout_s: float = 30, what: str = "") -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = condition()
            except Exception:  # the page is changing under us (stale element): look again
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                body = self.driver.execute_script("return document.body.innerText")
                raise AssertionError(f"timed out waiting for {what or condition}; the page shows:\n{body}")
            time.sleep(0.1)

    def job_text(self, job_id: str) -> str:
        return self.text(f'li.job[data-job-id="{job_id}"]')

    def job_status(self, job_id: str) -> str | None:
        found = self.attrs(f'li.job[data-job-id="{job_id}"]', "data-status")
        return found[0] if found else None

    def job_steps(self, job_id: str) -> list[str | None]:
        return self.attrs(f'li.job[data-job-id="{job_id}"] .steps li', "data-step")

    def severe_console_errors(self) -> list[str]:
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[attr-defined]
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]


@pytest.fixture
def page(browser: WebDriver) -> Page:
    return Page(browser)
