"""Kuzet edge agent: runs on a small box beside a venue's NVR, reads its cameras (RTSP, ONVIF) or its
Frigate, proposes candidate events with a clip cut from the stream (never re-encoded), and sends them
to the Kuzet API over HTTPS, outbound only, through a durable local outbox."""

__version__ = "0.1.0"
