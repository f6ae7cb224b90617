"""Generated webhook deliveries through the real handler, moto and the forge: never a 5xx; a refused delivery
(401, 400) writes nothing; an ignored one (200) queues no job.

Bodies follow GitHub's documented payload shapes (lambda_src.github.webhooks cites them) with every field
drawn from plausible and hostile values (missing, wrong types, control and bidirectional characters, huge
numbers, the handle or not, every author association), signed with the webhook secret — so they pass the
signature check and reach the payload handling — or signed wrongly. PROPERTY_SCALE multiplies the examples.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lambda_src.github.webhooks import signature_of
from tests.api.conftest import USER, VALID_TASK, ApiHarness, _reset_caches, api_harness

SCALE = float(os.environ.get("PROPERTY_SCALE", "1"))
SECRET = b"property-secret"
HOOK = "/api/github/webhook"
MUTATIONS = (
    "graphql.createRef",
    "graphql.createCommitOnBranch",
    "graphql.createPullRequest",
    "create_comment",
)

TEXT = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(["\x00", "\x1b", "\r", "\u202e", "\u2028", "`"]),
    max_size=200,
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def mostly(*common: Any, rarely: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of `common` four times in five, else a value of `rarely`."""
    return st.sampled_from(range(5)).flatmap(lambda n: rarely if n == 0 else st.sampled_from(common))


ASSOCIATIONS = mostly(
    "OWNER", "MEMBER", "COLLABORATOR", rarely=st.sampled_from(["CONTRIBUTOR", "NONE", "", "x"])
)
BODIES = mostly("@aipm please fix", "see @aipm.", rarely=st.none() | TEXT | TEXT.map(lambda t: f"@aipm {t}"))
LABELS = mostly("aipm", "AIPM", rarely=st.sampled_from(["bug", ""]))
LOGINS = mostly("acme", "rita", rarely=TEXT)
NUMBERS = mostly(1, rarely=st.integers())


@st.composite
def _maybe(draw: st.DrawFn, value: st.SearchStrategy[Any]) -> Any:
    return draw(JSON) if draw(st.sampled_from(range(30))) == 0 else draw(value)


def hostile(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The value, mostly; now and then any JSON value instead (a wrong type)."""
    return _maybe(value)


def documented(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return value


def event_strategies(
    maybe: Callable[[st.SearchStrategy[Any]], st.SearchStrategy[Any]],
) -> dict[str, st.SearchStrategy[dict[str, Any]]]:
    """The payload of each handled event; `maybe` wraps every field's values (documented or hostile)."""

    def user() -> st.SearchStrategy[Any]:
        return maybe(
            st.fixed_dictionaries(
                {"login": maybe(LOGINS)},
                optional={"id": maybe(st.integers()), "type": maybe(mostly("User", rarely=st.just("Bot")))},
            )
        )

    repository = maybe(
        st.fixed_dictionaries(
            {"name": maybe(mostly("tools", rarely=TEXT)), "owner": user()},
            optional={"default_branch": maybe(st.sampled_from(["main", "nope"]) | TEXT)},
        )
    )
    comment = maybe(
        st.fixed_dictionaries(
            {"id": maybe(st.integers()), "body": maybe(BODIES), "user": user()},
            optional={
                "author_association": maybe(ASSOCIATIONS),
                "html_url": maybe(TEXT),
                "path": maybe(st.none() | st.sampled_from(["README.md"]) | TEXT),
                "line": maybe(st.none() | st.integers()),
                "original_line": maybe(st.none() | st.integers()),
            },
        )
    )
    issue = maybe(
        st.fixed_dictionaries(
            {"number": maybe(NUMBERS), "user": user()},
            optional={
                "title": maybe(TEXT),
                "body": maybe(st.none() | TEXT),
                "pull_request": maybe(mostly({"url": "u"}, rarely=st.none())),
            },
        )
    )
    pull = maybe(st.fixed_dictionaries({"number": maybe(NUMBERS)}))
    common = {"repository": repository, "sender": user()}
    return {
        "issue_comment": st.fixed_dictionaries(
            {
                "action": maybe(mostly("created", rarely=st.just("edited"))),
                "issue": issue,
                "comment": comment,
                **common,
            }
        ),
        "pull_request_review_comment": st.fixed_dictionaries(
            {"action": maybe(st.just("created")), "comment": comment, "pull_request": pull, **common}
        ),
        "pull_request_review": st.fixed_dictionaries(
            {
                "action": maybe(mostly("submitted", rarely=st.just("dismissed"))),
                "review": comment,
                "pull_request": pull,
                **common,
            }
        ),
        "issues": st.fixed_dictionaries(
            {
                "action": maybe(mostly("labeled", rarely=st.just("opened"))),
                "issue": issue,
                "label": maybe(st.fixed_dictionaries({"name": maybe(LABELS)})),
                **common,
            }
        ),
        "ping": st.fixed_dictionaries({"zen": maybe(TEXT)}),
    }


HOSTILE = event_strategies(hostile)
DOCUMENTED = event_strategies(documented)


@st.composite
def deliveries(
    draw: st.DrawFn, events: dict[str, st.SearchStrategy[dict[str, Any]]]
) -> tuple[str, bytes, bool]:
    """(event name, body, signed correctly)."""
    name = draw(st.sampled_from([*events, *events, "push", "star"]))
    payload = draw(events.get(name, st.fixed_dictionaries({})))
    if draw(st.sampled_from(range(10))) == 0:
        payload.pop(draw(st.sampled_from(sorted(payload) or ["x"])), None)
    body = json.dumps(payload).encode()
    if draw(st.sampled_from(range(10))) == 0:
        body = draw(st.binary(max_size=200))
    return name, body, draw(st.sampled_from(range(10))) > 0


@pytest.fixture(scope="module")
def hooked(
    tmp_path_factory: pytest.TempPathFactory, ddb: Any, aws_client_factory: Any, aws_endpoint: str
) -> Iterator[ApiHarness]:
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        api_harness(
            tmp_path_factory.mktemp("webhook"), ddb, aws_client_factory, aws_endpoint, monkeypatch
        ) as h,
    ):
        name = f"webhook-{uuid.uuid4().hex[:8]}"
        aws_client_factory("secretsmanager").create_secret(
            Name=name, SecretString=json.dumps({"secret": SECRET.decode()})
        )
        monkeypatch.setenv("GITHUB_WEBHOOK_SECRET_ID", name)
        _reset_caches()
        status, answer = h.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)
        assert status == 201 and answer["number"] == 1, answer  # PR #1 is this service's
        yield h


