"""Waiting for something another process or task does: one deadline loop for every test.

``await eventually(check, "what")`` calls ``check`` (plain or async) until it returns something
true and returns that, or fails with "timed out waiting for what" after ``timeout_s``. A sleep is
never the synchronisation: the condition is. ``alive``, a process the condition depends on (an
agent, the API), fails the wait at once when that process exits. ``eventually_sync`` is the same
for code that cannot await (a fixture starting a process, a context manager of the edge tests).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from subprocess import Popen
from typing import Any, TypeVar

T = TypeVar("T")

TIMEOUT_S = 60.0


def _still_running(alive: Popen[Any] | None, what: str) -> None:
    if alive is not None:
        assert alive.poll() is None, f"{alive.args} exited with {alive.returncode} while waiting for {what}"


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    timeout_s: float = TIMEOUT_S,
    every_s: float = 0.02,
    alive: Popen[Any] | None = None,
) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        _still_running(alive, what)
        result = check()
        value: T = await result if inspect.isawaitable(result) else result
        if value:
            return value
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(every_s)


def eventually_sync(
    check: Callable[[], T],
    what: str,
    *,
    timeout_s: float = TIMEOUT_S,
    every_s: float = 0.1,
    alive: Popen[Any] | None = None,
) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        _still_running(alive, what)
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)
