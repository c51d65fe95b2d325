"""Starting the real services tests talk to."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
from moto.server import ThreadedMotoServer

from tests.waiting import eventually

if TYPE_CHECKING:
    from backend.core.config import Settings

PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_USER = os.environ.get("PGUSER", "postgres")


def admin_dsn(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:5432/{database}"


# Each test's database is a clone of the migrated template: about 570 files, created and, after the
# test, deleted. On an ext4 disk without a journal (this machine's), each new file's inode is found by
# stepping over every inode deleted in the last 30 s, so clones grew slow as the run went on (0.3-0.6 s
# of the server's CPU each, 12 times the copy itself). The test databases' files live in memory
# instead, in a tablespace on tmpfs that this run makes and drops (the server is the same PostgreSQL;
# its WAL stays where it is). Where the run cannot make one, the default tablespace is used.
RAM_ROOT = Path("/dev/shm")
RAM_TABLESPACE = re.compile(r"^kuzet_ram_(\d+)$")


async def ram_tablespace(admin: asyncpg.Connection, pid: int) -> tuple[str | None, str]:
    """A tablespace on tmpfs for this run's test databases, and what was done; None where it cannot be
    made here: the server is not on this machine, or this user cannot give it a directory."""
    await drop_stale_ram_tablespaces(admin)
    if not RAM_ROOT.is_dir():
        return None, f"default tablespace: no {RAM_ROOT}"
    data = Path(await admin.fetchval("SHOW data_directory"))
    try:
        server_uid = data.stat().st_uid
    except OSError:
        return None, "default tablespace: the server's data directory is not on this machine"
    if os.geteuid() not in (0, server_uid):
        return None, "default tablespace: only root or the server's user can give it a directory"
    name, location = f"kuzet_ram_{pid}", RAM_ROOT / f"kuzet-test-{pid}"
    shutil.rmtree(location, ignore_errors=True)
    location.mkdir(mode=0o700)
    os.chown(location, server_uid, -1)
    await admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
    await admin.execute(f"CREATE TABLESPACE {name} LOCATION '{location}'")
    return name, f"tablespace {name} on tmpfs ({location})"


async def drop_ram_tablespace(admin: asyncpg.Connection, name: str) -> None:
    """Drop the run's tablespace and every database still in it (a test whose teardown did not run)."""
    location = await admin.fetchval("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = $1", name)
    for (database,) in await admin.fetch(
        "SELECT d.datname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE t.spcname = $1",
        name,
    ):
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    await admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
    if location:
        shutil.rmtree(location, ignore_errors=True)


async def drop_stale_ram_tablespaces(admin: asyncpg.Connection) -> None:
    """Those of runs that ended without dropping theirs (killed): their process is gone."""
    for (name,) in await admin.fetch("SELECT spcname FROM pg_tablespace WHERE spcname LIKE 'kuzet_ram_%'"):
        match = RAM_TABLESPACE.match(name)
        if match and not Path(f"/proc/{match[1]}").exists():
            with contextlib.suppress(asyncpg.PostgresError):  # another worker is dropping it too
                await drop_ram_tablespace(admin, name)


# A port handed to a server that binds it later (a subprocess, a thread) must not be taken in between.
# The kernel gives the ports of its ephemeral range (32768-60999 on Linux) to every socket bound to port 0
# and to every outgoing connection, so a port picked there can be gone a moment later (a CI run lost one
# that way). These come from below that range instead, a block of 1,000 for each pytest-xdist worker, so
# no other socket of the run is given one, and two workers never hand out the same one.
_PORT_BASE, _PORT_BLOCK, _PORT_BLOCKS = 10_000, 1_000, 16
_handed_out = itertools.count(os.getpid() % _PORT_BLOCK)  # two runs at once start apart


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    block = int(worker[2:]) % _PORT_BLOCKS if worker.startswith("gw") and worker[2:].isdigit() else 0
    first = _PORT_BASE + block * _PORT_BLOCK
    for _ in range(_PORT_BLOCK):
        port = first + next(_handed_out) % _PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # something outside this run holds it
        return port
    raise RuntimeError(f"no free port in {first}-{first + _PORT_BLOCK - 1}")


def start_s3_server() -> tuple[ThreadedMotoServer, str]:
    """moto's S3-compatible server on a free loopback port, speaking real HTTP."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[str]:
    """The real app under uvicorn on a free loopback port, in a thread with its own event loop."""
    import uvicorn

    from kuzet.asgi import create_app

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    await eventually(lambda: server.started or not thread.is_alive(), "the API to start", timeout_s=60)
    if not server.started:
        raise RuntimeError("the API did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)


class TcpProxy:
    """A loopback TCP proxy the test can cut, to take a real service away mid-request."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.open = True

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        if not self.open:  # cut while this connection was being made: it must not outlive the cut
            up_writer.transport.abort()
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def cut(self) -> None:
        """Drop every connection and refuse new ones until ``restore``."""
        self.open = False
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class ThreadedTcpProxy:
    """A ``TcpProxy`` on its own event loop in a thread: it keeps forwarding while the test's loop
    is blocked (Litestar's test client runs the app on another loop and waits for it)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self.proxy = TcpProxy(target_host, target_port)
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(10)
        self.port = self.proxy.port

    def dsn(self, database_url: str) -> str:
        """``database_url`` through the proxy."""
        return database_url.replace(":5432/", f":{self.port}/")

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.cut)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.restore)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
