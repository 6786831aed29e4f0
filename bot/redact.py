"""Keep secrets out of everything the bot shows or stores."""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@"
)
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>\b[A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|DSN|PRIVATE_KEY|CREDENTIALS?)"
    r"[A-Z0-9_]*\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|\S+)",
    re.IGNORECASE,
)
_SLACK_TOKEN = re.compile(r"\bx(?:ox[abposr]|app)-[A-Za-z0-9-]+")

MASK = "***"


def redact(text: str, *, secrets: Iterable[str] = ()) -> str:
    """Mask passwords in URLs, `SECRET_KEY=value` pairs, Slack tokens and the given values."""
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m['key']}{MASK}", text)
    return _SLACK_TOKEN.sub(MASK, text)


def safe_url(url: str) -> str:
    """A connection URL fit to show: its password masked."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)