def snapshot(api: ApiHarness) -> tuple[int, ...]:
    items = api.records()
    jobs = sum(1 for i in items if i["pk"]["S"].startswith("JOB#"))
    return (len(items), jobs, *(api.forge.calls(route) for route in MUTATIONS))


SETTINGS = settings(
    max_examples=max(1, int(300 * SCALE)),
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
GUIDS = st.sampled_from(range(10)).flatmap(lambda n: TEXT if n == 0 else st.uuids().map(str))


@SETTINGS
@given(delivery=deliveries(DOCUMENTED), guid=GUIDS)
def test_documented_deliveries_never_fail_the_service(
    hooked: ApiHarness, delivery: tuple[str, bytes, bool], guid: str
) -> None:
    check(hooked, delivery, guid)


@SETTINGS
@given(delivery=deliveries(HOSTILE), guid=GUIDS)
def test_hostile_deliveries_never_fail_the_service(
    hooked: ApiHarness, delivery: tuple[str, bytes, bool], guid: str
) -> None:
    check(hooked, delivery, guid)


def check(hooked: ApiHarness, delivery: tuple[str, bytes, bool], guid: str) -> None:
    """One delivery: never a 5xx; 401 when unsigned; nothing written when refused; no job when ignored."""
    name, body, signed = delivery
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": name,
        "X-GitHub-Delivery": guid,
        "X-Hub-Signature-256": signature_of(SECRET if signed else b"wrong", body),
    }
    before = snapshot(hooked)

    status, answer = hooked.call("POST", HOOK, raw=body, headers=headers)

    assert status < 500, (name, body[:300], answer)
    event(f"{name} {status}")  # --hypothesis-show-statistics: how many reached each outcome
    after = snapshot(hooked)
    if not signed:
        assert status == 401
    if status in (400, 401, 413, 415):
        assert after == before, (name, body[:300], answer)
        assert answer["error"] and answer["message"]
    elif status == 200:
        assert answer["status"] == "ignored" and answer["reason"]
        assert after[1] == before[1], (name, body[:300], answer)  # no job
    else:
        assert status == 202 and answer["status"] == "accepted", answer
        assert after[1] == before[1] + 1
