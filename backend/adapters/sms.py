"""The ``sms`` notification channel (``backend.core.notify.Notifier``): one SMPP 3.4 transceiver bind
to the provider (``backend.adapters.smpp`` holds the PDUs; no SMPP library is used, see its docstring).

As a ``Notifier``, a ``Notification``'s ``token`` is the E.164 number and its ``body`` the text (the
other fields are push's and unused); each result is classified as every channel's is: ``sent``
(``message_name``: the SMSC's ids of its parts, space-separated), ``invalid_token`` (the number does
not exist: ``ESME_RINVDSTADR``), ``retry`` (throttled, no answer in time) or ``failed``; when the bind
is down the whole call raises ``SmsUnavailable`` (the job waits without using attempts).

``SmsGateway.start()`` connects (TLS where the provider offers it), binds as a transceiver and keeps
the bind: ``enquire_link`` every ``enquire_link_s`` (no answer within ``response_timeout_s``: the
link is dead), and after any loss it binds again with capped exponential backoff and jitter.

``submit()`` sends one message as its parts (``smpp.split``: GSM-7 or UCS-2, concatenated with a
UDH) and returns a classified ``SubmitResult``:

    submitted   every part accepted; ``message_ids`` are the SMSC's ids (receipts name them)
    retry       transient: not bound, throttled (``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``) or no
                answer until the caller's deadline; the caller submits again later
    failed      permanent (``ESME_RINVDSTADR``...): recorded, never retried

Sending keeps to the provider's terms: at most ``window`` submits awaiting their answer, at most
``rate`` submits a second. A throttled part is sent again after a backoff within the deadline. A
part whose answer was lost with the connection is sent again on the next bind (at least once: an
SMSC that accepted it but whose answer never came may deliver it twice).

Delivery receipts (``deliver_sm`` with ``receipted_message_id``) go to ``on_receipt``; the
``deliver_sm_resp`` is sent only after it returned, and with ``ESME_RSYSERR`` if it raised, so the
SMSC delivers the receipt again rather than Kuzet losing it. Mobile-originated messages (replies)
are answered and dropped: replies are not read. Nothing here logs a phone number or a text.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Literal

import msgspec

from backend.adapters import smpp
from backend.core.logging import get_logger
from backend.core.notify import ChannelUnavailable, Notification, Outcome, SendResult

log = get_logger(__name__)

ReceiptHandler = Callable[[smpp.Receipt], Awaitable[None]]


class SmsConfig(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int = 2775
    system_id: str
    password: str
    source: str
    tls: bool = False
    tls_ca_file: str | None = None
    window: int = 10
    rate: float = 30.0
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    reconnect_base_s: float = 0.5
    reconnect_cap_s: float = 30.0
    submit_deadline_s: float = 20.0  # one message's parts, throttling included, before it is "retry"
    bind_wait_s: float = 2.0  # how long ``send`` waits for a bind before it says the channel is away


class SmsUnavailable(ChannelUnavailable):
    """Not bound to the SMSC (it is away, or refuses the bind): nothing could be sent; retry later."""

    dependency = "sms"


class SubmitResult(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Literal["submitted", "retry", "failed"]
    message_ids: list[str] = msgspec.field(default_factory=list)
    parts: int = 0
    encoding: str = ""
    error_code: str | None = None


class _Refused(Exception):
    """The SMSC answered a request with an error status."""

    def __init__(self, status: int) -> None:
        super().__init__(smpp.status_name(status))
        self.status = status


class _LinkLost(Exception):
    """The connection ended while a request waited for its answer."""


class SmsGateway:
    """One bind to the SMSC, shared by every sender of the process."""

    channel: Final = "sms"

    def __init__(self, config: SmsConfig, on_receipt: ReceiptHandler | None = None) -> None:
        self.config = config
        self.on_receipt = on_receipt
        self._bound = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._write_lock = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[smpp.Pdu]] = {}
        self._sequence = 0
        self._reference = random.randrange(256)
        self._window = asyncio.Semaphore(config.window)
        self._pace_lock = asyncio.Lock()
        self._next_slot = 0.0
        self._handlers: set[asyncio.Task[None]] = set()
        self.binds = 0  # successful binds so far (a reconnect adds one)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sms-bind")

    async def wait_bound(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bound.wait(), timeout_s)
        return self._bound.is_set()

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    async def aclose(self) -> None:
        """Unbind politely (when bound) and stop reconnecting."""
        self._stop.set()
        if self._bound.is_set():
            with contextlib.suppress(_Refused, _LinkLost, TimeoutError, OSError):
                await self._request(smpp.Command.UNBIND, b"", timeout_s=2.0)
        if (writer := self._writer) is not None:
            writer.close()  # politely: over TLS a close_notify goes first
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            writer.transport.abort()  # a no-op once closed; a peer that never answers holds nothing
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- sending -----------------------------------------------------------------------------

    async def send(self, messages: Sequence[Notification]) -> list[SendResult]:
        """The ``Notifier`` call: each message submitted (concurrently, within the window and rate),
        one classified result each, in order. Raises ``SmsUnavailable`` when not bound."""
        await self.start()  # a notifier built from the registry binds on first use
        if not await self.wait_bound(self.config.bind_wait_s):
            raise SmsUnavailable("not bound to the SMSC")
        submitted = await asyncio.gather(
            *(
                self.submit(m.token, m.body, deadline_s=min(self.config.submit_deadline_s, float(m.ttl_s)))
                for m in messages
            )
        )
        return [_result(r) for r in submitted]

    async def submit(self, destination: str, text: str, *, deadline_s: float = 30.0) -> SubmitResult:
        """Submit one message (all its parts) before ``deadline_s`` seconds have passed."""
        self._reference = (self._reference + 1) % 256
        encoding, parts = smpp.split(text, self._reference)
        deadline = time.monotonic() + deadline_s
        ids: list[str] = []
        for part in parts:
            body = smpp.submit_sm(self.config.source, destination, part)
            outcome, value = await self._submit_part(body, deadline)
            if outcome != "submitted":
                return SubmitResult(
                    outcome=outcome, message_ids=ids, parts=len(parts), encoding=encoding, error_code=value
                )
            ids.append(value)
        return SubmitResult(outcome="submitted", message_ids=ids, parts=len(parts), encoding=encoding)

    async def _submit_part(self, body: bytes, deadline: float) -> tuple[Literal["submitted", "retry", "failed"], str]:
        throttled = 0
        last = "UNBOUND"
        while (left := deadline - time.monotonic()) > 0:
            if not await self.wait_bound(left):
                break
            await self._pace()
            try:
                async with self._window:
                    answer = await self._request(
                        smpp.Command.SUBMIT_SM, body, timeout_s=min(self.config.response_timeout_s, max(left, 0.01))
                    )
            except _Refused as refused:
                last = smpp.status_name(refused.status)
                if refused.status not in smpp.TRANSIENT:
                    return "failed", last
                throttled += 1
                await asyncio.sleep(min(self._backoff(throttled), max(deadline - time.monotonic(), 0)))
                continue
            except _LinkLost:
                last = "LINK_LOST"
                continue  # sent again on the next bind
            except TimeoutError:
                last = "TIMEOUT"
                continue
            message_id = smpp.Reader(answer.body).cstr() if answer.body else ""
            return "submitted", message_id
        return "retry", last

    async def _pace(self) -> None:
        """At most ``rate`` submits a second, spaced evenly."""
        async with self._pace_lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self.config.rate
        if slot > now:
            await asyncio.sleep(slot - now)

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.reconnect_cap_s, self.config.reconnect_base_s * 2.0 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)

    async def _request(self, command: smpp.Command, body: bytes, *, timeout_s: float) -> smpp.Pdu:
        """Send a request and wait for its response; raises _Refused, _LinkLost or TimeoutError."""
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        sequence = self._sequence
        future: asyncio.Future[smpp.Pdu] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = future
        try:
            await self._write(smpp.Pdu(command=command, sequence=sequence, body=body))
            answer = await asyncio.wait_for(future, timeout_s)
        finally:
            self._pending.pop(sequence, None)
        if answer.status != smpp.Status.ESME_ROK:
            raise _Refused(answer.status)
        return answer

    async def _write(self, pdu: smpp.Pdu) -> None:
        writer = self._writer
        if writer is None:
            raise _LinkLost
        async with self._write_lock:
            try:
                writer.write(pdu.encode())
                await writer.drain()
            except (OSError, RuntimeError) as exc:
                raise _LinkLost from exc

    # --- the bind ----------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                reader, writer = await self._connect()
                self._writer = writer
                await self._bind(reader)
                self._bound.set()
                self.binds += 1
                attempt = 0
                log.info("sms_bound", host=self.config.host, binds=self.binds)
                await self._session(reader)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, _Refused, _LinkLost) as exc:
                if not self._stop.is_set():
                    log.warning("sms_link_down", host=self.config.host, error=type(exc).__name__, detail=str(exc)[:120])
            finally:
                self._bound.clear()
                self._drop_link()
            if self._stop.is_set():
                break
            attempt += 1
            await asyncio.sleep(self._backoff(attempt))

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = None
        if self.config.tls:
            context = ssl.create_default_context(cafile=self.config.tls_ca_file)
        return await asyncio.wait_for(
            asyncio.open_connection(self.config.host, self.config.port, ssl=context),
            self.config.response_timeout_s,
        )

    async def _bind(self, reader: asyncio.StreamReader) -> None:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        body = smpp.bind_transceiver(self.config.system_id, self.config.password)
        await self._write(smpp.Pdu(command=smpp.Command.BIND_TRANSCEIVER, sequence=self._sequence, body=body))
        answer = await asyncio.wait_for(self._read(reader), self.config.response_timeout_s)
        if answer.command != smpp.Command.BIND_TRANSCEIVER_RESP:
            raise ValueError(f"expected bind_transceiver_resp, got 0x{answer.command:08X}")
        if answer.status not in (smpp.Status.ESME_ROK, smpp.Status.ESME_RALYBND):
            raise _Refused(answer.status)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> smpp.Pdu:
        length, command, status, sequence = smpp.header(await reader.readexactly(smpp.HEADER.size))
        body = await reader.readexactly(length - smpp.HEADER.size)
        return smpp.Pdu(command=command, status=status, sequence=sequence, body=body)

    async def _session(self, reader: asyncio.StreamReader) -> None:
        keeper = asyncio.create_task(self._keep_alive(), name="sms-enquire-link")
        try:
            while True:
                pdu = await self._read(reader)
                if pdu.command & 0x80000000:
                    if (future := self._pending.get(pdu.sequence)) is not None and not future.done():
                        future.set_result(pdu)
                elif pdu.command == smpp.Command.ENQUIRE_LINK:
                    await self._write(smpp.Pdu(command=smpp.Command.ENQUIRE_LINK_RESP, sequence=pdu.sequence))
                elif pdu.command == smpp.Command.DELIVER_SM:
                    task = asyncio.create_task(self._deliver(pdu))
                    self._handlers.add(task)
                    task.add_done_callback(self._handlers.discard)
                elif pdu.command == smpp.Command.UNBIND:
                    await self._write(smpp.Pdu(command=smpp.Command.UNBIND_RESP, sequence=pdu.sequence))
                    raise _LinkLost("the SMSC unbound")
                else:
                    nack = smpp.Pdu(
                        command=smpp.Command.GENERIC_NACK, status=smpp.Status.ESME_RINVCMDID, sequence=pdu.sequence
                    )
                    await self._write(nack)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.config.enquire_link_s)
            try:
                await self._request(smpp.Command.ENQUIRE_LINK, b"", timeout_s=self.config.response_timeout_s)
            except (_Refused, _LinkLost, TimeoutError):
                log.warning("sms_enquire_link_unanswered", host=self.config.host)
                self._drop_link()
                return

    async def _deliver(self, pdu: smpp.Pdu) -> None:
        """A receipt (or a reply, dropped): handled before its deliver_sm_resp is sent."""
        status = smpp.Status.ESME_ROK
        try:
            message = smpp.parse_short_message(pdu.body)
            found = smpp.receipt(message)
        except (ValueError, IndexError):
            log.warning("sms_deliver_sm_unreadable", length=len(pdu.body))
            found = None
        if found is not None and self.on_receipt is not None:
            try:
                await self.on_receipt(found)
            except Exception as exc:  # noqa: BLE001 - any failure: the SMSC must redeliver the receipt
                log.warning("sms_receipt_not_recorded", message_id=found.message_id, error=type(exc).__name__)
                status = smpp.Status.ESME_RSYSERR
        with contextlib.suppress(_LinkLost):
            await self._write(
                smpp.Pdu(command=smpp.Command.DELIVER_SM_RESP, status=status, sequence=pdu.sequence, body=b"\0")
            )

    def _drop_link(self) -> None:
        """Drop the connection; every request waiting for an answer learns the link is lost.

        Aborted, not closed: a TLS close waits for the peer's close_notify (up to 30 s) and this
        link is already judged lost, so its socket is let go at once.
        """
        writer, self._writer = self._writer, None
        self._bound.clear()
        if writer is not None:
            writer.transport.abort()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_LinkLost())


def _result(submitted: SubmitResult) -> SendResult:
    if submitted.outcome == "submitted":
        return SendResult(ok=True, message_name=" ".join(submitted.message_ids), error_code=None, outcome="sent")
    outcome: Outcome = submitted.outcome
    if submitted.error_code == smpp.Status.ESME_RINVDSTADR.name:
        outcome = "invalid_token"  # the number does not exist
    return SendResult(ok=False, message_name=None, error_code=submitted.error_code, outcome=outcome)
