"""Socket state names of the /proc/net tables: constants and one function, nothing compiled at
import (fdscope.parse.net re-exports them; inspect's C path needs only these)."""

from __future__ import annotations

# include/net/tcp_states.h, named as ss(8) and the kernel name them.
TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
    13: "BOUND_INACTIVE",
}
TCP_LISTEN = 10
TCP_CLOSE = 7

# include/uapi/linux/net.h socket_state, as printed in the St column of /proc/net/unix.
UNIX_STATES: dict[int, str] = {
    0: "FREE",
    1: "UNCONNECTED",
    2: "CONNECTING",
    3: "CONNECTED",
    4: "DISCONNECTING",
}
# include/linux/net.h: __SO_ACCEPTCON (1 << 16) marks a listening unix socket.
SO_ACCEPTCON = 1 << 16


def inet_state(is_tcp: bool, st: int, tx_queue: int) -> tuple[str, int | None]:
    """(state name, send_q) of an inet row: a TCP LISTEN row's tx_queue is 0, not the backlog
    (send_q None); UDP and raw state 07 (TCP_CLOSE) is "UNCONN", as ss(8) shows it."""
    if is_tcp:
        return TCP_STATES.get(st) or f"{st:#04x}", None if st == TCP_LISTEN else tx_queue
    return "UNCONN" if st == TCP_CLOSE else TCP_STATES.get(st) or f"{st:#04x}", tx_queue
