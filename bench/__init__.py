"""Benchmarks that measure the service against its performance targets (run with `python -m`).

They run only against loopback sinks and throwaway databases, so they run as the `test`
environment unless told otherwise: outside `development` and `test` the service refuses to start
on its public development secrets (README "Security"), which is what the benchmarks use.
"""

import os

os.environ.setdefault("CAMPAIGNS_ENVIRONMENT", "test")
