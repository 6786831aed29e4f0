"""The README's first quick-start command, `scripts/demo`, without a terminal: the walk-through
runs to the end (every operation succeeds) and removes what it started."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_the_demo_walks_through_every_operation_and_cleans_up() -> None:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / "scripts" / "demo"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 110)
    text = out.decode()
    assert proc.returncode == 0, text[-4000:]
    outcomes = re.findall(r"^(succeeded|failed|cancelled|interrupted): (.*)$", text, re.M)
    assert [state for state, _ in outcomes] == ["succeeded"] * 5, outcomes
    assert "built and made current (first install)" in outcomes[0][1]
    assert re.search(r"sla drained in", outcomes[2][1]), outcomes
    assert "validated and recorded as known-good" in outcomes[4][1]  # the rollback
    assert "pm2 daemon stopped" in text and "removed /tmp/chatops-demo-" in text
    assert "demo-key-not-a-secret" not in text  # the worker's env value is never shown
