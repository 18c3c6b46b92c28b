"""/proc/PID/stat, status and cmdline parsing."""

import os
import subprocess
import sys

import pytest

from fdscope.errors import ParseError
from fdscope.parse.status import parse_status
from fdscope.parse.task import PF_KTHREAD, parse_cmdline, parse_stat

STAT_PY = (
    "3562 (python3) R 3559 3559 2015 0 -1 4194560 3110 6551 1 0 5 1 3 1 20 0 1 0 29870 19976192 "
    "3717 18446744073709551615 94466307317760 94466307318101 140727606328304 0 0 0 512 16781312 2 "
    "0 0 0 17 1 0 0 0 0 0 94466307329456 94466307330072 94467215175680 140727606331639 "
    "140727606331692 140727606331692 140727606333391 0\n"
)
STAT_KTHREADD = (
    "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0 18446744073709551615 0 0 0 0 "
    "0 0 0 2147483647 0 1 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
)


def test_stat_fields():
    st = parse_stat(STAT_PY)
    assert (st.pid, st.comm, st.state, st.ppid, st.flags) == (3562, "python3", "R", 3559, 4194560)
    assert (st.utime, st.stime, st.num_threads, st.starttime) == (5, 1, 1, 29870)
    assert (st.rss_pages, st.processor, st.is_kernel_thread) == (3717, 1, False)


def test_stat_kernel_thread():
    st = parse_stat(STAT_KTHREADD)
    assert st.is_kernel_thread and st.flags & PF_KTHREAD and st.comm == "kthreadd"


@pytest.mark.parametrize("comm", ["a b", "x) S 1 (y", ")", "((", "evil) R 1 2 3"])
def test_stat_comm_with_spaces_and_parens(comm):
    st = parse_stat(STAT_PY.replace("(python3)", f"({comm})"))
    assert st.comm == comm and st.ppid == 3559 and st.state == "R"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3562 python3 R 1",
        "3562 (python3) R 3559 3559",
        "x (a) R" + " 1" * 40,
        "1 (a) RR" + " 1" * 40,
    ],
)
def test_stat_malformed(text):
    with pytest.raises(ParseError):
        parse_stat(text)


STATUS = (
    "Name:\tweb\\nserver\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4292\nNgid:\t0\nPid:\t4293\n"
    "PPid:\t4290\nTracerPid:\t0\nUid:\t1000\t1001\t1000\t1000\nGid:\t0\t0\t0\t0\nFDSize:\t256\n"
    "Groups:\t \nKthread:\t0\nVmRSS:\t    1772 kB\nThreads:\t7\nSigBlk:\t0000000000000000\n"
    "voluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n"
)


def test_status():
    st = parse_status(STATUS)
    assert (st.name, st.state, st.tgid, st.pid, st.ppid) == ("web\nserver", "S", 4292, 4293, 4290)
    assert (st.uid, st.euid, st.threads, st.fdsize, st.vm_rss_kb) == (1000, 1001, 7, 256, 1772)
    assert (st.voluntary_ctxt_switches, st.nonvoluntary_ctxt_switches, st.kthread) == (12, 3, False)
    assert st.field("SigBlk") == "0000000000000000"


def test_status_name_keeps_spaces_and_tabs():
    assert parse_status(STATUS.replace("web\\nserver", " my\tworker ")).name == " my\tworker "


def test_status_old_kernel_without_kthread_line():
    assert parse_status(STATUS.replace("Kthread:\t0\n", "")).kthread is None


@pytest.mark.parametrize("drop", ["Name", "Pid", "Uid", "Threads"])
def test_status_missing_required(drop):
    text = "\n".join(line for line in STATUS.split("\n") if not line.startswith(drop + ":"))
    with pytest.raises(ParseError):
        parse_status(text)


def test_cmdline():
    assert parse_cmdline(b"") == ()
    assert parse_cmdline(b"python3\0-c\0print(1)\0") == ("python3", "-c", "print(1)")
    assert parse_cmdline(b"nginx: master process /usr/sbin/nginx") == (
        "nginx: master process /usr/sbin/nginx",
    )
    assert parse_cmdline(b"a\0\0b\0") == ("a", "", "b")
    assert parse_cmdline(b"nginx: worker process\0\0\0\0") == ("nginx: worker process",)
    assert parse_cmdline(b"\0\0") == ()
    assert parse_cmdline(b"\xff\0") == (os.fsdecode(b"\xff"),)


def test_live_child_process():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print(flush=True); sys.stdin.read()", "arg with space"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        # Popen returns once exec closed its CLOEXEC pipe, before the new image set up argv
        # (fs/exec.c begin_new_exec, then create_elf_tables): cmdline can still be empty then.
        child.stdout.readline()
        with open(f"/proc/{child.pid}/stat") as f:
            st = parse_stat(f.read())
        with open(f"/proc/{child.pid}/status") as f:
            status = parse_status(f.read())
        with open(f"/proc/{child.pid}/cmdline", "rb") as f:
            argv = parse_cmdline(f.read())
        assert st.pid == status.pid == status.tgid == child.pid
        assert st.ppid == status.ppid == os.getpid()
        assert not st.is_kernel_thread and status.kthread in (False, None)
        assert argv[-1] == "arg with space"
    finally:
        child.kill()
        child.communicate()


def test_live_kernel_thread():
    with open("/proc/2/stat") as f:
        st = parse_stat(f.read())
    with open("/proc/2/cmdline", "rb") as f:
        assert parse_cmdline(f.read()) == ()
    assert st.is_kernel_thread
