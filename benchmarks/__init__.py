"""Benchmarks (not tests): `python -m benchmarks store|http|compare|scale|synapse|readme-table`."""
