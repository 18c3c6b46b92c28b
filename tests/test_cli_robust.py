"""Hostile command lines: every numeric option refuses nan, inf, huge values and non-ASCII
digits with a usage error (exit 2), and a property test drives every option of every command
(enumerated from the click group) and accepts only exit codes 0-5 without a traceback."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fdscope.errors import EXIT_USAGE, FdscopeError

# Values no numeric option may take: not finite, too large for any C type, not ASCII digits
# (str.isdigit() and int() accept the superscript, circled, Arabic-Indic and full-width ones).
NOT_NUMBERS = ["nan", "NaN", "inf", "-inf", "+Infinity", "1e400", "-1e400", "9" * 40,
               "٣", "²", "①", "１２", "٣.٥", "", " ", "0x10", "1_000"]


def free_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Reached(FdscopeError):
    """Raised by the stubbed back ends: the command line was accepted (exit 0)."""

    exit_code = 0


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The back ends that run long or bind sockets raise Reached instead: the tests here check
    parsing and the commands' own validation, never a server or a load."""
    import fdscope.load
    import fdscope.loadpool
    import fdscope.probes
    import fdscope.servers
    import fdscope.servers.run

    def reached(*args: object, **kw: object) -> None:
        # A value the option types should have refused must not get this far.
        for value in (*args, *kw.values()):
            if dataclasses.is_dataclass(value):
                for f in dataclasses.fields(value):
                    v = getattr(value, f.name)
                    if isinstance(v, float) and not math.isfinite(v):
                        raise ValueError(f"{f.name}={v} reached {type(value).__name__}")
        raise Reached("stub reached")

    monkeypatch.setattr(fdscope.servers, "serve", reached)
    monkeypatch.setattr(fdscope.load, "run_load", reached)
    monkeypatch.setattr(fdscope.loadpool, "run_load_processes", reached)
    monkeypatch.setattr(fdscope.servers.run, "run_job", reached)
    monkeypatch.setattr(fdscope.probes, "run_probes", reached)
    # top --count N --interval S: its scans are real, the waits between them are not
    monkeypatch.setattr(time, "sleep", reached)
    # exporter: serving or writing a textfile, and the scan of --once
    monkeypatch.setattr("fdscope.cli.exporter._run", reached)
    monkeypatch.setattr("fdscope.exporter.collector.FdCollector.exposition", reached)


# (command line before the option, option) for every numeric option; the pid of `inspect` is
# the argument itself (None).
NUMERIC_OPTIONS = [
    (["limits"], "--pid"),
    (["inspect"], None),
    (["inspect", "1"], "--sample"),
    (["inspect", "1"], "--watch"),
    (["inspect", "1", "--watch", "1"], "--count"),
    (["load", "127.0.0.1:1"], "--connections"),
    (["load", "127.0.0.1:1"], "--messages"),
    (["load", "127.0.0.1:1"], "--size"),
    (["load", "127.0.0.1:1"], "--duration"),
    (["load", "127.0.0.1:1"], "--timeout"),
    (["load", "127.0.0.1:1"], "--seed"),
    (["run"], "--connections"),
    (["run"], "--duration"),
    (["run"], "--size"),
    (["run"], "--seed"),
    (["serve", "epoll"], "--port"),
    (["serve", "epoll"], "--max-clients"),
    (["serve", "threads"], "--pool"),
    (["serve", "nonblocking"], "--idle-sleep"),
    (["serve", "epoll"], "--out-cap"),
    (["exporter"], "--top-pids"),
    (["exporter"], "--max-groups"),
    (["exporter"], "--full-every"),
    (["exporter", "--textfile", "/nonexistent"], "--interval"),
]


@pytest.mark.parametrize("value", NOT_NUMBERS)
@pytest.mark.parametrize("before,option", NUMERIC_OPTIONS,
                         ids=[" ".join(b + [o or "PID"]) for b, o in NUMERIC_OPTIONS])
