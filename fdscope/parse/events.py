"""Names for epoll event masks and open(2) flags, as the kernel reports them in /proc/PID/fdinfo."""

from __future__ import annotations

import os

# include/uapi/linux/eventpoll.h (EPOLLIN..EPOLLMSG share values with POLL* in asm-generic/poll.h)
EPOLLIN = 0x001
EPOLLPRI = 0x002
EPOLLOUT = 0x004
EPOLLERR = 0x008
EPOLLHUP = 0x010
EPOLLNVAL = 0x020
EPOLLRDNORM = 0x040
EPOLLRDBAND = 0x080
EPOLLWRNORM = 0x100
EPOLLWRBAND = 0x200
EPOLLMSG = 0x400
EPOLLRDHUP = 0x2000
EPOLLEXCLUSIVE = 1 << 28
EPOLLWAKEUP = 1 << 29
EPOLLONESHOT = 1 << 30
EPOLLET = 1 << 31

EPOLL_BITS: dict[int, str] = {
    EPOLLIN: "EPOLLIN",
    EPOLLPRI: "EPOLLPRI",
    EPOLLOUT: "EPOLLOUT",
    EPOLLERR: "EPOLLERR",
    EPOLLHUP: "EPOLLHUP",
    EPOLLNVAL: "EPOLLNVAL",
    EPOLLRDNORM: "EPOLLRDNORM",
    EPOLLRDBAND: "EPOLLRDBAND",
    EPOLLWRNORM: "EPOLLWRNORM",
    EPOLLWRBAND: "EPOLLWRBAND",
    EPOLLMSG: "EPOLLMSG",
    EPOLLRDHUP: "EPOLLRDHUP",
    EPOLLEXCLUSIVE: "EPOLLEXCLUSIVE",
    EPOLLWAKEUP: "EPOLLWAKEUP",
    EPOLLONESHOT: "EPOLLONESHOT",
    EPOLLET: "EPOLLET",
}

# fs/eventpoll.c EP_PRIVATE_BITS: input-only flags, never reported back as events.
EPOLL_PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE

_MASK32 = 0xFFFFFFFF


def decode_epoll_mask(mask: int) -> tuple[str, ...]:
    """Names of the bits set in an epoll event mask, low bit first; unknown bits as hex strings."""
    mask &= _MASK32
    names = []
    for bit in range(32):
        value = 1 << bit
        if mask & value:
            names.append(EPOLL_BITS.get(value, f"{value:#x}"))
    return tuple(names)


def is_disarmed(mask: int) -> bool:
    """True for an EPOLLONESHOT registration that already fired.

    fs/eventpoll.c ep_poll_callback/ep_send_events: after one report the kernel clears every bit
    except EP_PRIVATE_BITS, so the entry stays in the set but never reports until EPOLL_CTL_MOD."""
    mask &= _MASK32
    return bool(mask & EPOLLONESHOT) and not (mask & ~EPOLL_PRIVATE_BITS)


def event_bits(mask: int) -> int:
    """The mask without its private (input-only) flags: the events it can still report."""
    return mask & _MASK32 & ~EPOLL_PRIVATE_BITS


# Open flags (octal, as /proc/PID/fdinfo "flags:" prints them). Generic values from
# include/uapi/asm-generic/fcntl.h; aarch64 overrides four of them in
# arch/arm64/include/uapi/asm/fcntl.h.
_COMMON_OPEN_FLAGS: dict[str, int] = {
    "O_CREAT": 0o100,
    "O_EXCL": 0o200,
    "O_NOCTTY": 0o400,
    "O_TRUNC": 0o1000,
    "O_APPEND": 0o2000,
    "O_NONBLOCK": 0o4000,
    "O_DSYNC": 0o10000,
    "O_ASYNC": 0o20000,
    "O_NOATIME": 0o1000000,
    "O_CLOEXEC": 0o2000000,
    "__O_SYNC": 0o4000000,
    "O_PATH": 0o10000000,
    "__O_TMPFILE": 0o20000000,
}
_ARCH_OPEN_FLAGS: dict[str, dict[str, int]] = {
    "x86_64": {
        "O_DIRECT": 0o40000,
        "O_LARGEFILE": 0o100000,
        "O_DIRECTORY": 0o200000,
        "O_NOFOLLOW": 0o400000,
    },
    "aarch64": {
        "O_DIRECTORY": 0o40000,
        "O_NOFOLLOW": 0o100000,
        "O_DIRECT": 0o200000,
        "O_LARGEFILE": 0o400000,
    },
}
_ARCH_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64"}

# Order in which flag names are listed after the access mode (most useful to an operator first).
_FLAG_ORDER = (
    "O_NONBLOCK",
    "O_CLOEXEC",
    "O_APPEND",
    "O_ASYNC",
    "O_DIRECT",
    "O_SYNC",
    "O_DSYNC",
    "O_NOATIME",
    "O_LARGEFILE",
    "O_TMPFILE",
    "O_DIRECTORY",
    "O_NOFOLLOW",
    "O_CREAT",
    "O_EXCL",
    "O_NOCTTY",
    "O_TRUNC",
)


def normalize_arch(arch: str | None) -> str:
    """Map `arch` (None: this machine) to 'x86_64' or 'aarch64'; other names pass through."""
    if arch is None:
        arch = os.uname().machine
    arch = arch.lower()
    return _ARCH_ALIASES.get(arch, arch)


def open_flag_values(arch: str | None = None) -> dict[str, int]:
    """Flag name -> value for `arch` (x86_64 layout for unknown architectures)."""
    table = dict(_COMMON_OPEN_FLAGS)
    table.update(_ARCH_OPEN_FLAGS.get(normalize_arch(arch), _ARCH_OPEN_FLAGS["x86_64"]))
    return table


def decode_open_flags(flags: int, arch: str | None = None) -> tuple[str, ...]:
    """Names for a file's f_flags: access mode first, then the set flags; leftover bits as hex.

    O_SYNC is __O_SYNC|O_DSYNC and O_TMPFILE is __O_TMPFILE|O_DIRECTORY (asm-generic/fcntl.h),
    so those pairs are reported under the user-visible name."""
    if flags < 0:
        flags &= 0xFFFFFFFF
    table = open_flag_values(arch)
    rest = flags
    names: list[str] = []
    if flags & table["O_PATH"]:
        names.append("O_PATH")
        rest &= ~table["O_PATH"]
    else:
        names.append(("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[flags & 3])
    rest &= ~3
    found: dict[str, bool] = {}
    sync = table["__O_SYNC"] | table["O_DSYNC"]
    if rest & sync == sync:
        found["O_SYNC"] = True
        rest &= ~sync
    tmpfile = table["__O_TMPFILE"] | table["O_DIRECTORY"]
    if rest & tmpfile == tmpfile:
        found["O_TMPFILE"] = True
        rest &= ~tmpfile
    for name, value in table.items():
        if name.startswith("__") or name == "O_PATH":
            continue
        if rest & value:
            found[name] = True
            rest &= ~value
    names.extend(name for name in _FLAG_ORDER if name in found)
    for bit in range(rest.bit_length()):
        if rest & (1 << bit):
            names.append(f"{1 << bit:#x}")
    return tuple(names)
