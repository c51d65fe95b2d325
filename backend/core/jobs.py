"""Every job kind in one place: its payload (a msgspec Struct), its lane and its priority.

A job is enqueued as its payload (``queue.enqueue(conn, DispatchIncident(incident_id=..., reason="opened"))``);
the kind comes from the payload's type, and the worker decodes the stored JSON back into that
type before the handler sees it (a payload that does not decode is a dead letter at once).

Lanes keep alerts from waiting behind confirmations: a worker runs each lane with its own slots,
so a backlog of clips to confirm never delays a phone that should ring, and a backlog of footage
never delays a confirmation.

    lane          kinds                                                     slots
    alert         dispatch_incident, escalate_incident, repeat_alert,       worker_alert_concurrency
                  push_update, retry_delivery, alert_officer,
                  live_view_push, expire_live_view_request,
                  camera_health_push, send_sms, check_push_receipts
    confirm       confirm_detection (edge-decided kinds first: priority,    worker_concurrency
                  and slots of their own that take only them)               + worker_urgent_concurrency
    footage       finish_footage (what follows the alarm; its CPU processes  worker_footage_concurrency
                  run at a lower OS priority than the confirmations')
    webhook       deliver_webhook (other people's servers)                 webhook_concurrency
    housekeeping  sweep_uploads, prune_locations, maintain_partitions,      1
                  live_view_housekeeping, edge_housekeeping,
                  sweep_retention, tag_footage

Within a lane, jobs are claimed by ``priority`` (lower first), then by when they became due less
their headstart (``queue.enqueue(..., headstart_s=)``: a clip the camera was sure of counts as having
arrived earlier, up to ``KUZET_CONFIRM_URGENCY_S``; issue 24's overload policy).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import ClassVar, Final

import msgspec

from backend.core.auth import Role


class Lane(StrEnum):
    ALERT = "alert"
    CONFIRM = "confirm"
    FOOTAGE = "footage"
    WEBHOOK = "webhook"
    HOUSEKEEPING = "housekeeping"


class Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every job payload; ``kind`` and ``lane`` are class-level, not stored fields."""

    kind: ClassVar[str]
    lane: ClassVar[Lane]

    def dedup_key(self) -> str | None:
        """The job's key among jobs of its kind: a second ``enqueue`` of a payload with the same key
        is a no-op while the first job exists (one timer per escalation step, one push per incident
        version...). None: every enqueue is a new job."""
        return None


# Priorities within a lane (lower first).
PRIORITY_URGENT: Final = 0  # edge-decided confirmations: no model to wait for
PRIORITY_NORMAL: Final = 10  # everything else
# Every priority a job may have: a claim looks at each (migrations/0190_job_claim_order.sql refuses others).
PRIORITIES: Final = (PRIORITY_URGENT, PRIORITY_NORMAL)


