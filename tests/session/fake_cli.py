"""A terminal program that reproduces, one switch at a time, the terminal behaviours the driver failed on.

Run as ``python tests/session/fake_cli.py --log FILE [switches]`` in a pseudo-terminal. Standard library
only. Every submitted line is appended to ``FILE`` as a JSON string, so a test sees exactly what reached
the program (an answer typed twice, an unrequested turn).

The prompt is drawn with Kiro's bytes (``tests/session/fixtures/kiro/*.bin``, see the README there): raw
mode first, then ``ESC[?2004h`` and rustyline's redraw ``CR ESC[K <prompt> CR ESC[<col>C``; typed keys
redraw the line the same way. CR submits; LF (Ctrl-J) inserts a newline, as rustyline does; a bracketed
paste is inserted with CR turned into LF.

Switches:
``--usage``            the prompt is ``35% > `` (the fixture with the context use);
``--question-delay S`` each task first asks Kiro's tool approval, printed in the terminal's normal mode,
                       and reads the answer in raw mode only ``S`` seconds later (Kiro's order); an answer
                       line that is not ``y``/``t`` (for instance ``t`` + LF, typed too early) is taken as a
                       new message and the task never finishes;
``--prompt-first``     with ``--question-delay``: the prompt is drawn right after the question, still in the
                       normal mode, and raw mode begins ``S`` seconds later (so only the terminal mode tells
                       that the program is not reading keys yet);
``--echo-question``    the task's reply quotes the approval question (as a task titled like it would);
``--query-cursor``     at start asks the terminal for the cursor position (``ESC[6n``) and the device
                       attributes (``ESC[c``), and exits 1 if no answer comes within 5 s (as crossterm
                       TUIs do);
``--paste-enter``      a CR that arrives in the same read as other keys is taken as a newline, not a
                       submit (how Ink-based CLIs treat text and Enter written at once);
``--error``            the task's reply ends with Kiro's "having trouble responding" message.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import termios
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kiro"
QUESTION = "Allow this action? Use 't' to trust (always allow) this tool for the session. [y/n/t]:"
PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"


class Terminal:
    def __init__(self, prompt: bytes, width: int, args: argparse.Namespace) -> None:
        self.fd = sys.stdin.fileno()
        self.original = termios.tcgetattr(self.fd)
        self.prompt = prompt  # the fixture: ESC[?2004h, then the redraw of an empty line
        self.redraw_prefix = prompt[prompt.index(b"\r") : prompt.rindex(b"\r")]  # CR ESC[K coloured prompt
        self.prompt_width = width
        self.args = args
        self.log = Path(args.log)

    def write(self, data: bytes | str) -> None:
        os.write(sys.stdout.fileno(), data.encode() if isinstance(data, str) else data)

    def raw(self) -> None:
        mode = termios.tcgetattr(self.fd)
        mode[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
        mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
        mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self.fd, termios.TCSADRAIN, mode)

    def cooked(self) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.original)

    def read_line(self) -> str | None:
        """rustyline's readline: raw mode, the prompt fixture, key-by-key redraws; None at end of input."""
        self.raw()
        self.write(self.prompt)
        line = ""
        try:
            while True:
                data = os.read(self.fd, 4096)
                if not data:
                    return None
                if data.startswith(PASTE_START) and data.endswith(PASTE_END):
                    text = data[len(PASTE_START) : -len(PASTE_END)].decode()
                    line += text.replace("\r", "\n")
                elif data == b"\r" or (data.endswith(b"\r") and not self.args.paste_enter):
                    line += data[:-1].decode()
                    self.log_line(line)
                    return line
                elif data == b"\x03":
                    raise KeyboardInterrupt
                else:
                    line += data.decode().replace("\r", "\n")
                shown = line.replace("\n", "\r\n").encode()
                self.write(self.redraw_prefix + shown + f"\r\x1b[{self.prompt_width + len(line)}C".encode())
        finally:
            self.write(b"\x1b[?2004l")
            self.cooked()
            self.write(b"\r\n")

    def log_line(self, line: str) -> None:
        with self.log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")

    def query_cursor(self) -> None:
        self.raw()
        self.write(b"\x1b[6n\x1b[c")
        answer = b""
        deadline = time.monotonic() + 5
        while not (b"R" in answer and answer.endswith(b"c")):
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self.cooked()
                self.write("the terminal did not answer the cursor position query\r\n")
                raise SystemExit(1)
            answer += os.read(self.fd, 64)
        self.log_line("answered: " + answer.decode())
        self.cooked()

    def task(self) -> bool:
        """One turn; False if the program is stuck (an answer that never submitted)."""
        self.write("Reading TASK.md (using tool: fs_read)\r\n")
        if self.args.echo_question:
            self.write(f"\x1b[32m> \x1b[0mI will implement: {QUESTION}\r\n")
            self.write("I'll create the following file: docs/x.md (using tool: fs_write)\r\n")
        if self.args.question_delay is not None:
            self.write(f"\r\n\x1b[90m{QUESTION}\r\n\r\n\x1b[0m")
            if self.args.prompt_first:
                self.write(self.prompt[self.prompt.index(b"\r") :])
            time.sleep(self.args.question_delay)
            answer = self.read_line()
            if answer not in ("y", "t"):
                self.write("waiting for the model...\r\n")
                return False
        self.write(" \x1b[32m✓\x1b[0m Created docs/x.md\r\n")
        if self.args.error:
            self.write("\x1b[31mAmazon Q is having trouble responding right now:\r\n")
            self.write("  dispatch failure\x1b[0m\r\n")
        self.write("\x1b[32m> \x1b[0mDone.\r\n\r\n")
        return True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--usage", action="store_true")
    parser.add_argument("--question-delay", type=float)
    parser.add_argument("--prompt-first", action="store_true")
    parser.add_argument("--echo-question", action="store_true")
    parser.add_argument("--query-cursor", action="store_true")
    parser.add_argument("--paste-enter", action="store_true")
    parser.add_argument("--error", action="store_true")
    args = parser.parse_args()
    prompt = (FIXTURES / ("prompt-usage.bin" if args.usage else "prompt.bin")).read_bytes()
    terminal = Terminal(prompt, 6 if args.usage else 2, args)
    if args.query_cursor:
        terminal.query_cursor()
    terminal.write("fake CLI ready for tests\r\n")
    stuck = False
    while True:
        try:
            line = terminal.read_line()
        except KeyboardInterrupt:
            continue
        if line is None or line == "/quit":
            return 0
        if line.strip() and not stuck:
            stuck = not terminal.task()
        elif stuck:
            terminal.write("still waiting for the model...\r\n")


if __name__ == "__main__":
    sys.exit(main())
