"""Plugins: the plugin API, its loader and the built-in plugins.

The spam-policy hooks and server-event sources are specified in the project's issues;
this package holds them as they land.
"""
