"""The built-in plugins, each configured like any other plugin.

Spam policy:

- `plugins.builtin.ratelimit:InviteRateLimit`: token buckets per inviter, invitee, room.
- `plugins.builtin.blocklist:BlockList`: users, servers (globs) and rooms refused.
- `plugins.builtin.content:ContentFilter`: reason length, URLs and regular expressions
  in invite reasons, shared room names and topics, and message bodies.
- `plugins.builtin.first_contact:FirstContact`: invites from strangers redacted or dropped.

Server-event sources:

- `plugins.builtin.server_status:ServerStatus`: starting / running / draining to all users.
- `plugins.builtin.welcome:Welcome`: a welcome notice on each user's first session.

Each module's docstring documents its config and behaviour.
"""
