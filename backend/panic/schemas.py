"""Wire types of the panic button (``POST /v1/me/panic``, its ``meta`` part, and cancelling it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from backend.core.wire import ascii_token, text
from backend.duty.schemas import Lat, Lon

MAX_NOTE_CHARS: Final = 500
PHOTO_TYPES: Final = {"image/jpeg": "jpg"}


class PanicPosition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the phone was, as it measured it."""

    lat: Lat
    lon: Lon
    accuracy_m: Annotated[float, msgspec.Meta(ge=0, le=100_000)] = 0.0


class PanicMeta(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``meta`` part. ``client_id`` is the app's id for this press: sending it again (a double tap,
    a retry after a lost answer) is the same panic; the same id with a different body is a 409."""

    client_id: Annotated[str, ascii_token("A-Za-z0-9._:-", max_length=64)]
    venue_id: uuid.UUID | None = None  # owners with more than one venue say which; bouncers: their own
    note: Annotated[str, text(MAX_NOTE_CHARS)] | None = None
    position: PanicPosition | None = None


class PanicState(msgspec.Struct, kw_only=True):
    panic_id: uuid.UUID
    client_id: str
    incident_id: uuid.UUID
    venue_id: uuid.UUID
    status: Literal["raised", "cancelled"]
    raised_at: datetime
    cancel_until: datetime  # the sender may cancel until then (a 409 after it)
    cancelled_at: datetime | None = None
    photo: bool = False
