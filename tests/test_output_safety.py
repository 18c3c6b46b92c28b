"""Text a target controls (its name, command line, file names, socket paths) never reaches the
terminal raw: text output escapes it visibly, JSON keeps it exact and is always valid UTF-8,
and a strict UTF-8 stdout prints both."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def escape(text: str) -> str:
    from fdscope.render.escape import escape as render_escape

    return render_escape(text)

# A target with hostile text everywhere fdscope shows it: a comm that sets the window title and
# clears the screen, arguments with colour codes, a newline and bytes that are not UTF-8, files
# and unix sockets named the same way (one name forges a table row).
COMM = b"\x1b]0;PWN\x07\x1b[2J"  # 12 bytes: comm holds 15
FILE_NAMES = [b"\x1b[31mRED", b"row\n3     file  forged", b"bad\xff\xfename", b"tab\there",
              b"bidi\xe2\x80\xaeexe.txt", b"c1\xc2\x85next"]
HOSTILE = textwrap.dedent(r"""
    import ctypes, os, socket, sys
    d = os.fsencode(sys.argv[1])
    ctypes.CDLL(None).prctl(15, ctypes.c_char_p(%r), 0, 0, 0)  # PR_SET_NAME
    held = [os.open(os.path.join(d, n), os.O_CREAT | os.O_RDONLY, 0o600) for n in %r]
    u = socket.socket(socket.AF_UNIX)
    u.bind(os.path.join(d, b"sock\x1b[2J\xff"))
    u.listen(1)
    a = socket.socket(socket.AF_UNIX)
    a.bind(b"\0abs\nforged\x1b[0m")
    a.listen(1)
    print("ready", flush=True)
    sys.stdin.read()
