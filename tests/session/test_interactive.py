"""Interactive sessions with the Kiro emulator in real pseudo-terminals."""

from __future__ import annotations

import functools
import re
import threading
import time
from pathlib import Path

import pytest

from ec2_agent.kiro_emulator import parse_task, render_change
from ec2_agent.profiles import CliProfile, builtin_profile
from ec2_agent.prompting import strip_control, task_prompt
from ec2_agent.sessions import SessionError, SessionStartError, TerminalSession
from tests.session.support import WORK_S, emulator_profile, write_task

TIMEOUT_S = 10.0


def _context_length(tail: str) -> int:
    found = re.search(r"Context: (\d+) message", tail)
    assert found, tail
    return int(found.group(1))


def _expected_change(workdir: Path) -> tuple[Path, str]:
    path, content = render_change(parse_task((workdir / "TASK.md").read_text(encoding="utf-8")))
    return workdir / path, content


def test_task_completes_answers_the_approval_and_writes_deterministically(tmp_path: Path) -> None:
    outputs: list[Path] = []
    sent: list[str] = []
    for name in ("one", "two"):
        workdir = tmp_path / name
        workdir.mkdir()
        write_task(workdir)
        cli = TerminalSession(emulator_profile(), workdir)
        cli.start()
        try:
            outcome = cli.run_task(
                task_prompt(), timeout_s=TIMEOUT_S, on_prompt_sent=functools.partial(sent.append, name)
            )
        finally:
            cli.close()
        assert (outcome.kind, outcome.approvals, outcome.exit_status) == ("completed", 1, None)
        assert "[y/n/t]:" in outcome.output_tail
        assert "\x1b" not in outcome.output_tail
        path, content = _expected_change(workdir)
        assert path.read_text(encoding="utf-8") == content
        outputs.append(path)
    assert sent == ["one", "two"]
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


def test_reset_clears_the_conversation_between_tasks(session: TerminalSession) -> None:
    first = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    second = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    session.reset()
    third = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert [_context_length(o.output_tail) for o in (first, second, third)] == [1, 2, 1]
    assert "Context: 1" not in third.output_tail.split("Context: 1", 1)[1]  # nothing from earlier tasks
    assert second.approvals == 0  # 't' trusted fs_write for the session, as Kiro does


def test_answers_are_configurable_and_denial_or_no_change_write_nothing(workdir: Path) -> None:
    written = _expected_change(workdir)[0]
    for answer in ("y", "n"):
        cli = TerminalSession(emulator_profile(approval_answer=answer), workdir)
        cli.start()
        try:
            outcomes = [cli.run_task(task_prompt(), timeout_s=TIMEOUT_S) for _ in range(2)]
        finally:
            cli.close()
        assert [(o.kind, o.approvals) for o in outcomes] == [("completed", 1)] * 2  # asked every time
        assert written.is_file() == (answer == "y")
        written.unlink(missing_ok=True)
    assert "Skipping the write" in outcomes[0].output_tail
    write_task(workdir, directive="no-change")
    cli = TerminalSession(emulator_profile(), workdir)
    cli.start()
    try:
        outcome = cli.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    finally:
        cli.close()
    assert (outcome.kind, outcome.approvals) == ("completed", 0)
    assert not written.exists()


def test_hang_times_out_and_ctrl_c_brings_the_prompt_back(session: TerminalSession, workdir: Path) -> None:
    write_task(workdir, directive="hang")
    pid = session.pid
    outcome = session.run_task(task_prompt(), timeout_s=0.5)
    assert outcome.kind == "timed_out"
    assert 0.5 <= outcome.duration_s < 5
    assert "Interrupted" in outcome.output_tail
    assert session.alive and session.pid == pid
    write_task(workdir)
    session.reset()
    assert session.run_task(task_prompt(), timeout_s=TIMEOUT_S).kind == "completed"


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_wedged_cli_is_killed_with_its_process_group_and_restarts(workdir: Path) -> None:
    write_task(workdir, directive="wedge")
    cli = TerminalSession(emulator_profile(interrupt_timeout_s=0.5, kill_grace_s=1), workdir)
    cli.start()
    try:
        first_pid = cli.pid
        outcome = cli.run_task(task_prompt(), timeout_s=0.5)
        assert outcome.kind == "timed_out"
        assert not cli.alive and cli.pid is None
        tool = re.search(r"\(pid (\d+)\)", outcome.output_tail)
        assert tool, outcome.output_tail
        deadline = time.monotonic() + 5
        while not _gone(int(tool.group(1))) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _gone(int(tool.group(1))), "the tool process in the CLI's group survived"
        with pytest.raises(SessionError):
            cli.run_task(task_prompt(), timeout_s=TIMEOUT_S)
        write_task(workdir)
        cli.restart()
        assert cli.alive and cli.restarts == 1 and cli.pid != first_pid
        assert cli.run_task(task_prompt(), timeout_s=TIMEOUT_S).kind == "completed"
    finally:
        cli.close()


