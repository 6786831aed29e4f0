"""Socket Mode: how Slack reaches an app that has no public URL.

Faithful: ``apps.connections.open`` (app-level token only) hands out a single-use WebSocket URL;
on connecting, the app gets ``{"type": "hello", ...}``; each event comes as an envelope
(``envelope_id``, ``type`` ``slash_commands``/``interactive``/``events_api``, ``payload``,
``accepts_response_payload``) that the app acks by sending back ``{"envelope_id": ...}``, with a
``payload`` where the ack carries an answer (a command's ephemeral text, a view's
``response_action``). An envelope not acked within 3 s is a violation, as over HTTP.
Simplified: ``ws://`` on 127.0.0.1, no ``disconnect`` refresh, no retries of unacked envelopes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

ACK_DEADLINE_S = 3.0


@dataclass
class SocketModeServer:
    """The WebSocket side of the fake; ``FakeSlack`` serves its routes and its one method."""

    violate: Callable[[str], None]
    base_url: Callable[[], str]
    app_id: str
    _issued: set[str] = field(default_factory=set)
    _connected: list[web.WebSocketResponse] = field(default_factory=list)
    _acks: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[dict[str, Any]] = field(default_factory=list)
    """Every envelope sent to the app, in order."""

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/socket/{id}", self._handle)]

    def open_connection(self) -> dict[str, Any]:
        """``apps.connections.open``: a URL good for one connection."""
        sid = secrets.token_hex(8)
        self._issued.add(sid)
        return {"ok": True, "url": f"{self.base_url().replace('http', 'ws', 1)}/socket/{sid}"}

    @property
    def connections(self) -> int:
        return len(self._connected)

    async def wait_connected(self, timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not self._connected:
                self._changed.clear()
                await self._changed.wait()

    async def send(self, kind: str, payload: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Send one envelope on the newest connection; the app's ack and how long it took."""
        if not self._connected:
            raise AssertionError("no Socket Mode connection: is the app running with --socket?")
        envelope_id = secrets.token_hex(12)
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind in ("slash_commands", "interactive"),
        }
        acked: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = acked
        self.sent.append(envelope)
        started = time.perf_counter()
        await self._connected[-1].send_str(json.dumps(envelope))
        try:
            async with asyncio.timeout(ACK_DEADLINE_S * 3):
                ack = await acked
        except TimeoutError:
            self.violate(f"socket mode {kind}: no ack for envelope {envelope_id}")
            raise
        finally:
            self._acks.pop(envelope_id, None)
        elapsed = time.perf_counter() - started
        if elapsed > ACK_DEADLINE_S:
            self.violate(f"socket mode {kind}: acked after {elapsed:.2f} s (Slack wants 3 s)")
        return ack, elapsed

    async def close_all(self) -> None:
        for ws in list(self._connected):
            await ws.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        if sid not in self._issued:
            self.violate(f"socket mode: connection to a URL not issued or used before ({sid})")
            raise web.HTTPNotFound()
        self._issued.discard(sid)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._connected) + 1,
                    "connection_info": {"app_id": self.app_id},
                    "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 3600},
                }
            )
        )
        self._connected.append(ws)
        self._changed.set()
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                self._acknowledge(message.data)
        finally:
            self._connected.remove(ws)
            self._changed.set()
        return ws

    def _acknowledge(self, data: str) -> None:
        try:
            ack = json.loads(data)
        except json.JSONDecodeError:
            self.violate(f"socket mode: the app sent {data[:80]!r}, not JSON")
            return
        envelope_id = ack.get("envelope_id") if isinstance(ack, dict) else None
        waiting = self._acks.get(str(envelope_id))
        if waiting is None:
            self.violate(f"socket mode: an ack for an unknown envelope {envelope_id!r}")
        elif not waiting.done():
            waiting.set_result(ack)
