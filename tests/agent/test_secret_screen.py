"""Output tails are screened for token-shaped secrets before they are stored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ec2_agent.secret_screen import screen_secrets

GITHUB = "ghp_" + "A1b2C3d4E5" * 4
SECRETS = [
    (GITHUB, "github token"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github token"),
    ("ghs_" + "x" * 36, "github token"),
    ("AKIAIOSFODNN7EXAMPLE", "aws access key id"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
    (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
        "private key",
    ),
    ("xoxb-1234567890-abcdefghij", "slack token"),
    ("sk-ant-api03-" + "Z" * 40, "api key"),
    ("AIza" + "B" * 35, "google api key"),
    ("Authorization: Bearer abcdefghijklmnop1234", "bearer credential"),
]


@pytest.mark.parametrize(("secret", "kind"), SECRETS, ids=[kind for _, kind in SECRETS])
def test_token_shaped_secrets_are_redacted(secret: str, kind: str) -> None:
    screened = screen_secrets(f"the CLI printed: {secret} and went on")
    assert secret not in screened
    assert f"[redacted {kind}]" in screened
    assert screened.startswith("the CLI printed: ") and screened.endswith(" and went on")


@pytest.mark.parametrize(
    "line",
    ["AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "password: hunter2hunter2", "api_key = 'abcdefgh12345'"],
)
def test_named_credentials_keep_their_name_and_lose_their_value(line: str) -> None:
    name = line.split("=")[0].split(":")[0].strip()
    screened = screen_secrets(line)
    assert screened.startswith(name) and "[redacted]" in screened
    assert line.split("=", 1)[-1].split(":", 1)[-1].strip(" '") not in screened


def test_a_redaction_after_a_name_is_not_redacted_again() -> None:
    once = screen_secrets(f"found a token: {GITHUB}")
    assert once == "found a token: [redacted github token]" == screen_secrets(once)


def test_ordinary_output_is_untouched() -> None:
    text = "wrote docs/add-export-button.md (3 tokens of context left); tests: 12 passed\n> "
    assert screen_secrets(text) == text


@given(st.text())
def test_screening_is_idempotent(text: str) -> None:
    once = screen_secrets(text)
    assert screen_secrets(once) == once
