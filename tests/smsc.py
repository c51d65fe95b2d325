"""A local SMSC for tests and benches: a small SMPP 3.4 server on 127.0.0.1.

It speaks the wire protocol on its own (its parsing shares no code with ``backend.adapters.smpp``):
``bind_transceiver`` (checks the system id and password), ``submit_sm`` (a message id per part,
``ESME_RTHROTTLED`` for the next ``throttle`` submits, ``ESME_RINVDSTADR`` for refused numbers),
``deliver_sm`` receipts with ``receipted_message_id`` and ``message_state`` (``receipts``:
``delivered``, ``undeliverable`` or ``never``), ``enquire_link``, and going away mid-session
(``go_away``: every connection closed without an answer; ``swallow_next``: the next submits are
read and never answered, then the connection is dropped). ``messages()`` reassembles
concatenated parts (UDH) into the texts a handset would show.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl
import struct
import time
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

_GSM = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}


@dataclass
class Submitted:
    message_id: str
    destination: str
    source: str
    esm_class: int
    data_coding: int
    short_message: bytes
    at: float


@dataclass
class LocalSmsc:
    system_id: str = "kuzet"
    password: str = "secret"  # a test server's
    receipts: str = "delivered"  # delivered | undeliverable | never
    receipt_delay_s: float = 0.0
    throttle: int = 0  # the next N submit_sm are refused with ESME_RTHROTTLED
    swallow_next: int = 0  # the next N submit_sm are never answered; then the connection drops
    refused_destinations: set[str] = field(default_factory=set)
    answer_delay_s: float = 0.0  # submit_sm_resp held this long (a slow SMSC: the client's window fills)
    outstanding: int = 0  # submits read and not yet answered
    max_outstanding: int = 0
    port: int = 0
    tls: ssl.SSLContext | None = None  # serve SMPP over TLS with this context
    submitted: list[Submitted] = field(default_factory=list)
    throttled: int = 0
    binds: int = 0
    enquire_links: int = 0
    receipts_sent: int = 0
    receipts_acknowledged: int = 0
    _listener: socket.socket | None = None
    _stopping: bool = False
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)  # one per connection

    async def start(self) -> int:
        """Listen on 127.0.0.1 (``port``, or a free one) and serve until ``stop``.

        The server accepts connections itself rather than through ``asyncio.start_server``: every
        connection is then tracked from the moment it is accepted (TLS included, started by its
        handler), and ``stop`` returns only when each one's socket is closed. Python 3.11's server
        leaves the connections it accepted open when it closes, which leaks one accepted during a
        test's last moments.
        """
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        asyncio.get_running_loop().add_reader(listener, self._accept, listener)
        return self.port

    async def stop(self) -> None:
        """Stop listening and close every connection, waiting until each one's socket is closed."""
        self._stopping = True
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener)
            self._listener.close()
        self.go_away()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def go_away(self) -> None:
        """Close every connection at once, answering nothing (the SMSC crashed or the link broke)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def messages(self) -> list[tuple[str, str]]:
        """(destination, text) of each message as the handset shows it, parts reassembled."""
        whole: list[tuple[str, str]] = []
        groups: dict[tuple[str, int], dict[int, str]] = defaultdict(dict)
        totals: dict[tuple[str, int], int] = {}
        for s in self.submitted:
            payload = s.short_message
            if s.esm_class & 0x40:
                udh_len = payload[0]
                udh = payload[1 : 1 + udh_len]
                assert udh[0] == 0 and udh[1] == 3, "concatenation IE expected"
                ref, total, seq = udh[2], udh[3], udh[4]
                groups[(s.destination, ref)][seq] = _decode(s.data_coding, payload[1 + udh_len :])
                totals[(s.destination, ref)] = total
            else:
                whole.append((s.destination, _decode(s.data_coding, payload)))
        for key, parts in groups.items():
            if len(parts) == totals[key]:
                whole.append((key[0], "".join(parts[n] for n in sorted(parts))))
        return whole

    # --- the protocol ---------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        """Each waiting connection gets its handler at once (no accepted socket is ever untracked)."""
        while True:
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            handler = asyncio.create_task(self._serve(connection))
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)

    async def _serve(self, connection: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=connection)
        except OSError:
            connection.close()
            return
        self._writers.add(writer)
        if self._stopping:
            writer.transport.abort()
        plain = writer  # held to the end: a StreamWriter's finaliser closes its transport
        bound = False
        try:
            if self.tls is not None:
                reader, writer = await self._start_tls(plain)
                self._writers.add(writer)
            while True:
                head = await reader.readexactly(16)
                length, command, _status, seq = struct.unpack(">IIII", head)
                body = await reader.readexactly(length - 16)
                if command == 0x00000009:  # bind_transceiver
                    system_id, rest = _cstr(body)
                    password, _ = _cstr(rest)
                    ok = system_id == self.system_id and password == self.password
                    self._send(writer, 0x80000009, 0 if ok else 0x0E, seq, b"smsc\0")
                    bound = ok
                    self.binds += ok
                elif command == 0x00000015:  # enquire_link
                    self.enquire_links += 1
                    self._send(writer, 0x80000015, 0, seq)
                elif command == 0x80000005:  # deliver_sm_resp
                    self.receipts_acknowledged += 1
                elif command == 0x00000006:  # unbind
                    self._send(writer, 0x80000006, 0, seq)
                    return
                elif command == 0x00000004:  # submit_sm
                    if not bound:
                        self._send(writer, 0x80000004, 0x04, seq, b"\0")
                    elif self.swallow_next:
                        self.swallow_next -= 1
                        if not self.swallow_next:
                            writer.transport.abort()
                            return
                    elif self.throttle:
                        self.throttle -= 1
                        self.throttled += 1
                        self._send(writer, 0x80000004, 0x58, seq, b"\0")
                    elif self.answer_delay_s:
                        self._later(self._answer_later(writer, seq, body))
                    else:
                        self._submit(writer, seq, body)
                elif command & 0x80000000:
                    continue
                else:
                    self._send(writer, 0x80000000, 0x03, seq)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            plain.close()  # under TLS: the close_notify just written goes out, then the socket closes

    async def _start_tls(self, plain: asyncio.StreamWriter) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The server side of a TLS handshake on an accepted connection, as a new stream pair.

        Not ``StreamWriter.start_tls``: in Python 3.11 a connection closed during the handshake
        leaves that writer without a transport, and its finaliser then raises.
        """
        assert self.tls is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport = await loop.start_tls(plain.transport, protocol, self.tls, server_side=True)
        finally:
            self._writers.discard(plain)
        if transport is None:
            plain.transport.abort()
            raise ConnectionResetError("closed during the TLS handshake")
        protocol.connection_made(transport)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_later(self, writer: asyncio.StreamWriter, seq: int, body: bytes) -> None:
        self.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        try:
            await asyncio.sleep(self.answer_delay_s)
            self._submit(writer, seq, body)
        finally:
            self.outstanding -= 1

    def _submit(self, writer: asyncio.StreamWriter, seq: int, body: bytes) -> None:
        _service, rest = _cstr(body)
        source, rest = _cstr(rest[2:])
        destination, rest = _cstr(rest[2:])
        esm_class, _pid, _prio = rest[0], rest[1], rest[2]
        _sched, rest = _cstr(rest[3:])
        _valid, rest = _cstr(rest)
        registered, data_coding, sm_len = rest[0], rest[2], rest[4]
        short_message = rest[5 : 5 + sm_len]
        if destination in self.refused_destinations:
            self._send(writer, 0x80000004, 0x0B, seq, b"\0")
            return
        message_id = f"m{next(self._ids):08d}"
        self.submitted.append(
            Submitted(message_id, destination, source, esm_class, data_coding, short_message, time.monotonic())
        )
        self._send(writer, 0x80000004, 0, seq, message_id.encode() + b"\0")
        if registered & 0x01 and self.receipts != "never":
            self._later(self._receipt(writer, message_id))

    async def _receipt(self, writer: asyncio.StreamWriter, message_id: str) -> None:
        if self.receipt_delay_s:
            await asyncio.sleep(self.receipt_delay_s)
        delivered = self.receipts == "delivered"
        stat, state, err = ("DELIVRD", 2, "000") if delivered else ("UNDELIV", 5, "001")
        text = (
            f"id:{message_id} sub:001 dlvrd:{'001' if delivered else '000'} submit date:2612062200"
            f" done date:2612062200 stat:{stat} err:{err} text:"
        )
        body = (
            b"\0"  # service_type
            + bytes([1, 1])
            + b"77000000000\0"
            + bytes([5, 0])
            + b"Kuzet\0"
            + bytes([0x04, 0, 0])  # esm_class: SMSC delivery receipt
            + b"\0\0"
            + bytes([0, 0, 0, 0, len(text)])
            + text.encode()
            + struct.pack(">HH", 0x001E, len(message_id) + 1)
            + message_id.encode()
            + b"\0"
            + struct.pack(">HHB", 0x0427, 1, state)
        )
        if writer in self._writers:
            self.receipts_sent += 1
            self._send(writer, 0x00000005, 0, 0x10000 + self.receipts_sent, body)

    @staticmethod
    def _send(writer: asyncio.StreamWriter, command: int, status: int, seq: int, body: bytes = b"") -> None:
        if not writer.is_closing():
            writer.write(struct.pack(">IIII", 16 + len(body), command, status, seq) + body)


def _cstr(data: bytes) -> tuple[str, bytes]:
    end = data.index(b"\0")
    return data[:end].decode("latin-1"), data[end + 1 :]


def _decode(data_coding: int, payload: bytes) -> str:
    if data_coding == 0x08:
        return payload.decode("utf-16-be")
    out, escape = [], False
    for octet in payload:
        if escape:
            out.append(_GSM_EXT.get(octet, "?"))
            escape = False
        elif octet == 0x1B:
            escape = True
        else:
            out.append(_GSM[octet])
    return "".join(out)
