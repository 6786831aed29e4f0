"""The runbook's procedures as plans."""
