"""SMPP 3.4 on the wire: the PDUs the SMS channel uses, and text split into parts.

Only what a transceiver ESME needs: ``bind_transceiver``, ``submit_sm``, ``deliver_sm`` (delivery
receipts), ``enquire_link``, ``unbind``, ``generic_nack`` and their responses. A PDU is a 16-byte
header (length, command id, status, sequence) and a body of C-octet strings, integers and, after
the mandatory fields, TLVs. Hand-written because the one maintained asyncio client (aiosmpplib)
has no TLS, no submit window, does not resubmit throttled parts and logs whole messages
(destination numbers) on errors (``docs/dependencies.md``).

Text: GSM-7 (the SMSC's default alphabet, one septet per octet, ``data_coding`` 0) when every
character is in GSM 03.38 (the extension table counts two), else UCS-2 (UTF-16BE, ``data_coding`` 8):
Kazakh and Russian are UCS-2. One part carries 160 septets or 70 UCS-2 characters; a longer message
is split into parts of 153 septets or 67 characters, each led by a concatenation UDH
(``05 00 03 ref total seq``, ``esm_class`` UDHI), never splitting an escape pair or a surrogate pair.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from typing import Final, Literal

import msgspec

HEADER: Final = struct.Struct(">IIII")
MAX_PDU: Final = 64 * 1024


class Command(enum.IntEnum):
    GENERIC_NACK = 0x80000000
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015


class Status(enum.IntEnum):
    """``command_status`` values the channel tells apart (SMPP 3.4 §5.1.3)."""

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RMSGQFUL = 0x14
    ESME_RSUBMITFAIL = 0x45
    ESME_RTHROTTLED = 0x58
    ESME_RUNKNOWNERR = 0xFF


def status_name(code: int) -> str:
    try:
        return Status(code).name
    except ValueError:
        return f"0x{code:08X}"


# Transient: the same part may be submitted again later. Anything else is permanent for that message.
TRANSIENT: Final = frozenset(
    {Status.ESME_RMSGQFUL, Status.ESME_RTHROTTLED, Status.ESME_RSYSERR, Status.ESME_RINVBNDSTS}
)

TLV_RECEIPTED_MESSAGE_ID: Final = 0x001E
TLV_MESSAGE_STATE: Final = 0x0427
ESM_UDHI: Final = 0x40
ESM_RECEIPT: Final = 0x04  # deliver_sm: an SMSC delivery receipt (esm_class bits 2-5 = 0001)
DC_DEFAULT: Final = 0x00
DC_UCS2: Final = 0x08

# message_state (SMPP 3.4 §5.2.28) and the receipt's "stat:" words, as the delivery log's states.
ReceiptState = Literal["delivered", "failed", "pending"]
_MESSAGE_STATE: Final[dict[int, ReceiptState]] = {
    1: "pending",  # ENROUTE
    2: "delivered",
    3: "failed",  # EXPIRED
    4: "failed",  # DELETED
    5: "failed",  # UNDELIVERABLE
    6: "pending",  # ACCEPTED
    7: "failed",  # UNKNOWN
    8: "failed",  # REJECTED
}
_STAT_WORD: Final[dict[str, int]] = {
    "ENROUTE": 1,
    "DELIVRD": 2,
    "EXPIRED": 3,
    "DELETED": 4,
    "UNDELIV": 5,
    "ACCEPTD": 6,
    "UNKNOWN": 7,
    "REJECTD": 8,
}
STATE_WORD: Final = {v: k for k, v in _STAT_WORD.items()}


class Pdu(msgspec.Struct, kw_only=True):
    command: int
    status: int = 0
    sequence: int = 0
    body: bytes = b""

    def encode(self) -> bytes:
        return HEADER.pack(HEADER.size + len(self.body), self.command, self.status, self.sequence) + self.body


def header(data: bytes) -> tuple[int, int, int, int]:
    """(length, command, status, sequence) of a PDU's first 16 bytes; ValueError on a bad length."""
    length, command, status, sequence = HEADER.unpack(data)
    if not HEADER.size <= length <= MAX_PDU:
        raise ValueError(f"bad PDU length {length}")
    return length, command, status, sequence


