"""The bot's exception tree.

Every error the bot raises on purpose is a `BotError`; its message is built from identifiers and
is safe to show to a user (no secrets, no stack traces). `exit_code` is what the CLI exits with.

    BotError
    ├── BadInput                 the request itself is wrong (exit 2)
    │   ├── UnknownEnvironment
    │   ├── UnknownQueue
    │   ├── UnknownWorker
    │   └── UnknownOperation
    ├── ConfigError              the configuration file is wrong (exit 2)
    ├── LockHeld                 another operation holds the target (exit 2)
    ├── QueueNotFound            no BullMQ queue under the configured prefix (exit 2)
    ├── UnsupportedQueue         a queue written by a BullMQ version we do not handle (exit 2)
    ├── Refused                  a precondition for a plan is not met (exit 2)
    ├── CommandFailed            a subprocess exited non-zero or timed out (exit 1)
    ├── StoreUnavailable         the bot's own database cannot be reached (exit 1)
    ├── OutcomeNotRecorded       an operation ran but its database stayed away (exit 1)
    └── OperationFailed          a step of an operation failed (exit 1)
"""

from __future__ import annotations

from collections.abc import Iterable


class BotError(Exception):
    exit_code = 1


class BadInput(BotError):
    exit_code = 2


def _listing(known: Iterable[str]) -> str:
    names = sorted(known)
    return ", ".join(names) if names else "none configured"


class UnknownEnvironment(BadInput):
    def __init__(self, name: str, *, known: Iterable[str]) -> None:
        super().__init__(f"unknown environment {name!r}; known: {_listing(known)}")
        self.name = name


class UnknownQueue(BadInput):
    def __init__(self, name: str, *, env: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown queue {name!r} in {env}; known: {_listing(known)}")
        self.name = name


class UnknownWorker(BadInput):
    def __init__(self, name: str, *, env: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown worker {name!r} in {env}; known: {_listing(known)}")
        self.name = name


class UnknownOperation(BadInput):
    def __init__(self, op_id: str) -> None:
        super().__init__(f"no operation {op_id!r}")
        self.op_id = op_id


class ConfigError(BotError):
    """Configuration problems; `problems` holds one `key: why` line each."""

    exit_code = 2

    def __init__(self, problems: list[str], *, source: str = "configuration") -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} is invalid:\n{lines}")


class LockHeld(BotError):
    exit_code = 2

    def __init__(self, key: str, *, holder: str, operation_id: str | None) -> None:
        op = f" (operation {operation_id})" if operation_id else ""
        super().__init__(f"{key} is locked by {holder}{op}")
        self.key = key
        self.holder = holder
        self.operation_id = operation_id


class QueueNotFound(BotError):
    exit_code = 2

    def __init__(self, queue: str, *, prefix: str, prefixes_found: Iterable[str]) -> None:
        found = sorted(prefixes_found)
        hint = (
            f"; queues exist under prefix {', '.join(repr(p) for p in found)}"
            if found
            else "; no BullMQ queue exists in this Redis database"
        )
        key = f"{prefix}:{queue}:meta"
        super().__init__(f"no queue {queue!r} under prefix {prefix!r} ({key} is missing){hint}")
        self.queue = queue
        self.prefix = prefix
        self.prefixes_found = found


class UnsupportedQueue(BotError):
    exit_code = 2

    def __init__(self, queue: str, *, version: str) -> None:
        super().__init__(
            f"queue {queue!r} was written by {version}; this bot handles BullMQ 6 "
            "(v5 pauses by renaming the wait list, so counts and pause would be wrong)"
        )


class Refused(BotError):
    exit_code = 2


class CommandFailed(BotError):
    def __init__(self, argv0: str, message: str) -> None:
        super().__init__(f"{argv0}: {message}")
        self.argv0 = argv0


class StoreUnavailable(BotError):
    pass


class OperationFailed(BotError):
    pass


class OutcomeNotRecorded(BotError):
    """An operation started, then its database stayed unreachable for longer than the engine
    waits: it stopped after its current step and put back what it changed; the message says
    where it stopped and what Redis was left with."""


def redis_unreachable(exc: BaseException) -> str:
    """How a Redis connection error is said everywhere (CLI, steps, drains): its first line."""
    detail = str(exc).splitlines()[0][:200] if str(exc) else "no detail"
    return f"Redis unreachable ({type(exc).__name__}: {detail})"