""") % (COMM, FILE_NAMES)
ARGS = [b"\x1b[31mRED", b"line1\nline2", b"\xff\xfe-not-utf8"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    proc = subprocess.Popen([sys.executable, "-c", HOSTILE, str(d), *ARGS],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc.pid, d
    finally:
        proc.kill()
        proc.wait()


def test_escape_rules() -> None:
    assert escape("plain name") == "plain name"
    assert escape("\x1b]0;T\x07") == "\\x1b]0;T\\x07"
    assert escape("a\nb\tc\rd\x7f") == "a\\nb\\tc\\x0dd\\x7f"
    assert escape("c1\x85\x9b") == "c1\\x85\\x9b"
    assert escape(os.fsdecode(b"bad\xff\xfe")) == "bad\\xff\\xfe"  # the bytes themselves
    assert escape("bidi\u202eexe") == "bidi\\u202eexe"
    assert escape("sep\u2028x") == "sep\\u2028x"  # str.splitlines() breaks there
    assert escape("é ü 中 \\ ") == "é ü 中 \\ "  # printable text and backslashes stay


def test_json_is_valid_utf8_and_keeps_the_bytes() -> None:
    from fdscope.render.json import dumps, dumps_line


    raw = b"bad\xff\xfename \x1b[31m"
    doc = {"schema": "t/1", "path": os.fsdecode(raw), "text": "é中"}
    for text in (dumps(doc), dumps_line(doc)):
        data = text.encode("utf-8")  # strict: no lone surrogate may be left
        assert "\\udcff\\udcfe" in text and "é中" in text
        assert os.fsencode(json.loads(data)["path"]) == raw


def _lines_of_section(text: str, title: str) -> list[str]:
    part = text.split(f"\n{title}", 1)[1]
    return part.split("\n\n", 1)[0].strip("\n").splitlines()


def _assert_safe(text: str) -> None:
    """No control character but the newlines that end lines; no undecodable byte."""
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202e]", text), \
        [c for c in text if not c.isprintable() and c != "\n"]


def test_inspect_text_escapes_target_text(invoke, hostile) -> None:
    pid, d = hostile
    result = invoke("inspect", str(pid), "--sample", "0")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    _assert_safe(out)
    assert out.startswith(f"pid {pid} (\\x1b]0;PWN\\x07\\x1b[2J): ")
    assert "\\x1b[31mRED" in out  # shown, not stripped as a colour code
    fds = _lines_of_section(out, f"fds ({len(os.listdir(f'/proc/{pid}/fd'))})")
    # Header, rule, one line per fd: the newline in a name forges no row.
    assert len(fds) == len(os.listdir(f"/proc/{pid}/fd")) + 2, fds
    for name in FILE_NAMES:
        assert any(escape(os.fsdecode(d / os.fsdecode(name))) in line for line in fds), name
    assert any("sock\\x1b[2J\\xff" in line for line in fds)
    assert any("@abs\\nforged\\x1b[0m" in line for line in fds)


def test_limits_text_escapes_the_name(invoke, hostile) -> None:
    pid, _ = hostile
    result = invoke("limits", "--pid", str(pid))
    assert result.exit_code == 0, result.stderr
    _assert_safe(result.stdout)
    assert f"pid {pid} (\\x1b]0;PWN\\x07\\x1b[2J)" in result.stdout


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "fdscope", *args], capture_output=True,
                          timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-8", **env})


@pytest.mark.parametrize("args", [[], ["--json"]])
def test_strict_utf8_stdout_prints_everything(hostile, args: list[str]) -> None:
    """PYTHONIOENCODING=utf-8 (strict): a name with bytes that are not UTF-8 used to end in
    UnicodeEncodeError, in text and in JSON."""
    pid, _ = hostile
    for command in (["inspect", str(pid), "--sample", "0"], ["limits", "--pid", str(pid)]):
        r = _run([*command, *args])
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        r.stdout.decode("utf-8")  # strict


@pytest.mark.parametrize("speedups", [
    pytest.param("c", id="c"),
    pytest.param("python", id="python"),
])
def test_inspect_json_is_valid_utf8_with_and_without_c(hostile, speedups: str) -> None:
    """Under C.UTF-8 the raw byte used to land in the JSON; the document must be valid UTF-8
    and give back every byte of a name (os.fsencode of the string)."""
    from conftest import require_speedups

    pid, d = hostile
    env = {"FDSCOPE_NO_SPEEDUPS": "1"} if speedups == "python" else {}
    if speedups == "c":
        require_speedups()
    r = _run(["inspect", str(pid), "--json", "--sample", "0"], LC_ALL="C.UTF-8",
             PYTHONIOENCODING="", **env)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    doc = json.loads(r.stdout.decode("utf-8"))  # strict UTF-8
    targets = {os.fsencode(e["target"]) for e in doc["fds"]}
    for name in FILE_NAMES:
        assert os.fsencode(d) + b"/" + name in targets, name
    locals_ = {os.fsencode(e["socket"]["local"]) for e in doc["fds"] if e.get("socket")}
    assert os.fsencode(d) + b"/sock\x1b[2J\xff" in locals_
    assert os.fsencode(doc["name"]) == COMM
    assert [os.fsencode(a) for a in doc["cmdline"][-3:]] == ARGS


def test_click_never_strips_names_off_a_terminal(invoke, tmp_path: Path) -> None:
    """click.echo() removes what looks like a colour code when stdout is not a terminal; a
    file named `\\e[31mRED` was shown as `RED`. Escaped, it is shown as it is named."""
    import click
    from click.testing import CliRunner

    from fdscope.cli.options import out

    @click.command()
    def show() -> None:
        out("name: " + escape("\x1b[31mRED"))

    result = CliRunner().invoke(show, [])
    assert result.stdout == "name: \\x1b[31mRED\n"


def test_no_color_empty_does_not_disable_colour(monkeypatch) -> None:
    """no-color.org: NO_COLOR disables colour only "when present and not an empty string"."""
    from fdscope.render.style import colour_enabled

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("NO_COLOR", "")
    assert colour_enabled(Tty()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour_enabled(Tty()) is False
    monkeypatch.delenv("NO_COLOR")
    assert colour_enabled(Tty()) is True


def test_error_messages_are_escaped_and_one_line(invoke) -> None:
    result = invoke("limits", "--pid", "\x1b[2J\n2")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "\x1b" not in result.stderr


def test_unix_socket_path_with_a_newline_stays_one_row(invoke, tmp_path: Path) -> None:
    """A bound unix socket's path, newline included, is one fds row in inspect's text."""
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "a\nb"))
    s.listen(1)
    try:
        result = invoke("inspect", str(os.getpid()), "--type", "socket", "--section", "fds",
                        "--sample", "0")
    finally:
        s.close()
    assert result.exit_code == 0, result.stderr
    assert any(line.endswith(escape(str(tmp_path / "a\nb"))) for line in result.stdout.splitlines())