def test_crash_reports_the_exit_status_and_restart_recovers(session: TerminalSession, workdir: Path) -> None:
    write_task(workdir, directive="crash")
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert (outcome.kind, outcome.exit_status) == ("crashed", 3)
    assert "emulated crash" in outcome.output_tail
    assert not session.alive
    with pytest.raises(SessionError):
        session.reset()
    write_task(workdir)
    session.restart()
    assert session.run_task(task_prompt(), timeout_s=TIMEOUT_S).kind == "completed"


def _rss_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert found
    return int(found.group(1))


def test_flood_completes_and_memory_stays_bounded(session: TerminalSession, workdir: Path) -> None:
    write_task(workdir, directive="flood=32")
    limit = 64 * 1024
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    outcome = session.run_task(task_prompt(), timeout_s=60)
    growth_mib = (_rss_kib("VmHWM") - before) / 1024
    print(f"peak RSS growth while reading 32 MB of output: {growth_mib:.1f} MiB")
    assert outcome.kind == "completed"
    assert len(outcome.output_tail.encode()) <= limit
    assert outcome.output_tail.rstrip().endswith(">")
    # Keeping the output would cost about 30 MiB here; the rolling tail costs about 1 MiB.
    assert growth_mib < 16


def test_cancel_interrupts_the_task(session: TerminalSession, workdir: Path) -> None:
    write_task(workdir, directive="slow=30")
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S, cancel=cancel)
    timer.cancel()
    assert outcome.kind == "cancelled"
    assert outcome.duration_s < 3
    assert session.alive
    assert not list(workdir.glob("docs/*.md"))


class _SpySession(TerminalSession):
    """Records everything written to the terminal."""

    sent: list[str]

    def _send(self, text: str) -> None:
        self.__dict__.setdefault("sent", []).append(text)
        super()._send(text)


def test_hostile_task_text_never_reaches_the_terminal(workdir: Path) -> None:
    hostile = "Evil\x1b]0;pwned\x07 \x03title\x04\n/quit\r\n\x1b[31m"
    write_task(workdir, title=hostile, criteria=["ok\x03\x04", "\x1b[2Jcleared"])
    cli = _SpySession(emulator_profile(), workdir)
    cli.start()
    try:
        outcome = cli.run_task(task_prompt(), timeout_s=TIMEOUT_S)
        with pytest.raises(ValueError):
            cli.run_task("Read TASK.md\x03", timeout_s=TIMEOUT_S)
        with pytest.raises(ValueError):
            cli.run_task("line one\nline two", timeout_s=TIMEOUT_S)
    finally:
        cli.close()
    assert outcome.kind == "completed"  # no Ctrl-C, Ctrl-D or /quit reached the CLI
    # The task as a bracketed paste, Enter on its own, the approval answer and its Enter, then /quit typed
    # the same way (a CLI that takes text and Enter in one write as a paste would not submit it).
    paste = ["\x1b[200~" + task_prompt() + "\x1b[201~", "\r", "t", "\r", "\x1b[200~/quit\x1b[201~", "\r"]
    assert cli.sent == paste
    written = next(workdir.glob("docs/*.md")).read_text(encoding="utf-8")
    assert strip_control(written, keep_newlines=True) == written
    assert "- [x] ok\n- [x] cleared\n" in written


def test_kiro_interactive_profile_drives_a_kiro_shaped_terminal(workdir: Path, kiro_command: str) -> None:
    data = builtin_profile("kiro-interactive", kiro_command=kiro_command).model_dump()
    cli = TerminalSession(
        CliProfile.model_validate({**data, "env": {"KIRO_EMULATOR_WORK_S": WORK_S}}), workdir
    )
    try:
        cli.start()
        outcome = cli.run_task(task_prompt(), timeout_s=TIMEOUT_S)
        assert (outcome.kind, outcome.approvals) == ("completed", 1)
        assert outcome.output_tail.rstrip().endswith(">")  # not fooled by the "> I will implement" reply
        cli.reset()  # answers the [y/n] confirmation
    finally:
        cli.close()
    path, content = _expected_change(workdir)
    assert path.read_text(encoding="utf-8") == content


def test_start_failures_are_typed(tmp_path: Path) -> None:
    with pytest.raises(SessionStartError, match="cannot run"):
        TerminalSession(emulator_profile(argv=("/nonexistent/kiro-cli",)), tmp_path).start()
    exits = emulator_profile(argv=("python3", "-c", "print('no credentials'); raise SystemExit(4)"))
    with pytest.raises(SessionStartError, match=r"status 4\).*no credentials"):
        TerminalSession(exits, tmp_path).start()
    silent = TerminalSession(emulator_profile(argv=("sleep", "60"), startup_timeout_s=0.3), tmp_path)
    with pytest.raises(SessionStartError, match="no prompt"):
        silent.start()
    assert not silent.alive and silent.pid is None


def test_close_is_idempotent_and_quits(session: TerminalSession) -> None:
    pid = session.pid
    assert pid is not None
    session.close()
    session.close()
    assert not session.alive and session.pid is None
    assert _gone(pid)
    with pytest.raises(SessionError):
        session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
