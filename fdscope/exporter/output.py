"""Where the metrics go: an HTTP endpoint (prometheus_client's WSGI server on a daemon thread)
or a textfile for node_exporter's textfile collector, replaced atomically."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from fdscope.errors import UsageError

DEFAULT_LISTEN = "127.0.0.1:9790"
TEXTFILE = "fdscope.prom"


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT or [IPV6]:PORT -> (host, port). The host must be named: binding beyond
    loopback is asked for as 0.0.0.0 or [::]. ValueError says what is wrong."""
    if not text.isprintable() or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not HOST:PORT")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} has no port (HOST:PORT, e.g. {DEFAULT_LISTEN})")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, [ADDR]:PORT")
    if not host:
        raise ValueError(f"{text!r} names no address (0.0.0.0 or [::] for every interface)")
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5 \
            or int(port_text) > 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def show_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(registry: Any, host: str, port: int) -> tuple[Any, str]:
    """Start serving /metrics from `registry` on a daemon thread; (server, bound address).
    Any failure to bind (address in use, not local, unknown host, port needs root) is a usage
    error: the address given is what cannot be used."""
    import socket

    from prometheus_client.exposition import start_http_server

    try:
        server, _thread = start_http_server(port, host, registry)
    except socket.gaierror as err:
        raise UsageError(f"--listen {show_address(host, port)}: cannot resolve {host!r}: "
                         f"{err.strerror or err}") from err
    except OverflowError as err:
        raise UsageError(f"--listen {show_address(host, port)}: {err}") from err
    except OSError as err:
        raise UsageError(f"--listen {show_address(host, port)}: cannot listen: "
                         f"{err.strerror or err}") from err
    bound = server.socket.getsockname()
    return server, show_address(bound[0], bound[1])


def check_dir(directory: str) -> str:
    """The path of the textfile in `directory`, once the directory is known to take files
    (a probe file is created and removed): a usage error otherwise."""
    if not os.path.isdir(directory):
        raise UsageError(f"--textfile {directory}: not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{TEXTFILE}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise UsageError(f"--textfile {directory}: cannot write there: "
                         f"{err.strerror or err}") from err
    os.close(fd)
    os.unlink(probe)
    return os.path.join(directory, TEXTFILE)


def write_textfile(path: str, data: bytes) -> None:
    """Replace `path` with `data` atomically: written to a temporary file in the same
    directory, then renamed over it (rename(2) is atomic: a reader opens the old file or the
    new one, never a part). The temporary name does not end in .prom, which node_exporter's
    textfile collector reads. Mode 0644: node_exporter usually runs as another user."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{TEXTFILE}.", suffix=".tmp", dir=directory)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, 0o644)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
