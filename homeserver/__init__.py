"""A Matrix Client-Server API homeserver on Trio with a session/presence engine."""

__version__ = "0.1.0"
