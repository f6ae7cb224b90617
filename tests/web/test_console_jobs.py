"""The console's job list in headless Chromium against the contract fake (tests/cli/fake_api.py): paging past
the first 25 through the API's nextCursor, the repository / "mine" / status filters sent to the API,
collapsible timelines, the submit banner following its job to its end, the pool told from the same refresh
as the jobs, the README link, and what a signed-out console says."""

from __future__ import annotations

import time
import urllib.request

from aipm.local.console import ConsoleServer
from tests.cli.fake_api import FakeApi
from tests.web.conftest import Page
from tests.web.test_console_contract import fake, fill_task, sign_in

__all__ = ["fake"]  # the fixture, shared with the contract tests

OTHER = "someone.else@example.com"


def list_queries(api: FakeApi) -> list[str]:
    return [r.path for r in api.seen("GET", "/api/jobs?")]


def test_paging_past_25_and_the_filters(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    api, console = fake
    for n in range(27):
        api.add_job(f"Tool job {n:02d}", status="completed", requestedBy=api.person.email)
    web = [api.add_job(f"Web job {n}", repo="acme/web", status="failed", requestedBy=OTHER) for n in range(3)]

    page.open(console.url)
    sign_in(page, api)
    page.wait(lambda: len(page.texts("li.job")) == 25, what="the first page")
    assert page.texts("li.job .job-title")[:3] == ["Web job 2", "Web job 1", "Web job 0"]  # newest first
    page.wait(lambda: page.element("#jobs-more").is_displayed(), what="Load older jobs")
    page.click("#jobs-more")
    page.wait(lambda: len(page.texts("li.job")) == 30, what="the second page")
    assert page.texts("li.job .job-title")[-1] == "Tool job 00"
    assert any("cursor=25" in q for q in list_queries(api))
    page.wait(lambda: not page.element("#jobs-more").is_displayed(), what="no more pages")

    page.type("repo-filter", "acme/web")
    page.click("#filters-apply")
    page.wait(lambda: len(page.texts("li.job")) == 3, what="the repository filter")
    assert {page.job_status(j["jobId"]) for j in web} == {"failed"}
    assert any("repo=acme%2Fweb" in q for q in list_queries(api))

    page.click("#mine-filter")  # a checkbox: the list follows at once
    page.wait(lambda: page.texts("#jobs li.empty") == ["No jobs match these filters."], what="mine")
    assert any("mine=true" in q and "repo=acme%2Fweb" in q for q in list_queries(api))

    page.type("repo-filter", "")
    page.click("#filters-apply")
    page.wait(lambda: len(page.texts("li.job")) == 25, what="my jobs")
    assert set(page.texts("li.job .job-title")) <= {f"Tool job {n:02d}" for n in range(27)}

    page.type("repo-filter", "not a repo")
    page.click("#filters-apply")
    assert page.element("#repo-filter").get_attribute("aria-invalid") == "true"
    assert "owner/repo" in page.text("#jobs-note")


def test_an_answer_to_the_old_filters_is_dropped(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    """The filters change while the list is being read (a slow API): the late page of the old listing must
    not show, nor leave its nextCursor (the API refuses a cursor of another listing)."""
    api, console = fake
    for n in range(30):
        api.add_job(f"Tool job {n:02d}", status="completed")
    api.add_job("Web job", repo="acme/web", status="completed")
    page.open(console.url)
    sign_in(page, api)
    page.wait(lambda: page.element("#jobs-more").is_displayed(), what="a first, full page")
    api.list_delay_s = lambda query: 0 if "repo" in query else 4  # the unfiltered listing is slow
    before = len(api.seen("GET", "/api/jobs?"))
    page.click("#filters-apply")  # the unfiltered list is read again: its answer comes in 4 s
    page.wait(lambda: len(api.seen("GET", "/api/jobs?")) > before, what="the slow request")
    page.type("repo-filter", "acme/web")
    page.click("#filters-apply")
    page.wait(lambda: page.texts("li.job .job-title") == ["Web job"], what="the filtered list")
    time.sleep(5)  # the old listing's answer has arrived by now
    assert page.texts("li.job .job-title") == ["Web job"]
    assert not page.element("#jobs-more").is_displayed()


def test_timelines_are_collapsible_and_stay_as_the_person_left_them(
    fake: tuple[FakeApi, ConsoleServer], page: Page
) -> None:
    api, console = fake
    running = api.add_job("Long one", status="generating")
    page.open(console.url)
    sign_in(page, api)
    card = f'li.job[data-job-id="{running["jobId"]}"]'
    page.wait(lambda: page.css(f"{card} details.timeline"), what="the timeline")
    assert page.attrs(f"{card} details.timeline", "open") == [None]  # closed at first
    assert page.text(f"{card} details.timeline summary") == "Timeline (2 steps)"
    assert not page.element(f"{card} .steps").is_displayed()
    page.click(f"{card} details.timeline summary")
    page.wait(lambda: page.element(f"{card} .steps").is_displayed(), what="the open timeline")
    api._move(running, "committing", {})  # the card changes, so it is built again: still open
    page.wait(lambda: page.text(f"{card} details.timeline summary") == "Timeline (3 steps)", what="a step")
    assert page.element(f"{card} .steps").is_displayed()


def test_the_banner_follows_its_job_to_the_end(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    api, console = fake
    page.open(console.url)
    sign_in(page, api)
    fill_task(page)
    page.click("#delegate-submit")
    job_id = page.wait(lambda: page.text("#delegate-job-id"), what="the answer")
    seen: set[str] = set()

    def ended() -> bool:
        seen.add(page.attrs("#delegate-job-status", "data-status")[0] or "")
        return page.text("#delegate-job-status").startswith("completed")

    page.wait(ended, what="the banner to say completed")
    assert page.text("#delegate-job-status") == "completed — 1 file(s) changed: docs/x.md"
    assert len(seen - {""}) >= 2  # it moved through the steps, not only to the end
    assert page.job_status(job_id) == "completed"
    assert page.attrs("#delegate-job-status", "aria-live") == ["off"]  # the announcer says it, once


def test_the_pool_never_contradicts_the_jobs(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    """The heartbeat is older than the list: slot 1 still names a job the list shows completed, slot 2 is
    idle though the list shows a job running on it. The pool shows what the list shows."""
    api, console = fake
    done = api.add_job("Done one", status="completed")
    running = api.add_job("Running one", status="generating", worker="agent-a/slot-2/1a2b3c4d")
    api.workers["agents"][0]["slots"][0]["currentJob"] = done["jobId"]
    page.open(console.url)
    sign_in(page, api)
    page.wait(lambda: "agent-a" in page.text("#workers"), what="the worker pool")
    assert page.texts("#workers .slot") == ["slot 1: idle", f"slot 2: busy {running['jobId']} · 1 reset(s)"]
    assert page.text("#workers-summary") == "1 of 1 agent(s) healthy · 1 of 2 slot(s) busy"
    # Each refresh reads both: the requests come in pairs.
    lists, pools = len(api.seen("GET", "/api/jobs?")), len(api.seen("GET", "/api/workers"))
    assert abs(lists - pools) <= 1, (lists, pools)


def test_signed_out_it_says_sign_in_is_needed(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    api, console = fake
    api.add_job("Someone's job")
    page.open(console.url)
    page.wait(lambda: page.driver.execute_script("return !document.querySelector('#sign-in').hidden"))
    assert page.texts("#jobs li") == ["Sign in to see your jobs."]
    assert page.text("#workers") == "Sign in to see the worker pool."
    assert "No jobs yet" not in page.text("body")
    assert api.seen("GET", "/api/jobs") == []


def test_the_footer_links_the_readme(fake: tuple[FakeApi, ConsoleServer], page: Page) -> None:
    _, console = fake
    page.open(console.url)
    (href,) = page.driver.execute_script("return [document.querySelector('#readme-link').href]")
    assert href == console.url + "README.txt"
    with urllib.request.urlopen(href, timeout=5) as resp:
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert "\n## API" in resp.read().decode()


def test_a_prs_follow_ups_are_listed_on_its_first_job_and_name_their_parent(
    fake: tuple[FakeApi, ConsoleServer], page: Page
) -> None:
    """GET /api/jobs/{id} `followUps` (only there, as the API: not in the list), read when the card's
    Follow-ups list is opened, kept fresh while it is open; a follow-up's card names its parent."""
    api, console = fake
    first = api.add_job("Add export", status="completed")
    url = "https://github.example/acme/tools/pull/1#discussion_r5"
    answer = {"parentJobId": first["jobId"], "event": "pull_request_review_comment", "commentId": 5,
              "commentUrl": url, "author": "rita", "body": "@aipm use a constant", "path": "src/app.py",
              "line": 12}  # fmt: skip
    follow = api.add_job("Add export", status="generating", followUp=answer)
    summary = {"jobId": follow["jobId"], "status": "generating", "createdAt": follow["createdAt"],
               "updatedAt": follow["updatedAt"], "author": "rita", "event": "pull_request_review_comment",
               "commentUrl": url, "path": "src/app.py", "line": 12, "commitSha": None}  # fmt: skip
    first["followUps"] = [summary]

    page.open(console.url)
    sign_in(page, api)
    card = f'li.job[data-job-id="{first["jobId"]}"]'
    page.wait(lambda: page.css(f"{card} details.follow-ups"), what="the first job's Follow-ups")
    assert not api.seen("GET", f"/api/jobs/{first['jobId']}")  # read only when opened
    of = f'li.job[data-job-id="{follow["jobId"]}"] .follow-up-of'
    assert (
        page.text(of)
        == f"follow-up of job {first['jobId']}: rita's pull request review comment on src/app.py:12"
    )
    assert page.attrs(f"{of} a", "href") == [url]
    assert not page.css(f'li.job[data-job-id="{follow["jobId"]}"] details.follow-ups')

    page.click(f"{card} details.follow-ups summary")
    item = f'{card} li[data-follow-up-id="{follow["jobId"]}"]'
    page.wait(lambda: page.css(item), what="the follow-up listed")
    assert page.texts(f"{card} details.follow-ups summary") == ["Follow-ups (1)"]
    assert "rita's pull request review comment on src/app.py:12" in page.text(item)
    assert page.attrs(f"{item} a", "href") == [url]

    first["followUps"] = [{**summary, "status": "completed", "commitSha": "c" * 40}]  # the job moved on
    page.wait(lambda: page.attrs(item, "data-status") == ["completed"], what="the follow-up's new status")
    assert "commit cccccccccccc" in page.text(item)
