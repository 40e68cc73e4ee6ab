"""The namespace of this server's own event and account-data types. The plugin API
defines the namespace itself (plugins send such types too)."""

from plugins.api import NAMESPACE, SERVER_STATUS

INVITE_STATE_POLICY = f"{NAMESPACE}.invite_state_policy"

__all__ = ["INVITE_STATE_POLICY", "NAMESPACE", "SERVER_STATUS"]