def test_numeric_options_refuse_non_numbers(invoke, stubbed, before: list[str],
                                            option: str | None, value: str) -> None:
    args = [*before, value] if option is None else [*before, option, value]
    result = invoke(*args)
    assert result.exit_code == EXIT_USAGE, (args, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fdscope: "), result.stderr


def test_a_unicode_digit_is_not_a_pid(invoke) -> None:
    """`inspect ٣` was inspect 3, and `limits --pid ²` an internal error: int() takes them."""
    for args in (["inspect", "٣"], ["limits", "--pid", "٣"], ["limits", "--pid", "²"]):
        result = invoke(*args)
        assert result.exit_code == EXIT_USAGE, result.stdout
        assert "PID must be a positive integer" in result.stderr


@pytest.mark.parametrize("pid", [
    "٣",
    "²",
    "①",
])
def test_the_entry_point_refuses_unicode_pids(pid: str) -> None:
    """The console script reads ahead for `inspect <digits>` before click parses: a
    superscript digit must end in the usage error too, not a traceback."""
    import subprocess

    from test_cli import entry_point

    r = subprocess.run([entry_point(), "inspect", pid], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert r.stderr.startswith("fdscope: ") and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [
    ["inspect", "1", "--sample", "0.5", "--watch", "0.05"],  # in range: parsing succeeds
    ["serve", "epoll", "--port", "0", "--out-cap", "1024"],
    ["load", "127.0.0.1:1", "--duration", "604800", "--timeout", "0.001", "--seed", "-5"],
])
def test_numbers_in_range_are_accepted(invoke, stubbed, monkeypatch, args: list[str]) -> None:
    import fdscope.inspect.report

    def reached(*a: object, **k: object) -> None:
        raise Reached("stub reached")

    monkeypatch.setattr(fdscope.inspect.report, "inspect_process", reached)
    monkeypatch.setattr("fdscope.cli.inspect._watch", reached)
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "fdscope: stub reached\n"


@pytest.mark.parametrize("value", ["604801", "1e6", "0.04"])
def test_seconds_have_a_ceiling_and_a_floor(invoke, value: str) -> None:
    result = invoke("inspect", "1", "--watch", value)
    assert result.exit_code == EXIT_USAGE
    assert "out of range" in result.stderr


def test_serve_refuses_an_empty_host(invoke, stubbed) -> None:
    """bind("") binds every interface: binding beyond loopback must be asked for by name."""
    for host in ("", " ", "\x00"):
        result = invoke("serve", "epoll", "--host", host)
        assert result.exit_code == EXIT_USAGE, result.stderr
        assert "--host" in result.stderr


# -- the property test -----------------------------------------------------------------------

def _value_strategy(param: object, pid: str, target: str) -> st.SearchStrategy[str]:
    import click

    from fdscope.cli.options import PidType

    nasty = st.sampled_from(NOT_NUMBERS + ["-1", "0", "-0", "1", "0.0", "1e-400", "2", "65536",
                                           "1.5", "-", "--", "\x00", "\x1b[2J", "é"])
    numbers = st.one_of(st.integers(-(2**70), 2**70).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.floats(0, 3).map(lambda f: f"{f:.3f}"))
    junk = st.text(max_size=8)
    ptype = getattr(param, "type", None)
    choices: list[st.SearchStrategy[str]] = [nasty, nasty, numbers, junk]
    if isinstance(ptype, click.Choice):
        choices.append(st.sampled_from(list(ptype.choices)))
    if isinstance(ptype, PidType):
        # Never a pid that may exist: inspecting it could sample or watch for long.
        def not_a_live_pid(s: str) -> bool:
            return s.strip() == pid or not (s.strip().isascii() and s.strip().isdigit())

        return st.one_of(st.just(pid), *choices).filter(not_a_live_pid)
    if getattr(ptype, "name", "") == "HOST:PORT":
        choices.append(st.sampled_from([target, "[::1]:1", "256.0.0.1:80", "::1:80", "h:0"]))
    if getattr(param, "name", "") == "host":
        choices.append(st.sampled_from(["127.0.0.1", "::1", "", "0"]))
    return st.one_of(*choices)


@st.composite
def command_lines(draw: st.DrawFn, commands: dict[str, object], pid: str,
                  target: str) -> list[str]:
    import click

    name = draw(st.sampled_from(sorted(commands)))
    cmd = commands[name]
    argv = [name]
    for param in draw(st.permutations(cmd.params)):  # type: ignore[attr-defined]
        if isinstance(param, click.Argument):
            if param.required or draw(st.booleans()):
                argv.append(draw(_value_strategy(param, pid, target)))
            continue
        if not isinstance(param, click.Option) or param.hidden and draw(st.booleans()):
            continue
        if not draw(st.integers(0, 2)):  # about a third of the options on each run
            flag = param.opts[0]
            if param.is_flag:
                argv.append(flag)
            else:
                argv += [flag, draw(_value_strategy(param, pid, target))]
    return argv


def _all_commands() -> dict[str, object]:
    import click

    from fdscope.cli.main import cli

    ctx = click.Context(cli)
    return {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}


def test_every_command_is_enumerated() -> None:
    """The property test covers what the group lists: every command in fdscope.cli.main."""
    from fdscope.cli.main import COMMANDS

    assert set(_all_commands()) == set(COMMANDS)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_command_line_ends_in_a_documented_exit_code(data: st.DataObject, runner,
                                                         stubbed) -> None:
    """Only the pid of no process and a port nothing listens on are valid targets: `inspect`
    and `limits --pid` end in exit 3, and nothing is inspected, served or loaded (stubbed)."""
    from fdscope.cli.main import cli

    argv = data.draw(command_lines(_COMMANDS, _PID, _TARGET))
    result = runner.invoke(cli, argv, catch_exceptions=True)
    shown = f"{argv!r}: exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    assert 0 <= result.exit_code <= 5, shown
    assert "Traceback" not in result.output and "internal error" not in result.stderr, shown
    if result.exit_code not in (0,):
        assert result.stderr.startswith("fdscope: ") and result.stderr.count("\n") == 1, shown


_COMMANDS = _all_commands()
_PID = str(free_pid())
_TARGET = f"127.0.0.1:{closed_port()}"