class ConfirmDetection(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: ClassVar[str] = "confirm_detection"
    lane: ClassVar[Lane] = Lane.CONFIRM
    detection_id: uuid.UUID

    def dedup_key(self) -> str:
        return str(self.detection_id)


class FinishFootage(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A confirmed detection's footage that the alarm does not wait for: the snapshot's face-blurred
    twin (of the frame at ``at_s``) and the phone-playable MP4."""

    kind: ClassVar[str] = "finish_footage"
    lane: ClassVar[Lane] = Lane.FOOTAGE
    detection_id: uuid.UUID
    at_s: float

    def dedup_key(self) -> str:
        return f"{self.detection_id}:footage"


class DispatchIncident(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Step 0 of a newly opened incident's escalation policy."""

    kind: ClassVar[str] = "dispatch_incident"
    lane: ClassVar[Lane] = Lane.ALERT
    incident_id: uuid.UUID
    reason: str  # why: "opened"

    def dedup_key(self) -> str:
        return f"{self.incident_id}:{self.reason}"


class EscalateIncident(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An escalation timer (or request_police with ``force``)."""

    kind: ClassVar[str] = "escalate_incident"
    lane: ClassVar[Lane] = Lane.ALERT
    incident_id: uuid.UUID
    step: int
    force: bool = False

    def dedup_key(self) -> str:
        """A step's timer once; a forced step ("escalate now") once per step."""
        return f"{self.incident_id}:{'now' if self.force else 'step'}:{self.step}"


class RepeatAlert(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A repeat round (1-based) after the policy's last step."""

    kind: ClassVar[str] = "repeat_alert"
    lane: ClassVar[Lane] = Lane.ALERT
    incident_id: uuid.UUID
    round: int

    def dedup_key(self) -> str:
        return f"{self.incident_id}:repeat:{self.round}"


class PushUpdate(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tell everyone alerted (but the actor) what changed: the event ``event_id`` (dispatch words it).
    ``text`` is what jobs queued before ``event_id`` existed carry instead (deploy workers first)."""

    kind: ClassVar[str] = "push_update"
    lane: ClassVar[Lane] = Lane.ALERT
    incident_id: uuid.UUID
    version: int
    text: str = "Incident updated"
    actor_id: uuid.UUID | None = None
    event_id: int | None = None

    def dedup_key(self) -> str:
        return f"{self.incident_id}:update:{self.version}"


class AlertOfficer(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A dispatcher (or admin) alerts one on-duty officer about an incident now (console: "alert this officer")."""

    kind: ClassVar[str] = "alert_officer"
    lane: ClassVar[Lane] = Lane.ALERT
    incident_id: uuid.UUID
    officer_id: uuid.UUID
    requested_by: uuid.UUID
    requested_role: Role

    def dedup_key(self) -> str:
        return f"{self.incident_id}:officer:{self.officer_id}"


class LiveViewPush(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Push a live view request to the people who can approve it (``requested``), or its answer
    (``approved``, ``denied``, ``revoked``) to them and to the requester, replacing the request."""

    kind: ClassVar[str] = "live_view_push"
    lane: ClassVar[Lane] = Lane.ALERT
    grant_id: uuid.UUID
    event: str
    actor_id: uuid.UUID | None = None

    def dedup_key(self) -> str:
        """The request once, and one answer whatever it is (approved, denied, expired, revoked)."""
        return f"{self.grant_id}:{'requested' if self.event == 'requested' else 'answer'}"


class ExpireLiveViewRequest(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A live view request's answer-by time: still unanswered, it expires (and that is pushed)."""

    kind: ClassVar[str] = "expire_live_view_request"
    lane: ClassVar[Lane] = Lane.ALERT
    grant_id: uuid.UUID

    def dedup_key(self) -> str:
        return str(self.grant_id)


class CameraHealthPush(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tell a venue's staff on duty and its owner that a camera went dark, was covered or moved
    (``alert``), or that it is back (``recovered``): once per health episode each."""

    kind: ClassVar[str] = "camera_health_push"
    lane: ClassVar[Lane] = Lane.ALERT
    episode_id: uuid.UUID
    event: str


class RetryDelivery(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Send a queued delivery again after its backoff (or Retry-After)."""

    kind: ClassVar[str] = "retry_delivery"
    lane: ClassVar[Lane] = Lane.ALERT
    delivery_id: int


class SendSms(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Submit one queued SMS through the worker's SMPP bind (``backend.sms``)."""

    kind: ClassVar[str] = "send_sms"
    lane: ClassVar[Lane] = Lane.ALERT
    sms_id: int

    def dedup_key(self) -> str:
        """The first send; a retry's key adds its attempt (``enqueue(..., dedup_key=...)``)."""
        return f"sms:{self.sms_id}"


class CheckPushReceipts(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A critical alert's step: whoever alerted has no phone that confirmed the push by now gets an SMS."""

    kind: ClassVar[str] = "check_push_receipts"
    lane: ClassVar[Lane] = Lane.ALERT
    incident_id: uuid.UUID
    step: int

    def dedup_key(self) -> str:
        return f"{self.incident_id}:receipts:{self.step}"


class DeliverWebhook(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One attempt at one webhook outbox row."""

    kind: ClassVar[str] = "deliver_webhook"
    lane: ClassVar[Lane] = Lane.WEBHOOK
    delivery_id: int


class SweepUploads(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: ClassVar[str] = "sweep_uploads"
    lane: ClassVar[Lane] = Lane.HOUSEKEEPING


class PruneLocations(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: ClassVar[str] = "prune_locations"
    lane: ClassVar[Lane] = Lane.HOUSEKEEPING


class LiveViewHousekeeping(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """End live view grants whose time is up (audited); delete segments past their short retention."""

    kind: ClassVar[str] = "live_view_housekeeping"
    lane: ClassVar[Lane] = Lane.HOUSEKEEPING


class EdgeHousekeeping(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Cameras whose edge box went silent count as offline; health episodes that began while the
    venue was closed are alerted once it opens."""

    kind: ClassVar[str] = "edge_housekeeping"
    lane: ClassVar[Lane] = Lane.HOUSEKEEPING


class MaintainPartitions(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Prepare the coming months' partitions (``backend.core.partitions``)."""

    kind: ClassVar[str] = "maintain_partitions"
    lane: ClassVar[Lane] = Lane.HOUSEKEEPING


class SweepRetention(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Delete footage and audit records past their retention (``backend.retention``)."""

    kind: ClassVar[str] = "sweep_retention"
    lane: ClassVar[Lane] = Lane.HOUSEKEEPING


class TagFootage(Payload, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tag an incident's objects held or expirable, as its legal hold now is (S3 lifecycle rules read the tag)."""

    kind: ClassVar[str] = "tag_footage"
    lane: ClassVar[Lane] = Lane.HOUSEKEEPING
    incident_id: uuid.UUID


PAYLOADS: Final[dict[str, type[Payload]]] = {
    p.kind: p
    for p in (
        ConfirmDetection,
        FinishFootage,
        DispatchIncident,
        EscalateIncident,
        RepeatAlert,
        PushUpdate,
        RetryDelivery,
        SendSms,
        CheckPushReceipts,
        AlertOfficer,
        LiveViewPush,
        ExpireLiveViewRequest,
        CameraHealthPush,
        DeliverWebhook,
        SweepUploads,
        PruneLocations,
        LiveViewHousekeeping,
        EdgeHousekeeping,
        MaintainPartitions,
        SweepRetention,
        TagFootage,
    )
}
ALERT_KINDS: Final = frozenset(k for k, p in PAYLOADS.items() if p.lane is Lane.ALERT)


def kinds_of(lane: Lane) -> list[str]:
    return sorted(k for k, p in PAYLOADS.items() if p.lane is lane)
