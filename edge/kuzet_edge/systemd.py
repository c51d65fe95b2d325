"""sd_notify without a dependency: READY=1 once running, WATCHDOG=1 while the event loop is alive."""

from __future__ import annotations

import asyncio
import os
import socket


def notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


async def watchdog_forever() -> None:
    """Pet the watchdog at half its period: a stuck event loop stops petting and systemd restarts us."""
    period_us = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    if period_us <= 0:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(period_us / 2_000_000)
