"""Waiting for something another process or task does: one deadline loop for every test.

``await eventually(check, "what")`` calls ``check`` (plain or async) until it returns something
true and returns that, or fails with "timed out waiting for what" after ``timeout_s``. A sleep is
never the synchronisation: the condition is.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_S = 60.0


async def eventually(
    check: Callable[[], T | Awaitable[T]], what: str, *, timeout_s: float = TIMEOUT_S, every_s: float = 0.02
) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        value: T = await result if inspect.isawaitable(result) else result
        if value:
            return value
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(every_s)