def cstr(value: str | bytes, limit: int) -> bytes:
    raw = value.encode("ascii") if isinstance(value, str) else value
    if len(raw) >= limit:
        raise ValueError(f"C-octet string longer than {limit - 1}")
    return raw + b"\0"


class Reader:
    """Reads a PDU body field by field."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.at = 0

    def cstr(self) -> str:
        end = self.body.index(b"\0", self.at)
        value = self.body[self.at : end].decode("latin-1")
        self.at = end + 1
        return value

    def u8(self) -> int:
        value = self.body[self.at]
        self.at += 1
        return value

    def octets(self, n: int) -> bytes:
        value = self.body[self.at : self.at + n]
        if len(value) != n:
            raise ValueError("PDU body too short")
        self.at += n
        return value

    def tlvs(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        while self.at + 4 <= len(self.body):
            tag, length = struct.unpack_from(">HH", self.body, self.at)
            self.at += 4
            found[tag] = self.octets(length)
        return found


def bind_transceiver(system_id: str, password: str, system_type: str = "") -> bytes:
    return cstr(system_id, 16) + cstr(password, 9) + cstr(system_type, 13) + bytes([0x34, 0, 0]) + cstr("", 41)


def address(value: str) -> tuple[int, int, str]:
    """(TON, NPI, digits) of an address: alphanumeric senders are TON 5, numbers international E.164."""
    if any(c.isalpha() for c in value):
        return 5, 0, value
    return 1, 1, value.lstrip("+")


class Part(msgspec.Struct, frozen=True):
    data_coding: int
    esm_class: int
    short_message: bytes


def submit_sm(source: str, destination: str, part: Part) -> bytes:
    s_ton, s_npi, s_addr = address(source)
    d_ton, d_npi, d_addr = address(destination)
    return (
        cstr("", 6)  # service_type
        + bytes([s_ton, s_npi])
        + cstr(s_addr, 21)
        + bytes([d_ton, d_npi])
        + cstr(d_addr, 21)
        + bytes([part.esm_class, 0, 1])  # esm_class, protocol_id, priority_flag (interactive)
        + cstr("", 17)  # schedule_delivery_time: now
        + cstr("", 17)  # validity_period: the SMSC's default
        + bytes([1, 0, part.data_coding, 0, len(part.short_message)])  # receipt on success and failure
        + part.short_message
    )


class ShortMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A submit_sm or deliver_sm body, decoded."""

    source: str
    destination: str
    esm_class: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes]


