"""Example plugins for plugin authors (see plugins/README.md); not loaded unless configured."""
