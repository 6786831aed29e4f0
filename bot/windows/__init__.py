"""Maintenance windows: when they are, what the bot says about them, and the flag it sets."""
