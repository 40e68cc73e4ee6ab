"""The built-in spam-policy plugins, each configured like any other plugin:

- `plugins.builtin.ratelimit:InviteRateLimit`: token buckets per inviter, invitee, room.
- `plugins.builtin.blocklist:BlockList`: users, servers (globs) and rooms refused.
- `plugins.builtin.content:ContentFilter`: reason length, URLs and regular expressions
  in invite reasons, shared room names and topics, and message bodies.
- `plugins.builtin.first_contact:FirstContact`: invites from strangers redacted or dropped.

Each module's docstring documents its config and behaviour.
"""
