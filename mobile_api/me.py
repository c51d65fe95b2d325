"""The signed-in responder: phones, duty, location, my alerts, receipts."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter

from backend.alerts import service as alerts
from backend.alerts.schemas import AlertList, ReceiptRequest
from backend.core.conditional import ETAG, NOT_MODIFIED, IfNoneMatch, conditional
from backend.core.errors import problem_responses
from backend.core.params import BEARER, SIGNED_IN, Db, Me, PathId
from backend.core.wire import CURSOR_PATTERN, MAX_CURSOR_DIGITS
from backend.devices import service as devices
from backend.devices.schemas import Device, DeviceRegister
from backend.duty import service as duty
from backend.duty.schemas import DutyState, DutyUpdate, LocationAccepted, LocationUpdate
from backend.sms import phones
from backend.sms.schemas import PhoneCodeIn, PhoneState, PhoneVerificationRequest, PhoneVerificationSent


class MeController(Controller):
    path = "/v1/me"
    tags = ("me",)
    dependencies = SIGNED_IN
    security = BEARER

    @post(
        "/devices",
        summary="Register this phone's FCM token; another account's phone's token moves only with its device key",
        status_code=201,
        responses=problem_responses(401, 409, 422),
    )
    async def register_device(self, db: Db, me: Me, data: JSONBody[DeviceRegister]) -> Device:
        return await devices.register(db, me, data)

    @delete(
        "/devices/{device_id:uuid}",
        summary="Stop pushing to this phone",
        status_code=204,
        responses=problem_responses(401, 404),
    )
    async def remove_device(self, db: Db, me: Me, device_id: PathId) -> None:
        await devices.remove(db, me, device_id)

    @put(
        "/duty",
        summary="Go on or off duty (bouncers at their own venue, officers in their region)",
        responses=problem_responses(401, 403, 422),
    )
    async def set_duty(self, db: Db, me: Me, data: JSONBody[DutyUpdate]) -> DutyState:
        return await duty.set_duty(db, me, data)

    @put(
        "/location",
        summary="Share an on-duty officer's position (used while fresh, never shown but to dispatchers)",
        responses=problem_responses(401, 403, 409, 422),
    )
    async def put_location(self, db: Db, me: Me, state: State, data: JSONBody[LocationUpdate]) -> LocationAccepted:
        return await duty.record_location(db, state.settings, me, data)

    @get(
        "/alerts",
        summary="Active incidents for me, with a cursor of the last change (pass it back as since)",
        responses=problem_responses(401, 422) | NOT_MODIFIED,
        response_headers=[ETAG],
    )
    async def my_alerts(
        self,
        db: Db,
        me: Me,
        since: Annotated[str | None, Parameter(max_length=MAX_CURSOR_DIGITS, pattern=CURSOR_PATTERN)] = None,
        if_none_match: IfNoneMatch = None,
    ) -> Response[AlertList]:
        mine = await alerts.my_alerts(db, me, since)
        # the items: an earlier cursor with the same items still syncs right (it returns a superset)
        return conditional(mine, if_none_match, tagged=mine.items)

    @post(
        "/alerts/{alert_id:uuid}/receipt",
        summary="The app received the push for this alert",
        status_code=204,
        responses=problem_responses(401, 404, 422),
    )
    async def receipt(self, db: Db, me: Me, alert_id: PathId, data: JSONBody[ReceiptRequest | None] = None) -> None:
        await alerts.receipt(db, me, alert_id, data)

    @get(
        "/phone",
        summary="My number as SMS alerts would use it: shown partly, and whether it is verified",
        responses=problem_responses(401),
    )
    async def my_phone(self, db: Db, me: Me) -> PhoneState:
        return await phones.state(db, me)

    @post(
        "/phone/verification",
        summary="Send a one-time code by SMS to this number (or the account's), to verify it for SMS alerts",
        status_code=202,
        responses=problem_responses(401, 409, 422, 429),
    )
    async def request_phone_code(
        self, db: Db, me: Me, state: State, data: JSONBody[PhoneVerificationRequest]
    ) -> PhoneVerificationSent:
        return await phones.request_code(db, state.settings, me, data)

    @post(
        "/phone/verification/confirm",
        summary="Confirm the code: the number becomes the account's, verified for SMS alerts",
        status_code=200,
        responses=problem_responses(401, 409, 422),
    )
    async def confirm_phone_code(self, db: Db, me: Me, data: JSONBody[PhoneCodeIn]) -> PhoneState:
        return await phones.confirm(db, me, data)
