"""A restricted /proc and restricted credentials: procfs mounted with hidepid or subset=pid (in a
private mount namespace), root without CAP_SYS_PTRACE, a thread id given as a pid. Each is
reported as what it is, never as "no such process" or a bare "permission denied"."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from fdscope.errors import EXIT_ACCESS, EXIT_NO_PROCESS
from fdscope.proc import Proc

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: mount namespaces, setuid, capset")

CLONE_NEWNS = 0x00020000  # include/uapi/linux/sched.h
MS_REC, MS_PRIVATE = 0x4000, 1 << 18  # include/uapi/linux/mount.h
NOBODY = 65534


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def in_child(argv: list[str], *, proc_options: str | None = None, uid: int | None = None,
             drop_caps: tuple[int, ...] = ()) -> tuple[int, str, str]:
    """Run the fdscope CLI in a forked child: with procfs mounted with `proc_options` in a
    private mount namespace (FDSCOPE_PROC_ROOT points at it), then as `uid`, or without the
    capabilities `drop_caps` in its effective and permitted sets. Returns (exit code, stdout,
    stderr). The child already has this interpreter's imports, so it reads no module from the
    root-only venv after it dropped privileges."""
    import importlib

    for name in ("fdscope.cli.inspect", "fdscope.cli.limits", "fdscope.limits",
                 "fdscope.parse.mountinfo", "fdscope.parse.status", "fdscope.render.escape",
                 "fdscope.render.limits", "fdscope.render.style", "fdscope.render.table"):
        try:  # before the child drops privileges
            importlib.import_module(name)
        except ImportError:
            pass
    from fdscope.cli.main import cli

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    mnt = tempfile.mkdtemp(prefix="fdscope-proc-")
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 99
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            libc = _libc()
            if proc_options is not None:
                if libc.unshare(CLONE_NEWNS) != 0:
                    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
                # Private first, or the mount below would propagate to the parent namespace.
                if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
                    raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
                if libc.mount(b"proc", mnt.encode(), b"proc", 0, proc_options.encode()) != 0:
                    raise OSError(ctypes.get_errno(), f"mount -t proc -o {proc_options}")
                os.environ["FDSCOPE_PROC_ROOT"] = mnt
            if drop_caps:
                _drop_caps(libc, drop_caps)
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            try:
                cli.main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - report, never return into pytest
            sys.stderr.write(f"child setup failed: {exc!r}\n")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r) as f_out, os.fdopen(err_r) as f_err:
        out, err = f_out.read(), f_err.read()
    _, status = os.waitpid(pid, 0)
    os.rmdir(mnt)
    return os.waitstatus_to_exitcode(status), out, err


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _drop_caps(libc: ctypes.CDLL, caps: tuple[int, ...]) -> None:
    """capset(2) without `caps` in the effective and permitted sets (_LINUX_CAPABILITY_VERSION_3)."""
    hdr = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    for cap in caps:
        word, bit = divmod(cap, 32)
        data[word].effective &= ~(1 << bit)
        data[word].permitted &= ~(1 << bit)
    if libc.capset(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


@needs_root
def test_hidepid_invisible_says_the_process_may_be_hidden() -> None:
    """hidepid=2 (invisible): another user's /proc/PID is absent, not just unreadable."""
    target = os.getpid()  # root's: hidden from nobody
    code, _, err = in_child(["limits", "--pid", str(target)], proc_options="hidepid=2",
                            uid=NOBODY)
    assert code == EXIT_NO_PROCESS, err
    assert err.count("\n") == 1 and err.startswith(f"fdscope: no process with pid {target}")
    assert "it may be hidden" in err and "hidepid=invisible" in err


@needs_root
def test_hidepid_noaccess_names_hidepid_not_ptrace() -> None:
    """hidepid=1 (noaccess): /proc/PID is listed but nothing in it is readable, status
    included; the reason is the mount option, not ptrace."""
    target = os.getpid()
    code, _, err = in_child(["limits", "--pid", str(target)], proc_options="hidepid=1",
                            uid=NOBODY)
    assert code == EXIT_ACCESS, err
    assert err.count("\n") == 1 and err.startswith("fdscope: permission denied reading")
    assert "hidepid=noaccess" in err and "ptrace" not in err


@needs_root
def test_subset_pid_reports_what_it_can() -> None:
    """subset=pid: no /proc/sys. The process figures are still there; the system ones are null
    with a note, and the kernel release comes from uname(2)."""
    code, out, err = in_child(["limits", "--json"], proc_options="subset=pid")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["open_fds"] > 0 and doc["rlimit_nofile"]["soft"] is not None
    assert doc["kernel"] == os.uname().release
    for key in ("file_max", "nr_open", "somaxconn", "file_nr"):
        assert doc[key] is None and doc["verdicts"][key] is None
    assert any("subset=pid" in n for n in doc["notes"]), doc["notes"]
    code, out, err = in_child(["limits"], proc_options="subset=pid")
    assert code == 0, err
    assert "note: system-wide figures are not available" in out


