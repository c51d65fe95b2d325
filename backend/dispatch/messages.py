"""What a phone shows: a title and body a person understands in a second, and the app's data."""

from __future__ import annotations

import uuid
from typing import Final, Literal

from backend.incidents import events, kinds
from backend.incidents.repo import IncidentEventRow, IncidentRow

_ASK = {
    "bouncer": "Tap to acknowledge.",
    "officer": "Tap to accept.",
    "dispatcher": "No one has taken it yet.",
}


def distance_text(metres: float) -> str:
    if metres < 1000:
        return f"{max(10, round(metres / 10) * 10)} m"
    return f"{metres / 1000:.1f} km"


def urgency(kind: str) -> Literal["critical", "time_sensitive"]:
    return kinds.loudness(kind)


def headline(incident: IncidentRow) -> str:
    return f"{kinds.label(incident.kind)} at {incident.venue_name}"


def alert_text(
    incident: IncidentRow, audience: str, distance_m: float | None, step: int, detail: str | None = None
) -> tuple[str, str]:
    """Title and body; ``detail`` leads the body (a panic's sender and note)."""
    title = headline(incident)
    if distance_m is not None:
        title = f"{title} — {distance_text(distance_m)}"
    lead = "Still unanswered. " if step > 1 else ""
    police = "Police requested. " if incident.police_requested else ""
    said = f"{detail} " if detail else ""
    return title, f"{lead}{said}{police}{incident.venue_address}. {_ASK.get(audience, '')}".strip()


def panic_detail(sender_role: str, sender_name: str, note: str | None) -> str:
    """Who raised a panic and what they said: "Raised by Aidos (venue staff): knife at the bar."."""
    who = f"{sender_name} (venue staff)" if sender_role == "bouncer" else f"{sender_name} (owner)"
    said = " ".join((note or "").split())
    if not said:
        return f"Raised by {who}."
    return f"Raised by {who}: {said}" + ("" if said[-1] in ".!?" else ".")


def cancel_text(actor_role: str, actor_name: str) -> str:
    """The update everyone alerted gets when a panic is cancelled in its window."""
    who = f"{actor_name} (venue staff)" if actor_role == "bouncer" else actor_name
    return f"CANCELLED by {who}: raised by mistake. No response needed."


def reminder_text(
    incident: IncidentRow, audience: str, distance_m: float | None, round_: int, rounds: int
) -> tuple[str, str]:
    """A repeat of the alert to someone who has not answered it: "REMINDER: FIGHT at Club X — 350 m"."""
    title = f"REMINDER: {headline(incident)}"
    if distance_m is not None:
        title = f"{title} — {distance_text(distance_m)}"
    police = "Police requested. " if incident.police_requested else ""
    lead = f"Still unanswered (reminder {round_} of {rounds}). "
    return title, f"{lead}{police}{incident.venue_address}. {_ASK.get(audience, '')}".strip()


def data(incident: IncidentRow, alert_id: uuid.UUID, purpose: str, **extra: str) -> dict[str, str]:
    return {
        "type": purpose,
        "incident_id": str(incident.id),
        "alert_id": str(alert_id),
        "kind": incident.kind,
        "venue_id": str(incident.venue_id),
        "status": incident.status,
        "version": str(incident.version),
        **extra,
    }


OUTCOME_TEXT = {
    "handled": "handled",
    "false_alarm": "false alarm",
    "police_attended": "police attended",
    "arrest": "arrest made",
    "medical": "medical help",
    "other": "closed",
}


# The responder's action behind each status-change event (the inverse of the lifecycle's mapping).
_ACTION_OF: Final[dict[str, str]] = {cls.TYPE: action for action, cls in events.ACTION_EVENTS.items()}


def event_text(event: IncidentEventRow, actor_name: str) -> str:
    """The body of the update push about ``event``: a responder's action, or a panic's cancel."""
    role = event.actor_role or ""
    if event.type == events.EventType.PANIC_CANCELLED:
        return cancel_text(role, actor_name)
    return update_text(role, actor_name, _ACTION_OF[event.type], event.data.get("outcome"))


def update_text(actor_role: str, actor_name: str, action: str, outcome: str | None) -> str:
    """The body of an update push to everyone else alerted: "Officer Seitkali is responding"."""
    who = {"officer": f"Officer {actor_name}", "dispatcher": f"Dispatcher {actor_name}"}.get(actor_role, actor_name)
    return {
        "acknowledge": f"{who} (venue staff) acknowledged",
        "request_police": f"{who} requested police",
        "accept": f"{who} is responding",
        "arrive": f"{who} is on scene",
        "resolve": f"Resolved by {who}: {OUTCOME_TEXT.get(outcome or 'other', 'closed')}",
    }[action]


def sms_text(incident: IncidentRow, link: str | None, call_number: str) -> str:
    """One SMS a person reads without the app: kind, venue, address, a short link, and that replies
    are not read: "KUZET: FIGHT at Alma Club, Abay 10. https://k.kz/i/… Reply is not read; open
    the app or call 102."."""
    police = " Police requested." if incident.police_requested else ""
    where = f" {link}" if link else ""
    return (
        f"KUZET: {headline(incident)}, {incident.venue_address}.{police}{where} "
        f"Reply is not read; open the app or call {call_number}."
    )
