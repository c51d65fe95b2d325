"""What a city system receives: the event type a domain event maps to, and its body as Standard
Webhooks JSON (``{type, timestamp, data}``, links not images, well under 20 KB) or a CAP 1.2 alert.

CAP: ``msgType`` Alert when the incident opens (a camera's confirmed detection or a person's panic),
Update for later changes, Cancel when it is resolved as a false alarm (a panic cancelled by its
sender); Update and Cancel carry ``references`` to the opening alert. ``scope`` Restricted.
Category and severity come from the kind registry. The snapshot is a ``resource`` link: the short
link to the snapshot with faces blurred (city systems never get the clear one; none when it is missing).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # building XML from our own values, never parsing
from datetime import UTC, datetime
from typing import Any, Final, get_args

import msgspec

from backend.core.config import Settings
from backend.dispatch import messages
from backend.incidents import kinds
from backend.incidents.events import EventType
from backend.incidents.repo import IncidentEventRow, IncidentRow
from backend.webhooks.schemas import EventType as WebhookEventType

CAP_NS: Final = "urn:oasis:names:tc:emergency:cap:1.2"
MAX_BODY_BYTES: Final = 20 * 1024

# Domain event (the incident's timeline) -> webhook event type, for every event type (checked at
# import): None says, explicitly, that the event is not sent. ``outcome_added`` (an owner's
# verdict), ``footage_purged`` (retention deleted the footage; the links then answer 410),
# ``not_delivered`` and ``repeated`` (the alerting's own bookkeeping) change nothing a city system
# acts on.
EVENT_TYPES: Final[dict[EventType, str | None]] = {
    EventType.CONFIRMED: "incident.opened",
    EventType.DETECTION_ADDED: "incident.updated",
    EventType.NOTIFIED: "incident.updated",
    EventType.ESCALATED: "incident.escalated",
    EventType.POLICE_REQUESTED: "incident.escalated",
    EventType.ACKNOWLEDGED: "incident.acknowledged",
    EventType.ACCEPTED: "incident.responding",
    EventType.ARRIVED: "incident.responding",
    EventType.RESOLVED: "incident.resolved",
    EventType.FOOTAGE_READY: "incident.updated",  # the snapshot with faces blurred and the clip, after the alarm
    EventType.LEGAL_HOLD_SET: "incident.updated",
    EventType.LEGAL_HOLD_RELEASED: "incident.updated",
    EventType.PANIC_RAISED: "incident.opened",  # a person's panic opens its incident
    EventType.PANIC_CANCELLED: "incident.resolved",  # the sender cancelled it in time: CAP Cancel
    EventType.OUTCOME_ADDED: None,
    EventType.FOOTAGE_PURGED: None,
    EventType.NOT_DELIVERED: None,
    EventType.REPEATED: None,
}
RESOLVING_EVENTS: Final = frozenset({EventType.RESOLVED, EventType.PANIC_CANCELLED})
_unmapped = set(EventType) - set(EVENT_TYPES)
if _unmapped:  # a new event type must say whether city systems get it
    raise TypeError(f"event types without a webhook mapping in backend.webhooks.payloads: {sorted(_unmapped)}")
_unknown = {t for t in EVENT_TYPES.values() if t is not None} - set(get_args(WebhookEventType))
if _unknown:
    raise TypeError(f"webhook event types not in backend.webhooks.schemas.EventType: {sorted(_unknown)}")

_encoder = msgspec.json.Encoder()


class Links(msgspec.Struct, kw_only=True):
    incident: str
    snapshot: str | None = None
    snapshot_note: str | None = None
    clip: str | None = None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _incident(incident: IncidentRow) -> dict[str, Any]:
    return {
        "id": str(incident.id),
        "kind": incident.kind,
        "title": kinds.get(incident.kind).title if incident.kind in kinds.KINDS else incident.kind,
        "status": incident.status,
        "version": incident.version,
        "opened_at": _iso(incident.opened_at),
        "updated_at": _iso(incident.updated_at),
        "detection_count": incident.detection_count,
        "police_requested": incident.police_requested,
        "outcome": incident.outcome,
        "legal_hold": incident.legal_hold,
        "region_id": str(incident.region_id) if incident.region_id else None,
        "venue": {
            "id": str(incident.venue_id),
            "name": incident.venue_name,
            "address": incident.venue_address,
            "lat": incident.venue_lat,
            "lon": incident.venue_lon,
        },
    }


def _event(event: IncidentEventRow) -> dict[str, Any]:
    data: dict[str, Any] = {"id": event.id, "type": event.type, "at": _iso(event.at), "actor_role": event.actor_role}
    for key in ("step", "outcome", "from", "to", "round", "detection_count"):
        if key in event.data:
            data[key] = event.data[key]
    if event.type in {EventType.NOTIFIED, EventType.ESCALATED}:
        data["people"] = len(event.data.get("recipients", []))
    if event.type == EventType.PANIC_RAISED and "note" in event.data:  # what the sender saw, for the police
        data["note"] = event.data["note"]
    return data


def json_body(event_type: str, incident: IncidentRow, event: IncidentEventRow, links: Links) -> bytes:
    body = _encoder.encode(
        {
            "type": event_type,
            "timestamp": _iso(event.at),
            "data": {
                "incident": _incident(incident),
                "event": _event(event),
                "links": msgspec.to_builtins(links, builtin_types=(), str_keys=True),
            },
        }
    )
    if len(body) > MAX_BODY_BYTES:  # pragma: no cover - bounded fields make this unreachable
        raise ValueError(f"webhook body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    return body


# --- CAP 1.2 --------------------------------------------------------------------------------


def _cap_time(at: datetime) -> str:
    return at.astimezone(UTC).replace(microsecond=0).isoformat()  # 2026-03-07T23:10:00+00:00


def cap_identifier(incident: IncidentRow, event: IncidentEventRow) -> str:
    return f"urn:kuzet:incident:{incident.id}:{event.id}"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    node = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        node.text = text
    return node


def cap_body(  # noqa: PLR0917 - the event and everything it is shown with
    settings: Settings,
    event_type: str,
    incident: IncidentRow,
    event: IncidentEventRow,
    links: Links,
    opening: IncidentEventRow | None,
) -> bytes:
    declared = kinds.KINDS.get(incident.kind)
    resolved = event.type in RESOLVING_EVENTS
    cancel = resolved and incident.outcome == "false_alarm"
    is_alert = event_type == "incident.opened"
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", cap_identifier(incident, event))
    _sub(alert, "sender", settings.webhook_cap_sender)
    _sub(alert, "sent", _cap_time(event.at))
    _sub(alert, "status", "Actual" if settings.is_production else "Test")
    _sub(alert, "msgType", "Alert" if is_alert else "Cancel" if cancel else "Update")
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", "Police and city emergency services only")
    if not is_alert and opening is not None:
        _sub(
            alert,
            "references",
            f"{settings.webhook_cap_sender},{cap_identifier(incident, opening)},{_cap_time(opening.at)}",
        )
    _sub(alert, "incidents", str(incident.id))
    info = _sub(alert, "info")
    _sub(info, "language", "en")
    _sub(info, "category", declared.cap_category if declared else "Security")
    _sub(info, "event", declared.title if declared else incident.kind)
    _sub(info, "responseType", "AllClear" if resolved else "Monitor")
    _sub(info, "urgency", "Past" if resolved else "Immediate")
    _sub(info, "severity", declared.cap_severity if declared else "Unknown")
    raised_by_person = declared is not None and declared.confirmation == "manual"
    verified = (
        raised_by_person
        or event.data.get("verified_by_server") is True
        or incident.status
        in {
            "acknowledged",
            "responding",
            "on_scene",
        }
    )
    _sub(info, "certainty", "Observed" if verified or resolved else "Likely")
    _sub(info, "senderName", "Kuzet")
    _sub(info, "headline", messages.headline(incident)[:160])
    _sub(info, "description", _describe(incident, event))
    _sub(info, "web", links.incident)
    for name, value in (
        ("kuzetEventType", event_type),
        ("kuzetStatus", incident.status),
        ("kuzetVersion", str(incident.version)),
    ):
        parameter = _sub(info, "parameter")
        _sub(parameter, "valueName", name)
        _sub(parameter, "value", value)
    if links.snapshot:
        resource = _sub(info, "resource")
        _sub(resource, "resourceDesc", f"Snapshot (short link; {links.snapshot_note})")
        _sub(resource, "mimeType", "image/jpeg")
        _sub(resource, "uri", links.snapshot)
    area = _sub(info, "area")
    _sub(area, "areaDesc", f"{incident.venue_name}, {incident.venue_address}"[:500])
    _sub(area, "circle", f"{incident.venue_lat:.6f},{incident.venue_lon:.6f} 0.1")
    ET.register_namespace("", CAP_NS)
    document: bytes = ET.tostring(alert, encoding="utf-8", xml_declaration=True)
    return document


def _describe(incident: IncidentRow, event: IncidentEventRow) -> str:
    status = incident.status.replace("_", " ")
    what = event.type.replace("_", " ")
    text = f"{what.capitalize()}; the incident is {status}."
    if incident.outcome:
        text += f" Outcome: {messages.OUTCOME_TEXT.get(incident.outcome, incident.outcome)}."
    if incident.police_requested:
        text += " Police requested by venue staff."
    return text
