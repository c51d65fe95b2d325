"""The test house's own rules, checked on the source of ``tests/``: test modules share helpers
through support modules (``tests/consoling.py``, ``tests/ingesting.py``, ``tests/world.py``…), never
by importing one another; there is one test world; waiting is ``tests.waiting.eventually``.

The rules scan the source, so they cannot fail at run time only: each also checks that it would catch
the spellings it is about."""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
from pathlib import Path

import asyncpg

from tests.services import admin_dsn, drop_stale_ram_tablespaces, free_port, ram_tablespace

TESTS = Path(__file__).resolve().parent
TEST_MODULE = re.compile(r"^tests\.test_\w+$")
# A deadline taken from a clock for a loop to poll against (``tests.waiting`` holds the one such loop).
DEADLINE = re.compile(r"(monotonic\(\)|get_running_loop\(\)\.time\(\)|\bloop\.time\(\))\s*\+")
WAITING = TESTS / "waiting.py"


def sources() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an ``import`` or ``from … import`` names (at any depth), with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from tests import test_x`` imports a test module too
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_no_module_in_tests_imports_a_test_module() -> None:
    wrong = [
        f"{path.relative_to(TESTS.parent)}:{line} imports {module}"
        for path in sources()
        for line, module in imported_modules(ast.parse(path.read_text(), str(path)))
        if TEST_MODULE.match(module)
    ]
    assert not wrong, (
        "a test module is not a library: move the shared helper to a support module "
        "(tests/consoling.py, tests/ingesting.py, tests/world.py, ...):\n" + "\n".join(wrong)
    )


def test_the_rule_sees_every_spelling_of_such_an_import() -> None:
    spellings = [
        "from tests.test_console import sign_in",
        "import tests.test_console",
        "from tests import test_console",
        "def f():\n    from tests.test_console import sign_in",
    ]
    for source in spellings:
        assert any(TEST_MODULE.match(m) for _, m in imported_modules(ast.parse(source))), source
    for source in ("from tests.consoling import sign_in", "from tests import world", "import tests.waiting"):
        assert not any(TEST_MODULE.match(m) for _, m in imported_modules(ast.parse(source))), source


def test_there_is_one_test_world() -> None:
    worlds = [
        f"{path.relative_to(TESTS.parent)}:{node.lineno}"
        for path in sources()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ClassDef) and node.name == "World"
    ]
    assert [where.split(":")[0] for where in worlds] == ["tests/world.py"], (
        "one World, in tests/world.py (add a scene to it instead of a second World):\n" + "\n".join(worlds)
    )


def test_waiting_is_tests_waiting_eventually() -> None:
    """No hand-written deadline loop in a test or support module (the stand-ins in ``edge_standins/``
    are devices, whose own waits are their behaviour)."""
    loops = [
        f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}"
        for path in sources()
        if path not in {WAITING, Path(__file__).resolve()} and "edge_standins" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if DEADLINE.search(line)
    ]
    assert not loops, "wait with tests.waiting.eventually (or eventually_sync) instead:\n" + "\n".join(loops)
    assert DEADLINE.search("deadline = time.monotonic() + 20")
    assert DEADLINE.search("deadline = asyncio.get_running_loop().time() + timeout")


def test_ports_handed_to_servers_are_ones_no_other_socket_is_given() -> None:
    """``free_port`` hands out ports below the kernel's ephemeral range, never the same one twice in a
    row of calls, and passes over one that something else holds."""
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(port < low or port > high for port in ports), (low, high, ports)
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports[-1] + 1))
        assert free_port() != ports[-1] + 1


async def test_test_databases_live_in_memory_and_a_killed_runs_tablespace_is_cleared(database_url: str) -> None:
    """As root (CI), this run's databases are in its tmpfs tablespace; one left by a run that was killed
    goes, with the databases in it and its directory, when the next run starts."""
    admin = await asyncpg.connect(admin_dsn("postgres"))
    try:
        mine = await admin.fetchval(
            "SELECT t.spcname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = $1",
            database_url.rsplit("/", 1)[1],
        )
        assert mine == (f"kuzet_ram_{os.getpid()}" if os.geteuid() == 0 else "pg_default")
        if os.geteuid() != 0:
            return
        gone = subprocess.Popen(["true"])  # a process that has ended: its pid names the killed run
        gone.wait()
        name, _ = await ram_tablespace(admin, gone.pid)
        assert name == f"kuzet_ram_{gone.pid}"
        await admin.execute(f"CREATE DATABASE kuzet_left_{gone.pid} TABLESPACE {name}")
        where = "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = $1"
        location = Path(await admin.fetchval(where, name))
        assert any(location.iterdir())

        await drop_stale_ram_tablespaces(admin)

        assert await admin.fetchval("SELECT count(*) FROM pg_tablespace WHERE spcname = $1", name) == 0
        left = f"kuzet_left_{gone.pid}"
        assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", left) == 0
        assert not location.exists()
        assert mine in {row[0] for row in await admin.fetch("SELECT spcname FROM pg_tablespace")}  # a live run's stays
    finally:
        await admin.close()
