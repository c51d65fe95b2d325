"""How a job's failure is treated, and how a worker learns it no longer holds its job.

    JobError
    ├── TransientError   retry with backoff (or after ``retry_after_s``): storage timeout, FCM UNAVAILABLE
    ├── PermanentError   record and stop: bad clip, invalid payload, a row that does not exist;
    │                    retrying cannot help
    └── JobLost          raised by the queue, not a handler: the caller's lease lapsed and another
                         claim holds the job now, so this worker may neither settle nor renew it

A handler that records a permanent outcome in the domain (e.g. detection ``unprocessable``)
returns normally instead, so its job completes. These live in ``backend.core`` so that the domain
code a job calls (``backend.detections.confirmation``...) can classify its own failures.
"""

from __future__ import annotations


class JobError(Exception):
    pass


class TransientError(JobError):
    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(JobError):
    pass


class JobLost(JobError):
    """The job is no longer this caller's: its lease lapsed and another worker claimed it (or it is
    already finished). Nothing was written; the current holder settles it."""

    def __init__(self, job_id: int, action: str) -> None:
        super().__init__(f"job {job_id} is no longer held by this worker: {action} refused")
        self.job_id = job_id
        self.action = action
