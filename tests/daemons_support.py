"""Real daemons from Debian packages for tests/test_daemons.py and scripts/daemons_baseline.py.

Each daemon is started by the test, never by its package: on 127.0.0.1, on a free port, with a
config written into a fresh directory under /tmp (tmp_path is root-only, and most of these drop
to an unprivileged user that must read its config), in the foreground, in its own session. `stop`
asks it to shut down (so a master reaps its workers), then SIGKILLs whatever of it is left.

Clients (the kind `fdscope load` makes): `request` (one round trip per protocol), `Churn` (a
child process that connects, sends, and closes in a loop, bounded in time and count),
`idle_clients` (connections that stay), `SlowReader` (sends requests and never reads: the
server's send queue grows), `flood_connects` (non-blocking connects past a listener's backlog),
`fill_to_limit` (connects until the daemon's accept() fails with EMFILE). `provoke_*` run a
fault and return what fdscope (and ss, lsfd) said about it.

Cross-checks: `cross_check(pids)` compares `fdscope inspect PID --json --sample 0` (run as a
subprocess, as an operator runs it) with lsfd(1) (fd type, inode, flags, socket protocol),
ss(8) run in the target's network namespace (socket proto/state/addresses/queues) and the raw
/proc/PID/fdinfo text of each epoll fd (tfd, mask, data, inode, sdev). Under churn fds change
while the tools read: only fds whose link text, lsfd row, ss row and epoll fdinfo were the same
before and after fdscope ran are compared; the rest are counted as skipped.

Run as a script, this module is the churn client: `python tests/daemons_support.py churn
PROTOCOL PORT SECONDS THREADS` (it needs only what is imported at the top).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 40.0  # prometheus and postgres start in ~1-3 s; a loaded 2-core CI is slower
SBIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


# ---------------------------------------------------------------------------------------------
# Finding binaries


def find_binary(name: str) -> str | None:
    """`name` on PATH or in the sbin directories (root's PATH in CI may lack /usr/sbin);
    postgres lives in /usr/lib/postgresql/VERSION/bin."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    return None


# ---------------------------------------------------------------------------------------------
# Daemon specs: each writes its config into `run.dir` and returns its argv. Configs are the
# defaults except for what running in a test needs: address, port, paths, foreground, user, no
# persistence; nginx 2 workers, haproxy nbthread 2, memcached 4 threads (issue 11).


@dataclass
class Launch:
    """What a spec needs to write its config: a directory, a port, the binary."""

    dir: Path
    port: int
    binary: str


@dataclass(frozen=True)
class Spec:
    name: str
    packages: tuple[str, ...]      # Debian packages (scripts/ci-deps installs them)
    binary: str                    # executable the daemon runs as
    protocol: str                  # http | memcache | redis | pg | dns (see `request`)
    argv: Callable[[Launch], list[str]]
    why: str                       # what it shows about waiting for I/O (docs/daemons.md)
    user: str | None = None        # run as this user (None: root, the daemon drops privileges)
    stop_signal: int = signal.SIGTERM
    big_request: bytes | None = None   # a request whose reply is large (SlowReader)
    prepare: Callable[[Launch], None] | None = None  # setup before argv (e.g. initdb)
    helpers: tuple[str, ...] = ()  # other binaries it needs (initdb)


BIG = 1 << 20  # bytes in each large reply


def _nginx(run: Launch) -> list[str]:
    (run.dir / "www").mkdir()
    (run.dir / "www" / "big").write_bytes(b"x" * BIG)
    conf = run.dir / "nginx.conf"
    d = run.dir
    conf.write_text(f"""
daemon off;
master_process on;
worker_processes 2;
user nobody nogroup;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{run.port} backlog=511;
    root {d}/www;
    location = / {{ return 200 "ok\\n"; }}
  }}
}}
""")
    return [run.binary, "-c", str(conf), "-p", str(d), "-e", f"{d}/error.log"]


def _haproxy(run: Launch) -> list[str]:
    # `http-request return ... file` must fit in one buffer (tune.bufsize, 16 kB).
    (run.dir / "big").write_bytes(b"x" * 8000)
    conf = run.dir / "haproxy.cfg"
    conf.write_text(f"""
global
  nbthread 2
  user nobody
  group nogroup
  pidfile {run.dir}/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{run.port}
  http-request return status 200 content-type text/plain file {run.dir}/big if {{ path /big }}
  http-request return status 200 content-type text/plain string ok
""")
    return [run.binary, "-f", str(conf), "-db"]


def _memcached(run: Launch) -> list[str]:
    return [run.binary, "-l", "127.0.0.1", "-p", str(run.port), "-U", "0", "-t", "4",
            "-u", "nobody", "-m", "64"]


def _redis(run: Launch) -> list[str]:
    return [run.binary, "--bind", "127.0.0.1", "--port", str(run.port), "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(run.dir),
            "--logfile", ""]


NODE_SERVER = r"""
const http = require('http');
const big = Buffer.alloc(BIG, 120);
const srv = http.createServer((req, res) => {
  if (req.url === '/big') { res.end(big); return; }
  res.end('ok\n');
});
srv.listen(parseInt(process.argv[2], 10), '127.0.0.1');
""".replace("BIG", str(BIG))


def _node(run: Launch) -> list[str]:
    script = run.dir / "server.js"
    script.write_text(NODE_SERVER)
    return [run.binary, str(script), str(run.port)]


def _prometheus(run: Launch) -> list[str]:
    conf = run.dir / "prometheus.yml"
    conf.write_text("global:\n  scrape_interval: 1h\n  evaluation_interval: 1h\n"
                    "scrape_configs: []\n")
    return [run.binary, f"--config.file={conf}", f"--storage.tsdb.path={run.dir}/data",
            f"--web.listen-address=127.0.0.1:{run.port}", "--log.level=warn"]


def _postgres_init(run: Launch) -> None:
    initdb = find_binary("initdb")
    assert initdb is not None
    subprocess.run([initdb, "-D", str(run.dir / "data"), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8", "--no-instructions"],
                   user="postgres", group="postgres", extra_groups=[], cwd=run.dir,
                   check=True, capture_output=True, timeout=120)


def _postgres(run: Launch) -> list[str]:
    return [run.binary, "-D", str(run.dir / "data"), "-k", str(run.dir), "-h", "127.0.0.1",
            "-p", str(run.port), "-c", "max_connections=20", "-c", "shared_buffers=16MB",
            "-c", "fsync=off", "-c", "logging_collector=off"]


def _dnsmasq(run: Launch) -> list[str]:
    # --keep-in-foreground, not --no-daemon: that is debug mode, which neither changes user
    # nor forks for TCP (one idle TCP client then blocks the whole server in read()).
    return [run.binary, "--keep-in-foreground", "--conf-file=/dev/null",
            "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
            f"--port={run.port}", f"--pid-file={run.dir}/dnsmasq.pid", "--user=nobody",
            "--group=nogroup", "--address=/test/127.0.0.2", "--log-facility=-"]


SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("nginx", ("nginx",), "nginx", "http", _nginx,
         "master + 2 worker processes; each worker has its own epoll set watching the shared "
         "listener (EPOLLEXCLUSIVE) and an eventfd (EPOLLET); the master sleeps in "
         "sigsuspend with O_ASYNC channel sockets",
         big_request=b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"),
    Spec("haproxy", ("haproxy",), "haproxy", "http", _haproxy,
         "one process, nbthread 2: one epoll set per thread, the listener in both",
         big_request=b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 4),
    Spec("memcached", ("memcached",), "memcached", "memcache", _memcached,
         "libevent: a listener thread and 4 worker threads, each with its own epoll set "
         "and eventfd/pipe for hand-off; maintenance threads in futex/nanosleep",
         big_request=b"get big\r\n"),
    Spec("redis", ("redis-server",), "redis-server", "redis", _redis,
         "single-threaded ae event loop on epoll; bio/jemalloc threads in futex",
         user="redis", big_request=b"GET big\r\n"),
    Spec("node", ("nodejs",), "node", "http", _node,
         "libuv: the main loop's epoll set, a second epoll set for V8's platform loop, "
         "threadpool threads in futex",
         user="nobody", big_request=b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"),
    Spec("prometheus", ("prometheus",), "prometheus", "http", _prometheus,
         "Go: the netpoller (one epoll set, every fd EPOLLET and non-blocking), one thread in "
         "epoll_pwait at most, the rest parked in futex",
         user="prometheus", big_request=b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 8),
    Spec("postgres", ("postgresql",), "postgres", "pg", _postgres,
         "process per connection: the postmaster in select(), every auxiliary process and "
         "backend with its own epoll set (WaitEventSet)",
         user="postgres", stop_signal=signal.SIGINT, prepare=_postgres_init,
         helpers=("initdb",)),
    Spec("dnsmasq", ("dnsmasq-base",), "dnsmasq", "dns", _dnsmasq,
         "a poll() loop (no epoll), forks a child per TCP connection"),
    # No big_request: DNS answers are small and dnsmasq closes a TCP connection after 100
    # queries (TCP_MAX_QUERIES in src/config.h), so no send queue can grow.
)}


def missing_binaries(spec: Spec) -> list[str]:
    return [b for b in (spec.binary, *spec.helpers) if find_binary(b) is None]


# ---------------------------------------------------------------------------------------------
# Running a daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonError(RuntimeError):
    pass


class Daemon:
    """A running daemon started from `spec`; `nofile` sets its RLIMIT_NOFILE (soft = hard)
    through prlimit(1), which execs it (same pid)."""

    def __init__(self, spec: Spec, *, nofile: int | None = None, attempts: int = 3) -> None:
        self.spec = spec
        self.nofile = nofile
        last = ""
        for _ in range(attempts):
            try:
                self._start()
                return
            except DaemonError as exc:  # e.g. another test took the free port first
                last = str(exc)
        raise DaemonError(last)

    def _start(self) -> None:
        spec = self.spec
        binary = find_binary(spec.binary)
        if binary is None:
            raise DaemonError(f"{spec.binary} not found")
        self.proc: subprocess.Popen[bytes] | None = None
        fd, log_path = tempfile.mkstemp(prefix=f"fdscope-{spec.name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_path)
        self.dir = Path(tempfile.mkdtemp(prefix=f"fdscope-{spec.name}-"))
        try:
            self._launch(binary)
        except BaseException:
            self.stop()
            raise

    def _launch(self, binary: str) -> None:
        spec = self.spec
        os.chmod(self.dir, 0o755)
        if spec.user:
            pw = pwd.getpwnam(spec.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        run = Launch(self.dir, self.port, binary)
        if spec.prepare:
            spec.prepare(run)
        argv = spec.argv(run)
        if self.nofile is not None:
            argv = [find_binary("prlimit") or "prlimit", f"--nofile={self.nofile}:{self.nofile}",
                    "--", *argv]
        user_kw: dict[str, Any] = {}
        if spec.user:
            user_kw = dict(user=spec.user, group=pwd.getpwnam(spec.user).pw_gid, extra_groups=[])
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, **user_kw)
        self.pid = self.proc.pid
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if _exited(self.pid):  # not reaped: stop() can still kill its process group
                raise DaemonError(f"{spec.name} exited: {self.log()[-2000:]}")
            try:
                request(spec.protocol, self.port, timeout=2.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise DaemonError(f"{spec.name} not answering on port {self.port} after "
                                      f"{START_TIMEOUT:g} s: {self.log()[-2000:]}") from None
                time.sleep(0.1)
        if spec.name in ("memcached", "redis"):
            _store_big(spec.protocol, self.port)
        self.settle()

    def log(self) -> str:
        """Its stdout/stderr and the *.log files in its directory (nginx's error.log)."""
        texts = []
        for path in (self.log_path, *sorted(self.dir.glob("*.log"))):
            with contextlib.suppress(FileNotFoundError):
                texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)

    def pids(self) -> list[int]:
        """The main process and its descendants (workers, backends, forked children)."""
        import psutil

        try:
            main = psutil.Process(self.pid)
            return [self.pid, *sorted(c.pid for c in main.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def role(self, pid: int) -> str:
        """What one process of the daemon is: "main", nginx's "worker", postgres's title
        ("checkpointer", ...) or "backend", else "child" (dnsmasq's per-connection fork)."""
        if pid == self.pid:
            return "main"
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except OSError:
            return "gone"
        if self.spec.name == "nginx" and "worker process" in cmd:
            return "worker"
        if self.spec.name == "postgres" and cmd.startswith("postgres: "):
            # "postgres: checkpointer", "postgres: postgres postgres 127.0.0.1(40312) idle"
            title = cmd.removeprefix("postgres: ")
            return "backend" if "127.0.0.1(" in title else title
        return "child"

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every thread of every process of the daemon sleeps (start-up is over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_all_sleeping(p) for p in self.pids()):
                return
            time.sleep(0.05)

    def stop(self) -> None:
        """Graceful stop (a master reaps its workers), then SIGKILL to its process group and to
        every descendant seen before, then reap it. The main process is reaped last: until
        then its pid, which is the group id, cannot be reused, so killpg hits only its group."""
        import psutil

        if self.proc is not None:
            procs = []
            with contextlib.suppress(psutil.NoSuchProcess):
                main = psutil.Process(self.pid)
                procs = [main, *main.children(recursive=True)]
            if self.proc.returncode is None:
                # os.kill, not Popen.send_signal: that polls first and would reap it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, self.spec.stop_signal)
                deadline = time.monotonic() + 10
                while not _exited(self.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)  # start_new_session: its own group
            for p in procs[1:]:  # psutil checks each is still the process it saw
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            self.proc.wait(timeout=10)
            psutil.wait_procs(procs[1:], timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log_path)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _exited(pid: int) -> bool:
    """True once our child `pid` has exited (a zombie now), without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def _all_sleeping(pid: int) -> bool:
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("S", "D", "I"):
                    return False
    except (FileNotFoundError, ProcessLookupError):
        return True
    return True


@contextlib.contextmanager
def stopped(pids: list[int]) -> Iterator[None]:
    """SIGSTOP the daemon's processes (a stalled daemon: nothing accepts), SIGCONT after."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


# ---------------------------------------------------------------------------------------------
# Protocol clients


def _pg_startup() -> bytes:
    body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
    return struct.pack("!I", len(body) + 4) + body


def _pg_query(sql: str) -> bytes:
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(body) + 4) + body


PG_TERMINATE = b"X" + struct.pack("!I", 4)


def _dns_query(qid: int = 0x1234) -> bytes:
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\x04test\x00" + struct.pack(
        "!HH", 1, 1)
    return struct.pack("!H", len(msg)) + msg


def _recv_until(sock: socket.socket, done: Callable[[bytes], bool], limit: int = 1 << 22) -> bytes:
    buf = b""
    while not done(buf):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            break
    return buf


def _pg_ready(buf: bytes) -> bool:
    """True once the server's messages include ReadyForQuery ('Z') or an error ('E')."""
    i = 0
    while i + 5 <= len(buf):
        kind = buf[i:i + 1]
        (length,) = struct.unpack("!I", buf[i + 1:i + 5])
        if i + 1 + length > len(buf):
            return False
        if kind in (b"Z", b"E"):
            return True
        i += 1 + length
    return False


def exchange_on(sock: socket.socket, protocol: str, path: str = "/") -> bytes:
    """One request/reply on a connected socket; raises OSError when the reply is wrong."""
    if protocol == "http":
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        reply = _recv_until(sock, lambda b: False)
        ok = reply.startswith(b"HTTP/1.")
    elif protocol == "memcache":
        sock.sendall(b"version\r\n")
        reply = _recv_until(sock, lambda b: b.endswith(b"\r\n"))
        ok = reply.startswith(b"VERSION")
    elif protocol == "redis":
        sock.sendall(b"PING\r\n")
        reply = _recv_until(sock, lambda b: b.endswith(b"\r\n"))
        ok = reply.startswith(b"+PONG")
    elif protocol == "pg":
        sock.sendall(_pg_startup())
        reply = _recv_until(sock, _pg_ready)
        ok = reply[:1] == b"R" and b"Z" in reply
        if ok:
            sock.sendall(PG_TERMINATE)
    elif protocol == "dns":
        sock.sendall(_dns_query())
        reply = _recv_until(sock, lambda b: len(b) >= 2 + int.from_bytes(b[:2] or b"\0", "big"))
        ok = len(reply) > 14 and reply[2:4] == b"\x12\x34"
    else:
        raise ValueError(protocol)
    if not ok:
        raise OSError(errno.EPROTO, f"bad {protocol} reply: {reply[:80]!r}")
    return reply


def request(protocol: str, port: int, timeout: float = 5.0, path: str = "/") -> bytes:
    """Connect, do one request/reply, close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        return exchange_on(sock, protocol, path)


def _store_big(protocol: str, port: int) -> None:
    """Store the value `big` (BIG bytes) that SlowReader asks for."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        value = b"x" * (BIG // 2 if protocol == "memcache" else BIG)  # memcached items <= 1 MB
        if protocol == "memcache":
            sock.sendall(b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n")
            want = b"STORED"
        else:
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n" % len(value) + value + b"\r\n")
            want = b"+OK"
        reply = _recv_until(sock, lambda b: b.endswith(b"\r\n"))
        if not reply.startswith(want):
            raise DaemonError(f"storing the big value failed: {reply[:80]!r}")


class Churn:
    """A child process that connects, does one request (or closes right after sending, every
    third time), and closes, in `threads` loops, until stopped or `seconds` ran out."""

    def __init__(self, protocol: str, port: int, seconds: float = 60.0, threads: int = 2) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "churn", protocol, str(port), str(seconds), str(threads)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
            stdin=subprocess.DEVNULL)
        self.result: dict[str, Any] = {}

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        try:
            self.result = json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            self.result = {"ok": 0, "errors": 0, "stderr": err[-500:]}
        return self.result

    def __enter__(self) -> Churn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _churn_main(protocol: str, port: int, seconds: float, nthreads: int) -> None:
    stop = threading.Event()
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    max_each = 200_000  # bounded in count as well as time

    def loop(k: int) -> None:
        for i in range(max_each):
            if stop.is_set():
                return
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    if (i + k) % 3 == 2:  # hang up without reading the reply
                        s.sendall({"http": b"GET / HTTP/1.0\r\n\r\n", "memcache": b"version\r\n",
                                   "redis": b"PING\r\n", "pg": _pg_startup(),
                                   "dns": _dns_query()}[protocol])
                        key = "hangups"
                    else:
                        exchange_on(s, protocol)
                        key = "ok"
            except OSError as exc:
                key = f"error {exc.__class__.__name__}"
            with lock:
                counts[key] += 1
            time.sleep(0.01)

    workers = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(nthreads)]
    for w in workers:
        w.start()
    stop.wait(seconds)
    stop.set()
    for w in workers:
        w.join(10)
    print(json.dumps(dict(counts)), flush=True)


class SlowReader:
    """A client with a small receive buffer that sends requests for large replies and never
    reads: the server's replies pile up in its socket's send queue."""

    def __init__(self, spec: Spec, port: int, repeat: int = 4) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        if spec.protocol == "pg":
            self.sock.sendall(_pg_startup())
            _recv_until(self.sock, _pg_ready)
            payload = _pg_query(f"SELECT repeat('x', {BIG})") * repeat
        else:
            assert spec.big_request is not None
            payload = spec.big_request * repeat
        self.sock.setblocking(False)
        view = memoryview(payload)
        deadline = time.monotonic() + 2.0
        while view and time.monotonic() < deadline:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                time.sleep(0.05)
        host, port = self.sock.getsockname()
        self.local = f"{host}:{port}"

    def close(self) -> None:
        # RST: close() with unread data would send one anyway; SO_LINGER 0 says so.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self) -> SlowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def idle_clients(spec: Spec, port: int, n: int) -> Iterator[list[socket.socket]]:
    """`n` connected clients that stay and send nothing more (postgres: after the startup
    handshake, so each has an idle backend process; dnsmasq: each has a forked child)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
            if spec.protocol == "pg":
                s.sendall(_pg_startup())
                _recv_until(s, _pg_ready)
        time.sleep(0.2)  # accepted, and the process per connection forked
        yield socks
    finally:
        for s in socks:
            s.close()


def flood_connects(port: int, n: int, errors: Counter[str] | None = None) -> list[socket.socket]:
    """`n` non-blocking connects to the port (the caller closes them); connect errors other
    than EINPROGRESS are counted by name in `errors`."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS) and errors is not None:
            errors[errno.errorcode.get(err, str(err))] += 1
        socks.append(s)
    return socks


@contextlib.contextmanager
def held_connections(port: int, n: int,
                     errors: Counter[str] | None = None) -> Iterator[list[socket.socket]]:
    socks = flood_connects(port, n, errors)
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def fill_to_limit(daemon: Daemon, limit: int, emfile_log: str | None = None,
                  max_conns: int = 600, timeout: float = 20.0) -> Iterator[list[socket.socket]]:
    """Connect in small batches until a process of the daemon holds `limit` fds and a further
    accept() has failed with EMFILE: for a daemon that logs it, `emfile_log` is in its log
    (nginx: a worker at the limit while the other still accepts has not failed yet); otherwise
    four more connects follow. Yields the sockets, closed after."""
    socks: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    try:
        while len(socks) < max_conns and time.monotonic() < deadline:
            socks += flood_connects(daemon.port, 8)
            time.sleep(0.1)
            if max(map(open_fds, daemon.pids()), default=0) < limit:
                continue
            if emfile_log is None:
                socks += flood_connects(daemon.port, 4)
                time.sleep(0.2)
                break
            if emfile_log in daemon.log():
                break
        yield socks
    finally:
        for s in socks:
            s.close()


def tcp_ext(pid: int) -> dict[str, int]:
    """TcpExt counters of `pid`'s network namespace (/proc/PID/net/netstat: pairs of lines, a
    header of names and a line of values)."""
    lines = Path(f"/proc/{pid}/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=False))
    return {}


# ---------------------------------------------------------------------------------------------
# fdscope, as an operator runs it


def fdscope(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fdscope", *args], capture_output=True,
                          text=True, errors="replace", timeout=timeout, cwd=REPO)


def fdscope_inspect(pid: int) -> dict[str, Any] | None:
    """`fdscope inspect PID --json --sample 0`; None when the process is gone (exit 3)."""
    return fdscope_inspect_many([pid])[pid]


def fdscope_inspect_many(pids: list[int]) -> dict[int, dict[str, Any] | None]:
    """`fdscope_inspect` of several pids, run side by side."""
    procs = {pid: subprocess.Popen(
                 [sys.executable, "-m", "fdscope", "inspect", str(pid), "--json", "--sample", "0"],
                 cwd=REPO, text=True, errors="replace", stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
             for pid in pids}
    docs: dict[int, dict[str, Any] | None] = {}
    for pid, p in procs.items():
        out, err = p.communicate(timeout=60)
        if p.returncode == 3:
            docs[pid] = None
        elif p.returncode != 0:
            raise AssertionError(f"fdscope inspect {pid} exited {p.returncode}: {err}")
        else:
            docs[pid] = json.loads(out)
    return docs


def finding_label(f: dict[str, Any]) -> str:
    return f"{f['level'].upper()} {f['code']}"


# ---------------------------------------------------------------------------------------------
# Cross-checks


LSFD_ANON = {"eventpoll": "epoll", "eventfd": "eventfd", "timerfd": "timerfd",
             "signalfd": "signalfd", "inotify": "inotify", "pidfd": "pidfd",
             "io_uring": "io_uring", "[fanotify]": "fanotify", "fanotify": "fanotify"}
LSFD_TYPES = {"REG": {"file", "memfd"}, "DIR": {"dir"}, "CHR": {"chr"}, "BLK": {"blk"},
              "FIFO": {"pipe"}, "SOCK": {"socket"}}
# lsfd names a socket by its protocol (the socket's system.sockprotoname xattr): "TCP:[123]".
LSFD_PROTOS = {"TCP": "tcp", "TCPv6": "tcp6", "UDP": "udp", "UDPv6": "udp6", "UNIX": "unix",
               "UNIX-STREAM": "unix", "UNIX-SEQPACKET": "unix", "NETLINK": "netlink",
               "RAW": "raw", "RAWv6": "raw6", "PACKET": "packet"}
SS_STATES = {"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
             "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
             "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK", "CLOSING": "CLOSING",
             "LISTEN": "LISTEN", "UNCONN": "UNCONN", "CLOSE": "CLOSE"}
SS_UNIX_STATES = {"ESTAB": "CONNECTED", "UNCONN": "UNCONNECTED", "LISTEN": "LISTEN",
                  "SYN-SENT": "CONNECTING"}


def read_links(pid: int) -> dict[int, str]:
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return {}
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return out


def read_fdinfo(pid: int, fd: int) -> str | None:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            return f.read()
    except FileNotFoundError:
        return None


def lsfd_rows(pid: int) -> dict[int, dict[str, Any]]:
    """lsfd -J -p PID: {fd: {type, inode, name, flags}} for the numbered fds."""
    res = subprocess.run(["lsfd", "-J", "-p", str(pid), "-o", "ASSOC,TYPE,INODE,NAME,FLAGS"],
                         capture_output=True, text=True, errors="replace", timeout=30)
    if res.returncode != 0 or not res.stdout.strip():
        return {}
    rows = json.loads(res.stdout).get("lsfd", [])
    return {int(r["assoc"]): r for r in rows if str(r.get("assoc", "")).isdigit()}


def ss_rows(pid: int) -> dict[int, dict[str, Any]]:
    """`ss -Hane -A inet,unix` in the target's network namespace, by socket inode."""
    res = subprocess.run(["nsenter", "-t", str(pid), "-n", "ss", "-Hane", "-A", "inet,unix"],
                         capture_output=True, text=True, errors="replace", timeout=60)
    rows: dict[int, dict[str, Any]] = {}
    for line in res.stdout.splitlines():
        row = parse_ss_line(line)
        if row is not None:
            rows[row["inode"]] = row
    return rows


_SS_INO = re.compile(r"\bino:(\d+)")


def _ss_addr(text: str) -> str | None:
    """ss's address to fdscope's: "0.0.0.0:*" (no peer) -> None; "127.0.0.1%lo:53" -> without
    the interface."""
    if text.endswith(":*") or text in ("*", "*:*"):
        return None
    host, _, port = text.rpartition(":")
    host = host.split("%", 1)[0]
    return f"{host}:{port}"


def parse_ss_line(line: str) -> dict[str, Any] | None:
    parts = line.split()
    if len(parts) < 6:
        return None
    netid, state, rq, sq = parts[:4]
    if netid.startswith("u_"):
        # u_str ESTAB 0 0 <path or *> <inode> <peer path or *> <peer inode> ...
        if len(parts) < 8 or not parts[5].isdigit():
            return None
        return {"proto": "unix", "state": SS_UNIX_STATES.get(state, state),
                "local": None if parts[4] == "*" else parts[4], "remote": None,
                "recv_q": None, "send_q": None, "inode": int(parts[5]), "raw": line.strip()}
    if netid not in ("tcp", "udp", "raw"):
        return None
    m = _SS_INO.search(line)
    if not m:
        return None
    local = _ss_addr(parts[4])
    proto = netid + ("6" if parts[4].startswith("[") else "")
    return {"proto": proto, "state": SS_STATES.get(state, state), "local": local,
            "remote": _ss_addr(parts[5]), "recv_q": int(rq), "send_q": int(sq),
            "inode": int(m.group(1)), "raw": line.strip()}


def same_ss(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """The same socket row, timers aside (ss -e prints retransmit/persist timers that tick)."""
    if a is None or b is None:
        return a is b
    return all(a[k] == b[k] for k in a if k != "raw")


def parse_epoll_fdinfo(text: str) -> list[tuple[int, int, int, int, int]]:
    """(tfd, mask, data, inode, sdev) from the raw fdinfo of an epoll fd (fs/eventpoll.c
    ep_show_fdinfo: "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x")."""
    regs = []
    for line in text.splitlines():
        m = re.match(r"tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+).*?"
                     r"ino:([0-9a-f]+)\s+sdev:([0-9a-f]+)", line)
        if m:
            tfd, ev, data, ino, sdev = m.groups()
            regs.append((int(tfd), int(ev, 16), int(data, 16), int(ino, 16), int(sdev, 16)))
    return sorted(regs)


def kernel_dev_to_st_dev(kdev: int) -> int:
    """include/linux/kdev_t.h: the kernel's dev_t is MAJOR << 20 | MINOR; stat(2) encodes it
    with new_encode_dev (os.makedev)."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF)


@dataclass
class Tools:
    """What the other tools saw of one process at one moment."""

    links: dict[int, str]
    lsfd: dict[int, dict[str, Any]]
    epoll: dict[int, str | None]


def _tools(pid: int) -> Tools:
    links = read_links(pid)
    epfds = [fd for fd, link in links.items() if link == "anon_inode:[eventpoll]"]
    return Tools(links, lsfd_rows(pid), {fd: read_fdinfo(pid, fd) for fd in epfds})


@dataclass
class CrossCheck:
    """The outcome for one or more processes: counts of what agreed, skipped (changed while
    the tools read), and every mismatch with its detail."""

    fds: int = 0
    sockets: int = 0
    registrations: int = 0
    skipped: int = 0
    processes: int = 0
    mismatches: list[str] = field(default_factory=list)

    def add(self, other: CrossCheck) -> None:
        self.fds += other.fds
        self.sockets += other.sockets
        self.registrations += other.registrations
        self.skipped += other.skipped
        self.processes += other.processes
        self.mismatches += other.mismatches

    def summary(self) -> str:
        return (f"{self.processes} processes: {self.fds} fds (type, inode, flags), {self.sockets} "
                f"sockets, {self.registrations} epoll registrations agree; {self.skipped} fds "
                f"skipped (changed during the check); {len(self.mismatches)} mismatches")


def cross_check(pids: list[int], *, busy: bool = False) -> CrossCheck:
    """Compare fdscope's report of each pid with lsfd, ss and the raw epoll fdinfo. One ss run
    before and one after serve every pid (each pid's network namespace is entered; pids in the
    same one reuse the listing).

    busy: clients come and go. A socket's queues then move up and down between the tools'
    reads even when ss shows the same figure before and after (a listener's accept queue goes
    0 -> 1 -> 0 as connections arrive), so only the LISTEN backlog is compared, not the
    queues; state and addresses only change one way and are still compared."""
    total = CrossCheck()
    ss_cache: dict[str, dict[int, dict[str, Any]]] = {}

    def ss_for(pid: int, when: str) -> dict[int, dict[str, Any]]:
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
        except FileNotFoundError:
            return {}
        key = f"{when}:{ns}"
        if key not in ss_cache:
            ss_cache[key] = ss_rows(pid)
        return ss_cache[key]

    befores = {}
    for pid in pids:
        befores[pid] = (_tools(pid), ss_for(pid, "before"))
    docs = fdscope_inspect_many(pids)
    for pid in pids:
        after_tools, after_ss = _tools(pid), ss_for(pid, "after")
        before_tools, before_ss = befores[pid]
        doc = docs[pid]
        if doc is None or not after_tools.links:
            continue  # exited meanwhile
        total.add(_compare(pid, doc, before_tools, after_tools, before_ss, after_ss, busy))
    return total


def _compare(pid: int, doc: dict[str, Any], b: Tools, a: Tools,
             b_ss: dict[int, dict[str, Any]], a_ss: dict[int, dict[str, Any]],
             busy: bool) -> CrossCheck:
    out = CrossCheck(processes=1)
    who = f"pid {pid} ({doc.get('name')})"
    by_fd = {e["fd"]: e for e in doc["fds"]}
    for fd, link in sorted(b.links.items()):
        stable = (a.links.get(fd) == link and b.lsfd.get(fd) == a.lsfd.get(fd)
                  and fd in b.lsfd and fd in by_fd)
        e = by_fd.get(fd)
        if not stable or e is None or e["target"] != link:
            out.skipped += 1
            continue
        row = b.lsfd[fd]
        bad = []
        want_types = _lsfd_types(row)
        if e["type"] not in want_types:
            bad.append(f"type {e['type']!r}, lsfd says {row['type']} {row['name']!r}")
        if e["inode"] is not None and e["inode"] != row["inode"]:
            bad.append(f"inode {e['inode']}, lsfd says {row['inode']}")
        lflags = set((row.get("flags") or "").split(",")) - {""}
        if row.get("flags") is not None and e["flags"] is not None:
            for lname, fname in (("nonblock", "O_NONBLOCK"), ("cloexec", "O_CLOEXEC"),
                                 ("append", "O_APPEND")):
                if (lname in lflags) != (fname in e["flags"]):
                    bad.append(f"flags {e['flags']}, lsfd says {row['flags']!r}")
                    break
        if e["type"] == "socket":
            bad += _compare_socket(e, row, b_ss, a_ss, busy)
            if not bad:
                out.sockets += 1
        if bad:
            out.mismatches.append(f"{who} fd {fd} ({link}): " + "; ".join(bad))
        else:
            out.fds += 1
    for ep in doc.get("epoll") or []:
        epfd = ep["epfd"]
        text = b.epoll.get(epfd)
        if text is None or text != a.epoll.get(epfd):
            out.skipped += 1
            continue
        raw = parse_epoll_fdinfo(text)
        got = sorted((r["tfd"], r["mask"], r["data"], r["inode"], r["sdev"])
                     for r in ep["registrations"])
        want = sorted((t, m, d, i, kernel_dev_to_st_dev(s)) for t, m, d, i, s in raw)
        if busy:
            # The same text before and after does not mean nothing happened in between: a
            # connection can be accepted, registered, closed and gone (A -> B -> A). Compare
            # the registrations of fds that were open and unchanged throughout.
            steady = {fd for fd, link in b.links.items() if a.links.get(fd) == link}
            got = [r for r in got if r[0] in steady]
            want = [r for r in want if r[0] in steady]
        if got != want:
            out.mismatches.append(f"{who} epoll fd {epfd}: fdscope {got} != fdinfo {want}")
        else:
            out.registrations += len(got)
    listed = {ep["epfd"] for ep in doc.get("epoll") or []}
    for epfd, text in b.epoll.items():
        if text is not None and text == a.epoll.get(epfd) and epfd not in listed:
            out.mismatches.append(f"{who} epoll fd {epfd} is missing from fdscope's epoll list")
    return out


def _lsfd_types(row: dict[str, Any]) -> set[str]:
    name = row.get("name") or ""
    if name.startswith("anon_inode:"):
        cls = name[len("anon_inode:"):].strip("[]")
        return {LSFD_ANON.get(cls, LSFD_ANON.get(name[len("anon_inode:"):], "anon"))}
    if row["type"] in LSFD_ANON:  # newer lsfd names anon types itself
        return {LSFD_ANON[row["type"]]}
    return LSFD_TYPES.get(row["type"], {"unknown"})


def _compare_socket(e: dict[str, Any], row: dict[str, Any], b_ss: dict[int, dict[str, Any]],
                    a_ss: dict[int, dict[str, Any]], busy: bool) -> list[str]:
    bad = []
    s = e["socket"] or {}
    lproto = LSFD_PROTOS.get((row.get("name") or "").split(":", 1)[0])
    if lproto is not None and s.get("proto") != lproto:
        bad.append(f"proto {s.get('proto')!r}, lsfd says {row['name']!r}")
    ino = e["inode"]
    before, after = b_ss.get(ino), a_ss.get(ino)
    if before is None and after is None:
        # ss lists the kernel's hashed sockets, as /proc/net does; fdscope names the others
        # from sockfs (TCP unhashed: CLOSE; UDP unbound: UNCONN), with no local address.
        unlisted = s.get("local") is None and s.get("state") in ("CLOSE", "UNCONN")
        if s.get("proto") in ("tcp", "tcp6", "udp", "udp6", "unix") and \
                s.get("state") != "UNKNOWN" and not unlisted:
            bad.append(f"{s.get('proto')} {s.get('state')} but ss lists no socket with inode {ino}")
        return bad
    if not same_ss(before, after):
        return bad  # changed while we looked: not comparable
    assert before is not None
    keys = ["proto", "state", "local", "remote"]
    if before["proto"] != "unix":  # /proc/net/unix has no queue columns: fdscope says null
        keys += ["send_q"] if busy and before["state"] == "LISTEN" else []
        keys += [] if busy else ["recv_q", "send_q"]
    for key in keys:
        if s.get(key) != before[key]:
            bad.append(f"{key} {s.get(key)!r}, ss says {before[key]!r} ({before['raw']})")
    return bad


# ---------------------------------------------------------------------------------------------
# Scans under churn


@dataclass
class ScanLog:
    """Findings seen over repeated scans of a daemon's processes: `counts` {"LEVEL code": scans
    in which some process of the daemon had it}, one example message each, and the io_model
    kinds seen per process role."""

    scans: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    io_models: Counter[str] = field(default_factory=Counter)

    def labels(self, levels: tuple[str, ...] = ("WARN", "CRIT"), prefix: str = "") -> list[str]:
        return sorted(k for k in self.counts
                      if k.split()[0] in levels and k.split()[1].startswith(prefix))

    def detail(self, labels: list[str]) -> str:
        return "; ".join(f"{k} in {self.counts[k]}/{self.scans} scans, e.g. {self.examples[k]}"
                         for k in labels)


def scan_daemon(daemon: Daemon, log: ScanLog, *, sample: float | None = None) -> None:
    """One in-process `inspect_process` of every process of the daemon, with `sample` as
    `fdscope inspect` has it by default (None: a CPU sample only when a thread spins and none
    waits). Processes that exit during the scan (backends, forked children) are skipped."""
    from fdscope.errors import FdscopeError
    from fdscope.inspect import inspect_process

    seen = set()
    for pid in daemon.pids():
        role = daemon.role(pid)
        try:
            doc = inspect_process(pid, sample=sample).to_json()
        except FdscopeError:
            continue
        for f in doc["findings"]:
            label = finding_label(f)
            seen.add(label)
            log.examples.setdefault(label, f"{role} (pid {pid}): {f['message']}")
        log.io_models[f"{role}: {doc['io_model']['kind']}"] += 1
    log.counts.update(seen)
    log.scans += 1


# ---------------------------------------------------------------------------------------------
# Provoked faults, as fdscope reports them


MIN_SEND_Q = 64 * 1024


def held_by(daemon: Daemon, remote: str, min_send_q: int = 0,
            timeout: float = 10.0) -> tuple[int, dict[str, Any]] | None:
    """(pid, fdscope's fds entry) of the daemon's socket connected to `remote`, once fdscope
    shows it (with at least `min_send_q` bytes queued); None after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        for pid, doc in fdscope_inspect_many(daemon.pids()).items():
            for e in (doc or {}).get("fds", []):
                sock = e["socket"]
                if sock and sock["remote"] == remote and (sock["send_q"] or 0) >= min_send_q:
                    return pid, e
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


@dataclass
class SlowReaderResult:
    """The daemon's socket to a client that never reads: fdscope's entry while the queue is
    stuck, and ss's row for that inode just before and after."""

    local: str
    pid: int | None = None
    entry: dict[str, Any] | None = None
    ss_before: dict[str, Any] | None = None
    ss_after: dict[str, Any] | None = None


def provoke_slow_reader(daemon: Daemon) -> SlowReaderResult:
    with SlowReader(daemon.spec, daemon.port) as reader:
        out = SlowReaderResult(reader.local)
        found = held_by(daemon, reader.local, MIN_SEND_Q, timeout=20)
        if found is None:
            return out
        out.pid, first = found
        out.ss_before = ss_rows(out.pid).get(first["inode"])
        doc = fdscope_inspect(out.pid) or {"fds": []}
        out.ss_after = ss_rows(out.pid).get(first["inode"])
        out.entry = next((e for e in doc["fds"] if e["fd"] == first["fd"]), None)
        return out


@dataclass
class ResetResult:
    """A connection the daemon holds, reset by its client while the daemon is stopped: the
    entry before and after, and the cross-check of that process."""

    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    check: CrossCheck = field(default_factory=CrossCheck)


def provoke_reset(daemon: Daemon) -> ResetResult:
    out = ResetResult()
    with idle_clients(daemon.spec, daemon.port, 1) as (client,):
        host, port = client.getsockname()
        found = held_by(daemon, f"{host}:{port}")
        if found is None:
            return out
        pid, out.before = found
        with stopped(daemon.pids()):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # RST
            time.sleep(0.1)
            out.check = cross_check([pid])
            doc = fdscope_inspect(pid) or {"fds": []}
    out.after = next((e for e in doc["fds"] if e["fd"] == out.before["fd"]), None)
    return out


@dataclass
class OverflowResult:
    """The daemon stopped and backlog + 4 connects: fdscope's findings on the listener's
    process and the TcpExt ListenOverflows counter's increase."""

    backlog: int | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    overflows: int = 0
    connect_errors: Counter[str] = field(default_factory=Counter)
    listener: dict[str, Any] | None = None  # fdscope's entry for it, last scan

    @property
    def full(self) -> dict[str, Any] | None:
        return next((f for f in self.findings if f["code"] == "listen_backlog_full"), None)


def provoke_overflow(daemon: Daemon) -> OverflowResult:
    out = OverflowResult()
    doc = fdscope_inspect(daemon.pid) or {"fds": []}
    listeners = [e for e in doc["fds"] if e["socket"] and e["socket"]["state"] == "LISTEN"
                 and e["socket"]["proto"].startswith("tcp")
                 and (e["socket"]["local"] or "").endswith(f":{daemon.port}")]
    if not listeners or not listeners[0]["socket"]["send_q"]:
        return out
    out.backlog = listeners[0]["socket"]["send_q"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * out.backlog + 200  # the connects below, and what the test already holds
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    before = tcp_ext(daemon.pid)
    with stopped(daemon.pids()), held_connections(daemon.port, out.backlog + 4,
                                                  out.connect_errors) as socks:
        # Past the SYN queue (tcp_max_syn_backlog) the kernel answers with syncookies or drops
        # SYNs that the client retransmits after 1, 3, 7 s: a loaded machine needs a while.
        deadline = time.monotonic() + 30
        while True:
            doc = fdscope_inspect(daemon.pid) or {"findings": [], "fds": []}
            out.findings = doc["findings"]
            out.listener = next((e for e in doc["fds"] if e["fd"] == listeners[0]["fd"]), None)
            # The queue can be seen full (backlog + 1) before the next SYN meets it and is
            # dropped: wait for the drop too.
            out.overflows = tcp_ext(daemon.pid)["ListenOverflows"] - before["ListenOverflows"]
            if (out.full and out.overflows > 0) or time.monotonic() > deadline:
                break
            # A SYN that met a full SYN queue is retried by the client only after 1, 3, 7 s:
            # a few more connects fill the last places sooner.
            if len(socks) < 2 * out.backlog + 64:
                socks += flood_connects(daemon.port, 32, out.connect_errors)
            time.sleep(0.2)
    wait_serving(daemon)
    return out


def wait_serving(daemon: Daemon, timeout: float = 10.0) -> None:
    """Until the daemon answers a request again (after SIGCONT, with a backlog to work off)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            request(daemon.spec.protocol, daemon.port)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class Observation:
    """A daemon seen idle (one scan as an operator runs `fdscope inspect PID`, one cross-check)
    and under churn (`scans` scans while two clients stay connected and others connect and
    disconnect, cross-checks)."""

    name: str
    idle: ScanLog
    idle_check: CrossCheck
    churn: ScanLog
    churn_check: CrossCheck
    clients: dict[str, Any]
    seconds: float


def observe(daemon: Daemon, scans: int = 20, churn_checks: int = 2) -> Observation:
    t0 = time.monotonic()
    idle = ScanLog()
    scan_daemon(daemon, idle, sample=None)
    idle_check = cross_check(daemon.pids())
    churn, churn_check = ScanLog(), CrossCheck()
    with idle_clients(daemon.spec, daemon.port, 2), \
            Churn(daemon.spec.protocol, daemon.port) as clients:
        time.sleep(0.3)  # the clients are connecting
        for i in range(scans):
            scan_daemon(daemon, churn, sample=None)
            if i % max(1, scans // churn_checks) == 0:
                churn_check.add(cross_check(daemon.pids(), busy=True))
    return Observation(daemon.spec.name, idle, idle_check, churn, churn_check, clients.result,
                       time.monotonic() - t0)


def _levels(log: ScanLog) -> str:
    """"CRIT epoll_reused_registration (3/20), WARN ..." or "none"."""
    parts = [f"{k} ({v}/{log.scans})" if log.scans > 1 else k
             for k, v in sorted(log.counts.items(), key=lambda kv: ("CWI".index(kv[0][0]), kv[0]))
             if not k.startswith("INFO")]
    return ", ".join(parts) or "none"


def markdown_rows(obs: Observation) -> str:
    """One table row for docs/daemons.md."""
    checked = obs.idle_check
    churned = obs.churn_check
    mism = len(checked.mismatches) + len(churned.mismatches)
    info = sorted({k for k in (*obs.idle.counts, *obs.churn.counts) if k.startswith("INFO")})
    return (f"| {obs.name} | {_levels(obs.idle)} | {_levels(obs.churn)} | "
            f"{', '.join(i.split()[1] for i in info) or '-'} | "
            f"{checked.fds} fds, {checked.sockets} sockets, {checked.registrations} regs / "
            f"{churned.fds} fds, {churned.sockets} sockets, {churned.registrations} regs "
            f"({churned.skipped} skipped) | {mism} |")


MARKDOWN_HEADER = (
    "| daemon | WARN/CRIT idle | WARN/CRIT under churn (scans with it / scans) | INFO seen | "
    "cross-checked idle / under churn | mismatches |\n"
    "| --- | --- | --- | --- | --- | --- |")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "churn":
        _churn_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit("usage: daemons_support.py churn PROTOCOL PORT SECONDS THREADS")
