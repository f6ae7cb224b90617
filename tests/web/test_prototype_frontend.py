"""The existing AIPM frontend with the lines of docs/frontend-sign-in.md, in headless Chromium against the
real local stack: the page signs in through the local stand-in for Cognito managed login, then sends the
prototype's recorded "Generate Code & PR" bodies the way the prototype's `sendJson` does (fetch with
`Content-Type` only) — the ES module adds the ID token → 201 and a PR. The same body without the header → 401
with the sign-in hint.

The page stands in for the prototype's `index.html` (`config.js` with `window.CONFIG.API_BASE_URL`, then
its classic app script): `prototype.js` below re-creates `sendJson` from its recorded behaviour (the
prototype's code is not copied); the sign-in lines are taken from the doc, so doc and test cannot drift."""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aipm.local.console import WEB_DIR
from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions
from lambda_src.errors import SIGN_IN_HINT
from tests.web.conftest import Page

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "frontend-sign-in.md"
FIXTURES = ROOT / "tests" / "api" / "fixtures"
RECORDED = ("prototype_modal_story.json", "prototype_modal_no_story.json")

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AIPM (prototype frontend)</title>
<link rel="icon" href="data:,">
<script src="config.js"></script>
<script type="module" src="aipm-sign-in.js"></script>
<script src="prototype.js" defer></script>
</head><body><main><p id="out">ready</p></main></body></html>
"""

# sendJson as the prototype's app.js behaves: the base URL from window.CONFIG, Content-Type only, no auth,
# the JSON answer (or text) and the status.
PROTOTYPE_JS = """
async function sendJson(path, options) {
  const { method = 'GET', body } = options || {};
  const resolved = window.CONFIG.API_BASE_URL.replace(/\\/$/, '') + path;
  const response = await fetch(resolved, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : undefined,
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch (err) { data = text; }
  return { status: response.status, data };
}
window.delegate = (payload) => sendJson('/api/personal-delegate', { method: 'POST', body: payload });
"""


def doc_lines() -> tuple[str, str]:
    """(the config.js line, the module's lines) from docs/frontend-sign-in.md."""
    text = DOC.read_text()
    config = re.search(r"```js\n\s*(window\.CONFIG\.AIPM_AUTH = .*?)\n\s*```", text, re.S)
    module = re.search(r'```html\n\s*<script type="module">\n(.*?)\s*</script>\n\s*```', text, re.S)
    assert config and module, "docs/frontend-sign-in.md lost its lines"
    return config.group(1), "\n".join(line.strip() for line in module.group(1).splitlines())


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Path]]:
    site = tmp_path_factory.mktemp("prototype-site")
    config_line, module_lines = doc_lines()
    (site / "index.html").write_text(INDEX)
    (site / "prototype.js").write_text(PROTOTYPE_JS)
    (site / "aipm-sign-in.js").write_text(module_lines + "\n")
    shutil.copy(WEB_DIR / "auth.js", site / "aipm-auth.js")  # step 1 of the doc
    (site / "config.js").write_text("")  # written below, once the stack's addresses are known
    options = StackOptions(emulator_work_s=0.2, console_dir=site)
    with LocalStack(tmp_path_factory.mktemp("prototype-stack"), options) as stack:
        assert stack.sign_in is not None
        auth = stack.sign_in.console_config()
        line = config_line.replace(
            "https://<prefix>.auth.<region>.amazoncognito.com", auth["domain"]
        ).replace("<UserPoolClientId>", auth["clientId"])
        (site / "config.js").write_text(
            f"window.CONFIG = {{ API_BASE_URL: {json.dumps(stack.api_url)} }};\n{line}\n"
        )
        yield stack, site


def recorded(name: str) -> dict[str, Any]:
    body = json.loads((FIXTURES / name).read_text())
    body.update(owner=DEMO_OWNER, repo=DEMO_REPO)  # the local forge's repository instead of acme/tools
    return dict(body)


def test_the_recorded_bodies_with_the_modules_header_open_prs(
    frontend: tuple[LocalStack, Path], page: Page
) -> None:
    stack, _ = frontend
    assert stack.console is not None and stack.sign_in is not None and stack.sign_in.demo is not None
    demo = stack.sign_in.demo
    page.driver.delete_all_cookies()
    page.driver.get(stack.console.url)  # not signed in: the module goes to the sign-in page by itself
    page.sign_in(
        demo.email,
        demo.password,
        totp_secret=demo.totp_secret,
        click=False,
        signed_in=lambda: bool(
            page.driver.execute_script("return !!(window.aipmAuth && window.aipmAuth.signedIn())")
        ),
    )
    assert page.driver.current_url == stack.console.url  # ?code&state gone from the address bar
    for name in RECORDED:
        answer = page.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.delegate(arguments[0]).then(done, (e) => done(String(e)));",
            recorded(name),
        )
        assert answer["status"] == 201, (name, answer)
        assert answer["data"]["type"] == "pull_request" and answer["data"]["html_url"].startswith(
            stack.forge.base_url
        )
        status, job = stack.api("GET", f"/api/jobs/{answer['data']['jobId']}")
        assert status == 200 and job["status"] in (
            "queued",
            "claimed",
            "preparing",
            "generating",
            "committing",
            "pushed",
            "completed",
        )
    assert page.severe_console_errors() == []


@pytest.mark.parametrize("name", RECORDED)
def test_the_same_body_without_the_header_is_401_with_the_sign_in_hint(
    frontend: tuple[LocalStack, Path], name: str
) -> None:
    stack, _ = frontend
    assert stack.console is not None
    request = urllib.request.Request(
        f"{stack.api_url}/api/personal-delegate",
        data=json.dumps(recorded(name)).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Origin": stack.console.origin},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert (
        refused.value.headers["Access-Control-Allow-Origin"] == stack.console.origin
    )  # the page can read it
    body = json.load(refused.value)
    assert body == {"error": "unauthenticated", "message": SIGN_IN_HINT}
    assert "sign-in module for your frontend" in body["message"]
