"""`fdscope exporter`: the host scan as Prometheus metrics, over HTTP or as a textfile.

collector (the scrape: scan -> groups -> metric families, METRICS), groups (--group-by and
the cap on groups), sockets (socket states per network namespace), output (--listen, the
textfile). Metrics are documented in docs/exporter.md.
"""
