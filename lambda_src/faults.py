"""Crash injection points for fault tests: the process kills itself (SIGKILL) right after a named write.

Each durable write of a delegation (every GitHub write and every record write) is followed by
`checkpoint("<name>")`. When the environment variable `AIPM_FAULT_KILL_AT` names that point, the process
sends itself SIGKILL there, as a Lambda that times out or is recycled mid-request would stop: no handler,
no `finally`, no buffered log line runs. Unset (always, outside the fault tests), a checkpoint does nothing
but read one environment variable.

Points: `github:open-pull-request` (the GraphQL mutation document: branch, commit and PR in one request),
`github:create-ref`, `github:put-contents`, `github:create-pull` (the REST path, one per call),
`record:intent`, `record:intent-branch`, `record:pr`, `record:job`, `record:intent-done`.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "AIPM_FAULT_KILL_AT"


def checkpoint(name: str) -> None:
    """Die here (SIGKILL) if the fault test asked for it; otherwise return at once."""
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
