"""The Slack door: Bolt app, Block Kit, progress messages, approvals, the outbox."""
