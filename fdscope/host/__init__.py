"""Host-wide fd scan: every process's fd count, limit, types and flags (`fdscope top`), and the
host-wide index of who holds which pipe or socket (`fdscope inspect PID --peers`).

  model   the snapshot's types and its JSON document (fdscope.top/1)
  scan    scan_host() and Scanner: /proc (through fdscope.proc) -> HostSnapshot
  flags   which processes need inspect's rules, and its findings as top's flags
  peers   the host-wide index of pipes and sockets; the other ends of one process's fds
"""
