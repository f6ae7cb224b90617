"""Exit codes and the one error type every command raises for a person to act on."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Exit codes of `aipm` (stable: scripts rely on them; `aipm --help` lists them)."""

    OK = 0
    JOB_UNSUCCESSFUL = 1  # the job ended failed / timed_out / cancelled / no_changes / checks_failed
    USAGE = 2  # bad flags or task file, or the API refused the request as given (4xx)
    API = 3  # the API is unreachable, rejected the credentials, or failed (5xx)
    AWS = 4  # no AWS credentials or region, stack or instance not found, SSM or session failure
    STILL_RUNNING = 5  # --timeout passed while the job was still running (it goes on)
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODES_HELP = """exit codes:
  0    success (for delegate/follow: the job completed)
  1    the job ended unsuccessfully (failed, timed_out, cancelled, no_changes, checks_failed)
  2    usage or input error: bad flags or task file, or the API refused the request (4xx)
  3    API error: unreachable, credentials rejected (401/403), or a server error (5xx)
  4    AWS error: no credentials or region, stack/instance not found, SSM or session failure
  5    still running when --timeout passed (the job goes on)
  130  interrupted (Ctrl-C)"""


class CliError(Exception):
    """An error shown to the person as `error: <message>` (+ a hint), ending the command with `code`."""

    def __init__(self, message: str, code: Exit, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint


def usage_error(message: str, *, hint: str | None = None) -> CliError:
    return CliError(message, Exit.USAGE, hint=hint)


def aws_error(message: str, *, hint: str | None = None) -> CliError:
    return CliError(message, Exit.AWS, hint=hint)