def parse_short_message(body: bytes) -> ShortMessage:
    r = Reader(body)
    r.cstr()  # service_type
    r.u8()
    r.u8()
    source = r.cstr()
    r.u8()
    r.u8()
    destination = r.cstr()
    esm_class = r.u8()
    r.u8()  # protocol_id
    r.u8()  # priority_flag
    r.cstr()  # schedule_delivery_time
    r.cstr()  # validity_period
    r.u8()  # registered_delivery
    r.u8()  # replace_if_present_flag
    data_coding = r.u8()
    r.u8()  # sm_default_msg_id
    text = r.octets(r.u8())
    return ShortMessage(
        source=source,
        destination=destination,
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=text,
        tlvs=r.tlvs(),
    )


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery receipt: which submitted part it is about, and where that part stands."""

    message_id: str
    state: ReceiptState
    word: str  # DELIVRD, UNDELIV, EXPIRED...
    error: str | None


def receipt(message: ShortMessage) -> Receipt | None:
    """The receipt a deliver_sm carries (TLVs first, the text's ``id:… stat:… err:…`` else); None for
    a mobile-originated message (replies are not read)."""
    if not message.esm_class & ESM_RECEIPT:
        return None
    fields = dict(
        item.split(":", 1)
        for item in message.short_message.decode("latin-1").split(" ")
        if ":" in item and not item.lower().startswith("text:")
    )
    ident = message.tlvs.get(TLV_RECEIPTED_MESSAGE_ID, b"").rstrip(b"\0").decode("latin-1") or fields.get("id", "")
    raw_state = message.tlvs.get(TLV_MESSAGE_STATE)
    code = raw_state[0] if raw_state else _STAT_WORD.get(fields.get("stat", "").upper(), 7)
    if not ident:
        return None
    err = fields.get("err")
    return Receipt(
        message_id=ident,
        state=_MESSAGE_STATE.get(code, "failed"),
        word=STATE_WORD.get(code, "UNKNOWN"),
        error=err if err and err.strip("0") else None,
    )


# --- text: GSM-7 or UCS-2, in parts -------------------------------------------------------------

_GSM_BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION: Final = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_GSM_CODE: Final = {c: i for i, c in enumerate(_GSM_BASIC) if c != "\x1b"}
_GSM_CHAR: Final = {i: c for c, i in _GSM_CODE.items()}
_GSM_EXT_CHAR: Final = {v: k for k, v in _GSM_EXTENSION.items()}

Encoding = Literal["gsm7", "ucs2"]
SINGLE: Final[dict[Encoding, int]] = {"gsm7": 160, "ucs2": 70}  # septets or UTF-16 units in one part
CONCAT: Final[dict[Encoding, int]] = {"gsm7": 153, "ucs2": 67}  # in each part after a 6-octet UDH


def encoding_for(text: str) -> Encoding:
    return "gsm7" if all(c in _GSM_CODE or c in _GSM_EXTENSION for c in text) else "ucs2"


def _units(text: str, encoding: Encoding) -> Iterator[bytes]:
    """The text as indivisible units: a GSM character (an escape pair counts as one unit of two
    septets), or a UTF-16 character (a surrogate pair is one unit of two)."""
    for c in text:
        if encoding == "gsm7":
            yield bytes([0x1B, _GSM_EXTENSION[c]]) if c in _GSM_EXTENSION else bytes([_GSM_CODE[c]])
        else:
            yield c.encode("utf-16-be")


def _size(unit: bytes, encoding: Encoding) -> int:
    return len(unit) if encoding == "gsm7" else len(unit) // 2


def split(text: str, reference: int) -> tuple[Encoding, list[Part]]:
    """The parts of one message, with a concatenation UDH numbered by ``reference`` (0-255) when
    it takes more than one."""
    encoding = encoding_for(text)
    units = list(_units(text, encoding))
    data_coding = DC_DEFAULT if encoding == "gsm7" else DC_UCS2
    if sum(_size(u, encoding) for u in units) <= SINGLE[encoding]:
        return encoding, [Part(data_coding=data_coding, esm_class=0, short_message=b"".join(units))]
    chunks: list[list[bytes]] = [[]]
    used = 0
    for unit in units:
        size = _size(unit, encoding)
        if used + size > CONCAT[encoding]:
            chunks.append([])
            used = 0
        chunks[-1].append(unit)
        used += size
    if len(chunks) > 255:
        raise ValueError("message too long for SMS")
    return encoding, [
        Part(
            data_coding=data_coding,
            esm_class=ESM_UDHI,
            short_message=bytes([5, 0, 3, reference & 0xFF, len(chunks), n]) + b"".join(chunk),
        )
        for n, chunk in enumerate(chunks, start=1)
    ]


def decode_text(data_coding: int, payload: bytes) -> str:
    """Text of a short message without its UDH (GSM-7 unpacked or UCS-2)."""
    if data_coding == DC_UCS2:
        return payload.decode("utf-16-be")
    out: list[str] = []
    escape = False
    for octet in payload:
        if escape:
            out.append(_GSM_EXT_CHAR.get(octet, "?"))
            escape = False
        elif octet == 0x1B:
            escape = True
        else:
            out.append(_GSM_CHAR.get(octet, "?"))
    return "".join(out)
