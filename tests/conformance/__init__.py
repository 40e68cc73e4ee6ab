"""One conformance suite for every storage backend (see conftest.py)."""
