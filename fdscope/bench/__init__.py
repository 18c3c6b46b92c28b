"""`fdscope bench`: the seed lesson's scaling claims about select, poll and epoll, measured.

`scaling` (fdscope.bench.scaling): cost per delivered event against the number of idle fds
watched, for each readiness mechanism (fdscope.bench.mechanisms). `register`
(fdscope.bench.register): registering N fds once (epoll_ctl) against passing them on every
call (poll's pollfd array, select's bitmaps). `fit` turns points into a growth figure with
its quality; `plot` draws them (matplotlib, the optional extra fdscope[plot]).
"""
