"""The verifying load client: it must pass a correct server and catch every wrong one."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from fdscope.load import parse_size, parse_target
from fdscope.servers.core import transform
from tests.servers_support import server

Reply = Callable[[int, bytes], "bytes | tuple[bytes] | None"]


@contextmanager
def bad_server(reply: Reply) -> Iterator[int]:
    """A tiny thread-per-connection server whose replies come from `reply(stream_offset, data)`;
    None closes the connection, a 1-tuple sends its bytes and then closes."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    stop = threading.Event()

    def client(conn: socket.socket) -> None:
        offset = 0
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                out = reply(offset, data)
                offset += len(data)
                if out is None:
                    return
                try:
                    conn.sendall(out[0] if isinstance(out, tuple) else out)
                except OSError:
                    return
                if isinstance(out, tuple):
                    return

    def acceptor() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=client, args=(conn,), daemon=True).start()

    t = threading.Thread(target=acceptor, daemon=True)
    t.start()
    try:
        yield lsock.getsockname()[1]
    finally:
        stop.set()
        lsock.close()


def flip_at(pos: int) -> Reply:
    def reply(offset: int, data: bytes) -> bytes:
        out = bytearray(transform(data))
        if offset <= pos < offset + len(out):
            out[pos - offset] ^= 0x01
        return bytes(out)
    return reply


def load_json(invoke, port: int, *args: str):  # type: ignore[no-untyped-def]
    r = invoke("load", f"127.0.0.1:{port}", "--json", "--timeout", "3", *args)
    return r, json.loads(r.stdout)