@needs_root
def test_root_without_cap_sys_ptrace_is_told_so() -> None:
    """Root whose effective set lacks CAP_SYS_PTRACE cannot read the fds of a process holding
    capabilities it lacks (security/commoncap.c cap_ptrace_access_check): say that, not
    "run as root"."""
    target = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    try:
        code, _, err = in_child(["inspect", str(target.pid), "--sample", "0"],
                                drop_caps=(19,))  # CAP_SYS_PTRACE
    finally:
        target.kill()
        target.wait()
    assert code == EXIT_ACCESS, err
    assert err.count("\n") == 1
    assert "without CAP_SYS_PTRACE" in err or "CAP_SYS_PTRACE, which is not in" in err
    assert "holds capabilities fdscope lacks (CAP_SYS_PTRACE)" in err


def _status(uid: int, cap_prm: int, cap_eff: int | None = None, cap_bnd: int | None = None) -> str:
    eff = cap_prm if cap_eff is None else cap_eff
    bnd = cap_prm if cap_bnd is None else cap_bnd
    return (f"Name:\tx\nState:\tS (sleeping)\nTgid:\t7\nPid:\t7\nPPid:\t1\n"
            f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nThreads:\t1\nCapPrm:\t{cap_prm:016x}\n"
            f"CapEff:\t{eff:016x}\nCapBnd:\t{bnd:016x}\n")


@pytest.mark.parametrize("own,target,expect", [
    # root with CAP_SYS_PTRACE, the target holds CAP_SYS_RESOURCE outside our bounding set
    (_status(0, 0x1fffeffffff), _status(0, 0x1ffffffffff),
     ["although fdscope runs as root with CAP_SYS_PTRACE", "CAP_SYS_RESOURCE",
      "outside fdscope's bounding set"]),
    # root without CAP_SYS_PTRACE anywhere
    (_status(0, 0x1fffff7ffff), _status(0, 0x1ffffffffff),
     ["runs as root, its owner", "CAP_SYS_PTRACE, which is not in fdscope's effective set",
      "nor in its bounding set"]),
    # another user's process, no capabilities
    (_status(1000, 0), _status(0, 0),
     ["run as its owner (uid 0) or with CAP_SYS_PTRACE", "fdscope runs as uid 1000"]),
])
def test_access_denied_names_what_is_missing(tmp_path: Path, own: str, target: str,
                                             expect: list[str]) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text(own)
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "status").write_text(target)
    reason = Proc(str(tmp_path)).access_needed(7)
    for part in expect:
        assert part in reason, reason


THREADED = textwrap.dedent("""
    import os, sys, threading
    t = threading.Thread(target=sys.stdin.read, daemon=True)
    t.start()
    print(t.native_id, flush=True)
    t.join()
""")


def test_a_thread_id_is_taken_as_its_process(invoke) -> None:
    """/proc/TID exists for every thread (unlisted); limits of a TID used to be reported as a
    process of its own. It is its process's, with a note saying so."""
    proc = subprocess.Popen([sys.executable, "-c", THREADED], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        tid = int(proc.stdout.readline())
        assert tid != proc.pid and Proc().thread_group_leader(tid) == proc.pid
        assert Proc().thread_group_leader(proc.pid) == proc.pid
        result = invoke("limits", "--pid", str(tid), "--json")
        text = invoke("limits", "--pid", str(tid))
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["pid"] == proc.pid
    note = f"{tid} is a thread of process {proc.pid}; showing the process"
    assert any(n.startswith(note) for n in doc["notes"])
    assert f"pid {proc.pid} (" in text.stdout and f"note: {note}" in text.stdout


def test_mountinfo_parser() -> None:
    from fdscope.parse.mountinfo import mount_at, parse_mountinfo

    text = ("22 27 0:21 / /proc rw,relatime - proc proc rw\n"
            "66 46 0:40 / /tmp/a\\040b rw - proc proc rw,gid=5,hidepid=noaccess\n"
            "67 46 0:41 / /tmp/a\\040b rw - proc proc rw,hidepid=2\n"
            "68 46 0:42 / /x rw shared:1 master:2 - proc none rw,subset=pid\n"
            "garbage line\n")
    mounts = parse_mountinfo(text)
    assert [m.mount_point for m in mounts] == ["/proc", "/tmp/a b", "/tmp/a b", "/x"]
    top = mount_at(mounts, "/tmp/a b", "proc")
    assert top is not None and top.hidepid == "invisible"  # the later mount is on top
    assert mounts[1].option("gid") == "5" and mounts[1].hidepid == "noaccess"
    assert mount_at(mounts, "/proc").hidepid is None
    assert mount_at(mounts, "/x").subset_pid and mount_at(mounts, "/nope") is None


def test_proc_mount_of_the_real_proc() -> None:
    mount = Proc().mount()
    assert mount is not None and mount.fstype == "proc"
