"""An operation's progress as one Slack message updated in place, its output in the thread.

Updates go through the outbox: at most one every 3 s per message, except when a step starts or
ends, and always the final state. Output lines are batched into thread replies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.clock import Clock
from bot.engine.events import (
    Event,
    OperationFinished,
    OperationStarted,
    StepFinished,
    StepOutput,
    StepStarted,
)
from bot.slack.blocks import progress_blocks
from bot.slack.outbox import Outbox

LIVE_UPDATE_EVERY_S = 3.0
# Slack takes about one post a second per channel: replies carry up to this much text each,
# and go out at most every few seconds, so a chatty step costs a handful of posts.
THREAD_TEXT_MAX = 3500
THREAD_BATCH_EVERY_S = 5.0


def progress_title(kind: str, target: str, env: str) -> str:
    return f"{kind} {target} in {env}"


def progress_text(title: str, state: str, summary: str | None) -> str:
    """The message's text (notifications, and what the fake Slack and tests read)."""
    return f"{title}: {state}" + (f" — {summary}" if summary else "")


@dataclass
class SlackProgress:
    outbox: Outbox
    clock: Clock
    channel: str
    actor: str  # Slack user id
    title: str
    rollback_value: str | None = None  # shown after a failed deploy
    fallback_url: str | None = None  # the command's response_url, where the bot is no member
    op_id: str = ""
    steps: list[list[str | None]] = field(default_factory=list)  # [name, state, detail]
    state: str = "running"
    summary: str | None = None
    validation: dict[str, object] | None = None
    _lines: list[str] = field(default_factory=list)
    _chars: int = 0
    _lines_since: float = 0.0
    _updated_at: float = -1e9
    _replies: int = 0
    _posted: bool = False  # the message is owed in the store: updates and replies can follow it

    @property
    def key(self) -> str:
        return f"{self.op_id}:progress"

    async def __call__(self, event: Event) -> None:
        if isinstance(event, OperationStarted):
            self.op_id = event.op_id
            self.steps = [[name, "pending", None] for name in event.steps]
            await self._post()
        elif isinstance(event, StepStarted):
            self.steps[event.index][1:] = ["running", None]
            await self._update(step_change=True)
        elif isinstance(event, StepOutput):
            if not self._lines:
                self._lines_since = self.clock.monotonic()
            line = event.line[: THREAD_TEXT_MAX - 10]
            if self._chars + len(line) + 1 > THREAD_TEXT_MAX - 10:
                await self._flush_thread()
                self._lines_since = self.clock.monotonic()
            self._lines.append(line)
            self._chars += len(line) + 1
            self.steps[event.index][2] = event.line[:200]
            if self.clock.monotonic() - self._lines_since >= THREAD_BATCH_EVERY_S:
                await self._flush_thread()
            # The live line costs a store write: at most one per update period, not one a line.
            if self.clock.monotonic() - self._updated_at >= LIVE_UPDATE_EVERY_S:
                await self._update(step_change=False)
        elif isinstance(event, StepFinished):
            self.steps[event.index][1:] = [event.state, event.detail]
            await self._flush_thread()
            await self._update(step_change=True)
        elif isinstance(event, OperationFinished):
            self.state, self.summary, self.validation = event.state, event.summary, event.validation
            await self._flush_thread()
            await self._update(step_change=True, final=True)

    async def _post(self) -> None:
        # `once`: a post whose store write failed may have been stored all the same.
        await self.outbox.post(
            self.key,
            channel=self.channel,
            text=self._text(),
            blocks=self._blocks(),
            fallback_url=self.fallback_url,
            once=True,
        )
        self._posted = True

    async def _update(self, *, step_change: bool, final: bool = False) -> None:
        self._updated_at = self.clock.monotonic()
        if not self._posted:  # the store was out of reach when the operation started
            await self._post()
        await self.outbox.update(
            self.key,
            text=self._text(),
            blocks=self._blocks(),
            delay_s=0.0 if step_change else LIVE_UPDATE_EVERY_S,
            final=final,
        )

    async def _flush_thread(self) -> None:
        if not self._lines:
            return
        if not self._posted:  # a reply needs its parent
            await self._post()
        text = "\n".join(self._lines)
        self._lines.clear()
        self._chars = 0
        self._replies += 1
        await self.outbox.reply(
            self.key, f"{self.op_id}:thread:{self._replies}", text=f"```{text}```"
        )

    def _text(self) -> str:
        return progress_text(self.title, self.state, self.summary)

    def _blocks(self) -> list[dict[str, object]]:
        finished_badly = self.state == "failed"
        return progress_blocks(
            title=self.title,
            actor=self.actor,
            steps=[(str(name), str(state), detail) for name, state, detail in self.steps],
            state=self.state,
            summary=self.summary,
            op_id=self.op_id,
            validation=self.validation,
            rollback_value=self.rollback_value if finished_badly else None,
        )
