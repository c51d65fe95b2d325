"""How a job handler says a failure should be treated.

    JobError
    ├── TransientError   retry with backoff (or after ``retry_after_s``): storage timeout, FCM UNAVAILABLE
    └── PermanentError   record and stop: bad clip, invalid payload; retrying cannot help

A handler that records a permanent outcome in the domain (e.g. detection ``unprocessable``)
returns normally instead, so its job completes.
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
