"""Starting the real services tests talk to."""

from __future__ import annotations

import os
import socket

from moto.server import ThreadedMotoServer

PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_USER = os.environ.get("PGUSER", "postgres")


def admin_dsn(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:5432/{database}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_s3_server() -> tuple[ThreadedMotoServer, str]:
    """moto's S3-compatible server on a free loopback port, speaking real HTTP."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"
