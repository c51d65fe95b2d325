"""Escalation policies, as on-call systems have them: a chain of steps, each "wait, then notify".

A step fires ``wait_s`` after the previous one fired, unless the incident already reached the
step's ``unless`` state (``acknowledged``: anyone acknowledged or accepted; ``accepted``: an officer
accepted) or was resolved. Critical kinds and a bouncer's ``request_police`` fire the
``police_step`` at once. A step that reaches nobody hands over to the next step at once.

``sms`` names the audiences that get one SMS when none of their phones can be reached (no device,
token refused, or, for a critical kind, no receipt from the app in time).

After the last step fired, ``repeat`` rounds (every ``repeat_every_s``, by default the last step's
``wait_s``) remind everyone alerted whose alert is not acknowledged, until the incident reaches the
last step's ``unless`` state or is resolved.

The policy is snapshotted onto the incident when its first dispatch runs, so editing a venue's
policy never changes an open incident's chain.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

import msgspec

from backend.core.config import Settings
from backend.incidents import kinds
from backend.incidents.kinds import KindName

Audience = Literal["bouncers", "officers", "dispatchers"]
Unless = Literal["acknowledged", "accepted"]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=24 * 3600)]


class PolicyStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    notify: Annotated[list[Audience], msgspec.Meta(min_length=1, max_length=3)]
    wait_s: Seconds = 0.0
    unless: Unless | None = None
    officers: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    radius_m: Annotated[float, msgspec.Meta(gt=0, le=100_000)] = 1500.0


class EscalationPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    steps: Annotated[list[PolicyStep], msgspec.Meta(min_length=1, max_length=20)]
    police_step: Annotated[int, msgspec.Meta(ge=0, le=19)] | None = None  # default: the first step calling officers
    officers_at_once_kinds: Annotated[list[KindName], msgspec.Meta(max_length=len(kinds.KINDS))] = msgspec.field(
        default_factory=lambda: cast("list[KindName]", kinds.officers_at_once())
    )
    repeat: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0
    repeat_every_s: Annotated[float, msgspec.Meta(gt=0, le=24 * 3600)] | None = None  # default: the last step's wait_s
    # who gets an SMS when no phone of theirs can be reached (with the SMS channel configured and a
    # verified number); a panic always goes by SMS to the venue's staff on duty whatever this says
    sms: Annotated[list[Audience], msgspec.Meta(max_length=3)] = msgspec.field(
        default_factory=lambda: cast("list[Audience]", ["bouncers", "officers"])
    )

    def __post_init__(self) -> None:
        if found := problem(self):
            raise ValueError(found[1])

    @property
    def repeat_every(self) -> float:
        """Seconds between repeat rounds."""
        return self.repeat_every_s if self.repeat_every_s is not None else self.steps[-1].wait_s

    @property
    def police(self) -> int:
        """The step that request_police and critical kinds fire at once."""
        if self.police_step is not None:
            return self.police_step
        calling = [n for n, step in enumerate(self.steps) if "officers" in step.notify]
        return calling[0] if calling else len(self.steps) - 1


def default_policy(settings: Settings) -> EscalationPolicy:
    """Bouncers at once; officers if no bouncer acknowledges within 30 s (at once for weapon/fire_smoke
    or on request_police); radius doubled and dispatchers notified if no officer accepts within 60 s;
    then, while no officer accepts, two reminders 60 s apart to everyone who has not answered."""
    return EscalationPolicy(
        steps=[
            PolicyStep(notify=["bouncers"]),
            PolicyStep(
                notify=["officers"],
                wait_s=settings.alert_ack_timeout_s,
                unless="acknowledged",
                officers=settings.alert_officers,
                radius_m=settings.alert_radius_m,
            ),
            PolicyStep(
                notify=["officers", "dispatchers"],
                wait_s=settings.alert_accept_timeout_s,
                unless="accepted",
                officers=settings.alert_officers * 2,
                radius_m=settings.alert_radius_m * 2,
            ),
        ],
        police_step=1,
        repeat=2,
    )


def panic_policy(settings: Settings) -> EscalationPolicy:
    """A staff panic alert: venue staff on duty, the nearest officers and the region's dispatchers in
    one step; if no officer accepts within the accept timeout, twice the officers and radius; then
    two reminders to whoever has not answered. Snapshotted when the panic opens its incident, so a
    venue's own policy (written for camera alerts) never delays a panic."""
    return EscalationPolicy(
        steps=[
            PolicyStep(
                notify=["bouncers", "officers", "dispatchers"],
                officers=settings.alert_officers,
                radius_m=settings.alert_radius_m,
            ),
            PolicyStep(
                notify=["officers"],
                wait_s=settings.alert_accept_timeout_s,
                unless="accepted",
                officers=settings.alert_officers * 2,
                radius_m=settings.alert_radius_m * 2,
            ),
        ],
        police_step=0,
        repeat=2,
    )


def problem(chosen: EscalationPolicy) -> tuple[str, str] | None:
    """What is wrong across fields, as ``(field, message)``; each field's own range is in its type."""
    if chosen.police_step is not None and chosen.police_step >= len(chosen.steps):
        return "police_step", "police_step must name one of the steps"
    if chosen.repeat and chosen.repeat_every <= 0:
        return "repeat_every_s", "repeating needs repeat_every_s > 0 (the last step waits 0 s)"
    return None


def parse(raw: dict[str, Any]) -> EscalationPolicy:
    return msgspec.convert(raw, EscalationPolicy)


def dump(policy: EscalationPolicy) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(policy)
    return data


def reached(status: str, unless: Unless | None) -> bool:
    """Whether an incident in ``status`` makes a step with ``unless`` unnecessary."""
    if status == "resolved":
        return True
    if unless == "acknowledged":
        return status != "confirmed"
    if unless == "accepted":
        return status in {"responding", "on_scene"}
    return False
