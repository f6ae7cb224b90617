"""Secret screen benchmark: the screen must be linear in its input, whatever the input.

Python's regular-expression engine holds the GIL for a whole call, so a screen that backtracks stalls every
thread of the agent (lease renewals, heartbeats, the HTTP server): before this suite's fix, 30 kB of
`a.a.a…` took 28.7 s in the save of a session. Here, in one run:

- screen_benign_ms: `ec2_agent.secret_screen.screen_secrets` on BENCH_SCREEN_CHARS (256 KiB) of CLI-like
  output (JSON lines of words, paths, `key=value` settings and a few real-shaped secrets); median of
  BENCH_SCREEN_SAMPLES;
- screen_adversarial_worst_ms: the slowest of the adversarial inputs of the same size (named on stderr;
  runs built to make a backtracking pattern rescan: `a.a.a…`, name characters, keyword runs, `=` and `:`
  floods, `eyJ-` and JWT-part runs, PEM headers, `bearer` words, AWS secret names); median of
  the same samples;
- screen_adversarial_vs_benign_ratio = worst adversarial / benign (target ≤ 3: linear, a constant factor);
- screen_at_cap_stall_ms: the longest another thread waits for the GIL (its 1 ms sleeps measured) while one
  call screens the worst adversarial input at SCREEN_MAX_CHARS, the most one call examines;
- lambda_screen_adversarial_vs_benign_ratio: the same ratio for the API's second screen
  (`lambda_src.redaction`), on its adversarial inputs.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable

from ec2_agent import secret_screen
from lambda_src import redaction

CHARS = int(os.environ.get("BENCH_SCREEN_CHARS", str(256 * 1024)))
SAMPLES = int(os.environ.get("BENCH_SCREEN_SAMPLES", "5"))
ADVERSARIAL = {
    "a.a.a": "a.",
    "name characters": "A_b-9.",
    "keyword runs": "token",
    "keywords and dots": "passwd.",
    "keywords in one name": "passwd_",
    "= flood": "=",
    ": flood": ":",
    "spaces after a keyword": "api_key ",
    "jwt starts": "eyJ-",
    "jwt parts": "eyJabcdefgh.",
    "pem headers": "-----BEGIN A",
    "bearer words": "bearer ",
    "aws secret names": "aws_secret_access_key = ",
}


def benign(chars: int) -> str:
    """CLI-like output: JSON lines of words, paths and settings, a real-shaped secret every ~100 lines."""
    rng = random.Random(7)  # noqa: S311 - test data, the same in every run
    words = ["wrote", "tests", "passed", "the", "model", "token", "count", "docs/x.md", "src/app.py", "ok"]
    lines: list[str] = []
    while sum(map(len, lines)) < chars:
        text = " ".join(rng.choice(words) for _ in range(12))
        lines.append(json.dumps({"type": "text", "text": text, "setting": f"timeout_s={rng.randint(1, 99)}"}))
        if rng.random() < 0.01:
            lines.append("GITHUB_TOKEN=ghp_" + "".join(rng.choice("abcXYZ019") for _ in range(36)))
    return "\n".join(lines)[:chars]


def repeated(unit: str, chars: int) -> str:
    return (unit * (chars // len(unit) + 1))[:chars]


def median_ms(screen: Callable[[str], str], text: str) -> float:
    times = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        screen(text)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def stall_ms(screen: Callable[[str], str], text: str) -> float:
    """The longest gap between another thread's 1 ms ticks while `screen(text)` runs."""
    done = threading.Event()
    gaps: list[float] = []

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    time.sleep(0.05)
    screen(text)
    done.set()
    ticker.join()
    return max(gaps) * 1000


def run() -> dict[str, float | int]:
    base = median_ms(secret_screen.screen_secrets, benign(CHARS))
    screen = secret_screen.screen_secrets
    adversarial = {name: median_ms(screen, repeated(unit, CHARS)) for name, unit in ADVERSARIAL.items()}
    worst = max(adversarial, key=adversarial.__getitem__)
    lambda_base = median_ms(redaction.screen_secrets, benign(CHARS))
    lambda_worst = max(median_ms(redaction.screen_secrets, repeated(u, CHARS)) for u in ADVERSARIAL.values())
    print(f"screen: slowest adversarial input: {worst}", file=sys.stderr)
    at_cap = repeated(ADVERSARIAL[worst], secret_screen.SCREEN_MAX_CHARS)
    return {
        "screen_benign_ms": round(base, 1),
        "screen_adversarial_worst_ms": round(adversarial[worst], 1),
        "screen_adversarial_vs_benign_ratio": round(adversarial[worst] / base, 2),
        "screen_at_cap_stall_ms": round(stall_ms(secret_screen.screen_secrets, at_cap), 1),
        "lambda_screen_adversarial_vs_benign_ratio": round(lambda_worst / lambda_base, 2),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
