"""Benchmarks (not tests): `python -m benchmarks.http_bench` measures the HTTP layer."""
