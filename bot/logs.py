"""Logging set-up: text or one JSON object a line, and secrets masked in every record.

Inside an operation every record carries its id (`operation` in JSON, `[op-...]` in text): the
engine runs each one inside `operation_logged`, and the tasks of its steps inherit it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Iterator

from bot.config import BotSettings, secret_values
from bot.redact import redact

CURRENT_OPERATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "chatops_operation", default=None
)


@contextlib.contextmanager
def operation_logged(op_id: str) -> Iterator[None]:
    """Records logged inside (and in the tasks started inside) carry `op_id`."""
    token = CURRENT_OPERATION.set(op_id)
    try:
        yield
    finally:
        CURRENT_OPERATION.reset(token)


class OperationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.operation = CURRENT_OPERATION.get()
        return True


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), secrets=self._secrets)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        operation = getattr(record, "operation", None)
        if operation:
            data["operation"] = operation
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        operation = getattr(record, "operation", None)
        where = f" [{operation}]" if operation else ""
        text = f"{record.levelname} {record.name}{where}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(settings: BotSettings, *, level: int = logging.WARNING) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(OperationFilter())
    handler.addFilter(RedactingFilter(secret_values(settings, None)))
    if settings.CHATOPS_LOG_FORMAT == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if settings.CHATOPS_LOG_LEVEL is not None:
        level = logging.getLevelNamesMapping()[settings.CHATOPS_LOG_LEVEL.upper()]
    root.setLevel(level)
    # APScheduler tells of every job it adds and runs at info: only its warnings matter here.
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))
