"""Benchmarks that measure the service against its performance targets (run with `python -m`)."""