def test_correct_server_passes(invoke) -> None:  # type: ignore[no-untyped-def]
    with server("epoll") as srv:
        r, doc = load_json(invoke, srv.port, "-c", "5", "-m", "20", "--size", "1-20000")
    assert r.exit_code == 0
    assert doc["schema"] == "fdscope.load/1"
    assert doc["ok"] and doc["messages_ok"] == doc["messages_expected"] == 100
    assert doc["bytes_verified"] == doc["bytes_sent"]
    assert doc["integrity_failures"] == 0 and doc["errors"] == {}
    lat = doc["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert doc["msgs_per_s"] > 0 and doc["mb_per_s"] > 0


def test_one_flipped_byte_fails_with_its_offset(invoke) -> None:  # type: ignore[no-untyped-def]
    with bad_server(flip_at(150)) as port:
        r, doc = load_json(invoke, port, "-c", "2", "-m", "3", "--size", "200-300")
    assert r.exit_code == 1
    assert doc["ok"] is False
    assert doc["integrity_failures"] == 2  # one per connection: each stream has a byte 150
    f = doc["failures"][0]
    assert f["kind"] == "corrupted byte"
    assert f["message"] == 0 and f["offset"] == 150
    assert f["got"] == f["expected"] ^ 0x01


def test_plain_echo_is_not_upper_case(invoke) -> None:  # type: ignore[no-untyped-def]
    with bad_server(lambda off, data: data) as port:
        r, doc = load_json(invoke, port, "-c", "1", "-m", "2", "--size", "1000")
    assert r.exit_code == 1
    assert doc["integrity_failures"] == 1
    assert doc["failures"][0]["kind"] == "corrupted byte"


def test_extra_bytes_are_an_integrity_failure(invoke) -> None:  # type: ignore[no-untyped-def]
    with bad_server(lambda off, data: transform(data) + b"!") as port:
        r, doc = load_json(invoke, port, "-c", "1", "-m", "2", "--size", "100")
    assert r.exit_code == 1
    assert doc["failures"][0]["kind"] == "extra bytes"


def test_truncated_reply_counts_lost_bytes(invoke) -> None:  # type: ignore[no-untyped-def]
    # Reply to the first 500 bytes, then hang up: the rest of a 1000-byte message is lost.
    # Verified bytes are counted as they arrive: the correct first half is verified, and
    # sent = verified + lost + in flight.
    def reply(offset: int, data: bytes) -> bytes | tuple[bytes] | None:
        if offset + len(data) >= 500:
            return (transform(data[: max(0, 500 - offset)]),)
        return transform(data)

    with bad_server(reply) as port:
        r, doc = load_json(invoke, port, "-c", "1", "-m", "1", "--size", "1000")
    assert r.exit_code == 1
    assert doc["bytes_lost"] == 500
    assert doc["bytes_sent"] == 1000 and doc["bytes_verified"] == 500 and _balanced(doc)
    assert doc["errors"] == {"eof": 1}
    assert "500 bytes lost" in doc["verdict"]


def test_refused_connections_are_counted_by_kind(invoke) -> None:  # type: ignore[no-untyped-def]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r, doc = load_json(invoke, port, "-c", "3", "-m", "1")
    assert r.exit_code == 1
    assert doc["errors"] == {"ECONNREFUSED": 3}
    assert doc["connections_ok"] == 0


def test_text_output(invoke) -> None:  # type: ignore[no-untyped-def]
    with server("poll") as srv:
        r = invoke("load", f"127.0.0.1:{srv.port}", "-c", "2", "-m", "5")
    assert r.exit_code == 0
    assert "10 verified of 10 sent" in r.stdout
    assert "OK: every reply byte verified" in r.stdout


@pytest.mark.parametrize("args", [
    ["nohost"], ["127.0.0.1:99999"], ["127.0.0.1:80", "--size", "10-5"],
    ["127.0.0.1:80", "--size", "0"], ["127.0.0.1:80", "--connections", "0"],
])
def test_usage_errors_exit_2(invoke, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = invoke("load", *args)
    assert r.exit_code == 2


def test_raises_its_own_soft_limit() -> None:
    """100 connections under a soft limit of 64: load raises it (the hard limit allows)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 200:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} too low")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))

    with server("epoll") as srv:
        r = subprocess.run(
            [sys.executable, "-m", "fdscope", "load", f"127.0.0.1:{srv.port}", "-c", "100",
             "-m", "2", "--json"], capture_output=True, text=True, timeout=60, preexec_fn=lower)
    doc = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr
    assert doc["rlimit_nofile_raised"] == {"from": 64, "to": 164}
    assert doc["connections_ok"] == 100


def test_parse_size_and_target() -> None:
    assert parse_size("4096") == (4096, 4096)
    assert parse_size("1-64k") == (1, 65536)
    assert parse_size("2m") == (2 * 1024 * 1024,) * 2
    for bad in ("", "x", "5-1", "0", "1-", "-3"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert parse_target("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_target("[::1]:80") == ("::1", 80)
    for bad in ("host", ":80", "h:0", "h:70000", "h:x"):
        with pytest.raises(ValueError):
            parse_target(bad)


def _balanced(doc: dict) -> bool:
    return doc["bytes_sent"] == doc["bytes_verified"] + doc["bytes_lost"] + doc["bytes_in_flight"]


def test_a_correct_run_balances(invoke) -> None:  # type: ignore[no-untyped-def]
    with server("epoll") as srv:
        r, doc = load_json(invoke, srv.port, "-c", "3", "-m", "10", "--size", "1-5000")
    assert r.exit_code == 0
    assert doc["bytes_in_flight"] == doc["bytes_extra"] == doc["bytes_lost"] == 0
    assert _balanced(doc)


def test_a_long_garbage_reply_is_a_corrupted_byte_at_its_offset(invoke) -> None:  # type: ignore[no-untyped-def]
    """A reply longer than the message is checked within the message first: garbage is a
    corrupted byte at offset 0, not "extra bytes" at the message's end."""
    with bad_server(lambda off, data: b"\x00" * (len(data) + 5)) as port:
        r, doc = load_json(invoke, port, "-c", "1", "-m", "1", "--size", "100")
    assert r.exit_code == 1
    f = doc["failures"][0]
    assert f["kind"] == "corrupted byte" and f["offset"] == 0 and f["got"] == 0
    assert doc["bytes_verified"] == 0 and _balanced(doc)


def test_extra_bytes_after_a_correct_reply_are_counted(invoke) -> None:  # type: ignore[no-untyped-def]
    with bad_server(lambda off, data: transform(data) + b"!!") as port:
        r, doc = load_json(invoke, port, "-c", "1", "-m", "1", "--size", "100")
    assert r.exit_code == 1
    f = doc["failures"][0]
    assert f["kind"] == "extra bytes" and f["offset"] == 100 and f["size"] == 100
    assert doc["bytes_verified"] == 100 and doc["bytes_extra"] == 2
    assert "2 extra bytes" in doc["verdict"] and _balanced(doc)


def test_a_corrupted_byte_mid_message_balances(invoke) -> None:  # type: ignore[no-untyped-def]
    with bad_server(flip_at(150)) as port:
        r, doc = load_json(invoke, port, "-c", "1", "-m", "1", "--size", "300")
    assert r.exit_code == 1
    assert doc["bytes_verified"] == 150 and doc["bytes_lost"] == 150 and _balanced(doc)


@pytest.mark.parametrize("args,needle", [
    (["127.0.0.1:80", "--size", "256m"], "at most 64m"),
    (["127.0.0.1:80", "--size", "1-99999999999999999999"], "at most 64m"),
    (["256.0.0.1:80"], "not a valid IPv4 address"),
    (["::1:80"], "needs brackets"),
    (["[nope]:80"], "not an IPv6 address"),
    (["host\x1b:80"], "not a host name"),
    (["127.0.0.1:٨٠"], "expected HOST:PORT"),
])
def test_malformed_targets_and_sizes_are_usage_errors(invoke, args: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    r = invoke("load", *args)
    assert r.exit_code == 2, r.stderr
    assert r.stderr.count("\n") == 1 and needle in r.stderr


def test_an_unresolvable_host_is_one_line_exit_1(invoke) -> None:  # type: ignore[no-untyped-def]
    """.invalid never resolves (RFC 6761): the resolver's reason, not "internal error"."""
    r = invoke("load", "nosuch.invalid:80", "-c", "1", "-m", "1")
    assert r.exit_code == 1, r.stderr
    assert r.stderr.startswith("fdscope: cannot resolve nosuch.invalid: ")
    assert r.stderr.count("\n") == 1 and "internal error" not in r.stderr


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_targets_are_printed_in_brackets(invoke) -> None:  # type: ignore[no-untyped-def]
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    r = invoke("load", f"[::1]:{port}", "-c", "1", "-m", "1", "--json")
    assert json.loads(r.stdout)["target"] == f"[::1]:{port}"
    text = invoke("load", f"[::1]:{port}", "-c", "1", "-m", "1")
    assert f"[::1]:{port}" in text.stdout


@pytest.mark.parametrize("field", ["duration", "stall_timeout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_load_refuses_endless_time_limits(field: str, value: float) -> None:
    """nan compares False with everything: a nan deadline or stall timeout never ended the
    loop. The CLI types refuse it; LoadRun does too, for every other caller."""
    from fdscope.errors import UsageError
    from fdscope.load import LoadConfig, LoadRun

    with pytest.raises(UsageError):
        LoadRun(LoadConfig(host="127.0.0.1", port=1, **{field: value}))
