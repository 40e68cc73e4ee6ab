"""Tests of the plugin system, the invite features and the built-in plugins."""
