"""Synapse, the reference homeserver, as a benchmark target.

`install()` puts a pinned `matrix-synapse` from PyPI into its own venv; `write_config()`
writes a config for 127.0.0.1 only; `SynapseServer` starts and stops it by PID. See
`benchmarks/README.md` ("Synapse") for why each setting is what it is.
"""

from benchmarks.synapse.helper import (
    SYNAPSE_VERSION,
    SynapseServer,
    default_home,
    install,
    installed_version,
    synapse_config,
    write_config,
)

__all__ = [
    "SYNAPSE_VERSION",
    "SynapseServer",
    "default_home",
    "install",
    "installed_version",
    "synapse_config",
    "write_config",
]
