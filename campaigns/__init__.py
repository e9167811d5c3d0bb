"""Omnichannel campaigns: paths (audiences, first path wins) and their scheduled messages.

- `service`: limits (10 paths, 30 messages), send-settings locks, path order and cloning,
  message status transitions and the one call into the Temporal scheduling;
- `review`: the errors that block scheduling a message and the warnings that do not;
- `audience` / `scheduling` / `activities`: the send (snapshot, workflow registration, batches).
- `metrics`: recipients, outcomes by reason, engagement and send progress per message, path and
  campaign.
"""
