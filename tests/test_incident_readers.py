"""The webhook outbox reads every incident event without the lifecycle importing it (the layers
contract forbids that): it registers itself with ``backend.incidents.readers``. Each check runs in a
fresh interpreter, so what it sees is what a process importing only that entry point would."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import {module}
from backend.incidents import readers
print(sorted(readers.missing()))
"""


def _missing_after_importing(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip()


@pytest.mark.parametrize("entry_point", ["kuzet.asgi", "workers.main"])
def test_the_api_and_the_workers_register_the_webhook_outbox(entry_point: str) -> None:
    assert _missing_after_importing(entry_point) == "[]"


def test_an_event_is_refused_while_the_outbox_is_missing() -> None:
    """The lifecycle alone has no outbox: appending would commit an event city systems never get."""
    assert _missing_after_importing("backend.incidents.lifecycle") == "['webhook_outbox']"
    script = (
        "import asyncio\n"
        "from backend.incidents import readers\n"
        "try:\n"
        "    asyncio.run(readers.read(None, None, None, None))\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "incident event readers not registered: webhook_outbox"
