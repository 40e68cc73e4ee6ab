"""The namespace of this server's own event and account-data types."""

NAMESPACE = "org.triohomeserver"
INVITE_STATE_POLICY = f"{NAMESPACE}.invite_state_policy"
SERVER_STATUS = f"{NAMESPACE}.server_status"
