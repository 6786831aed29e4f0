"""Keep secrets out of everything the bot shows or stores."""

from __future__ import annotations

import functools
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
    for value in _longest_first(tuple(secrets)):
        text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m['key']}{MASK}", text)
    return _SLACK_TOKEN.sub(MASK, text)


@functools.lru_cache(maxsize=16)
def _longest_first(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """The values worth masking, longest first (so a value inside another is not masked first);
    cached: the same few secrets are masked on every request the bot answers."""
    return tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))


def safe_url(url: str) -> str:
    """A connection URL fit to show: its password masked."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)
