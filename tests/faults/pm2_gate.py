"""A stand-in for the pm2 binary that stops the bot at one pm2 command inside one step of an
operation, so that a test can kill the bot *in* that step (tests/faults/redis_gate.py does the
same for Redis commands).

    gate = Pm2Gate(tmp_path, real=PM2_BIN, store=scenario.tmp / "chatops.sqlite3")
    gate.arm(step=5, commands={"reload"}, forward=True)
    ...  # configure the worker with pm2_bin=str(gate.path) and start the operation
    await gate.wait_held(timeout_s=60)  # pm2 reloaded the app; the bot has not heard yet

Every call runs the real pm2 unchanged, except the first one whose subcommand is in
`commands` while the store shows the operation running step `step` (1-based). That call is
held: with `forward=False` pm2 never runs it; with `forward=True` pm2 runs it to the end and
its answer is withheld. The held process waits until its parent (the bot) is gone, then exits.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sqlite3
import stat
import sys
from pathlib import Path

_SCRIPT = """#!{python} -S
import json, os, sqlite3, subprocess, sys, time

REAL, STORE, SPEC, HELD = {real!r}, {store!r}, {spec!r}, {held!r}

{running_step}


def claimed():
    try:
        os.close(os.open(HELD + ".claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


args = sys.argv[1:]
try:
    with open(SPEC) as f:
        spec = json.load(f)
except FileNotFoundError:
    spec = None
if spec and args[:1] and args[0] in spec["commands"]:
    if running_step(STORE) == spec["step"] and claimed():
        parent = os.getppid()
        if spec["forward"]:
            subprocess.run([REAL, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(HELD + ".tmp", "w") as f:
            json.dump(args, f)
        os.replace(HELD + ".tmp", HELD)
        while os.getppid() == parent:
            time.sleep(0.05)
        sys.exit(1)
os.execv(REAL, [REAL, *args])
"""


def running_step(store: str) -> int | None:
    """The step (1-based) that the running operation in the SQLite store `store` is in."""
    query = (
        'SELECT steps."index" FROM steps JOIN operations ON operations.id = steps.operation_id '
        "WHERE steps.state = 'running' AND operations.state = 'running'"
    )
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute(query).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return None if row is None else int(row[0]) + 1


class Pm2Gate:
    def __init__(self, workdir: Path, *, real: Path, store: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.path = workdir / "pm2-gate"
        self._spec = workdir / "pm2-gate.json"
        self._held = workdir / "pm2-gate.held"
        self.path.write_text(
            _SCRIPT.format(
                python=sys.executable,
                real=str(real),
                store=str(store),
                spec=str(self._spec),
                held=str(self._held),
                running_step=inspect.getsource(running_step),
            )
        )
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def arm(self, *, step: int, commands: set[str], forward: bool) -> None:
        for stale in (self._held, Path(f"{self._held}.claim")):
            stale.unlink(missing_ok=True)
        self._spec.write_text(
            json.dumps({"step": step, "commands": sorted(commands), "forward": forward})
        )

    @property
    def held_command(self) -> list[str] | None:
        try:
            held: list[str] = json.loads(self._held.read_text())
        except FileNotFoundError:
            return None
        return held

    async def wait_held(self, timeout_s: float) -> list[str]:
        async with asyncio.timeout(timeout_s):
            while (held := self.held_command) is None:
                await asyncio.sleep(0.05)
        return held
