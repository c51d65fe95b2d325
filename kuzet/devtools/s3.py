"""An S3-compatible server for local development (moto's server mode, real HTTP, path-style)."""

from __future__ import annotations

import threading

from moto.server import ThreadedMotoServer


def serve_s3(host: str, port: int) -> None:
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    print(f"S3-compatible server on http://{host}:{port}  (KUZET_S3_ENDPOINT_URL=http://{host}:{port})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
